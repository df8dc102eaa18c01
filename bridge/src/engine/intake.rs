//! How comments reach the worker: the fast poll of the bot's notifications, the full sweep
//! of every enrolled repository, and the retries of comments whose handling failed.

use super::*;

impl Engine {
    /// Watching makes Gitea notify the bot of every PR comment in the repository, which is
    /// what lets one request per cycle cover every enrolled repository.
    pub(super) fn watch_repos(&mut self) {
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
}
