//! What the pages show, computed from the cached builds: each recipe's runs, its status, the
//! stage marks, its level and its flaky stages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ccci::drone::BuildStatus;
pub use ccci::summary::LEVELS;
use ccci::summary::{Stage, Status as StageStatus};

use crate::config::{Config, Repo};
use crate::fetch::{Cache, CachedBuild, StageMark};

/// The stages the overview marks, in run order (prepare and teardown appear on run pages).
pub const MARKED: [Stage; 5] = Stage::LADDER;

/// Runs of the level ladder's top rung: this many newest finished runs at level 4.
pub const STABLE_RUNS: usize = 5;

/// A run's or a recipe's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Failed,
    Error,
    Running,
    Cancelled,
    Passed,
    Untested,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Passed,
        Status::Failed,
        Status::Error,
        Status::Running,
        Status::Cancelled,
        Status::Untested,
    ];

    /// From a Drone build status (`core/status.go`).
    pub fn from_drone(s: BuildStatus) -> Status {
        match s {
            BuildStatus::Success => Status::Passed,
            BuildStatus::Failure => Status::Failed,
            BuildStatus::Error => Status::Error,
            BuildStatus::Killed | BuildStatus::Declined | BuildStatus::Skipped => Status::Cancelled,
            BuildStatus::Pending
            | BuildStatus::Running
            | BuildStatus::Blocked
            | BuildStatus::WaitingOnDependencies => Status::Running,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Running => "running",
            Status::Cancelled => "cancelled",
            Status::Untested => "untested",
        }
    }

    /// The shape that carries the status without colour.
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Passed => "✓",
            Status::Failed => "✗",
            Status::Error => "!",
            Status::Running => "●",
            Status::Cancelled => "⊘",
            Status::Untested => "○",
        }
    }

    /// The badge's message.
    pub fn badge(self) -> &'static str {
        match self {
            Status::Passed => "passing",
            Status::Failed | Status::Error => "failing",
            Status::Running => "running",
            Status::Cancelled => "cancelled",
            Status::Untested => "untested",
        }
    }
}

/// One stage's mark on a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Passed,
    Failed,
    Skipped,
    Error,
    Running,
    /// No result: the run ended before the stage, or no summary was written.
    NotRun,
}

impl Mark {
    pub fn from_stage(s: Option<StageStatus>, run_done: bool) -> Mark {
        match s {
            Some(StageStatus::Passed) => Mark::Passed,
            Some(StageStatus::Failed) => Mark::Failed,
            Some(StageStatus::Skipped) => Mark::Skipped,
            Some(StageStatus::Error) => Mark::Error,
            Some(StageStatus::Running) if !run_done => Mark::Running,
            Some(StageStatus::Running) => Mark::Error,
            None => Mark::NotRun,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Passed => "passed",
            Mark::Failed => "failed",
            Mark::Skipped => "skipped",
            Mark::Error => "error",
            Mark::Running => "running",
            Mark::NotRun => "not run",
        }
    }

    /// CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Mark::Passed => "p",
            Mark::Failed => "f",
            Mark::Skipped => "s",
            Mark::Error => "e",
            Mark::Running => "r",
            Mark::NotRun => "n",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Passed => "✓",
            Mark::Failed => "✗",
            Mark::Skipped => "↷",
            Mark::Error => "!",
            Mark::Running => "●",
            Mark::NotRun => "–",
        }
    }
}

/// One run of a recipe.
#[derive(Debug)]
pub struct Run<'a> {
    pub build: &'a CachedBuild,
    pub status: Status,
    /// Rung 0..=5 this run demonstrated; `None` when it did not finish (running, cancelled).
    pub level: Option<u8>,
    /// Marked stages whose result on this ref both passed and failed (within the history).
    pub flaky: [bool; MARKED.len()],
    /// A scheduled run that failed where the one before it, on the same commit, passed.
    pub regression: Option<Regression>,
}

/// A regression not caused by the recipe: what we can see changed under the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regression {
    /// The green scheduled run on the same commit before it.
    pub since: i64,
    /// Each difference between the two runs' images, upgrade base and cc-ci commit.
    pub changes: Vec<String>,
}

