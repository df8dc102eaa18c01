//! Starting a run: the Drone build for an intent, made once even across a crash, and the
//! retry schedule of a start that failed.

use super::*;

impl Engine {
    /// Creates the build for an intent — unless an earlier attempt already did, which only a
    /// look in Drone can tell after a crash or a timed-out create.
    pub(super) fn start(
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
    pub(super) fn not_durable(&mut self, id: i64, repo: &Repo, c: &Comment, pr: i64) -> Outcome {
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

    pub(super) fn failed(
        &mut self,
        id: i64,
        repo: &Repo,
        c: Option<&Comment>,
        pr: i64,
        why: &str,
    ) -> Outcome {
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

    pub(super) fn find_build(&self, comment: i64) -> Result<Option<Build>> {
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
}
