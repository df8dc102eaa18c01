//! Scheduled re-tests (`cc-ci-bridge --retest`, run by a systemd timer): every enrolled
//! recipe's default-branch head is tested with the same pipeline as a `!testme` run, once per
//! slot, a few at a time, so that an image moving under a pinned tag shows without a PR.
//!
//! A slot is `retest_every_days` UTC days, named by the date it began (the builds'
//! `SCHEDULE` param). Each invocation starts at most `retest_batch` builds, none while
//! `retest_queue_limit` cc-ci builds are pending or running; the timer firing through the
//! night spreads the rest. Exactly once per slot, as for `!testme`: the recipe's slot and head
//! are saved before the build is created, and an invocation that finds them saved without a
//! build number first looks in Drone for a build carrying that recipe and slot. A slot that
//! passed with nothing started is not made up for: the next one tests each recipe once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use ccci::drone::{Build, BuildStatus, DroneClient};
use ccci::log::{emit, Level};
use ccci::run::{RunParams, PARAM_RECIPE, PARAM_SCHEDULE};

use crate::config::{Config, Repo};

/// Pages of Drone builds searched for a build the last invocation may have created.
const SEARCH_PAGES: u32 = 3;

fn log(level: Level, msg: &str, kv: &[(&str, &dyn std::fmt::Display)]) {
    emit(level, "retest", msg, kv);
}

/// What the re-tests remember, in `<state_dir>/retest.json` (the bridge's own state file is
/// the daemon's alone).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    #[serde(default)]
    pub recipes: BTreeMap<String, Record>,
}

/// One recipe's latest scheduled run.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The slot of the latest run started, or about to be.
    #[serde(default)]
    pub slot: String,
    /// The default-branch head it tests.
    #[serde(default)]
    pub sha: String,
    /// Its Drone build; 0 while only intended (saved, not yet known to be created).
    #[serde(default)]
    pub build: i64,
    /// When it was started (unix seconds): the least recently tested go first.
    #[serde(default)]
    pub started_at: i64,
    /// How its build ended; None while it has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BuildStatus>,
    /// The newest scheduled run that passed: its head and when it finished.
    #[serde(default)]
    pub green_sha: String,
    #[serde(default)]
    pub green_at: i64,
    #[serde(default)]
    pub green_build: i64,
    /// The issue opened on the recipe for the regression (`retest_open_issues`); 0: none.
    #[serde(default)]
    pub issue: i64,
    /// The slot in which the head was last found unchanged since `green_sha` (not read again
    /// in that slot).
    #[serde(default)]
    pub unchanged_slot: String,
}

/// What one invocation did, for its log line and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub slot: String,
    pub started: Vec<String>,
    pub adopted: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<String>,
    /// Due in this slot but left for a later invocation (batch or queue full).
    pub left: Vec<String>,
    pub gitea_requests: u64,
    pub drone_requests: u64,
}

/// The slot `now` falls in: the UTC date its first day began.
pub fn slot_of(now: i64, every_days: u64) -> String {
    let every = every_days.max(1) as i64;
    let day = now.div_euclid(86_400);
    ccci::clock::date(day.div_euclid(every) * every * 86_400)
}

/// One invocation, as of `now` (unix seconds).
pub fn run(cfg: &Config, now: i64) -> Result<Report> {
    // One invocation at a time; the hold ends with the process, however it ends.
    let lock = cfg.state_dir.join("retest.lock");
    let Some(_lock) = ccci::fsx::Lock::try_take(&lock)? else {
        log(
            Level::Info,
            "another sweep is running; this one does nothing",
            &[("lock", &lock.display())],
        );
        return Ok(Report::default());
    };
    let path = cfg.state_dir.join("retest.json");
    let mut state = load(&path)?;
    let mut sweep = Sweep {
        cfg,
        drone: cfg.drone(),
        gitea: cfg.gitea(),
        path,
        report: Report {
            slot: slot_of(now, cfg.retest.every_days),
            ..Report::default()
        },
    };
    sweep.settle(&mut state)?;
    sweep.start_due(&mut state, now)?;
    let r = sweep.report;
    log(
        Level::Info,
        "sweep done",
        &[
            ("slot", &r.slot),
            ("started", &r.started.join(",")),
            ("adopted", &r.adopted.join(",")),
            ("unchanged", &r.unchanged.join(",")),
            ("failed", &r.failed.join(",")),
            ("left", &r.left.join(",")),
            ("gitea_requests", &r.gitea_requests),
            ("drone_requests", &r.drone_requests),
        ],
    );
    Ok(r)
}

