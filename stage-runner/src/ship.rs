//! Shipping a run's results to the server, from a runner host that does not share its disk
//! (`results_url`): after every stage, the artifacts the summary lists that the server does
//! not have yet, then the summary (the protocol: `ccci::results`). What was shipped is kept in
//! `<results_dir>/<build>/.shipped.json`, so each file crosses once.
//!
//! Shipping never fails a stage: a server that is down costs the dashboard that stage's
//! details until a later stage ships them again, and the step log says so.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use ccci::results::{self, SHA256_HEADER, SUMMARY};
use ccci::secret::Secret;
use ccci::summary::{artifact_path_ok, Summary};

use crate::config::Config;

/// One upload's bound, body included: a whole [`results::MAX_FILE`] at 200 KB/s.
const TIMEOUT: Duration = Duration::from_secs(90);
/// Tries per file; transient answers (5xx, 408, a dropped connection) are retried.
const TRIES: u32 = 3;

/// What one shipping did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shipped {
    pub files: usize,
    pub bytes: u64,
    pub requests: usize,
    /// Artifacts the server refused, left out of the summary it was sent.
    pub refused: Vec<String>,
}

const LEDGER: &str = ".shipped.json";

/// Ships build `build`'s results when `results_url` is set; `None` when it is not.
pub fn ship(cfg: &Config, build: i64) -> Result<Option<Shipped>> {
    let (Some(url), Some(token_file)) = (&cfg.results_url, &cfg.results_token_file) else {
        return Ok(None);
    };
    if build <= 0 {
        return Ok(None);
    }
    let token = Secret::from_file(token_file).context("results_token_file")?;
    let dir = cfg.results_dir.join(build.to_string());
    let path = Summary::path(&cfg.results_dir, build);
    if !path.exists() {
        return Ok(Some(Shipped::default()));
    }
    let mut summary = Summary::load(&path)?;
    let ledger_path = dir.join(LEDGER);
    let mut ledger: BTreeMap<String, String> = std::fs::read(&ledger_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let client = Client {
        agent,
        base: url.trim_end_matches('/').to_owned(),
        token,
    };
    let mut out = Shipped::default();
    let listed: Vec<String> = summary
        .stages
        .iter()
        .flat_map(|s| s.artifacts.iter().cloned())
        .collect();
    let mut gone = Vec::new();
    for a in listed {
        if !artifact_path_ok(&a) {
            gone.push(a);
            continue;
        }
        let bytes = match std::fs::read(dir.join(&a)) {
            Ok(b) => b,
            Err(_) => {
                gone.push(a);
                continue;
            }
        };
        let sha = results::sha256_hex(&bytes);
        if ledger.get(&a) == Some(&sha) {
            continue;
        }
        match client.put(build, &a, &bytes, &sha, &mut out.requests) {
            Ok(()) => {
                out.files += 1;
                out.bytes += bytes.len() as u64;
                ledger.insert(a, sha);
            }
            Err(Refusal::Final(why)) => {
                crate::process::say(
                    &crate::redact::Redactor::new([]),
                    &format!("WARN results: {a} refused by the server: {why}"),
                );
                out.refused.push(a.clone());
                gone.push(a);
            }
            Err(Refusal::Transient(e)) => {
                save_ledger(&ledger_path, &ledger);
                return Err(e.context(format!("shipping {a}")));
            }
        }
    }
    save_ledger(&ledger_path, &ledger);
    // The server takes a summary only with every artifact it lists: leave out what it lacks.
    for st in &mut summary.stages {
        st.artifacts.retain(|a| !gone.contains(a));
    }
    let bytes = serde_json::to_vec_pretty(&summary).context("serialising the summary")?;
    let sha = results::sha256_hex(&bytes);
    if ledger.get(SUMMARY) != Some(&sha) {
        match client.put(build, SUMMARY, &bytes, &sha, &mut out.requests) {
            Ok(()) => {
                out.files += 1;
                out.bytes += bytes.len() as u64;
                ledger.insert(SUMMARY.into(), sha);
                save_ledger(&ledger_path, &ledger);
            }
            Err(Refusal::Final(why)) => bail!("the server refused the summary: {why}"),
            Err(Refusal::Transient(e)) => return Err(e.context("shipping the summary")),
        }
    }
    Ok(Some(out))
}

fn save_ledger(path: &Path, ledger: &BTreeMap<String, String>) {
    if let Ok(b) = serde_json::to_vec(ledger) {
        let _ = ccci::fsx::write_atomic(path, &b);
    }
}

struct Client {
    agent: ureq::Agent,
    base: String,
    token: Secret,
}

enum Refusal {
    /// The server said no for a reason trying again will not change.
    Final(String),
    Transient(anyhow::Error),
}

impl Client {
    fn put(
        &self,
        build: i64,
        file: &str,
        bytes: &[u8],
        sha: &str,
        requests: &mut usize,
    ) -> Result<(), Refusal> {
        let url = format!("{}{}", self.base, results::upload_path(build, file));
        let mut last = anyhow!("not tried");
        for attempt in 0..TRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1 << attempt));
            }
            *requests += 1;
            let sent = self
                .agent
                .put(&url)
                .header("Authorization", &format!("Bearer {}", self.token.expose()))
                .header(SHA256_HEADER, sha)
                .content_type("application/octet-stream")
                .send(bytes);
            let mut resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    // The URL holds no secret; the header with the token is never printed.
                    last = anyhow!("PUT {url}: {e}");
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let text = text.trim().chars().take(300).collect::<String>();
            match status {
                200..=299 => return Ok(()),
                408 | 429 | 500..=599 => last = anyhow!("PUT {url}: HTTP {status}: {text}"),
                _ => return Err(Refusal::Final(format!("HTTP {status}: {text}"))),
            }
        }
        Err(Refusal::Transient(last))
    }
}
