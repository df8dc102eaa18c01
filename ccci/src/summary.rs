//! A run's summary: what stage-runner writes after each stage and dashboard-gen reads.
//! The schema is documented in `docs/run-summary.md`; bump [`SCHEMA`] on any breaking change.
//!
//! Layout under the results directory: `<build>/summary.json` and `<build>/artifacts/…`
//! (screenshots), paths in the summary being relative to `<build>/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub const SCHEMA: u32 = 1;

/// The stages of a run, in the order they run.
pub const STAGES: &[&str] = &[
    "prepare",
    "install",
    "upgrade",
    "backup",
    "recipe-tests",
    "teardown",
];

/// The level ladder's rungs: the stages a run climbs, in order.
pub const LADDER: [&str; 4] = ["install", "upgrade", "backup", "recipe-tests"];

/// The level ladder (docs/dashboard.md): a run's level is how many rungs in a row passed;
/// a recipe is stable at level 4 in each of its last five finished runs.
pub const LEVELS: [(&str, &str); 6] = [
    ("broken", "does not install"),
    (
        "installs",
        "installs and answers its health check and install tests",
    ),
    (
        "upgrades",
        "upgrades from the previous release keeping its data",
    ),
    ("restores", "backup and restore keep its data"),
    ("tested", "its own tests pass too"),
    ("stable", "level 4 in each of its last 5 finished runs"),
];

/// The level a run reached, from each rung's status.
pub fn level(mut status: impl FnMut(&str) -> Option<Status>) -> u8 {
    LADDER
        .iter()
        .take_while(|s| status(s) == Some(Status::Passed))
        .count() as u8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Passed,
    Failed,
    /// The stage did not apply (no earlier release, no recipe tests); `reason` says why.
    Skipped,
    /// The stage could not run (deploy failed, bad parameters, abra crashed).
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u32,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// pytest's node id, e.g. `custom-html/test_install.py::test_index`.
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageResult {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub reason: String,
    /// Unix seconds.
    pub started: i64,
    pub duration_ms: u64,
    #[serde(default)]
    pub tests: Counts,
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// Relative to the run's results directory, e.g. `artifacts/install/index.png`.
    #[serde(default)]
    pub artifacts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    /// Drone build number; 0 for a `local` run.
    pub build: i64,
    pub recipe: String,
    /// Full sha tested.
    #[serde(rename = "ref")]
    pub sha: String,
    pub pr: u64,
    pub src: String,
    /// The app domain the run deployed to.
    pub domain: String,
    /// The recipe version at the PR head (its newest release tag at or before the head).
    #[serde(default)]
    pub version: String,
    /// The published version the upgrade stage started from; empty when none.
    #[serde(default)]
    pub upgrade_base: String,
    pub started: i64,
    /// Unix seconds; 0 while running.
    #[serde(default)]
    pub finished: i64,
    #[serde(default)]
    pub stages: Vec<StageResult>,
}

impl Summary {
    pub fn path(results_dir: &Path, build: i64) -> PathBuf {
        results_dir.join(build.to_string()).join("summary.json")
    }

    pub fn load(path: &Path) -> Result<Summary> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading summary {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing summary {}", path.display()))
    }

    /// Replaces the stage's result (or appends it), keeping the order of [`STAGES`].
    pub fn set_stage(&mut self, result: StageResult) {
        self.stages.retain(|s| s.name != result.name);
        self.stages.push(result);
        let rank = |n: &str| STAGES.iter().position(|s| *s == n).unwrap_or(STAGES.len());
        self.stages.sort_by_key(|s| rank(&s.name));
    }

    pub fn stage(&self, name: &str) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Writes atomically: a reader sees the old summary or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("serialising summary")?;
        crate::fsx::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, status: Status) -> StageResult {
        StageResult {
            name: name.into(),
            status,
            reason: String::new(),
            started: 1,
            duration_ms: 2,
            tests: Counts::default(),
            failures: vec![],
            artifacts: vec![],
        }
    }

    #[test]
    fn stages_keep_run_order_and_replace() {
        let mut s = Summary {
            schema: SCHEMA,
            build: 3,
            recipe: "custom-html".into(),
            sha: "a".repeat(40),
            pr: 1,
            src: String::new(),
            domain: "d".into(),
            version: String::new(),
            upgrade_base: String::new(),
            started: 0,
            finished: 0,
            stages: vec![],
        };
        s.set_stage(stage("backup", Status::Passed));
        s.set_stage(stage("install", Status::Running));
        s.set_stage(stage("install", Status::Failed));
        let names: Vec<_> = s.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["install", "backup"]);
        assert_eq!(s.stage("install").unwrap().status, Status::Failed);
        let dir = std::env::temp_dir().join(format!("ccci-summary-{}", std::process::id()));
        let p = Summary::path(&dir, 3);
        s.save(&p).unwrap();
        assert_eq!(Summary::load(&p).unwrap(), s);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"ref\": \"aaaa"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
