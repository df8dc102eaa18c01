//! The bridge's single worker: it owns the state, handles every comment (from a webhook or a
//! poll) with one decision each, starts builds, and follows them until they end.
//!
//! One thread owns the state so no decision races another: a comment seen by the webhook and
//! by a poll at once is handled by whichever comes first, and the second finds it handled.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use ccci::drone::{Build, BuildStatus, DroneClient};
use ccci::gitea::{Comment, CreateStatus, GiteaClient, Membership, StatusPost};
use ccci::log::{emit, Level};
use ccci::run::{RunParams, PARAM_COMMENT};
use ccci::verdict::Verdict;

use crate::command::{self, Command};
use crate::comment;
use crate::config::{Config, Repo};
use crate::metrics::Metrics;
use crate::state::{Intent, Run, State, Store, TRIGGER_WINDOW_SECS};

// One worker, by what it does: comments arrive (intake), each is decided and the decision
// carried out (decide), a run is started or adopted (start), runs in flight are followed to
// their end (follow).
mod decide;
mod follow;
mod intake;
mod start;

/// A comment handed to the worker.
#[derive(Debug)]
pub struct Incoming {
    pub repo: Repo,
    pub comment: Comment,
    pub source: &'static str,
}

/// Whether a comment is settled or must be looked at again later.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retry,
}

/// Attempts at a comment whose handling failed on Gitea or Drone before the PR is told.
const MAX_ATTEMPTS: u32 = 8;
/// Pages of Drone builds searched for a build carrying a comment id (100 builds each).
const SEARCH_PAGES: u32 = 3;
/// Pages of comments one sweep reads per repository (50 each).
const SWEEP_PAGES: u32 = 20;
/// How far back a newly enrolled repository is read on first start.
const FIRST_LOOKBACK_SECS: i64 = 60;

struct Retrying {
    attempts: u32,
    next_at: Instant,
    repo: Repo,
    comment: Option<Comment>,
}

pub struct Engine {
    cfg: Config,
    gitea: GiteaClient,
    drone: DroneClient,
    store: Store,
    state: State,
    metrics: Arc<Metrics>,
    /// Notification thread id → the `updated_at` already processed (idle polls skip it).
    seen_threads: HashMap<i64, i64>,
    retrying: HashMap<i64, Retrying>,
    /// Run updates not yet written to the state file (see `flush`).
    dirty: bool,
    /// Repositories where Gitea refused the bot a commit status: said once, not asked again
    /// until restart.
    no_status_rights: HashSet<String>,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn log(level: Level, msg: &str, kv: &[(&str, &dyn std::fmt::Display)]) {
    emit(level, "bridge", msg, kv);
}

impl Engine {
    pub fn new(cfg: Config, metrics: Arc<Metrics>) -> Result<Engine> {
        let store = Store::new(&cfg.state_dir);
        let mut state = store.load()?;
        let t = now();
        for repo in cfg.recipes.values() {
            state
                .cursors
                .entry(repo.full())
                .or_insert(t - FIRST_LOOKBACK_SECS);
        }
        if state.notifications_since == 0 {
            state.notifications_since = t - FIRST_LOOKBACK_SECS;
        }
        store.save(&state)?;
        let gitea = cfg.gitea();
        let drone = cfg.drone();
        metrics
            .followed_runs
            .store(state.runs.len() as u64, Ordering::Relaxed);
        Ok(Engine {
            cfg,
            gitea,
            drone,
            store,
            state,
            metrics,
            seen_threads: HashMap::new(),
            retrying: HashMap::new(),
            dirty: false,
            no_status_rights: HashSet::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes the state; false (logged, and said by `/healthz` and `/metrics`) when it could
    /// not be made durable.
    fn save(&mut self) -> bool {
        self.dirty = false;
        self.metrics
            .followed_runs
            .store(self.state.runs.len() as u64, Ordering::Relaxed);
        match self.store.save(&self.state) {
            Ok(()) => {
                self.metrics
                    .state_unwritable
                    .store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                // Written again at the next chance.
                self.dirty = true;
                self.metrics.state_unwritable.store(true, Ordering::Relaxed);
                self.metrics
                    .state_save_failures
                    .fetch_add(1, Ordering::Relaxed);
                log(
                    Level::Error,
                    "saving state failed",
                    &[("error", &format!("{e:#}"))],
                );
                false
            }
        }
    }

    /// Runs until the webhook channel closes: webhook comments as they come, polls, sweeps
    /// and run-following on their intervals.
    pub fn run(mut self, rx: Receiver<Incoming>) {
        self.watch_repos();
        self.recover_intents();
        let mut next_fast = Instant::now();
        let mut next_sweep = Instant::now();
        let mut next_follow = Instant::now();
        loop {
            let next = next_fast.min(next_sweep).min(next_follow);
            match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(inc) => {
                    self.handle(&inc.repo, &inc.comment, inc.source);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let t = Instant::now();
            if t >= next_sweep {
                self.sweep();
                self.recover_intents();
                next_sweep = Instant::now() + self.cfg.sweep_interval;
                next_fast = Instant::now() + self.cfg.poll_interval;
            } else if t >= next_fast {
                self.fast_poll();
                next_fast = Instant::now() + self.cfg.poll_interval;
            }
            if t >= next_follow {
                self.follow(Some(&rx));
                next_follow = Instant::now() + self.cfg.follow_interval;
            }
        }
    }

    fn decided(&mut self, id: i64) {
        self.state.handled.insert(id, now());
        self.retrying.remove(&id);
    }

    fn reply(&self, repo: &Repo, pr: i64, text: &str) {
        if let Err(e) = self.gitea.create_comment(&repo.owner, &repo.name, pr, text) {
            self.metrics.api_error("gitea", &e);
            log(
                Level::Warn,
                "replying on the PR failed",
                &[
                    ("repo", &repo.full()),
                    ("pr", &pr),
                    ("error", &format!("{e:#}")),
                ],
            );
        }
    }
}
