//! Everything the bridge must remember across restarts, in one JSON file written atomically
//! (temp file, fsync, rename, fsync of the directory): a crash leaves the old file or the new
//! one, never half of either.
//!
//! Exactly-once hinges on the order of writes: an *intent* is saved before a build is created,
//! and a restart that finds an intent without a build asks Drone for a build carrying that
//! comment id before creating one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use ccci::verdict::Verdict;

/// How long handled comment ids are remembered. Cursors never go back further than this, so a
/// comment older than this can not come round again.
pub const HANDLED_TTL_SECS: i64 = 14 * 24 * 3600;

/// A `!testme` older than this never starts a run, however it arrives. Within it, a handled
/// comment is remembered (for twice as long), so a replayed webhook or a late poll of one
/// finds it handled; past it, its age alone refuses it.
pub const TRIGGER_WINDOW_SECS: i64 = HANDLED_TTL_SECS / 2;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Per repository `owner/name`: the newest comment update time seen (unix seconds). Polls
    /// ask from this second on, inclusive, so comments written in the same second are seen.
    #[serde(default)]
    pub cursors: BTreeMap<String, i64>,
    /// Notifications seen up to here (unix seconds).
    #[serde(default)]
    pub notifications_since: i64,
    /// Comment id → when it was handled (unix seconds), whatever the decision.
    #[serde(default)]
    pub handled: BTreeMap<i64, i64>,
    /// Comment id → the build about to be created for it.
    #[serde(default)]
    pub intents: BTreeMap<i64, Intent>,
    /// Drone build number → the run being followed.
    #[serde(default)]
    pub runs: BTreeMap<i64, Run>,
    /// `owner/name#pr:login` keys that were already told they may not trigger runs.
    #[serde(default)]
    pub refused_told: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Intent {
    pub repo: String,
    pub pr: i64,
    pub recipe: String,
    pub sha: String,
    pub src: String,
    /// When the head was read (unix seconds).
    pub at: i64,
    /// When the `!testme` was written.
    #[serde(default)]
    pub asked_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub repo: String,
    pub pr: i64,
    pub recipe: String,
    pub sha: String,
    /// The `!testme` comment that asked for it.
    pub trigger_comment: i64,
    /// Seconds from the `!testme` to reading the head that is tested (0: at once).
    #[serde(default)]
    pub head_lag_secs: i64,
    /// The PR comment the bridge edits as the run goes; 0 until posted.
    #[serde(default)]
    pub status_comment: i64,
    /// The body last written to it, so unchanged states cost no request.
    #[serde(default)]
    pub last_body: String,
    /// Set when a newer `!testme` replaced this run: the newer build's number.
    #[serde(default)]
    pub superseded_by: Option<i64>,
    /// Finished step → the verdict its log ended with (`None`: none), each log read once.
    #[serde(default)]
    pub verdicts: BTreeMap<String, Option<Verdict>>,
    /// The commit status last set on the head, `state description`, so unchanged ones cost
    /// no request.
    #[serde(default)]
    pub last_status: String,
}

/// The state file and where it lives.
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            path: dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state; a missing file is a fresh start, a corrupt one an error (never
    /// silently reset: that would re-trigger every recent comment).
    pub fn load(&self) -> Result<State> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing state file {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading state file {}", self.path.display())),
        }
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let bytes = serde_json::to_vec(state).context("serialising state")?;
        ccci::fsx::write_atomic(&self.path, &bytes)
    }

    /// True when a state file can be written there now (for `/healthz`).
    pub fn writable(&self) -> bool {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let probe = dir.join(format!(".probe.{}", std::process::id()));
        let ok = File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .is_ok();
        let _ = fs::remove_file(&probe);
        ok
    }
}

impl State {
    /// Forgets handled ids older than the TTL, so memory and the file stay flat.
    pub fn prune(&mut self, now: i64) {
        self.handled.retain(|_, at| now - *at < HANDLED_TTL_SECS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bridge-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_missing_is_fresh() {
        let d = tmpdir("rt");
        let store = Store::new(&d);
        assert_eq!(store.load().unwrap(), State::default());
        let mut s = State::default();
        s.cursors.insert("a/b".into(), 17);
        s.handled.insert(5, 100);
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert!(store.writable());
        // No temp file is left beside it.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_reset() {
        let d = tmpdir("corrupt");
        fs::write(d.join("state.json"), b"{\"cursors\": {").unwrap();
        let err = format!("{:#}", Store::new(&d).load().unwrap_err());
        assert!(err.contains("parsing state file"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prune_keeps_recent_ids() {
        let mut s = State::default();
        s.handled.insert(1, 0);
        s.handled.insert(2, HANDLED_TTL_SECS);
        s.prune(HANDLED_TTL_SECS + 10);
        assert_eq!(s.handled.keys().copied().collect::<Vec<_>>(), vec![2]);
    }
}
