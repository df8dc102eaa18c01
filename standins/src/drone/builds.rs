//! Builds: created by the API or a hook, triggered into stages (`trigger/trigger.go`),
//! retried and cancelled.

use super::*;

/// A `core.Hook` for the triggerer.
pub(super) struct Hook {
    parent: i64,
    trigger: String,
    event: String,
    action: String,
    link: String,
    message: String,
    before: String,
    after: String,
    reference: String,
    source: String,
    target: String,
    author: String,
    author_name: String,
    author_email: String,
    author_avatar: String,
    sender: String,
    params: BTreeMap<String, String>,
    debug: bool,
}

/// Query pairs as Go's `r.URL.Query()` map: the first value of each key wins.
pub(super) fn query_map(req: &Request, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in &req.query {
        if skip.contains(&k.as_str()) || out.contains_key(k) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    out
}

/// `builds/create.go` `HandleCreate`.
pub(super) fn create_build(
    inner: &Arc<Inner>,
    req: &Request,
    user: &UserRec,
    owner: &str,
    name: &str,
) -> Response {
    let repo = match inner.lock().repo(owner, name).cloned() {
        Some(r) => r,
        None => return no_rows(),
    };
    let mut branch = req.query("branch").unwrap_or("").to_owned();
    if branch.is_empty() {
        branch = repo.branch.clone();
    }
    // scm.ExpandRef: a full ref is kept as is.
    let reference = if branch.starts_with("refs/") {
        branch.clone()
    } else {
        format!("refs/heads/{branch}")
    };
    let sha = req.query("commit").unwrap_or("").to_owned();
    let commit = if sha.is_empty() {
        find_ref(&repo, &reference).and_then(|s| find_commit(&repo, &s))
    } else {
        find_commit(&repo, &sha)
    };
    let Some(commit) = commit else {
        return json_err(404, "Not Found");
    };
    let mut hook = Hook {
        parent: 0,
        trigger: user.login.clone(),
        event: "custom".into(),
        action: String::new(),
        link: format!("{}/{}/commit/{}", inner.scm_url, repo.slug(), commit.sha),
        message: commit.message.clone(),
        before: commit.sha.clone(),
        after: commit.sha.clone(),
        reference,
        source: branch.clone(),
        target: branch,
        author: commit.author_login.clone(),
        author_name: commit.author_name.clone(),
        author_email: commit.author_email.clone(),
        author_avatar: commit.author_avatar.clone(),
        sender: user.login.clone(),
        params: query_map(req, &["access_token", "commit", "branch"]),
        debug: false,
    };
    if let Some(m) = req.query("message").filter(|m| !m.is_empty()) {
        hook.message = m.to_owned();
    }
    if let Some(a) = req.query("action").filter(|a| !a.is_empty()) {
        hook.action = a.to_owned();
    }
    trigger_response(inner, &repo, hook)
}

pub(super) fn trigger_response(inner: &Arc<Inner>, repo: &RepoRec, hook: Hook) -> Response {
    match trigger(inner, repo, hook) {
        Ok(Some(b)) => Response::json(200, &b),
        Ok(None) => Response::json(200, &serde_json::Value::Null),
        Err(e) => json_err(500, &format!("{e:#}")),
    }
}

/// `trigger/trigger.go` `Trigger`: the build, an error build, or `None` (no pipeline matched;
/// every user here is active, so Drone's inactive-owner case cannot arise).
pub(super) fn trigger(inner: &Arc<Inner>, repo: &RepoRec, hook: Hook) -> Result<Option<Build>> {
    let config = find_config(repo, &hook.after)?;
    let parsed = manifest::parse(&config).and_then(|m| manifest::lint_server(&m).map(|_| m));
    let mut st = inner.lock();
    let t = runner::now();
    // The counter is the repo's, under the lock.
    let counter = {
        let r = st
            .repo_mut(&repo.namespace, &repo.name)
            .ok_or_else(|| anyhow!("repo vanished"))?;
        r.counter
    };
    let mut build = Build {
        id: 0,
        repo_id: repo.id,
        trigger: hook.trigger.clone(),
        number: counter + 1,
        parent: hook.parent,
        status: status::PENDING.into(),
        error: String::new(),
        event: hook.event.clone(),
        action: hook.action.clone(),
        link: hook.link.clone(),
        timestamp: 0,
        title: String::new(),
        message: hook.message.chars().take(2000).collect(),
        before: hook.before.clone(),
        after: hook.after.clone(),
        reference: hook.reference.clone(),
        source_repo: String::new(),
        source: hook.source.clone(),
        target: hook.target.clone(),
        author_login: hook.author.clone(),
        author_name: hook.author_name.clone(),
        author_email: hook.author_email.clone(),
        author_avatar: hook.author_avatar.clone(),
        sender: hook.sender.clone(),
        params: hook.params.clone(),
        cron: String::new(),
        deploy_to: String::new(),
        deploy_id: 0,
        debug: hook.debug,
        started: 0,
        finished: 0,
        created: t,
        updated: t,
        version: 1,
        stages: Vec::new(),
    };
    let manifest = match parsed {
        Ok(m) => m,
        Err(e) => {
            // createBuildError: no trigger, no params, started = finished = created.
            build.status = status::ERROR.into();
            build.error = e;
            build.trigger = String::new();
            build.params.clear();
            build.started = t;
            build.finished = t;
            let build = store_build(&mut st, build, config, Vec::new())?;
            inner.changed.notify_all();
            return Ok(Some(build));
        }
    };
    // Match pipelines; skipped ones still take part in the dependency graph.
    let mut skipped: HashMap<String, bool> = HashMap::new();
    let mut graph: HashMap<String, Vec<String>> = HashMap::new();
    let mut matched = Vec::new();
    for p in manifest.resources.iter().filter_map(|r| match r {
        Resource::Pipeline(p) => Some(&**p),
        Resource::Other { .. } => None,
    }) {
        graph.insert(p.name.clone(), p.depends_on.clone());
        let tr = &p.trigger;
        let skip = !tr.branch.matches(&hook.target)
            || !tr.event.matches(&hook.event)
            || !tr.action.matches(&hook.action)
            || !tr.reference.matches(&hook.reference)
            || !tr.repo.matches(&repo.slug())
            || !tr.target.matches("")
            || !tr.cron.matches("");
        skipped.insert(p.name.clone(), skip);
        if !skip {
            matched.push(p.clone());
        }
    }
    if matched.is_empty() {
        return Ok(None);
    }
    let mut stages = Vec::new();
    for (i, p) in matched.iter().enumerate() {
        let st_status = &p.trigger.status;
        let on_success = st_status.matches(status::SUCCESS);
        let on_failure = if st_status.is_empty() {
            false
        } else {
            st_status.matches(status::FAILURE)
        };
        let mut stage = Stage {
            repo_id: repo.id,
            number: i as i64 + 1,
            name: if p.name.is_empty() {
                "default".into()
            } else {
                p.name.clone()
            },
            kind: p.kind.clone(),
            type_: if p.kind == "pipeline" && p.type_.is_empty() {
                "docker".into()
            } else {
                p.type_.clone()
            },
            status: status::WAITING.into(),
            os: if p.os.is_empty() {
                "linux".into()
            } else {
                p.os.clone()
            },
            arch: if p.arch.is_empty() {
                "amd64".into()
            } else {
                p.arch.clone()
            },
            variant: p.variant.clone(),
            kernel: p.version.clone(),
            limit: p.concurrency_limit,
            throttle: repo.throttle,
            created: t,
            updated: t,
            version: 1,
            on_success,
            on_failure,
            labels: p.node.clone(),
            ..Stage::default()
        };
        // dag.Dependencies: a skipped dependency is replaced by its own dependencies.
        stage.depends_on = dependencies(&p.name, &graph, &skipped, 0);
        stage.status = if stage.depends_on.is_empty() {
            status::PENDING.into()
        } else {
            status::WAITING.into()
        };
        stages.push(stage);
    }
    let build = store_build(&mut st, build, config, stages)?;
    dispatch(inner, &mut st);
    inner.changed.notify_all();
    Ok(Some(build))
}

pub(super) fn dependencies(
    name: &str,
    graph: &HashMap<String, Vec<String>>,
    skipped: &HashMap<String, bool>,
    depth: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    if depth > 64 {
        return out;
    }
    for dep in graph.get(name).into_iter().flatten() {
        if !graph.contains_key(dep) {
            continue;
        }
        if skipped.get(dep).copied().unwrap_or(false) {
            out.extend(dependencies(dep, graph, skipped, depth + 1));
        } else {
            out.push(dep.clone());
        }
    }
    out
}

pub(super) fn store_build(
    st: &mut State,
    mut build: Build,
    config: String,
    stages: Vec<Stage>,
) -> Result<Build> {
    build.id = st.id();
    let r = st
        .repos
        .iter_mut()
        .find(|r| r.id == build.repo_id)
        .ok_or_else(|| anyhow!("repo vanished"))?;
    r.counter += 1;
    r.version += 1;
    build.number = r.counter;
    for mut s in stages {
        s.id = st.id();
        s.build_id = build.id;
        st.stages.push(s);
    }
    st.builds.push(BuildRec {
        build: build.clone(),
        config,
    });
    Ok(build)
}

/// `builds/cancel.go` `HandleCancel`.
pub(super) fn cancel(inner: &Arc<Inner>, owner: &str, name: &str, number: i64) -> Response {
    let mut st = inner.lock();
    let Some(repo_id) = st.repo(owner, name).map(|r| r.id) else {
        return no_rows();
    };
    let Some(i) = st.build_idx(repo_id, number) else {
        return no_rows();
    };
    let t = runner::now();
    let build_id = st.builds[i].build.id;
    let done = {
        let b = &st.builds[i].build;
        b.status != status::PENDING && b.status != status::RUNNING
    };
    if !done {
        let b = &mut st.builds[i].build;
        b.status = status::KILLED.into();
        b.finished = t;
        if b.started == 0 {
            b.started = t;
        }
        b.updated = t;
        b.version += 1;
        // scheduler.Cancel: the runner's Watch fires and the stage context is cancelled.
        let ids: Vec<i64> = st
            .stages
            .iter()
            .filter(|s| s.build_id == build_id)
            .map(|s| s.id)
            .collect();
        let mut signalled = Vec::new();
        for id in ids {
            if let Some(flag) = st.running.get(&id) {
                flag.store(true, Ordering::SeqCst);
                signalled.push(id);
            }
        }
        // The real handler lists and marks the stages only after scheduler.Cancel, and the
        // runner, woken at once, kills its step and reports the stage before that (killed,
        // 137; pending steps skipped, 0): the handler then finds the stage done and leaves it.
        // Measured on the real pair (standins/tests/runner_fidelity.rs); bounded here so a
        // runner that never reports cannot hold the cancel.
        let deadline = Instant::now() + Duration::from_secs(5);
        while signalled.iter().any(|id| st.running.contains_key(id)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = inner
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    for s in st.stages.iter_mut().filter(|s| s.build_id == build_id) {
        if status::is_done(&s.status) {
            continue;
        }
        if s.started != 0 {
            s.status = status::KILLED.into();
        } else {
            s.status = status::SKIPPED.into();
            s.started = t;
        }
        s.stopped = t;
        s.version += 1;
        for step in s.steps.iter_mut() {
            if status::is_done(&step.status) {
                continue;
            }
            if step.started != 0 {
                step.status = status::KILLED.into();
            } else {
                step.status = status::SKIPPED.into();
                step.started = t;
            }
            step.stopped = t;
            step.exit_code = 130;
            step.version += 1;
        }
    }
    let b = st.with_stages(&st.builds[i].build);
    inner.changed.notify_all();
    Response::json(200, &b)
}

// ---------------------------------------------------------------------------------------
// Queue and runner
