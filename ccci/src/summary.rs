//! A run's summary: what stage-runner writes after each stage and dashboard-gen reads.
//! The schema is documented in `docs/run-summary.md`; bump [`SCHEMA`] on any breaking change.
//!
//! Layout under the results directory: `<build>/summary.json` and `<build>/artifacts/…`
//! (screenshots), paths in the summary being relative to `<build>/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::stage::Stage;

pub const SCHEMA: u32 = 1;

/// The level ladder (docs/levels.md): a run's level is how many rungs it climbed in a row;
/// a recipe is stable at the top of the ladder in each of its last five finished runs.
pub const LEVELS: [(&str, &str); 7] = [
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
    ("linted", "abra recipe lint finds no error-severity problem"),
    ("stable", "level 5 in each of its last 5 finished runs"),
];

/// What one rung of the ladder says of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    Pass,
    Fail,
    /// Skipped on purpose, with a reason the recipe (or the facts) declared: climbed past.
    Skip,
    /// Not shown either way: an infrastructure error, an earlier stage that did not pass, an
    /// undeclared skip (a coverage gap), or no result at all.
    Unverified,
}

/// Why a stage was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Skip {
    /// On purpose: ci.json `skip`, or a fact of the recipe (no earlier release to upgrade
    /// from). Climbed past.
    Declared,
    /// Nothing to run and nobody said why (a recipe with no `tests/`): a coverage gap.
    Gap,
    /// An earlier stage did not pass, so this one had nothing to work on.
    Blocked,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Declared => "declared",
            Skip::Gap => "coverage gap",
            Skip::Blocked => "blocked",
        }
    }
}

impl Rung {
    pub fn of(status: Option<Status>, skip: Option<Skip>) -> Rung {
        match status {
            Some(Status::Passed) => Rung::Pass,
            Some(Status::Failed) => Rung::Fail,
            Some(Status::Skipped) if skip == Some(Skip::Declared) => Rung::Skip,
            _ => Rung::Unverified,
        }
    }

    pub fn climbs(self) -> bool {
        matches!(self, Rung::Pass | Rung::Skip)
    }
}

/// The level a run reached: the rungs climbed in a row, a rung being passed or skipped by
/// declaration. The one computation behind the PR comment, the commit status, the card, the
/// dashboard and the badges.
pub fn level(mut rung: impl FnMut(Stage) -> Rung) -> u8 {
    Stage::LADDER
        .into_iter()
        .take_while(|&s| rung(s).climbs())
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

/// One of the generic checks every enrolled recipe gets (docs/writing-tests.md#generic-checks),
/// as a stage made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    /// What was checked, or why it failed, or the recipe's reason for switching it off.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Switched off by the recipe's ci.json `checks_off`, with its reason.
    Off,
    /// Not applicable this time (a lint rule abra skipped).
    Skipped,
    /// Not checked: never counted as passed (a lint rule the stand-in abra cannot check).
    Unknown,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "failed",
            CheckStatus::Off => "off",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageResult {
    pub name: Stage,
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
    /// Why a skipped stage was skipped; the level ladder climbs past a declared one only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<Skip>,
    /// Why a declared skip no longer applies (e.g. an earlier release now exists); empty when
    /// it does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stale: String,
    /// The generic checks the stage made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

impl StageResult {
    pub fn rung(&self) -> Rung {
        Rung::of(Some(self.status), self.skip)
    }
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
    pub pr: i64,
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
    /// What the run wants its reader to know that no stage says: a recipe setting the host
    /// capped, for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the head's deploy ran, per service (install's deploy): two runs of one commit
    /// that differ here ran different images under the same tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// The cc-ci commit whose pipeline ran (Drone's `DRONE_COMMIT_SHA`); empty outside Drone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ccci_commit: String,
}

/// One service's image as the engine ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The service's name in the recipe's compose file (`app`, `db`).
    pub service: String,
    /// The image reference the service was deployed with (`nginx:1.27.2`, with a digest
    /// where the registry gave one).
    pub image: String,
    /// The image id the engine holds for it (`sha256:…`); empty when it could not tell.
    #[serde(default)]
    pub id: String,
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

    /// Replaces the stage's result (or appends it), keeping the order of [`Stage::ALL`].
    pub fn set_stage(&mut self, result: StageResult) {
        self.stages.retain(|s| s.name != result.name);
        self.stages.push(result);
        self.stages.sort_by_key(|s| s.name);
    }

    pub fn stage(&self, name: Stage) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn level(&self) -> u8 {
        level(|st| self.stage(st).map_or(Rung::Unverified, StageResult::rung))
    }

    /// Writes atomically: a reader sees the old summary or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("serialising summary")?;
        crate::fsx::write_atomic(path, &bytes)
    }
}

/// An artifact path a run's summary may list (and the site copy and link, the server accept):
/// `artifacts/…`, plain components only.
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

    fn stage(name: Stage, status: Status) -> StageResult {
        StageResult {
            name,
            status,
            reason: String::new(),
            started: 1,
            duration_ms: 2,
            tests: Counts::default(),
            failures: vec![],
            artifacts: vec![],
            skip: None,
            stale: String::new(),
            checks: vec![],
        }
    }

    #[test]
    fn declared_skips_are_climbed_past_and_nothing_else_is() {
        let climbed = |rungs: &[Rung]| {
            level(|st| {
                Stage::LADDER
                    .iter()
                    .position(|&s| s == st)
                    .and_then(|i| rungs.get(i).copied())
                    .unwrap_or(Rung::Unverified)
            })
        };
        use Rung::*;
        assert_eq!(climbed(&[Pass, Pass, Pass, Pass]), 4);
        assert_eq!(
            climbed(&[Pass, Skip, Skip, Pass]),
            4,
            "declared skips count"
        );
        assert_eq!(
            climbed(&[Pass, Pass, Unverified, Pass]),
            2,
            "an undeclared skip stops"
        );
        assert_eq!(climbed(&[Pass, Fail, Pass, Pass]), 1);
        assert_eq!(climbed(&[Fail]), 0);
        assert_eq!(climbed(&[]), 0);
        let skipped = |k| Rung::of(Some(Status::Skipped), k);
        assert_eq!(skipped(None), Unverified, "an older summary's skip");
        assert_eq!(skipped(Some(super::Skip::Gap)), Unverified);
        assert_eq!(skipped(Some(super::Skip::Blocked)), Unverified);
        assert_eq!(skipped(Some(super::Skip::Declared)), Skip);
        assert_eq!(
            Rung::of(Some(Status::Error), Some(super::Skip::Declared)),
            Unverified
        );
        assert_eq!(Rung::of(None, None), Unverified);
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
            notes: vec![],
            images: vec![],
            ccci_commit: String::new(),
        };
        s.set_stage(stage(Stage::Backup, Status::Passed));
        s.set_stage(stage(Stage::Install, Status::Running));
        s.set_stage(stage(Stage::Install, Status::Failed));
        let names: Vec<_> = s.stages.iter().map(|s| s.name).collect();
        assert_eq!(names, [Stage::Install, Stage::Backup]);
        assert_eq!(s.stage(Stage::Install).unwrap().status, Status::Failed);
        let dir = std::env::temp_dir().join(format!("ccci-summary-{}", std::process::id()));
        let p = Summary::path(&dir, 3);
        s.save(&p).unwrap();
        assert_eq!(Summary::load(&p).unwrap(), s);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"ref\": \"aaaa"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
