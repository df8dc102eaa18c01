//! Reading Drone incrementally: finished builds are kept in a cache file, and a run asks
//! Drone only for builds newer than the newest cached one plus those still unfinished.
//! Each build's run summary is read beside it from the results directory; the cache keeps a
//! digest of it (what the overview needs), and run pages read the whole summary again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use ccci::drone::{self, DroneClient, MAX_PER_PAGE};
use ccci::log::{emit, Level};
use ccci::run::RunParams;
use ccci::summary::{artifact_path_ok, Stage, Status as StageStatus, Summary};

use crate::config::Config;
use crate::escape::truncate;

/// Bump when [`CachedBuild`] changes shape; an older cache is then read afresh from Drone.
const CACHE_SCHEMA: u32 = 2;
/// Unfinished builds older than the first pages are re-read one by one, at most this many a
/// run (a build stuck in `running` for days must not cost a request per run each).
const MAX_SINGLE_READS: usize = 20;
/// What is kept of a summary's outside text: enough to read, not enough to bloat pages.
const MAX_FAILURES: usize = 50;
const MAX_MESSAGE: usize = 4000;
const MAX_NAME: usize = 400;
const MAX_ARTIFACTS: usize = 40;

/// One cc-ci run as the site needs it: the Drone build's fields, its run params, and a digest
/// of its run summary. Builds that are no cc-ci run (params missing or invalid) are not kept.
/// Empty strings are left out of the cache file: 10,000 of these are read on every run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedBuild {
    pub number: i64,
    pub status: drone::BuildStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sender: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The branch of the pipeline repo Drone built.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author_login: String,
    /// The run params (`ccci::run::RunParams`, validated when the build was read).
    pub recipe: String,
    #[serde(rename = "ref")]
    pub sha: String,
    pub pr: i64,
    pub src: String,
    #[serde(default)]
    pub comment: i64,
    /// The re-test slot of a scheduled run of the default branch; empty for a PR run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    pub created: i64,
    pub started: i64,
    pub finished: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Digest>,
    /// A hash of the full summary, so a change in what the digest leaves out still changes
    /// the stamp.
    #[serde(default)]
    pub summary_hash: u64,
    /// The build was done when its summary was read: nothing about it changes any more.
    #[serde(default)]
    pub settled: bool,
    /// A hash of everything above; a page rendered from the same stamp is the same page.
    #[serde(default)]
    pub stamp: u64,
}

/// What the overview, history and feeds need of a run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub stages: Vec<StageMark>,
    /// What a regression's "what changed" compares.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upgrade_base: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ccci::summary::Image>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ccci_commit: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageMark {
    pub name: Stage,
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<ccci::summary::Skip>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stale: String,
}

impl StageMark {
    pub fn rung(&self) -> ccci::summary::Rung {
        ccci::summary::Rung::of(Some(self.status), self.skip)
    }
}

impl Digest {
    fn of(s: &Summary) -> Digest {
        Digest {
            version: s.version.clone(),
            upgrade_base: s.upgrade_base.clone(),
            images: s.images.clone(),
            ccci_commit: s.ccci_commit.clone(),
            stages: s
                .stages
                .iter()
                .map(|st| StageMark {
                    name: st.name,
                    status: st.status,
                    reason: st.reason.clone(),
                    skip: st.skip,
                    stale: st.stale.clone(),
                })
                .collect(),
        }
    }

    pub fn stage(&self, name: Stage) -> Option<&StageMark> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// A summary of what the digest knows, for a run page whose summary file has gone.
    pub fn as_summary(&self, b: &CachedBuild) -> Summary {
        Summary {
            schema: ccci::summary::SCHEMA,
            build: b.number,
            recipe: b.recipe.clone(),
            sha: b.sha.clone(),
            pr: b.pr,
            src: b.src.clone(),
            version: self.version.clone(),
            stages: self
                .stages
                .iter()
                .map(|m| ccci::summary::StageResult {
                    name: m.name,
                    status: m.status,
                    reason: m.reason.clone(),
                    started: 0,
                    duration_ms: 0,
                    tests: Default::default(),
                    failures: Vec::new(),
                    artifacts: Vec::new(),
                    skip: m.skip,
                    stale: m.stale.clone(),
                    checks: Vec::new(),
                })
                .collect(),
            notes: Vec::new(),
            domain: String::new(),
            upgrade_base: self.upgrade_base.clone(),
            images: self.images.clone(),
            ccci_commit: self.ccci_commit.clone(),
            started: b.started,
            finished: b.finished,
        }
    }
}