impl Run<'_> {
    pub fn stage(&self, name: Stage) -> Option<&StageMark> {
        self.build.summary.as_ref().and_then(|s| s.stage(name))
    }

    pub fn mark(&self, i: usize) -> Mark {
        Mark::from_stage(
            self.stage(MARKED[i]).map(|s| s.status),
            self.build.is_done(),
        )
    }

    pub fn number(&self) -> i64 {
        self.build.number
    }

    /// Best known start and end: the summary's, else Drone's.
    pub fn when(&self) -> i64 {
        match self.build.started {
            0 => self.build.created,
            t => t,
        }
    }

    pub fn duration_ms(&self) -> Option<u64> {
        let b = self.build;
        (b.finished > 0 && b.started > 0 && b.finished >= b.started)
            .then(|| (b.finished - b.started) as u64 * 1000)
    }

    pub fn version(&self) -> &str {
        self.build.version()
    }

    /// A scheduled re-test of the default branch, not a PR run.
    pub fn scheduled(&self) -> bool {
        !self.build.schedule.is_empty()
    }
}

fn run_level(run: &Run) -> Option<u8> {
    if matches!(run.status, Status::Running | Status::Cancelled) {
        return None;
    }
    Some(ccci::summary::level(|stage| {
        run.stage(stage)
            .map_or(ccci::summary::Rung::Unverified, StageMark::rung)
    }))
}

/// One enrolled recipe.
#[derive(Debug)]
pub struct Recipe<'a> {
    pub name: &'a str,
    pub repo: &'a Repo,
    /// Newest first, at most `history`.
    pub runs: Vec<Run<'a>>,
    pub status: Status,
    /// 0..=5, `None` when no run finished.
    pub level: Option<u8>,
    /// Marked stages flaky on some ref within the history.
    pub flaky: BTreeSet<Stage>,
    /// Index in `runs` of the newest finished scheduled run: the default branch's state.
    pub main: Option<usize>,
}

impl Recipe<'_> {
    pub fn latest(&self) -> Option<&Run<'_>> {
        self.runs.first()
    }

    /// The default branch's newest finished scheduled run.
    pub fn main_run(&self) -> Option<&Run<'_>> {
        self.main.map(|i| &self.runs[i])
    }

    /// Sort key for "by age" (descending): the newest run's start, then its number (runs
    /// started in the same second); untested recipes last.
    pub fn last_activity(&self) -> (i64, i64) {
        self.latest()
            .map(|r| (r.when(), r.number()))
            .unwrap_or((i64::MIN, 0))
    }
}

/// Everything the site shows.
#[derive(Debug)]
pub struct Site<'a> {
    pub recipes: Vec<Recipe<'a>>,
    pub counts: BTreeMap<Status, usize>,
}

impl<'a> Site<'a> {
    pub fn build(cfg: &'a Config, cache: &'a Cache) -> Site<'a> {
        let mut by_recipe: HashMap<&str, Vec<Run<'a>>> = HashMap::new();
        for b in cache.builds.values().rev() {
            let Some((name, _)) = cfg.recipes.get_key_value(&b.recipe) else {
                continue;
            };
            let runs = by_recipe.entry(name.as_str()).or_default();
            if runs.len() >= cfg.history {
                continue;
            }
            runs.push(Run {
                build: b,
                status: run_status(b),
                level: None,
                flaky: [false; MARKED.len()],
                regression: None,
            });
        }
        let mut recipes = Vec::with_capacity(cfg.recipes.len());
        let mut counts = BTreeMap::new();
        for (name, repo) in &cfg.recipes {
            let mut runs = by_recipe.remove(name.as_str()).unwrap_or_default();
            for r in runs.iter_mut() {
                r.level = run_level(r);
            }
            let flaky = mark_flaky(&mut runs);
            mark_regressions(&mut runs);
            let main = runs.iter().position(|r| r.scheduled() && r.level.is_some());
            let status = runs.first().map(|r| r.status).unwrap_or(Status::Untested);
            let level = recipe_level(&runs);
            *counts.entry(status).or_insert(0) += 1;
            recipes.push(Recipe {
                name,
                repo,
                runs,
                status,
                level,
                flaky,
                main,
            });
        }
        Site { recipes, counts }
    }
}