fn load(path: &Path) -> Result<State> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing re-test state {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("reading re-test state {}", path.display())),
    }
}

struct Sweep<'a> {
    cfg: &'a Config,
    drone: DroneClient,
    gitea: ccci::gitea::GiteaClient,
    path: PathBuf,
    report: Report,
}

impl Sweep<'_> {
    fn save(&self, state: &State) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(state).context("serialising re-test state")?;
        ccci::fsx::write_atomic(&self.path, &bytes)
            .with_context(|| format!("saving re-test state {}", self.path.display()))
    }

    /// Learns how the runs still open ended, and adopts builds an interrupted invocation
    /// created for this slot; intents of an earlier slot are dropped (caught up now).
    fn settle(&mut self, state: &mut State) -> Result<()> {
        let dr = self.cfg.drone_repo.clone();
        let slot = self.report.slot.clone();
        let mut changed = false;
        for (recipe, rec) in state.recipes.iter_mut() {
            if rec.build == 0 && !rec.slot.is_empty() && rec.status.is_none() {
                if rec.slot != slot {
                    log(
                        Level::Warn,
                        "a re-test of an earlier slot was never created; this slot catches up",
                        &[("recipe", recipe), ("slot", &rec.slot)],
                    );
                    rec.slot.clear();
                    changed = true;
                    continue;
                }
                self.report.drone_requests += 1;
                let found = self
                    .drone
                    .find_build(&dr.owner, &dr.name, SEARCH_PAGES, |b| {
                        b.params.get(PARAM_SCHEDULE) == Some(&rec.slot)
                            && b.params.get(PARAM_RECIPE) == Some(recipe)
                    })?;
                if let Some(b) = found {
                    log(
                        Level::Info,
                        "adopted the re-test an interrupted sweep created",
                        &[
                            ("recipe", recipe),
                            ("slot", &rec.slot),
                            ("build", &b.number),
                        ],
                    );
                    rec.build = b.number;
                    self.report.adopted.push(recipe.clone());
                    changed = true;
                }
            }
            if rec.build > 0 && rec.status.is_none() {
                self.report.drone_requests += 1;
                match self.drone.get_build(&dr.owner, &dr.name, rec.build) {
                    Ok(b) if b.is_done() => {
                        let regressed = b.status != BuildStatus::Success
                            && !rec.green_sha.is_empty()
                            && rec.green_sha == rec.sha;
                        finish(rec, &b);
                        if self.cfg.retest.open_issues {
                            self.tell_the_recipe(recipe, rec, regressed);
                        }
                        changed = true;
                    }
                    Ok(_) => {}
                    Err(e) => log(
                        Level::Warn,
                        "could not read a re-test's build",
                        &[
                            ("recipe", recipe),
                            ("build", &rec.build),
                            ("error", &format!("{e:#}")),
                        ],
                    ),
                }
            }
        }
        if changed {
            self.save(state)?;
        }
        Ok(())
    }

    /// `retest_open_issues`: one issue per regression, closed when a re-test passes again.
    /// Best effort: Gitea refusing is logged and tried again at the next regression.
    fn tell_the_recipe(&mut self, recipe: &str, rec: &mut Record, regressed: bool) {
        let Some(repo) = self.cfg.recipes.get(recipe) else {
            return;
        };
        if regressed && rec.issue == 0 {
            let title = format!("cc-ci: {recipe}'s re-test fails on an unchanged commit");
            let body = format!(
                "The scheduled re-test [#{n}]({run}) of `{recipe}` failed on {sha}, the commit that                  passed its re-test [#{g}]({green}): something under the recipe changed (an image                  behind a tag, a base release). What cc-ci can see changed is on [the recipe's                  page]({page}).\n\ncc-ci closes this issue when a re-test passes again.",
                n = rec.build,
                run = self.cfg.run_page(rec.build),
                sha = &rec.sha[..10.min(rec.sha.len())],
                g = rec.green_build,
                green = self.cfg.run_page(rec.green_build),
                page = self.cfg.recipe_page(recipe),
            );
            self.report.gitea_requests += 1;
            match self
                .gitea
                .create_issue(&repo.owner, &repo.name, &title, &body)
            {
                Ok(i) => {
                    rec.issue = i.number;
                    log(
                        Level::Info,
                        "opened an issue for the regression",
                        &[
                            ("recipe", &recipe),
                            ("issue", &i.number),
                            ("build", &rec.build),
                        ],
                    );
                }
                Err(e) => log(
                    Level::Warn,
                    "could not open an issue for the regression",
                    &[("recipe", &recipe), ("error", &format!("{e:#}"))],
                ),
            }
        } else if rec.status == Some(BuildStatus::Success) && rec.issue > 0 {
            let text = format!(
                "The re-test [#{}]({}) passes again on {}: closing.",
                rec.build,
                self.cfg.run_page(rec.build),
                &rec.sha[..10.min(rec.sha.len())]
            );
            self.report.gitea_requests += 2;
            let closed = self
                .gitea
                .create_comment(&repo.owner, &repo.name, rec.issue, &text)
                .and_then(|_| self.gitea.close_issue(&repo.owner, &repo.name, rec.issue));
            match closed {
                Ok(_) => {
                    log(
                        Level::Info,
                        "closed the regression's issue",
                        &[
                            ("recipe", &recipe),
                            ("issue", &rec.issue),
                            ("build", &rec.build),
                        ],
                    );
                    rec.issue = 0;
                }
                Err(e) => log(
                    Level::Warn,
                    "could not close the regression's issue",
                    &[
                        ("recipe", &recipe),
                        ("issue", &rec.issue),
                        ("error", &format!("{e:#}")),
                    ],
                ),
            }
        }
    }

    fn start_due(&mut self, state: &mut State, now: i64) -> Result<()> {
        let slot = self.report.slot.clone();
        let mut due: Vec<(String, Repo, i64)> = Vec::new();
        for (recipe, repo) in &self.cfg.recipes {
            let rec = state.recipes.get(recipe).cloned().unwrap_or_default();
            let tested = rec.slot == slot && rec.build > 0;
            if tested || rec.unchanged_slot == slot {
                continue;
            }
            due.push((recipe.clone(), repo.clone(), rec.started_at));
        }
        due.sort_by_key(|(name, _, at)| (*at, name.clone()));
        let mut room = match self.queue_room() {
            Ok(n) => n,
            Err(e) => {
                self.report.left = due.into_iter().map(|(n, ..)| n).collect();
                return Err(e.context("counting cc-ci builds in Drone's queue"));
            }
        };
        let mut started = 0;
        let mut due = due.into_iter();
        while let Some((recipe, repo, _)) = due.next() {
            if started >= self.cfg.retest.batch || room == 0 {
                self.report.left.push(recipe);
                self.report.left.extend(due.by_ref().map(|(n, ..)| n));
                break;
            }
            let Some(head) = self.head(&recipe, &repo) else {
                self.report.failed.push(recipe);
                continue;
            };
            let rec = state.recipes.entry(recipe.clone()).or_default();
            let unchanged_for = now - rec.green_at;
            // Only while its latest re-test is that green one: a red one is re-tested nightly.
            if rec.status == Some(BuildStatus::Success)
                && rec.green_sha == head.0
                && unchanged_for < self.cfg.retest.unchanged_days as i64 * 86_400
            {
                rec.unchanged_slot = slot.clone();
                self.save(state)?;
                log(
                    Level::Info,
                    "default branch unchanged since its last green re-test; not due yet",
                    &[
                        ("recipe", &recipe),
                        ("sha", &head.0),
                        (
                            "green_at",
                            &ccci::clock::rfc3339(state.recipes[&recipe].green_at),
                        ),
                    ],
                );
                self.report.unchanged.push(recipe);
                continue;
            }
            *rec = Record {
                slot: slot.clone(),
                sha: head.0.clone(),
                build: 0,
                started_at: now,
                status: None,
                unchanged_slot: String::new(),
                ..rec.clone()
            };
            // Durable before the build exists: a crash after the create is adopted next time.
            self.save(state)?;
            match self.create(&recipe, &head.0, &head.1, &slot) {
                Ok(Some(b)) => {
                    let rec = state.recipes.get_mut(&recipe).expect("just recorded");
                    rec.build = b.number;
                    self.save(state)?;
                    log(
                        Level::Info,
                        "started a re-test",
                        &[
                            ("recipe", &recipe),
                            ("slot", &slot),
                            ("sha", &head.0),
                            ("build", &b.number),
                        ],
                    );
                    self.report.started.push(recipe);
                    started += 1;
                    room -= 1;
                }
                Ok(None) => {
                    // Nothing to adopt later either: no build was made.
                    state
                        .recipes
                        .get_mut(&recipe)
                        .expect("just recorded")
                        .slot
                        .clear();
                    self.save(state)?;
                    log(
                        Level::Error,
                        "drone matched no pipeline for a re-test",
                        &[("recipe", &recipe), ("slot", &slot)],
                    );
                    self.report.failed.push(recipe);
                }
                Err(e) => {
                    // The intent stays: the next invocation looks for the build, then makes it.
                    self.report.failed.push(recipe);
                    self.report.left.extend(due.by_ref().map(|(n, ..)| n));
                    return Err(e.context("creating a re-test build (the next sweep retries it)"));
                }
            }
        }
        Ok(())
    }

    /// How many more builds the queue takes: `retest_queue_limit` minus cc-ci's builds that
    /// are pending or running now (the newest 100 are enough to count them).
    fn queue_room(&mut self) -> Result<u64> {
        let dr = &self.cfg.drone_repo;
        self.report.drone_requests += 1;
        let builds = self.drone.list_builds(&dr.owner, &dr.name, 1, 100)?;
        let busy = builds
            .iter()
            .filter(|b| matches!(b.status, BuildStatus::Pending | BuildStatus::Running))
            .count() as u64;
        Ok(self.cfg.retest.queue_limit.saturating_sub(busy))
    }

    /// The default branch's head and the clone URL holding it; `None` (logged) when Gitea
    /// does not say.
    fn head(&mut self, recipe: &str, repo: &Repo) -> Option<(String, String)> {
        self.report.gitea_requests += 1;
        let r = match self.gitea.get_repo(&repo.owner, &repo.name) {
            Ok(r) => r,
            Err(e) => {
                log(
                    Level::Warn,
                    "could not read the recipe's repository; not re-tested this time",
                    &[
                        ("recipe", &recipe),
                        ("repo", &repo.full()),
                        ("error", &format!("{e:#}")),
                    ],
                );
                return None;
            }
        };
        self.report.gitea_requests += 1;
        match self
            .gitea
            .branch_head(&repo.owner, &repo.name, &r.default_branch)
        {
            Ok(Some(sha)) => Some((sha, r.clone_url)),
            Ok(None) => {
                log(
                    Level::Warn,
                    "the recipe's default branch does not exist; not re-tested",
                    &[("recipe", &recipe), ("branch", &r.default_branch)],
                );
                None
            }
            Err(e) => {
                log(
                    Level::Warn,
                    "could not read the recipe's default branch; not re-tested this time",
                    &[("recipe", &recipe), ("error", &format!("{e:#}"))],
                );
                None
            }
        }
    }

    fn create(&mut self, recipe: &str, sha: &str, src: &str, slot: &str) -> Result<Option<Build>> {
        let params = RunParams {
            recipe: recipe.to_owned(),
            sha: sha.to_owned(),
            pr: 0,
            src: src.to_owned(),
            comment: 0,
            schedule: slot.to_owned(),
        }
        .to_pairs();
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dr = &self.cfg.drone_repo;
        self.report.drone_requests += 1;
        self.drone.create_build(
            &dr.owner,
            &dr.name,
            self.cfg.drone_branch.as_deref(),
            &pairs,
        )
    }
}

fn finish(rec: &mut Record, b: &Build) {
    rec.status = Some(b.status);
    if b.status == BuildStatus::Success {
        rec.green_sha = rec.sha.clone();
        rec.green_at = b.finished;
        rec.green_build = rec.build;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_dates_they_begin() {
        let t = 1_764_633_600; // 2025-12-02T00:00:00Z
        assert_eq!(slot_of(t, 1), "2025-12-02");
        assert_eq!(slot_of(t + 86_399, 1), "2025-12-02");
        assert_eq!(slot_of(t + 86_400, 1), "2025-12-03");
        // Weekly slots begin every 7 days from the epoch, whatever the day.
        let a = slot_of(t, 7);
        assert_eq!(slot_of(t + 3 * 86_400, 7).len(), 10);
        assert!(a <= slot_of(t, 1));
        assert_eq!(slot_of(0, 7), "1970-01-01");
        assert_eq!(slot_of(7 * 86_400 - 1, 7), "1970-01-01");
        assert_eq!(slot_of(7 * 86_400, 7), "1970-01-08");
    }
}