impl CachedBuild {
    /// `None` when the build is no cc-ci run.
    fn from_drone(b: &drone::Build) -> Option<CachedBuild> {
        let params = RunParams::from_lookup(|k| b.params.get(k).cloned()).ok()?;
        let cut = |s: &str, n| truncate(s, n).into_owned();
        Some(CachedBuild {
            number: b.number,
            status: b.status,
            error: cut(&b.error, MAX_MESSAGE),
            trigger: cut(&b.trigger, MAX_NAME),
            sender: cut(&b.sender, MAX_NAME),
            message: cut(&b.message, MAX_MESSAGE),
            branch: cut(&b.source, MAX_NAME),
            author_login: cut(&b.author_login, MAX_NAME),
            recipe: params.recipe,
            sha: params.sha,
            pr: params.pr,
            src: cut(&params.src, MAX_NAME),
            comment: params.comment,
            schedule: params.schedule,
            created: b.created,
            started: b.started,
            finished: b.finished,
            summary: None,
            summary_hash: 0,
            settled: false,
            stamp: 0,
        })
    }

    /// The Drone side only (what a list page can tell), to see whether Drone changed it.
    fn same_drone_fields(&self, other: &CachedBuild) -> bool {
        let strip = |b: &CachedBuild| CachedBuild {
            summary: None,
            summary_hash: 0,
            settled: false,
            stamp: 0,
            ..b.clone()
        };
        strip(self) == strip(other)
    }

    pub fn is_done(&self) -> bool {
        self.status.is_done()
    }

    pub fn version(&self) -> &str {
        self.summary
            .as_ref()
            .map(|s| s.version.as_str())
            .unwrap_or("")
    }

    fn restamp(&mut self) {
        self.stamp = 0;
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        self.stamp = fnv1a(&bytes);
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cache file: every build kept, newest number seen.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    pub schema: u32,
    pub drone_repo: String,
    /// The newest build number ever listed (kept even when that build is pruned).
    pub newest: i64,
    /// Runs kept per recipe when this cache was pruned: a longer history needs older builds
    /// again, which only a fresh listing brings.
    #[serde(default)]
    pub history: usize,
    #[serde(with = "as_list")]
    pub builds: BTreeMap<i64, CachedBuild>,
    /// Builds pruned from the history, newest [`MAX_PRUNED`] kept: the first list page shows
    /// them again, and they are not to be read again each run.
    #[serde(default)]
    pub pruned: BTreeSet<i64>,
}

/// Pruned builds remembered: more than the list pages a run reads ever show again.
const MAX_PRUNED: usize = 10 * MAX_PER_PAGE as usize;

mod as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<i64, CachedBuild>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<i64, CachedBuild>, D::Error> {
        let v: Vec<CachedBuild> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|b| (b.number, b)).collect())
    }
}

impl Cache {
    pub fn file(cache_dir: &Path) -> std::path::PathBuf {
        cache_dir.join("builds.json")
    }

    /// The cache for `drone_repo` keeping `history` runs per recipe; an absent, unreadable or
    /// foreign cache, or one pruned to a shorter history, starts empty (it is only a cache:
    /// Drone has everything).
    pub fn load(cache_dir: &Path, drone_repo: &str, history: usize) -> Cache {
        let path = Cache::file(cache_dir);
        let fresh = Cache {
            schema: CACHE_SCHEMA,
            drone_repo: drone_repo.to_owned(),
            history,
            ..Cache::default()
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return fresh,
            Err(e) => {
                emit(
                    Level::Warn,
                    "dashboard",
                    "cache unreadable, starting afresh",
                    &[("path", &path.display()), ("error", &e)],
                );
                return fresh;
            }
        };
        match serde_json::from_slice::<Cache>(&bytes) {
            Ok(c)
                if c.schema == CACHE_SCHEMA
                    && c.drone_repo == drone_repo
                    && c.history >= history =>
            {
                Cache { history, ..c }
            }
            Ok(_) => fresh,
            Err(e) => {
                emit(
                    Level::Warn,
                    "dashboard",
                    "cache unparsable, starting afresh",
                    &[("path", &path.display()), ("error", &e)],
                );
                fresh
            }
        }
    }