/// Drone's verdict, unless the run's own summary says worse: a stage that failed or errored
/// makes a run red even if its step's exit code said otherwise.
fn run_status(b: &CachedBuild) -> Status {
    let drone = Status::from_drone(b.status);
    if drone != Status::Passed {
        return drone;
    }
    let stages = b.summary.iter().flat_map(|s| s.stages.iter());
    let mut worst = Status::Passed;
    for s in stages {
        match s.status {
            StageStatus::Failed => worst = Status::Failed,
            StageStatus::Error if worst == Status::Passed => worst = Status::Error,
            _ => {}
        }
    }
    worst
}

/// The recipe's rung: its newest finished run's, and the one above the ladder (stable) when
/// the last [`STABLE_RUNS`] finished runs all reached the ladder's top.
fn recipe_level(runs: &[Run]) -> Option<u8> {
    let top = Stage::LADDER.len() as u8;
    let finished: Vec<u8> = runs.iter().filter_map(|r| r.level).collect();
    let latest = *finished.first()?;
    if latest == top
        && finished.len() >= STABLE_RUNS
        && finished[..STABLE_RUNS].iter().all(|l| *l == top)
    {
        return Some(top + 1);
    }
    Some(latest)
}

/// Flags each run's marked stages that both passed and failed on its ref; returns the stages
/// flaky anywhere in the history.
fn mark_flaky(runs: &mut [Run]) -> BTreeSet<Stage> {
    let mut seen: HashMap<(&str, usize), (bool, bool)> = HashMap::new();
    for r in runs.iter() {
        for i in 0..MARKED.len() {
            let e = seen.entry((r.build.sha.as_str(), i)).or_default();
            match r.mark(i) {
                Mark::Passed => e.0 = true,
                Mark::Failed => e.1 = true,
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    for r in runs.iter_mut() {
        let sha = r.build.sha.as_str();
        for (i, stage) in MARKED.iter().enumerate() {
            if seen.get(&(sha, i)) == Some(&(true, true)) {
                r.flaky[i] = true;
                out.insert(*stage);
            }
        }
    }
    out
}

/// Marks each finished scheduled run that failed right after a green scheduled run on the
/// same commit: the recipe did not change, something under it did.
fn mark_regressions(runs: &mut [Run]) {
    let scheduled: Vec<usize> = (0..runs.len())
        .rev()
        .filter(|&i| runs[i].scheduled() && runs[i].level.is_some())
        .collect();
    for w in scheduled.windows(2) {
        let (before, after) = (&runs[w[0]], &runs[w[1]]);
        if before.status == Status::Passed
            && matches!(after.status, Status::Failed | Status::Error)
            && before.build.sha == after.build.sha
        {
            let r = Regression {
                since: before.number(),
                changes: changes(before.build, after.build),
            };
            runs[w[1]].regression = Some(r);
        }
    }
}

/// What differs between two runs of one commit, as far as their summaries tell.
pub fn changes(before: &CachedBuild, after: &CachedBuild) -> Vec<String> {
    let (Some(a), Some(b)) = (&before.summary, &after.summary) else {
        return vec!["no summary to compare".into()];
    };
    let short = |id: &str| {
        id.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    };
    let mut out = Vec::new();
    let services: BTreeSet<&str> = a
        .images
        .iter()
        .chain(&b.images)
        .map(|i| i.service.as_str())
        .collect();
    for svc in services {
        let find = |d: &crate::fetch::Digest| d.images.iter().find(|i| i.service == svc).cloned();
        match (find(a), find(b)) {
            (Some(x), Some(y)) if x.image != y.image => {
                out.push(format!("{svc}: image {} → {}", x.image, y.image))
            }
            (Some(x), Some(y)) if x.id != y.id => out.push(format!(
                "{svc}: {} is another image now ({} → {})",
                y.image,
                short(&x.id),
                short(&y.id)
            )),
            (Some(x), None) => out.push(format!("{svc}: ran {} before, not now", x.image)),
            (None, Some(y)) => out.push(format!("{svc}: new, runs {}", y.image)),
            _ => {}
        }
    }
    if a.upgrade_base != b.upgrade_base {
        out.push(format!(
            "upgrade base {} → {}",
            or_none(&a.upgrade_base),
            or_none(&b.upgrade_base)
        ));
    }
    if a.ccci_commit != b.ccci_commit {
        out.push(format!(
            "cc-ci {} → {}",
            or_none(a.ccci_commit.get(..10).unwrap_or(&a.ccci_commit)),
            or_none(b.ccci_commit.get(..10).unwrap_or(&b.ccci_commit))
        ));
    }
    out
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}
