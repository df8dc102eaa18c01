//! Users, repositories, permissions and what Drone asks the SCM: refs, commits and the
//! `.drone.yml` at a commit.

use super::*;

pub(super) fn create_user(
    inner: &Inner,
    login: &str,
    admin: bool,
    token: Option<&str>,
) -> Result<String> {
    let mut st = inner.lock();
    if st.users.iter().any(|u| u.login == login) {
        bail!("user {login} exists");
    }
    let token = token
        .map(str::to_owned)
        .unwrap_or_else(|| runner::random_id(32));
    let id = st.id();
    st.users.push(UserRec {
        id,
        login: login.into(),
        admin,
        machine: false,
        token: token.clone(),
        created: runner::now(),
    });
    Ok(token)
}

pub(super) fn create_repo(inner: &Inner, r: NewRepo) -> Result<RepoJson> {
    let mut st = inner.lock();
    let owner = st
        .users
        .iter()
        .find(|u| u.login == r.owner)
        .map(|u| u.id)
        .ok_or_else(|| anyhow!("repo owner {} is not a user", r.owner))?;
    if st.repo(&r.owner, &r.name).is_some() {
        bail!("repo {}/{} exists", r.owner, r.name);
    }
    let id = st.id();
    let t = runner::now();
    st.repos.push(RepoRec {
        id,
        user_id: owner,
        namespace: r.owner.clone(),
        name: r.name.clone(),
        branch: r.default_branch,
        source: r.source,
        visibility: r.visibility,
        timeout: if r.timeout == 0 { 60 } else { r.timeout },
        standin_timeout_seconds: None,
        config_path: r.config_path,
        throttle: r.throttle,
        counter: 0,
        branches: BTreeMap::new(),
        commits: HashMap::new(),
        secrets: BTreeMap::new(),
        created: t,
        updated: t,
        version: 1,
    });
    // The owner administers their repo, as the SCM sync would record.
    st.perms.insert(
        (id, owner),
        Perm {
            read: true,
            write: true,
            admin: true,
        },
    );
    let repo = st
        .repo(&r.owner, &r.name)
        .cloned()
        .context("repo just created")?;
    Ok(repo_json(inner, &repo))
}

pub(super) fn set_permission(
    inner: &Inner,
    owner: &str,
    name: &str,
    login: &str,
    perm: Perm,
) -> Result<()> {
    let mut st = inner.lock();
    let repo = st
        .repo(owner, name)
        .map(|r| r.id)
        .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
    let user = st
        .users
        .iter()
        .find(|u| u.login == login)
        .map(|u| u.id)
        .ok_or_else(|| anyhow!("no user {login}"))?;
    st.perms.insert((repo, user), perm);
    Ok(())
}

pub(super) fn set_runner(inner: &Arc<Inner>, patch: RunnerPatch) {
    let mut st = inner.lock();
    if let Some(c) = patch.capacity {
        st.runner.capacity = c;
    }
    if let Some(e) = patch.environ {
        st.runner.environ = e;
    }
    if let Some(r) = patch.root {
        st.runner.root = Some(r);
    }
    dispatch(inner, &mut st);
    inner.changed.notify_all();
}

pub(super) fn clone_url(repo: &RepoRec) -> String {
    match &repo.source {
        ConfigSource::Git { path } => path.to_string_lossy().into_owned(),
        ConfigSource::Inline { .. } => String::new(),
    }
}

pub(super) fn repo_json(inner: &Inner, r: &RepoRec) -> RepoJson {
    RepoJson {
        id: r.id,
        uid: r.id.to_string(),
        user_id: r.user_id,
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        slug: r.slug(),
        scm: String::new(),
        git_http_url: clone_url(r),
        git_ssh_url: String::new(),
        link: format!("{}/{}", inner.scm_url, r.slug()),
        default_branch: r.branch.clone(),
        private: r.visibility != "public",
        visibility: r.visibility.clone(),
        active: true,
        config_path: r.config_path.clone(),
        trusted: false,
        protected: false,
        ignore_forks: false,
        ignore_pull_requests: false,
        auto_cancel_pull_requests: false,
        auto_cancel_pushes: false,
        auto_cancel_running: false,
        timeout: r.timeout,
        throttle: r.throttle,
        counter: r.counter,
        synced: r.created,
        created: r.created,
        updated: r.updated,
        version: r.version,
        archived: false,
    }
}

// ---------------------------------------------------------------------------------------
// The SCM side: branches, commits and the config at a commit.

pub(super) fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn find_ref(repo: &RepoRec, reference: &str) -> Option<String> {
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference);
    if let Some(sha) = repo.branches.get(branch) {
        return Some(sha.clone());
    }
    match &repo.source {
        ConfigSource::Git { path } => git(
            path,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{reference}^{{commit}}"),
            ],
        )
        .map(|s| s.trim().to_owned()),
        ConfigSource::Inline { .. } => None,
    }
}

pub(super) fn find_commit(repo: &RepoRec, sha: &str) -> Option<Commit> {
    if let Some(c) = repo.commits.get(sha) {
        return Some(c.clone());
    }
    let ConfigSource::Git { path } = &repo.source else {
        return None;
    };
    let out = git(
        path,
        &[
            "show",
            "-s",
            "--format=%H%x00%an%x00%ae%x00%B",
            &format!("{sha}^{{commit}}"),
            "--",
        ],
    )?;
    let mut parts = out.splitn(4, '\0');
    let full = parts.next()?.trim().to_owned();
    let name = parts.next().unwrap_or("").to_owned();
    let email = parts.next().unwrap_or("").to_owned();
    let message = parts.next().unwrap_or("").trim_end_matches('\n').to_owned();
    if let Some(c) = repo.commits.get(&full) {
        return Some(c.clone());
    }
    Some(Commit {
        sha: full,
        message,
        author_login: name.clone(),
        author_name: name,
        author_email: email,
        author_avatar: String::new(),
    })
}

pub(super) fn find_config(repo: &RepoRec, sha: &str) -> Result<String> {
    match &repo.source {
        ConfigSource::Inline { yaml } => Ok(yaml.clone()),
        ConfigSource::Git { path } => git(path, &["show", &format!("{sha}:{}", repo.config_path)])
            .ok_or_else(|| anyhow!("config {} not found at {sha}", repo.config_path)),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