    /// Replaces the cache file by rename. Not fsynced: a cache lost to a power cut is only a
    /// slower next run.
    pub fn save(&self, cache_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(cache_dir)?;
        ccci::fsx::replace_with(&Cache::file(cache_dir), |tmp| {
            let mut w = BufWriter::with_capacity(1 << 18, std::fs::File::create(tmp)?);
            serde_json::to_writer(&mut w, self)?;
            w.flush()
        })
        .context("writing the build cache")
    }

    /// Keeps, per recipe, the newest `keep` builds and every unsettled one.
    pub fn prune(&mut self, keep: usize) {
        let mut per_recipe: BTreeMap<&str, usize> = BTreeMap::new();
        let mut drop = Vec::new();
        for (n, b) in self.builds.iter().rev() {
            if !b.settled {
                continue;
            }
            let seen = per_recipe.entry(&b.recipe).or_default();
            *seen += 1;
            if *seen > keep {
                drop.push(*n);
            }
        }
        for n in drop {
            self.builds.remove(&n);
            self.pruned.insert(n);
        }
        while self.pruned.len() > MAX_PRUNED {
            self.pruned.pop_first();
        }
    }
}

/// What one refresh did.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Drone requests sent.
    pub requests: u32,
    /// Builds whose cached entry changed (new, further along, or a new summary).
    pub changed: BTreeSet<i64>,
}

/// How long after a build ended its summary may still change (the bridge's default
/// `results_accept_secs`).
const SETTLE_SECS: i64 = 3600;

/// Brings `cache` up to date with Drone and the results directory. Any Drone error (down,
/// refused, garbage) fails the whole refresh: the caller keeps the old site.
pub fn refresh(client: &DroneClient, cfg: &Config, cache: &mut Cache) -> Result<Refresh> {
    let (owner, name) = (&cfg.drone_repo.owner, &cfg.drone_repo.name);
    let mut out = Refresh::default();
    let newest = cache.newest;
    // Numbers listed this run; each page is merged as it arrives, so at most one page of
    // Drone's (large) build objects is held at a time.
    let mut listed: BTreeSet<i64> = BTreeSet::new();
    let mut reached = newest == 0;
    let mut complete = false;
    for page in 1..=cfg.max_pages {
        out.requests += 1;
        let items = client
            .list_builds(owner, name, page, MAX_PER_PAGE)
            .with_context(|| format!("listing builds of {}/{name} (page {page})", owner))?;
        let short = items.len() < MAX_PER_PAGE as usize;
        for b in items {
            // The cache is saved only after a whole refresh: a bad page merges nothing.
            if b.number <= 0 {
                bail!(
                    "drone listed a build with number {} on page {page}: not a Drone answer",
                    b.number
                );
            }
            if b.number <= newest {
                reached = true;
            }
            // Offset paging: a build created meanwhile shifts the rest; the first copy wins.
            if listed.insert(b.number) {
                merge(cache, &b);
            }
        }
        if short || (reached && newest > 0) {
            complete = true;
            break;
        }
    }
    if !complete {
        emit(
            Level::Warn,
            "dashboard",
            "max_pages reached; older builds are left out",
            &[
                ("max_pages", &cfg.max_pages),
                ("newest_cached", &newest),
                ("listed", &listed.len()),
            ],
        );
    }
    // Unfinished builds the pages did not reach: read singly, a few per run.
    let stale: Vec<i64> = cache
        .builds
        .values()
        .filter(|b| !b.is_done() && !listed.contains(&b.number))
        .map(|b| b.number)
        .take(MAX_SINGLE_READS)
        .collect();
    for n in stale {
        out.requests += 1;
        let b = client
            .get_build(owner, name, n)
            .with_context(|| format!("reading build {owner}/{name}#{n}"))?;
        if b.number != n {
            bail!("drone answered build #{} when asked for #{n}", b.number);
        }
        listed.insert(n);
        merge(cache, &b);
    }
    if let Some(max) = listed.last() {
        cache.newest = cache.newest.max(*max);
    }
    // Summaries: re-read for every build not settled (new, running, or just finished).
    for b in cache.builds.values_mut().filter(|b| !b.settled) {
        let before = b.stamp;
        let full = load_summary(&cfg.results_dir, b);
        b.summary_hash = full.as_ref().map(|(_, h)| *h).unwrap_or(0);
        b.summary = full.as_ref().map(|(s, _)| Digest::of(s));
        // A run on another runner host ships its last stage's details as that stage ends,
        // but a retry may land a little after Drone calls the build done: wait for teardown's
        // record, or for the server's acceptance window to pass.
        let complete = full.as_ref().is_some_and(|(s, _)| s.finished > 0);
        b.settled = b.is_done() && (complete || ccci::clock::now() - b.finished > SETTLE_SECS);
        b.restamp();
        if b.stamp != before {
            out.changed.insert(b.number);
        }
    }
    cache.prune(cfg.history);
    Ok(out)
}

