//! One comment, one decision: [`Engine::decide`] says what to do and changes nothing,
//! [`Engine::apply`] does it.

use super::*;

impl Engine {
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
    /// Nothing but the API error counters is changed here; [`Engine::apply`] carries it out.
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
            // A repository the bridge hears (the bot watches it) but has not enrolled: its
            // maintainers are told once per PR why nothing starts; anyone else gets silence,
            // and nothing is saved for them.
            if !matches!(self.authorise(&login), Auth::Allowed) {
                return Decision::Ignored {
                    pr,
                    reason: "repository not enrolled".into(),
                    reply: None,
                    durable: false,
                };
            }
            let key = format!("{}#{pr}:not-enrolled", repo.full());
            let first = !self.state.refused_told.contains(&key);
            return Decision::Refused {
                pr,
                reason: if first {
                    "repository not enrolled"
                } else {
                    "repository not enrolled, already told"
                }
                .into(),
                reply: first.then(|| comment::not_enrolled(&repo.full())),
                told: first.then_some(key),
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
