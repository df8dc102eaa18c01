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
        let drone = DroneClient::new(&cfg.drone_url, cfg.drone_token.clone(), cfg.request_timeout);
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

    /// Watching makes Gitea notify the bot of every PR comment in the repository, which is
    /// what lets one request per cycle cover every enrolled repository.
    fn watch_repos(&mut self) {
        let repos: Vec<Repo> = self.cfg.recipes.values().cloned().collect();
        for repo in repos {
            if let Err(e) = self.gitea.watch(&repo.owner, &repo.name) {
                self.metrics.api_error("gitea", &e);
                log(
                    Level::Warn,
                    "could not watch repository; the sweep still covers it",
                    &[("repo", &repo.full()), ("error", &format!("{e:#}"))],
                );
            }
        }
    }

    /// The fast path: Gitea's notifications list every PR thread changed in any watched
    /// repository in one request. Only a hint — WIP titles do not notify watchers and several
    /// comments collapse into one thread — so the sweep stays the source of truth.
    pub fn fast_poll(&mut self) {
        let started = Instant::now();
        let since = self.state.notifications_since;
        let threads = match self.gitea.notifications(Some(since), true, Some("pull")) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.api_error("gitea", &e);
                log(
                    Level::Warn,
                    "notifications poll failed",
                    &[("error", &format!("{e:#}"))],
                );
                return;
            }
        };
        let mut newest = since;
        let mut ok = true;
        let mut processed = false;
        for t in threads.iter().rev() {
            newest = newest.max(t.updated_at.0);
            if self.seen_threads.get(&t.id) == Some(&t.updated_at.0) {
                continue;
            }
            let (Some(repo), Some(number)) = (
                t.repository
                    .as_ref()
                    .and_then(|r| Repo::parse(&r.full_name).ok()),
                t.subject.as_ref().and_then(|s| s.number()),
            ) else {
                continue;
            };
            if self.cfg.recipe_of(&repo).is_none() {
                continue;
            }
            let cursor = self.state.cursors.get(&repo.full()).copied();
            match self
                .gitea
                .issue_comments(&repo.owner, &repo.name, number, cursor)
            {
                Ok(comments) => {
                    for c in &comments {
                        self.handle(&repo, c, "poll");
                    }
                    self.seen_threads.insert(t.id, t.updated_at.0);
                    processed = true;
                }
                Err(e) => {
                    ok = false;
                    self.metrics.api_error("gitea", &e);
                    log(
                        Level::Warn,
                        "reading PR comments failed",
                        &[
                            ("repo", &repo.full()),
                            ("pr", &number),
                            ("error", &format!("{e:#}")),
                        ],
                    );
                }
            }
        }
        // Bound the in-memory map: threads not seen for a while will be re-read once at most.
        if self.seen_threads.len() > 10_000 {
            self.seen_threads.clear();
        }
        if processed {
            // Marking read keeps Gitea updating the threads; skipped when idle (one request).
            if let Err(e) = self.gitea.mark_notifications_read(Some(newest)) {
                self.metrics.api_error("gitea", &e);
            }
        }
        if ok && newest != since {
            self.state.notifications_since = newest;
            self.save();
        }
        self.retry_due();
        if ok {
            self.poll_succeeded(started);
        }
    }

    fn poll_succeeded(&self, started: Instant) {
        self.metrics
            .poll_ms
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.metrics.last_poll_ok.store(now(), Ordering::Relaxed);
    }

    /// The source of truth: every enrolled repository's comments updated since its cursor.
    pub fn sweep(&mut self) {
        let started = Instant::now();
        let mut all_ok = true;
        let repos: Vec<Repo> = self.cfg.recipes.values().cloned().collect();
        for repo in repos {
            let key = repo.full();
            let since = self
                .state
                .cursors
                .get(&key)
                .copied()
                .unwrap_or(now() - FIRST_LOOKBACK_SECS);
            let scan = match self.gitea.repo_comments_since(
                &repo.owner,
                &repo.name,
                Some(since),
                SWEEP_PAGES,
            ) {
                Ok(s) => s,
                Err(e) => {
                    all_ok = false;
                    self.metrics.api_error("gitea", &e);
                    log(
                        Level::Warn,
                        "sweep failed",
                        &[("repo", &key), ("error", &format!("{e:#}"))],
                    );
                    continue;
                }
            };
            let mut hold: Option<i64> = None;
            for c in &scan.items {
                if self.handle(&repo, c, "sweep") == Outcome::Retry {
                    hold = Some(hold.map_or(c.updated_at.0, |h: i64| h.min(c.updated_at.0)));
                }
            }
            // Comments come oldest-created first; when pages ran out, everything unread was
            // created (so updated) after the last one read.
            let mut next = if scan.truncated {
                log(
                    Level::Warn,
                    "sweep hit its page bound",
                    &[("repo", &key), ("pages", &scan.pages)],
                );
                scan.items.last().map_or(since, |c| c.created_at.0)
            } else {
                scan.items
                    .iter()
                    .map(|c| c.updated_at.0)
                    .max()
                    .unwrap_or(since)
            };
            if let Some(h) = hold {
                next = next.min(h);
            }
            let next = next.max(since);
            if next != since {
                self.state.cursors.insert(key, next);
            }
        }
        self.state.prune(now());
        self.save();
        if all_ok {
            self.poll_succeeded(started);
        }
    }

    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<i64> = self
            .retrying
            .iter()
            .filter(|(_, r)| r.next_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            // Retries of recovered intents carry no comment; recover_intents drives them.
            if let Some(Retrying {
                repo,
                comment: Some(c),
                ..
            }) = self.retrying.get(&id)
            {
                let (repo, c) = (repo.clone(), c.clone());
                self.handle(&repo, &c, "retry");
            }
        }
    }

    fn decided(&mut self, id: i64) {
        self.state.handled.insert(id, now());
        self.retrying.remove(&id);
    }

    /// One comment, one decision, one log line.
    pub fn handle(&mut self, repo: &Repo, c: &Comment, source: &str) -> Outcome {
        if self.state.handled.contains_key(&c.id) {
            return Outcome::Done;
        }
        if let Some(r) = self.retrying.get(&c.id) {
            if r.next_at > Instant::now() {
                return Outcome::Retry;
            }
        }
        self.metrics.comments_seen.fetch_add(1, Ordering::Relaxed);
        let decision = self.decide(repo, c);
        self.apply(repo, c, source, decision)
    }

    /// What to do with a comment: from the comment, the state and, for a command, the forge.
    /// Nothing is changed here; [`Engine::apply`] carries it out.
    fn decide(&self, repo: &Repo, c: &Comment) -> Decision {
        let login = login_of(c);
        let Some(pr) = c.pull_number() else {
            return Decision::NotACommand;
        };
        if login.eq_ignore_ascii_case(&self.cfg.bot_user)
            || command::parse(&c.body) != Some(Command::TestMe)
        {
            return Decision::NotACommand;
        }
        let ignored = |reason: &str, reply: Option<String>| Decision::Ignored {
            pr,
            reason: reason.to_owned(),
            reply,
            durable: true,
        };
        if now() - c.created_at.0 > TRIGGER_WINDOW_SECS {
            return ignored("comment older than the trigger window (7 days)", None);
        }
        // The webhook passes only `created` deliveries; an edit shows in `updated_at`.
        if c.updated_at.0 > c.created_at.0 {
            return ignored("edited comment", None);
        }
        let Some(recipe) = self.cfg.recipe_of(repo).map(str::to_owned) else {
            // Not saved: a repository the bridge hears but has not enrolled is not its business.
            return Decision::Ignored {
                pr,
                reason: "repository not enrolled".into(),
                reply: None,
                durable: false,
            };
        };
        if let Some(intent) = self.state.intents.get(&c.id) {
            return Decision::Start {
                intent: intent.clone(),
                new: false,
            };
        }
        let pull = match self.gitea.get_pull(&repo.owner, &repo.name, pr) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.api_error("gitea", &e);
                return Decision::Failed {
                    pr,
                    why: format!("reading the PR: {e:#}"),
                };
            }
        };
        if pull.state != "open" {
            return ignored("pull request is closed", Some(comment::closed()));
        }
        match self.authorise(&login) {
            Auth::Allowed => {}
            Auth::Refused => {
                let key = format!("{}#{pr}:{}", repo.full(), login.to_lowercase());
                let first = !self.state.refused_told.contains(&key);
                return Decision::Refused {
                    pr,
                    reason: if first {
                        "not authorised"
                    } else {
                        "not authorised, already told"
                    }
                    .into(),
                    reply: first
                        .then(|| comment::refused(&login, &self.cfg.orgs, &self.cfg.allow_users)),
                    told: first.then_some(key),
                };
            }
            Auth::Unknown(why) => {
                return Decision::Refused {
                    pr,
                    reason: format!("membership check failed: {why}"),
                    reply: Some(comment::check_failed(&login)),
                    told: None,
                };
            }
        }
        // When the fork is gone, the base repository's refs/pull/N/head still holds the head.
        let src = pull
            .head
            .repo
            .as_ref()
            .map(|r| r.clone_url.clone())
            .or_else(|| pull.base.repo.as_ref().map(|r| r.clone_url.clone()))
            .unwrap_or_default();
        Decision::Start {
            intent: Intent {
                repo: repo.full(),
                pr,
                recipe,
                sha: pull.head.sha.clone(),
                src,
                at: now(),
                asked_at: c.created_at.0,
            },
            new: true,
        }
    }

    /// Carries a decision out: the one place that logs it, marks the comment handled, saves
    /// the state and replies on the PR.
    fn apply(&mut self, repo: &Repo, c: &Comment, source: &str, decision: Decision) -> Outcome {
        let id = c.id;
        let log_decision = |d: &str, pr: i64, reason: &str| {
            log(
                Level::Info,
                "decision",
                &[
                    ("comment", &id),
                    ("repo", &repo.full()),
                    ("pr", &pr),
                    ("user", &login_of(c)),
                    ("source", &source),
                    ("decision", &d),
                    ("reason", &reason),
                ],
            );
        };
        let (pr, reply) = match decision {
            Decision::NotACommand => {
                self.decided(id);
                return Outcome::Done;
            }
            Decision::Failed { pr, why } => return self.failed(id, repo, Some(c), pr, &why),
            Decision::Start { intent, new: false } => {
                return self.start(id, intent, true, Some(c), repo)
            }
            Decision::Start { intent, new: true } => {
                if let Err(e) = self.gitea.add_reaction(&repo.owner, &repo.name, id, "eyes") {
                    self.metrics.api_error("gitea", &e);
                    log(
                        Level::Warn,
                        "acknowledging reaction failed",
                        &[("comment", &id), ("error", &format!("{e:#}"))],
                    );
                }
                let pr = intent.pr;
                self.state.intents.insert(id, intent.clone());
                if !self.save() {
                    // Not durable: a build now could be made again after a restart. None until
                    // it is.
                    self.state.intents.remove(&id);
                    return self.not_durable(id, repo, c, pr);
                }
                return self.start(id, intent, false, Some(c), repo);
            }
            Decision::Ignored {
                pr,
                reason,
                reply,
                durable,
            } => {
                log_decision("ignored", pr, &reason);
                self.decided(id);
                if durable {
                    self.save();
                }
                (pr, reply)
            }
            Decision::Refused {
                pr,
                reason,
                reply,
                told,
            } => {
                self.metrics.refusals.fetch_add(1, Ordering::Relaxed);
                log_decision("refused", pr, &reason);
                if let Some(key) = told {
                    self.state.refused_told.insert(key);
                }
                self.decided(id);
                self.save();
                (pr, reply)
            }
        };
        if let Some(text) = reply {
            self.reply(repo, pr, &text);
        }
        Outcome::Done
    }

    fn authorise(&self, login: &str) -> Auth {
        if self
            .cfg
            .allow_users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(login))
        {
            return Auth::Allowed;
        }
        let mut unknown = None;
        for org in &self.cfg.orgs {
            match self.gitea.membership(org, login) {
                Membership::Member => return Auth::Allowed,
                Membership::NotMember => {}
                Membership::Unknown(why) => unknown = Some(why),
            }
        }
        match unknown {
            Some(why) => Auth::Unknown(why),
            None => Auth::Refused,
        }
    }

    /// Creates the build for an intent — unless an earlier attempt already did, which only a
    /// look in Drone can tell after a crash or a timed-out create.
    fn start(
        &mut self,
        id: i64,
        intent: Intent,
        maybe_exists: bool,
        c: Option<&Comment>,
        repo: &Repo,
    ) -> Outcome {
        let pr = intent.pr;
        if maybe_exists {
            match self.find_build(id) {
                Ok(Some(b)) => {
                    self.begin_following(id, &intent, &b, true);
                    return Outcome::Done;
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.api_error("drone", &e);
                    return self.failed(id, repo, c, pr, &format!("searching Drone: {e:#}"));
                }
            }
        }
        let params = RunParams {
            recipe: intent.recipe.clone(),
            sha: intent.sha.clone(),
            pr: intent.pr,
            src: intent.src.clone(),
            comment: id,
            schedule: String::new(),
        }
        .to_pairs();
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dr = &self.cfg.drone_repo;
        match self.drone.create_build(
            &dr.owner,
            &dr.name,
            self.cfg.drone_branch.as_deref(),
            &pairs,
        ) {
            Ok(Some(b)) => {
                self.begin_following(id, &intent, &b, false);
                Outcome::Done
            }
            Ok(None) => {
                log(
                    Level::Error,
                    "drone matched no pipeline",
                    &[("comment", &id), ("repo", &intent.repo), ("pr", &pr)],
                );
                self.state.intents.remove(&id);
                self.decided(id);
                self.save();
                self.reply(repo, pr, &comment::no_pipeline(id));
                Outcome::Done
            }
            Err(e) => {
                self.metrics.api_error("drone", &e);
                self.failed(id, repo, c, pr, &format!("creating the build: {e:#}"))
            }
        }
    }

    /// A Gitea or Drone failure while handling a comment: retried with backoff, then the PR
    /// is told once.
    /// The comment's intent could not be saved: try again on the retry schedule, for as long
    /// as it takes (a full disk is the operator's to fix; the PR hears nothing meanwhile).
    fn not_durable(&mut self, id: i64, repo: &Repo, c: &Comment, pr: i64) -> Outcome {
        self.retry_entry(id, repo, Some(c)).next_at = Instant::now() + Duration::from_secs(5);
        log(
            Level::Error,
            "not starting a run: its intent could not be saved; will retry",
            &[("comment", &id), ("repo", &repo.full()), ("pr", &pr)],
        );
        Outcome::Retry
    }

    /// The comment's place in the retry schedule, made on its first failure.
    fn retry_entry(&mut self, id: i64, repo: &Repo, c: Option<&Comment>) -> &mut Retrying {
        self.retrying.entry(id).or_insert_with(|| Retrying {
            attempts: 0,
            next_at: Instant::now(),
            repo: repo.clone(),
            comment: c.cloned(),
        })
    }

    fn failed(&mut self, id: i64, repo: &Repo, c: Option<&Comment>, pr: i64, why: &str) -> Outcome {
        let entry = self.retry_entry(id, repo, c);
        entry.attempts += 1;
        let attempts = entry.attempts;
        // 4 s, 8 s, … capped at 2 min: a maintainer waits at most that long once Gitea or
        // Drone is back, and the PR hears within about six minutes if it never comes back.
        let backoff = Duration::from_secs((2u64 << attempts.min(9)).min(120));
        entry.next_at = Instant::now() + backoff;
        log(
            Level::Warn,
            "handling failed; will retry",
            &[
                ("comment", &id),
                ("repo", &repo.full()),
                ("pr", &pr),
                ("attempt", &attempts),
                ("error", &why),
            ],
        );
        if attempts < MAX_ATTEMPTS {
            return Outcome::Retry;
        }
        log(
            Level::Error,
            "giving up on comment",
            &[("comment", &id), ("repo", &repo.full()), ("pr", &pr)],
        );
        self.state.intents.remove(&id);
        self.decided(id);
        self.save();
        self.reply(repo, pr, &comment::start_failed(id));
        Outcome::Done
    }

    fn find_build(&self, comment: i64) -> Result<Option<Build>> {
        let dr = &self.cfg.drone_repo;
        let want = comment.to_string();
        self.drone
            .find_build(&dr.owner, &dr.name, SEARCH_PAGES, |b| {
                b.params.get(PARAM_COMMENT) == Some(&want)
            })
    }

    /// Intents left by a crash: adopt the build Drone already has, or create it.
    pub fn recover_intents(&mut self) {
        let intents: Vec<(i64, Intent)> = self
            .state
            .intents
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, intent) in intents {
            let Ok(repo) = Repo::parse(&intent.repo) else {
                self.state.intents.remove(&id);
                continue;
            };
            if self
                .retrying
                .get(&id)
                .is_some_and(|r| r.next_at > Instant::now())
            {
                continue;
            }
            log(
                Level::Info,
                "resuming intent",
                &[("comment", &id), ("repo", &intent.repo), ("pr", &intent.pr)],
            );
            self.start(id, intent, true, None, &repo);
        }
    }

    fn begin_following(&mut self, id: i64, intent: &Intent, b: &Build, adopted: bool) {
        let number = b.number;
        let older: Vec<i64> = self
            .state
            .runs
            .iter()
            .filter(|(n, r)| {
                **n != number
                    && r.repo == intent.repo
                    && r.pr == intent.pr
                    && r.superseded_by.is_none()
            })
            .map(|(n, _)| *n)
            .collect();
        let run = Run {
            repo: intent.repo.clone(),
            pr: intent.pr,
            recipe: intent.recipe.clone(),
            sha: intent.sha.clone(),
            trigger_comment: id,
            head_lag_secs: if intent.asked_at > 0 {
                (intent.at - intent.asked_at).max(0)
            } else {
                0
            },
            status_comment: 0,
            last_body: String::new(),
            superseded_by: None,
            verdicts: Default::default(),
            last_status: String::new(),
        };
        // An adopted build may have its comment already: update_run looks for it by marker.
        self.state.runs.insert(number, run);
        self.state.intents.remove(&id);
        self.decided(id);
        self.save();
        self.metrics.triggers.fetch_add(1, Ordering::Relaxed);
        log(
            Level::Info,
            "decision",
            &[
                ("comment", &id),
                ("repo", &intent.repo),
                ("pr", &intent.pr),
                ("decision", &"triggered"),
                ("build", &b.number),
                ("sha", &intent.sha),
                ("adopted", &adopted),
            ],
        );
        for n in older {
            self.supersede(n, b.number);
        }
        self.update_run(number, Some(b.clone()), 0);
        self.flush();
    }

    fn supersede(&mut self, old: i64, newer: i64) {
        let dr = self.cfg.drone_repo.clone();
        // A run that has already ended keeps its own outcome: only a pending or running one
        // is cancelled and said to be superseded.
        if let Ok(b) = self.drone.get_build(&dr.owner, &dr.name, old) {
            if b.status.is_done() {
                self.update_run(old, Some(b), 0);
                return;
            }
        }
        // Saved before the cancel, so a restart in between still cancels it (see follow).
        if let Some(run) = self.state.runs.get_mut(&old) {
            run.superseded_by = Some(newer);
        }
        self.save();
        let build = self
            .cancel(old, newer)
            .or_else(|| self.drone.get_build(&dr.owner, &dr.name, old).ok());
        // The run stays followed until its comment says it was superseded and Drone says it
        // ended: update_run forgets it only then, and follow retries whatever failed here.
        self.update_run(old, build, 0);
    }

    /// Cancels a superseded run in Drone; the build as Drone answered, when it did.
    fn cancel(&mut self, old: i64, newer: i64) -> Option<Build> {
        let dr = self.cfg.drone_repo.clone();
        match self.drone.cancel(&dr.owner, &dr.name, old) {
            Ok(b) => {
                log(
                    Level::Info,
                    "cancelled superseded run",
                    &[("build", &old), ("by", &newer)],
                );
                Some(b)
            }
            Err(e) => {
                self.metrics.api_error("drone", &e);
                log(
                    Level::Warn,
                    "cancelling superseded run failed; will retry",
                    &[("build", &old), ("error", &format!("{e:#}"))],
                );
                None
            }
        }
    }

    /// The bot's comment carrying the run's marker. An error is not "none": posting a second
    /// comment because the search failed is exactly the duplicate the marker is there to stop.
    fn find_status_comment(&self, repo: &Repo, pr: i64, build: i64) -> Result<Option<i64>> {
        let mark = comment::marker(build);
        let comments = self
            .gitea
            .issue_comments(&repo.owner, &repo.name, pr, None)?;
        Ok(comments
            .iter()
            .find(|c| {
                c.body.contains(&mark)
                    && c.user
                        .as_ref()
                        .is_some_and(|u| u.login.eq_ignore_ascii_case(&self.cfg.bot_user))
            })
            .map(|c| c.id))
    }

    /// Reads the verdict of every finished step not read yet; false when a read failed and
    /// must be tried again. A log Drone has not stored yet (404) is asked for next cycle while
    /// the build runs; once it has ended, there is none to wait for.
    fn read_verdicts(&mut self, number: i64, build: &Build) -> bool {
        let ended = build.status.is_done();
        let dr = self.cfg.drone_repo.clone();
        let mut complete = true;
        for stage in &build.stages {
            for step in &stage.steps {
                let known = self
                    .state
                    .runs
                    .get(&number)
                    .is_none_or(|r| r.verdicts.contains_key(&step.name));
                // A step Drone skipped never ran: it has no log to read.
                if known || !step.status.is_done() || step.status == BuildStatus::Skipped {
                    continue;
                }
                match self
                    .drone
                    .step_log(&dr.owner, &dr.name, number, stage.number, step.number)
                {
                    Ok(lines) if lines.is_some() || ended => {
                        let v =
                            lines.and_then(|l| Verdict::from_log(l.iter().map(|x| x.out.as_str())));
                        if let Some(r) = self.state.runs.get_mut(&number) {
                            r.verdicts.insert(step.name.clone(), v);
                            self.dirty = true;
                        }
                    }
                    Ok(_) => complete = false,
                    Err(e) => {
                        complete = false;
                        self.metrics.api_error("drone", &e);
                        log(
                            Level::Warn,
                            "reading a step's log failed; will retry",
                            &[
                                ("build", &number),
                                ("step", &step.name),
                                ("error", &format!("{e:#}")),
                            ],
                        );
                    }
                }
            }
        }
        complete
    }

    /// Sets the run's commit status if it changed; false when Gitea failed and it must be
    /// tried again. A refusal (the bot may not set statuses) is logged once per repository
    /// and not asked again: the comment carries the verdict alone.
    fn set_status(&mut self, number: i64, repo: &Repo, state: &str, description: String) -> bool {
        let Some(run) = self.state.runs.get(&number) else {
            return true;
        };
        let key = format!("{state} {description}");
        if run.last_status == key || self.no_status_rights.contains(&repo.full()) {
            return true;
        }
        let sha = run.sha.clone();
        let status = CreateStatus {
            state: state.to_owned(),
            target_url: self.cfg.run_page(number),
            description,
            context: self.cfg.status_context.clone(),
        };
        match self
            .gitea
            .create_status(&repo.owner, &repo.name, &sha, &status)
        {
            Ok(StatusPost::Created) => {
                if let Some(r) = self.state.runs.get_mut(&number) {
                    r.last_status = key;
                    self.dirty = true;
                }
                true
            }
            Ok(StatusPost::Forbidden(why)) => {
                self.no_status_rights.insert(repo.full());
                log(
                    Level::Warn,
                    "the bot may not set commit statuses; the PR comment alone carries verdicts",
                    &[
                        ("repo", &repo.full()),
                        (
                            "needs",
                            &"write access to the code and token scope write:repository",
                        ),
                        ("gitea", &why),
                    ],
                );
                true
            }
            Err(e) => {
                self.metrics.api_error("gitea", &e);
                log(
                    Level::Warn,
                    "setting the run's commit status failed; will retry",
                    &[("build", &number), ("error", &format!("{e:#}"))],
                );
                false
            }
        }
    }

    /// Renders the run's comment and status and writes what changed; forgets finished runs
    /// once both are written.
    fn update_run(&mut self, number: i64, build: Option<Build>, queued_ahead: usize) {
        let Some(build) = build else { return };
        if !self.state.runs.contains_key(&number) {
            return;
        }
        let finished = build.status.is_done();
        // A finished run's comment waits until every verdict is in: it is the last one.
        if !self.read_verdicts(number, &build) && finished {
            return;
        }
        let Some(run) = self.state.runs.get(&number).cloned() else {
            return;
        };
        let Ok(repo) = Repo::parse(&run.repo) else {
            return;
        };
        let link = format!(
            "{}/{}/{}/{}",
            self.cfg.drone_url, self.cfg.drone_repo.owner, self.cfg.drone_repo.name, number
        );
        let dash = self.cfg.run_page(number);
        // A run that ended on its own before the cancel reached Drone keeps its own outcome.
        let superseded_by = run
            .superseded_by
            .filter(|_| !build.status.is_done() || build.status == BuildStatus::Killed);
        let view = comment::RunView {
            build_link: &link,
            dashboard_run: &dash,
            dashboard: &self.cfg.dashboard_url,
            recipe: &run.recipe,
            sha: &run.sha,
            head_lag_secs: run.head_lag_secs,
            queued_ahead,
            superseded_by,
            verdicts: &run.verdicts,
        };
        let body = comment::status(&build, &view, now());
        let (state, description) = comment::commit_status(&build, &view);
        // The status first: a finished comment then means the status is final too.
        if !self.set_status(number, &repo, state, description) && finished {
            return;
        }
        let mut status_comment = run.status_comment;
        if status_comment == 0 {
            // A crash (or a lost answer) may have come after the post and before the save.
            match self.find_status_comment(&repo, run.pr, number) {
                Ok(found) => status_comment = found.unwrap_or(0),
                Err(e) => {
                    self.metrics.api_error("gitea", &e);
                    log(
                        Level::Warn,
                        "looking for the run's PR comment failed; will retry",
                        &[("build", &number), ("error", &format!("{e:#}"))],
                    );
                    return;
                }
            }
        }
        // Written only when something changed: an idle follow cycle costs no request.
        if body != run.last_body || status_comment == 0 {
            let result = if status_comment == 0 {
                self.gitea
                    .create_comment(&repo.owner, &repo.name, run.pr, &body)
                    .map(|c| c.id)
            } else {
                self.gitea
                    .edit_comment(&repo.owner, &repo.name, status_comment, &body)
                    .map(|_| status_comment)
            };
            match result {
                Ok(cid) => {
                    if let Some(r) = self.state.runs.get_mut(&number) {
                        r.status_comment = cid;
                        r.last_body = body;
                    }
                    self.dirty = true;
                }
                Err(e) => {
                    self.metrics.api_error("gitea", &e);
                    log(
                        Level::Warn,
                        "writing the run's PR comment failed",
                        &[("build", &number), ("error", &format!("{e:#}"))],
                    );
                    return;
                }
            }
        }
        if finished {
            log(
                Level::Info,
                "run finished",
                &[
                    ("build", &number),
                    ("repo", &run.repo),
                    ("pr", &run.pr),
                    ("status", &build.status),
                ],
            );
            self.state.runs.remove(&number);
            self.dirty = true;
        }
    }

    /// Writes run updates left by `update_run`. Deferring them is safe: a crash before the
    /// write loses only a status comment's id, found again by its marker, or a finished run,
    /// whose final comment is then written again unchanged.
    fn flush(&mut self) {
        if self.dirty {
            self.save();
        }
    }

    /// Follows every run: one list request for queue positions, one read per run. Webhook
    /// comments that arrive meanwhile are handled between runs, not after all of them.
    pub fn follow(&mut self, incoming: Option<&Receiver<Incoming>>) {
        if self.state.runs.is_empty() {
            return;
        }
        let dr = self.cfg.drone_repo.clone();
        let waiting: Vec<i64> = match self.drone.list_builds(&dr.owner, &dr.name, 1, 100) {
            Ok(list) => list
                .iter()
                .filter(|b| b.status == BuildStatus::Pending)
                .map(|b| b.number)
                .collect(),
            Err(e) => {
                self.metrics.api_error("drone", &e);
                Vec::new()
            }
        };
        let numbers: Vec<i64> = self.state.runs.keys().copied().collect();
        for n in numbers {
            while let Some(inc) = incoming.and_then(|rx| rx.try_recv().ok()) {
                self.handle(&inc.repo, &inc.comment, inc.source);
            }
            if !self.state.runs.contains_key(&n) {
                // Forgotten meanwhile (superseded by a comment just handled, and ended).
                continue;
            }
            match self.drone.get_build(&dr.owner, &dr.name, n) {
                Ok(mut b) => {
                    let superseded_by = self.state.runs.get(&n).and_then(|r| r.superseded_by);
                    if let Some(newer) = superseded_by.filter(|_| !b.status.is_done()) {
                        // The cancel failed or a crash came before it: cancel again.
                        if let Some(cancelled) = self.cancel(n, newer) {
                            b = cancelled;
                        }
                    }
                    let ahead = waiting.iter().filter(|w| **w < n).count();
                    self.update_run(n, Some(b), ahead);
                }
                Err(e) => {
                    self.metrics.api_error("drone", &e);
                    log(
                        Level::Warn,
                        "reading a followed build failed",
                        &[("build", &n), ("error", &format!("{e:#}"))],
                    );
                }
            }
        }
        self.flush();
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

/// What [`Engine::decide`] made of a comment.
#[derive(Debug)]
enum Decision {
    /// An issue comment, the bot's own, or no `!testme`: marked handled, nothing said.
    NotACommand,
    /// A `!testme` cc-ci does not act on; `durable`: the mark is saved.
    Ignored {
        pr: i64,
        reason: String,
        reply: Option<String>,
        durable: bool,
    },
    /// A `!testme` by someone who may not; `told`: the PR-and-user key to remember having
    /// told, so that they are told once.
    Refused {
        pr: i64,
        reason: String,
        reply: Option<String>,
        told: Option<String>,
    },
    /// Gitea failed while deciding: retried with backoff.
    Failed { pr: i64, why: String },
    /// Start the run (`new`), or resume an intent saved before a crash.
    Start { intent: Intent, new: bool },
}

fn login_of(c: &Comment) -> String {
    c.user.as_ref().map(|u| u.login.clone()).unwrap_or_default()
}

enum Auth {
    Allowed,
    Refused,
    Unknown(String),
}
