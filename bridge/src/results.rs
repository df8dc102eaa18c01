//! `PUT /results/<build>/<file>`: the results of runs on other runner hosts, taken into the
//! results directory dashboard-gen reads (the protocol: `ccci::results`).
//!
//! What a runner's token may do is decided by Drone, not by the runner: the build must exist,
//! have run on the machine the token belongs to, and be running or have finished less than
//! `results_accept_secs` ago. A file is stored only whole and matching its SHA-256 (written
//! aside, then renamed into place); the same bytes again change nothing; a summary is taken
//! only when every artifact it lists is already here. So the site never shows a half-shipped
//! file, and a summary it shows has all its files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use ccci::drone::DroneClient;
use ccci::http::{Body, Head, Unread};
use ccci::log::{emit, Level};
use ccci::results::{self, MAX_BUILD, MAX_FILE, SHA256_HEADER, SUMMARY};
use ccci::summary::Summary;

use crate::config::{Repo, Results};

/// A whole file of [`MAX_FILE`] at a slow 200 KB/s.
const BODY_DEADLINE: Duration = Duration::from_secs(90);
/// How long Drone's answer about a build still running is trusted.
const FACTS_FRESH: Duration = Duration::from_secs(10);
const FACTS_KEPT: usize = 512;

/// What Drone says of a build, as far as uploads care.
#[derive(Clone)]
struct Facts {
    /// The machines its stages ran on.
    machines: Vec<String>,
    /// Unix seconds; 0 while it runs.
    finished: i64,
}

pub struct Intake {
    cfg: Results,
    drone: DroneClient,
    drone_repo: Repo,
    facts: Mutex<BTreeMap<i64, (Instant, Option<Facts>)>>,
    /// Held while a file is checked against the build's budget and moved into place.
    commit: Mutex<()>,
    seq: AtomicU64,
}

/// The answer: a status and a line saying why.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

fn answer(status: u16, text: impl Into<String>) -> Answer {
    Answer {
        status,
        text: text.into(),
    }
}