/// Takes a listed build into the cache; one that changed in Drone is read again.
fn merge(cache: &mut Cache, b: &drone::Build) {
    if cache.pruned.contains(&b.number) {
        return;
    }
    let Some(fresh) = CachedBuild::from_drone(b) else {
        cache.builds.remove(&b.number);
        return;
    };
    match cache.builds.get_mut(&b.number) {
        Some(old) if old.same_drone_fields(&fresh) => {}
        Some(old) => {
            let summary = old.summary.take();
            *old = fresh;
            old.summary = summary;
        }
        None => {
            cache.builds.insert(b.number, fresh);
        }
    }
}

/// The build's summary when it is there and belongs to it; trimmed to what pages show.
pub fn read_summary(results_dir: &Path, b: &CachedBuild) -> Option<Summary> {
    load_summary(results_dir, b).map(|(s, _)| s)
}

/// [`read_summary`], and a hash of the file.
fn load_summary(results_dir: &Path, b: &CachedBuild) -> Option<(Summary, u64)> {
    let path = Summary::path(results_dir, b.number);
    let parsed = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        Ok(bytes) => serde_json::from_slice::<Summary>(&bytes)
            .with_context(|| format!("parsing {}", path.display()))
            .map(|s| (s, fnv1a(&bytes))),
    };
    let (mut s, hash) = match parsed {
        Ok(s) => s,
        Err(e) => {
            emit(
                Level::Warn,
                "dashboard",
                "summary unreadable",
                &[("build", &b.number), ("error", &format!("{e:#}"))],
            );
            return None;
        }
    };
    if s.build != b.number || s.recipe != b.recipe {
        emit(
            Level::Warn,
            "dashboard",
            "summary belongs to another run; ignored",
            &[
                ("build", &b.number),
                ("summary_build", &s.build),
                ("summary_recipe", &truncate(&s.recipe, 64)),
            ],
        );
        return None;
    }
    for st in &mut s.stages {
        st.reason = truncate(&st.reason, MAX_MESSAGE).into_owned();
        st.failures.truncate(MAX_FAILURES);
        for f in &mut st.failures {
            f.name = truncate(&f.name, MAX_NAME).into_owned();
            f.message = truncate(&f.message, MAX_MESSAGE).into_owned();
        }
        st.artifacts.retain(|a| artifact_path_ok(a));
        st.artifacts.truncate(MAX_ARTIFACTS);
    }
    for field in [
        &mut s.src,
        &mut s.domain,
        &mut s.version,
        &mut s.upgrade_base,
        &mut s.sha,
    ] {
        *field = truncate(field, MAX_NAME).into_owned();
    }
    Some((s, hash))
}
