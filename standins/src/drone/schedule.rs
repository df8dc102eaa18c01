//! Scheduling: which pending stage runs next (`scheduler/queue`), the runner's reports, and
//! the stage and build teardown (`operator/manager`).

use super::*;

/// `queue.go` `withinLimits`: older incomplete stages of the same name and repo, and running
/// ones, count against `concurrency.limit`.
pub(super) fn within_limits(stage: &Stage, all: &[Stage]) -> bool {
    if stage.limit == 0 {
        return true;
    }
    let count = all
        .iter()
        .filter(|s| s.status == status::PENDING || s.status == status::RUNNING)
        .filter(|s| s.repo_id == stage.repo_id && s.id != stage.id && s.name == stage.name)
        .filter(|s| s.id < stage.id || s.status == status::RUNNING)
        .count() as i64;
    count < stage.limit
}

/// `queue.go` `shouldThrottle`: the repo's `throttle` caps its running stages.
pub(super) fn throttled(stage: &Stage, all: &[Stage]) -> bool {
    if stage.throttle == 0 {
        return false;
    }
    let running = all
        .iter()
        .filter(|s| s.repo_id == stage.repo_id && s.status == status::RUNNING)
        .count() as i64;
    running >= stage.throttle
}

/// Hands pending stages to free runner slots (the runner's pollers asking the queue).
pub(super) fn dispatch(inner: &Arc<Inner>, st: &mut State) {
    while st.running.len() < st.runner.capacity {
        let mut candidates: Vec<usize> = (0..st.stages.len())
            .filter(|&i| {
                let s = &st.stages[i];
                s.status == status::PENDING
                    && s.machine.is_empty()
                    && s.kind == "pipeline"
                    && s.type_ == "exec"
                    && s.os == st.runner.os
                    && s.arch == st.runner.arch
                    && s.labels == st.runner.labels
                    && within_limits(s, &st.stages)
                    && !throttled(s, &st.stages)
            })
            .collect();
        candidates.sort_by_key(|&i| st.stages[i].id);
        let Some(&i) = candidates.first() else { break };
        let t = runner::now();
        let machine = st.runner.name.clone();
        {
            let s = &mut st.stages[i];
            s.machine = machine;
            s.updated = t;
            s.version += 1;
        }
        let stage = st.stages[i].clone();
        let Some(bi) = st.builds.iter().position(|b| b.build.id == stage.build_id) else {
            continue;
        };
        let Some(repo) = st.repos.iter().find(|r| r.id == stage.repo_id).cloned() else {
            continue;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        st.running.insert(stage.id, cancel.clone());
        let b = &st.builds[bi].build;
        let timeout = match repo.standin_timeout_seconds {
            Some(s) => Duration::from_secs(s),
            None => Duration::from_secs(repo.timeout.max(0) as u64 * 60),
        };
        let job = runner::StageJob {
            config: st.builds[bi].config.clone(),
            system: inner
                .system
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            repo: runner::RepoVars {
                namespace: repo.namespace.clone(),
                name: repo.name.clone(),
                slug: repo.slug(),
                scm: String::new(),
                link: format!("{}/{}", inner.scm_url, repo.slug()),
                branch: repo.branch.clone(),
                http_url: clone_url(&repo),
                ssh_url: String::new(),
                visibility: repo.visibility.clone(),
                private: repo.visibility != "public",
            },
            build: runner::BuildVars {
                number: b.number,
                parent: b.parent,
                event: b.event.clone(),
                action: b.action.clone(),
                status: b.status.clone(),
                link: b.link.clone(),
                message: b.message.clone(),
                before: b.before.clone(),
                after: b.after.clone(),
                reference: b.reference.clone(),
                source: b.source.clone(),
                target: b.target.clone(),
                author: b.author_login.clone(),
                author_name: b.author_name.clone(),
                author_email: b.author_email.clone(),
                author_avatar: b.author_avatar.clone(),
                deploy: b.deploy_to.clone(),
                cron: b.cron.clone(),
                created: b.created,
                started: b.started,
                finished: b.finished,
                params: b.params.clone(),
                stages: st
                    .stages
                    .iter()
                    .filter(|s| s.build_id == b.id)
                    .map(|s| (s.name.clone(), s.status.clone()))
                    .collect(),
            },
            stage: runner::StageVars {
                kind: stage.kind.clone(),
                type_: stage.type_.clone(),
                name: stage.name.clone(),
                number: stage.number,
                machine: stage.machine.clone(),
                os: stage.os.clone(),
                arch: stage.arch.clone(),
                variant: stage.variant.clone(),
                depends_on: stage.depends_on.clone(),
            },
            environ: st.runner.environ.clone(),
            secrets: repo.secrets.clone(),
            root: st.runner.root.clone(),
            timeout,
            cancel,
        };
        log_line(
            "INFO",
            "stage accepted",
            &[
                ("repo", repo.slug()),
                ("build", b.number.to_string()),
                ("stage", stage.name.clone()),
            ],
        );
        let reporter = StageReporter {
            inner: inner.clone(),
            stage_id: stage.id,
        };
        let spawned = thread::Builder::new()
            .name(format!("standin-runner-{}", stage.id))
            .spawn(move || runner::run_stage(job, &reporter));
        if let Err(e) = spawned {
            log_line(
                "ERROR",
                "cannot start a runner thread",
                &[("error", e.to_string())],
            );
            st.running.remove(&stage.id);
            break;
        }
    }
}

/// The runner's reports, applied as the manager applies them (optimistic locking included:
/// a step the server changed meanwhile, e.g. cancelled, keeps the server's version).
pub(super) struct StageReporter {
    inner: Arc<Inner>,
    stage_id: i64,
}

impl runner::Reporter for StageReporter {
    fn stage_started(&self, state: &mut StageState) {
        let mut st = self.inner.lock();
        let t = runner::now();
        let mut ids = Vec::new();
        for _ in &state.steps {
            ids.push(st.id());
        }
        let Some(stage) = st.stages.iter_mut().find(|s| s.id == self.stage_id) else {
            return;
        };
        if status::is_done(&stage.status) {
            return; // cancelled while the runner was getting ready
        }
        stage.status = status::RUNNING.into();
        stage.started = state.started;
        stage.updated = t;
        stage.version += 1;
        stage.steps = state
            .steps
            .iter_mut()
            .zip(ids)
            .map(|(s, id)| {
                s.version = 1;
                Step {
                    id,
                    stage_id: self.stage_id,
                    number: s.number,
                    name: s.name.clone(),
                    status: s.status.clone(),
                    errignore: s.errignore,
                    version: 1,
                    ..Step::default()
                }
            })
            .collect();
        let build_id = stage.build_id;
        // manager BeforeAll: the build turns running with its first stage.
        if let Some(b) = st.builds.iter_mut().find(|b| b.build.id == build_id) {
            if b.build.status == status::PENDING {
                b.build.status = status::RUNNING.into();
                b.build.started = t;
                b.build.updated = t;
                b.build.version += 1;
            }
        }
        self.inner.changed.notify_all();
    }

    fn step_updated(&self, state: &mut StageState, index: usize) {
        let mut st = self.inner.lock();
        let Some(stage) = st.stages.iter_mut().find(|s| s.id == self.stage_id) else {
            return;
        };
        let Some(mine) = state.steps.get_mut(index) else {
            return;
        };
        let Some(db) = stage.steps.iter_mut().find(|s| s.number == mine.number) else {
            return;
        };
        if db.version != mine.version {
            return; // ErrOptimisticLock
        }
        db.status = mine.status.clone();
        db.exit_code = mine.exit_code;
        db.error = mine.error.chars().take(500).collect();
        db.errignore = mine.errignore;
        db.started = mine.started;
        db.stopped = mine.stopped;
        db.version += 1;
        mine.version = db.version;
        self.inner.changed.notify_all();
    }

    fn upload(&self, state: &StageState, index: usize, lines: Vec<LogLine>) {
        let mut st = self.inner.lock();
        let Some(number) = state.steps.get(index).map(|s| s.number) else {
            return;
        };
        let id = st
            .stages
            .iter()
            .find(|s| s.id == self.stage_id)
            .and_then(|s| s.steps.iter().find(|x| x.number == number))
            .map(|s| s.id);
        if let Some(id) = id {
            st.logs.insert(id, lines);
        }
        self.inner.changed.notify_all();
    }

    fn stage_finished(&self, state: &mut StageState) {
        let mut st = self.inner.lock();
        teardown(&mut st, self.stage_id, state);
        st.running.remove(&self.stage_id);
        log_line(
            "INFO",
            "stage done",
            &[
                ("stage_id", self.stage_id.to_string()),
                ("status", state.status.clone()),
            ],
        );
        dispatch(&self.inner, &mut st);
        self.inner.changed.notify_all();
    }
}

/// `operator/manager/teardown.go` `do`.
pub(super) fn teardown(st: &mut State, stage_id: i64, state: &StageState) {
    let t = runner::now();
    let Some(si) = st.stages.iter().position(|s| s.id == stage_id) else {
        return;
    };
    // Steps first; a version conflict (the build was cancelled meanwhile) ends teardown here.
    for mine in &state.steps {
        let Some(db) = st.stages[si]
            .steps
            .iter_mut()
            .find(|s| s.number == mine.number)
        else {
            continue;
        };
        if db.version != mine.version {
            return;
        }
        db.status = mine.status.clone();
        db.exit_code = mine.exit_code;
        db.error = mine.error.chars().take(500).collect();
        db.started = mine.started;
        db.stopped = mine.stopped;
        db.version += 1;
    }
    {
        let s = &mut st.stages[si];
        if status::is_done(&s.status) {
            return; // cancelled by the server: the runner's copy is stale
        }
        s.status = state.status.clone();
        s.error = state.error.chars().take(500).collect();
        s.exit_code = state.exit_code;
        s.started = state.started;
        s.stopped = state.stopped;
        s.updated = t;
        s.version += 1;
    }
    let build_id = st.stages[si].build_id;
    let idx: Vec<usize> = {
        let mut v: Vec<usize> = (0..st.stages.len())
            .filter(|&i| st.stages[i].build_id == build_id)
            .collect();
        v.sort_by_key(|&i| st.stages[i].id);
        v
    };
    // cancelDownstream
    let failed = idx.iter().any(|&i| status::is_failed(&st.stages[i].status));
    for &i in &idx {
        if st.stages[i].status != status::WAITING {
            continue;
        }
        let skip = (failed && !st.stages[i].on_failure) || (!failed && !st.stages[i].on_success);
        if !skip || !deps_complete(st, &idx, i) {
            continue;
        }
        let s = &mut st.stages[i];
        s.status = status::SKIPPED.into();
        s.started = t;
        s.stopped = t;
        s.version += 1;
    }
    // scheduleDownstream
    for &i in &idx {
        if st.stages[i].status != status::WAITING || st.stages[i].depends_on.is_empty() {
            continue;
        }
        if !deps_complete(st, &idx, i) {
            continue;
        }
        let s = &mut st.stages[i];
        s.status = status::PENDING.into();
        s.updated = t;
        s.version += 1;
    }
    // isBuildComplete
    let complete = idx.iter().all(|&i| {
        !matches!(
            st.stages[i].status.as_str(),
            status::PENDING
                | status::RUNNING
                | status::WAITING
                | status::DECLINED
                | status::BLOCKED
        )
    });
    if !complete {
        return;
    }
    let mut final_status = status::SUCCESS.to_owned();
    for &i in &idx {
        let s = st.stages[i].status.as_str();
        if matches!(s, status::KILLED | status::FAILURE | status::ERROR) {
            final_status = s.to_owned();
            break;
        }
    }
    let Some(b) = st.builds.iter_mut().find(|b| b.build.id == build_id) else {
        return;
    };
    if status::is_done(&b.build.status) {
        return; // ErrOptimisticLock: cancelled meanwhile
    }
    b.build.status = final_status;
    b.build.finished = t;
    if b.build.started == 0 {
        b.build.started = t;
    }
    b.build.updated = t;
    b.build.version += 1;
}

/// `areDepsComplete`.
pub(super) fn deps_complete(st: &State, idx: &[usize], i: usize) -> bool {
    let deps = &st.stages[i].depends_on;
    idx.iter()
        .map(|&j| &st.stages[j])
        .filter(|s| deps.contains(&s.name))
        .all(|s| status::is_done(&s.status))
}

// ---------------------------------------------------------------------------------------
// Control surface
