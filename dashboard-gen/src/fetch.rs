//! Reading Drone incrementally: finished builds are kept in a cache file, and a run asks
//! Drone only for builds newer than the newest cached one plus those still unfinished.
//! Each build's run summary is read beside it from the results directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use ccci::drone::{self, DroneClient, MAX_PER_PAGE};
use ccci::log::{emit, Level};
use ccci::run;
use ccci::summary::Summary;

use crate::config::Config;
use crate::escape::truncate;

/// Bump when [`CachedBuild`] changes shape; an older cache is then read afresh from Drone.
const CACHE_SCHEMA: u32 = 1;
/// Unfinished builds older than the first pages are re-read one by one, at most this many a
/// run (a build stuck in `running` for days must not cost a request per run each).
const MAX_SINGLE_READS: usize = 20;
/// What is kept of a summary's outside text: enough to read, not enough to bloat pages.
const MAX_FAILURES: usize = 50;
const MAX_MESSAGE: usize = 4000;
const MAX_NAME: usize = 400;
const MAX_ARTIFACTS: usize = 40;

/// What the site needs of a Drone build, plus its run summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedBuild {
    pub number: i64,
    pub status: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub message: String,
    /// The branch of the pipeline repo Drone built.
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub author_login: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    pub created: i64,
    pub started: i64,
    pub finished: i64,
    /// The summary without failures and artifacts (run pages read the full one from disk
    /// when they are rendered): what the overview and history need, kept small.
    #[serde(default)]
    pub summary: Option<Summary>,
    /// A hash of the full summary, so a change in what was left out still changes the stamp.
    #[serde(default)]
    pub summary_hash: u64,
    /// The build was done when its summary was read: nothing about it changes any more.
    #[serde(default)]
    pub settled: bool,
    /// A hash of everything above; a page rendered from the same stamp is the same page.
    #[serde(default)]
    pub stamp: u64,
}