impl Intake {
    /// Also clears what a previous process left half-received.
    pub fn new(cfg: Results, drone: DroneClient, drone_repo: Repo) -> Result<Intake> {
        let incoming = cfg.dir.join(".incoming");
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming)
                .with_context(|| format!("clearing {}", incoming.display()))?;
        }
        std::fs::create_dir_all(&incoming)
            .with_context(|| format!("creating {}", incoming.display()))?;
        Ok(Intake {
            cfg,
            drone,
            drone_repo,
            facts: Mutex::new(BTreeMap::new()),
            commit: Mutex::new(()),
            seq: AtomicU64::new(0),
        })
    }

    /// The runner whose token this is.
    fn runner(&self, head: &Head) -> Option<&str> {
        let token = head.header("Authorization")?.strip_prefix("Bearer ")?;
        let given = Sha256::digest(token.as_bytes());
        self.cfg
            .runners
            .iter()
            .find(|(_, t)| {
                // Digests of equal length, compared without an early exit.
                let want = Sha256::digest(t.expose().as_bytes());
                want.iter()
                    .zip(given.iter())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0
            })
            .map(|(name, _)| name.as_str())
    }

    fn facts(&self, build: i64) -> Result<Option<Facts>> {
        if let Some((at, f)) = self.facts.lock().unwrap().get(&build) {
            let settled = f.as_ref().is_some_and(|f| f.finished > 0);
            if settled || at.elapsed() < FACTS_FRESH {
                return Ok(f.clone());
            }
        }
        let (owner, name) = (&self.drone_repo.owner, &self.drone_repo.name);
        let found = self
            .drone
            .find_build_number(owner, name, build)
            .with_context(|| format!("asking Drone about build {build}"))?;
        let facts = found.map(|b| Facts {
            machines: b.stages.iter().map(|s| s.machine.clone()).collect(),
            finished: if b.status.is_done() {
                b.finished.max(1)
            } else {
                0
            },
        });
        let mut all = self.facts.lock().unwrap();
        if all.len() >= FACTS_KEPT {
            let oldest = all.iter().min_by_key(|(_, (at, _))| *at).map(|(n, _)| *n);
            if let Some(n) = oldest {
                all.remove(&n);
            }
        }
        all.insert(build, (Instant::now(), facts.clone()));
        Ok(facts)
    }

    /// Takes one file, or says why not. Refusals name what was wrong, never the token.
    pub fn put(&self, head: &Head, body: &mut Body, path: &str) -> Answer {
        let Some((build, file)) = results::parse_upload_path(path) else {
            return answer(
                404,
                "not a results path: /results/<build>/summary.json or /results/<build>/artifacts/…",
            );
        };
        let Some(runner) = self.runner(head) else {
            return answer(401, "no runner token, or not one this server knows");
        };
        let Ok(Some(len)) = head.content_length() else {
            return answer(411, "a Content-Length is required");
        };
        if len > MAX_FILE {
            return answer(
                413,
                format!("{file} is {len} bytes; at most {MAX_FILE} are taken"),
            );
        }
        let Some(sha) = head
            .header(SHA256_HEADER)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
        else {
            return answer(
                400,
                format!("{SHA256_HEADER} (the body's hex SHA-256) is required"),
            );
        };
        match self.facts(build) {
            Err(e) => {
                emit(
                    Level::Warn,
                    "bridge",
                    "results: Drone unavailable",
                    &[("build", &build), ("error", &format!("{e:#}"))],
                );
                return answer(503, "cannot ask Drone about the build now; try again");
            }
            Ok(None) => {
                return answer(
                    404,
                    format!("build {build} is not a build of {}", self.drone_repo.full()),
                )
            }
            Ok(Some(f)) if !f.machines.iter().any(|m| m == runner) => {
                return answer(403, format!("build {build} did not run on runner {runner}"));
            }
            Ok(Some(f))
                if f.finished > 0 && ccci::clock::now() - f.finished > self.cfg.accept_secs =>
            {
                return answer(
                    410,
                    format!("build {build} finished too long ago to take results"),
                );
            }
            Ok(Some(_)) => {}
        }
        let part = self.cfg.dir.join(".incoming").join(format!(
            "{build}-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let taken = self.receive(body, len, &sha, &part);
        let out = match taken {
            Ok(bytes) => self.commit(build, file, &bytes, &sha, &part),
            Err(a) => a,
        };
        let _ = std::fs::remove_file(&part);
        let level = if out.status < 300 {
            Level::Info
        } else {
            Level::Warn
        };
        emit(
            level,
            "bridge",
            "results upload",
            &[
                ("build", &build),
                ("file", &file),
                ("runner", &runner),
                ("bytes", &len),
                ("status", &out.status),
            ],
        );
        out
    }

    /// The body into `part`, checked against its length and hash; a summary's bytes are
    /// also returned, to be read.
    fn receive(
        &self,
        body: &mut Body,
        len: u64,
        sha: &str,
        part: &Path,
    ) -> Result<Vec<u8>, Answer> {
        body.deadline(Instant::now() + BODY_DEADLINE);
        let mut out = std::fs::File::create(part)
            .map_err(|e| answer(500, format!("cannot store results here: {e}")))?;
        let mut hashing = Hashing {
            file: &mut out,
            hash: Sha256::new(),
            head: Vec::new(),
        };
        match body.copy_to(len, &mut hashing) {
            Ok(()) => {}
            Err(Unread::Slow) => return Err(answer(408, "the body came too slowly")),
            Err(_) => return Err(answer(400, "the body ended before its Content-Length")),
        }
        let got = results::hex(&hashing.hash.finalize_reset());
        let head = std::mem::take(&mut hashing.head);
        if got != sha {
            return Err(answer(
                422,
                format!("the body's SHA-256 is {got}, not the {SHA256_HEADER} sent"),
            ));
        }
        out.sync_all()
            .map_err(|e| answer(500, format!("cannot store results here: {e}")))?;
        Ok(head)
    }

    fn commit(&self, build: i64, file: &str, bytes: &[u8], sha: &str, part: &Path) -> Answer {
        let dir = self.cfg.dir.join(build.to_string());
        let target = dir.join(file);
        let _one = self.commit.lock().unwrap();
        if std::fs::read(&target).is_ok_and(|old| results::sha256_hex(&old) == sha) {
            return answer(200, format!("{file} of build {build} was already stored"));
        }
        if file == SUMMARY {
            let s: Summary = match serde_json::from_slice(bytes) {
                Ok(s) => s,
                Err(e) => return answer(422, format!("{file} is not a run summary: {e}")),
            };
            if s.build != build {
                return answer(
                    422,
                    format!("the summary is build {}'s, not {build}'s", s.build),
                );
            }
            let missing = s
                .stages
                .iter()
                .flat_map(|st| &st.artifacts)
                .find(|a| !ccci::summary::artifact_path_ok(a) || !dir.join(a).is_file());
            if let Some(a) = missing {
                return answer(
                    409,
                    format!("the summary lists {a:?}, which has not been uploaded"),
                );
            }
        }
        let len = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let old = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        let used = size_of_dir(&dir);
        if used - old.min(used) + len > MAX_BUILD {
            return answer(
                413,
                format!("build {build}'s results would pass {MAX_BUILD} bytes"),
            );
        }
        let moved = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(part, &target));
        match moved {
            Ok(()) => answer(201, format!("{file} of build {build} stored")),
            Err(e) => answer(500, format!("cannot store results here: {e}")),
        }
    }
}

/// Writes through to the file, hashing, and keeps the first bytes (a summary is read whole:
/// it is small; an artifact's copy is dropped unused).
struct Hashing<'a> {
    file: &'a mut std::fs::File,
    hash: Sha256,
    head: Vec<u8>,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        if self.head.len() < MAX_SUMMARY {
            let keep = n.min(MAX_SUMMARY - self.head.len());
            self.head.extend_from_slice(&buf[..keep]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A summary is a few KB; one larger than this is refused as unparseable.
const MAX_SUMMARY: usize = 1024 * 1024;

fn size_of_dir(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    // Results hold a few dozen files in two levels; the bound keeps a surprise from spinning.
    let mut seen = 0;
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return u64::MAX / 2;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
