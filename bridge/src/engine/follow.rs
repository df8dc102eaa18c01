//! Runs in flight: superseding an older run of the PR, reading the stages' verdicts, and
//! keeping the PR comment and commit status up to date until the build ends.

use super::*;

impl Engine {
    pub(super) fn supersede(&mut self, old: i64, newer: i64) {
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
    pub(super) fn update_run(&mut self, number: i64, build: Option<Build>, queued_ahead: usize) {
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
            src: build.params.get("SRC").map_or("", String::as_str),
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
    pub(super) fn flush(&mut self) {
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
}