impl CachedBuild {
    fn from_drone(b: &drone::Build) -> CachedBuild {
        let keep = [
            run::PARAM_RECIPE,
            run::PARAM_REF,
            run::PARAM_PR,
            run::PARAM_SRC,
            run::PARAM_COMMENT,
        ];
        CachedBuild {
            number: b.number,
            status: b.status.clone(),
            error: truncate(&b.error, MAX_MESSAGE).into_owned(),
            trigger: truncate(&b.trigger, MAX_NAME).into_owned(),
            sender: truncate(&b.sender, MAX_NAME).into_owned(),
            message: truncate(&b.message, MAX_MESSAGE).into_owned(),
            branch: truncate(&b.source, MAX_NAME).into_owned(),
            author_login: truncate(&b.author_login, MAX_NAME).into_owned(),
            params: b
                .params
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), truncate(v, MAX_NAME).into_owned()))
                .collect(),
            created: b.created,
            started: b.started,
            finished: b.finished,
            summary: None,
            summary_hash: 0,
            settled: false,
            stamp: 0,
        }
    }

    /// The Drone side only (what a list page can tell), to see whether Drone changed it.
    fn same_drone_fields(&self, other: &CachedBuild) -> bool {
        self.status == other.status
            && self.error == other.error
            && self.message == other.message
            && self.branch == other.branch
            && self.params == other.params
            && self.started == other.started
            && self.finished == other.finished
            && self.sender == other.sender
            && self.trigger == other.trigger
            && self.author_login == other.author_login
            && self.created == other.created
    }

    pub fn is_done(&self) -> bool {
        drone::is_done(&self.status)
    }

    /// The run params, when the build is a cc-ci run at all.
    pub fn run_params(&self) -> Option<run::RunParams> {
        run::RunParams::from_lookup(|k| self.params.get(k).cloned()).ok()
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
    #[serde(with = "as_list")]
    pub builds: BTreeMap<i64, CachedBuild>,
}

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

    /// The cache for `drone_repo`; an absent, unreadable or foreign cache starts empty (it is
    /// only a cache: Drone has everything).
    pub fn load(cache_dir: &Path, drone_repo: &str) -> Cache {
        let path = Cache::file(cache_dir);
        let fresh = Cache {
            schema: CACHE_SCHEMA,
            drone_repo: drone_repo.to_owned(),
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
            Ok(c) if c.schema == CACHE_SCHEMA && c.drone_repo == drone_repo => c,
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

    pub fn save(&self, cache_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).context("serialising the build cache")?;
        ccci::fsx::write_atomic(&Cache::file(cache_dir), &bytes)
    }

    /// Keeps, per recipe, the newest `keep` builds and every unsettled one; builds that are no
    /// cc-ci run (no valid params) are dropped once settled.
    pub fn prune(&mut self, keep: usize) {
        let mut per_recipe: BTreeMap<String, usize> = BTreeMap::new();
        let mut drop = Vec::new();
        for (n, b) in self.builds.iter().rev() {
            if !b.settled {
                continue;
            }
            let recipe = b.params.get(run::PARAM_RECIPE).cloned().unwrap_or_default();
            let seen = per_recipe.entry(recipe).or_default();
            *seen += 1;
            if *seen > keep {
                drop.push(*n);
            }
        }
        for n in drop {
            self.builds.remove(&n);
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

/// Brings `cache` up to date with Drone and the results directory. Any Drone error (down,
/// refused, garbage) fails the whole refresh: the caller keeps the old site.
pub fn refresh(client: &DroneClient, cfg: &Config, cache: &mut Cache) -> Result<Refresh> {
    let (owner, name) = (&cfg.drone_repo.owner, &cfg.drone_repo.name);
    let mut out = Refresh::default();
    let newest = cache.newest;
    let mut listed: BTreeMap<i64, drone::Build> = BTreeMap::new();
    let mut reached = newest == 0;
    let mut complete = false;
    for page in 1..=cfg.max_pages {
        out.requests += 1;
        let items = client
            .list_builds(owner, name, page, MAX_PER_PAGE)
            .with_context(|| format!("listing builds of {}/{name} (page {page})", owner))?;
        let short = items.len() < MAX_PER_PAGE as usize;
        for b in items {
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
            listed.entry(b.number).or_insert(b);
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
        .filter(|b| !b.is_done() && !listed.contains_key(&b.number))
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
        listed.insert(n, b);
    }
    if let Some(max) = listed.keys().next_back() {
        cache.newest = cache.newest.max(*max);
    }
    for (n, b) in &listed {
        let fresh = CachedBuild::from_drone(b);
        match cache.builds.get_mut(n) {
            Some(old) if old.same_drone_fields(&fresh) => {}
            Some(old) => {
                let summary = old.summary.take();
                *old = fresh;
                old.summary = summary;
                old.settled = false;
            }
            None => {
                cache.builds.insert(*n, fresh);
            }
        }
    }
    // Summaries: re-read for every build not settled (new, running, or just finished).
    for b in cache.builds.values_mut().filter(|b| !b.settled) {
        let before = b.stamp;
        let full = read_summary(&cfg.results_dir, b);
        b.summary_hash = full
            .as_ref()
            .map(|s| fnv1a(&serde_json::to_vec(s).unwrap_or_default()))
            .unwrap_or(0);
        b.summary = full.map(|mut s| {
            for st in &mut s.stages {
                st.failures = Vec::new();
                st.artifacts = Vec::new();
            }
            s
        });
        b.settled = b.is_done();
        b.restamp();
        if b.stamp != before {
            out.changed.insert(b.number);
        }
    }
    cache.prune(cfg.history);
    Ok(out)
}

/// The build's summary when it is there and belongs to it; trimmed to what pages show.
pub fn read_summary(results_dir: &Path, b: &CachedBuild) -> Option<Summary> {
    let path = Summary::path(results_dir, b.number);
    if !path.exists() {
        return None;
    }
    let mut s = match Summary::load(&path) {
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
    let recipe = b
        .params
        .get(run::PARAM_RECIPE)
        .map(String::as_str)
        .unwrap_or("");
    if s.build != b.number || s.recipe != recipe {
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
    Some(s)
}

/// An artifact path the site may copy and link: `artifacts/…`, plain components only.
pub fn artifact_path_ok(p: &str) -> bool {
    let mut parts = p.split('/');
    parts.next() == Some("artifacts")
        && p.len() <= 200
        && p.split('/').skip(1).count() >= 1
        && p.split('/').skip(1).all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_stay_inside() {
        assert!(artifact_path_ok("artifacts/install/index.png"));
        assert!(!artifact_path_ok("artifacts/../../etc/passwd"));
        assert!(!artifact_path_ok("/etc/passwd"));
        assert!(!artifact_path_ok("artifacts/"));
        assert!(!artifact_path_ok("artifacts/a b.png"));
        assert!(!artifact_path_ok("artifacts/.hidden"));
        assert!(!artifact_path_ok("summary.json"));
        assert!(!artifact_path_ok("artifacts/x\"><script>.png"));
    }
}
