//! Stand-in Drone 2.x server with its exec runner in-process: users and tokens, repos with
//! permissions, builds made of stages and steps that the stand-in runner really runs, logs,
//! and the `/api` routes cc-ci uses with Drone's JSON shapes, status codes and quirks.
//!
//! Why it is kept beside the real Drone 1.10.1 (docs/fidelity.md): tests that need Drone's API
//! to fail or hang (the bridge's and dashboard's fault tests), a build store seeded with
//! 10,000 runs (the dashboard bench), and speed. `standins/tests/runner_fidelity.rs` runs its
//! builds, logs and cancel against the real Drone too.
//!
//! Where a repo's `.drone.yml` comes from ([`ConfigSource`]): either a local git repository
//! (working tree or bare; the config is read with `git show <sha>:<config_path>`, branches and
//! commits are looked up with git like Drone asks the SCM, and the clone step fetches from that
//! path), or an inline YAML text with branches and commits registered through the control
//! surface (then the clone step has no remote: use `clone: {disable: true}`).
//!
//! Mirrors harness/drone (branch `drone`, = v2.25.0): `handler/api/api.go` (routes),
//! `handler/api/acl/check.go` + `acl/repo.go` (401/403/404 rules), `session/session.go`
//! (token from `Authorization` with `Bearer ` stripped, or `?access_token=`),
//! `handler/api/repos/builds/{create,list,find,latest,cancel,retry}.go`,
//! `handler/api/repos/builds/logs/find.go`, `trigger/trigger.go` + `trigger/skip.go` +
//! `trigger/dag` (pipelines → stages), `operator/manager/{manager,teardown,util}.go`
//! (stage lifecycle, downstream scheduling and skipping, the build's final status),
//! `scheduler/queue/queue.go` (`withinLimits`, kind/type/platform/labels matching).
//!
//! Control surface (stand-in only, under `/_standin/drone/`, JSON bodies):
//! `POST users`, `POST repos`, `POST repos/{o}/{n}/perms`, `POST repos/{o}/{n}/timeout`,
//! `POST repos/{o}/{n}/branches`, `POST repos/{o}/{n}/commits`, `POST repos/{o}/{n}/config`,
//! `POST repos/{o}/{n}/secrets`, `POST runner`, `GET repos/{o}/{n}/builds/{b}/wait?timeout_ms=`.

pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::http::{self, FaultRule, Logged, Request, Response};
use crate::runner::manifest::{self, Resource};
use crate::runner::{self, status, LogLine, StageState};
pub use model::{Build, RepoJson, Stage, Step, UserJson};

/// The server version reported as `DRONE_SYSTEM_VERSION`.
pub const VERSION: &str = "2.25.0";

/// How the stand-in is started (`DRONE_*` settings of the server and its one runner).
#[derive(Clone, Debug)]
pub struct DroneOpts {
    /// `0` = any free port.
    pub port: u16,
    /// `DRONE_RUNNER_CAPACITY` (default 2).
    pub runner_capacity: usize,
    /// `DRONE_RUNNER_ROOT`; `None` = the system temp dir.
    pub runner_root: Option<PathBuf>,
    /// `DRONE_RUNNER_ENVIRON`.
    pub runner_environ: BTreeMap<String, String>,
    /// `DRONE_RUNNER_NAME`, which becomes `stage.machine`.
    pub runner_name: String,
    /// `DRONE_RUNNER_LABELS`; a stage's `node:` must equal them exactly.
    pub runner_labels: BTreeMap<String, String>,
    /// `DRONE_SERVER_PROTO`.
    pub server_proto: String,
    /// `DRONE_SERVER_HOST`; `None` = `127.0.0.1:<port>`.
    pub server_host: Option<String>,
    /// The forge's web root for repo and commit links, e.g. `https://git.example.org`.
    pub scm_url: String,
}

impl Default for DroneOpts {
    fn default() -> Self {
        DroneOpts {
            port: 0,
            runner_capacity: 2,
            runner_root: None,
            runner_environ: BTreeMap::new(),
            runner_name: "standin-runner".into(),
            runner_labels: BTreeMap::new(),
            server_proto: "http".into(),
            server_host: None,
            scm_url: "https://git.example.org".into(),
        }
    }
}

/// Where a repo's `.drone.yml` (and code) comes from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ConfigSource {
    /// A local git repository (working tree or bare).
    Git { path: PathBuf },
    /// The YAML text itself, the same at every commit.
    Inline { yaml: String },
}

/// `POST /_standin/drone/repos`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewRepo {
    /// Login of the repo owner (the user whose SCM credentials Drone uses); must exist.
    pub owner: String,
    pub name: String,
    #[serde(default = "default_branch")]
    pub default_branch: String,
    pub source: ConfigSource,
    /// `public`, `internal` or `private`.
    #[serde(default = "default_visibility")]
    pub visibility: String,
    /// Minutes; 0 becomes 60 as `handler/api/repos/enable.go` does.
    #[serde(default)]
    pub timeout: i64,
    #[serde(default = "default_config_path")]
    pub config_path: String,
    /// `throttle`: stages per repo at once; 0 = none.
    #[serde(default)]
    pub throttle: i64,
}

fn default_branch() -> String {
    "main".into()
}
fn default_visibility() -> String {
    "public".into()
}
fn default_config_path() -> String {
    ".drone.yml".into()
}

impl NewRepo {
    pub fn new(owner: &str, name: &str, source: ConfigSource) -> NewRepo {
        NewRepo {
            owner: owner.into(),
            name: name.into(),
            default_branch: default_branch(),
            source,
            visibility: default_visibility(),
            timeout: 0,
            config_path: default_config_path(),
            throttle: 0,
        }
    }
}

/// A commit as the SCM reports it (what the build's author fields and message come from).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Commit {
    pub sha: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub author_login: String,
    #[serde(default)]
    pub author_name: String,
    #[serde(default)]
    pub author_email: String,
    #[serde(default)]
    pub author_avatar: String,
}

/// Repo permission of one user (`core.Perm`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Perm {
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    #[serde(default)]
    pub admin: bool,
}

/// Runner settings that can change while the stand-in runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunnerPatch {
    #[serde(default)]
    pub capacity: Option<usize>,
    #[serde(default)]
    pub environ: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub root: Option<PathBuf>,
}

#[derive(Clone, Debug)]
struct UserRec {
    id: i64,
    login: String,
    admin: bool,
    active: bool,
    machine: bool,
    token: String,
    created: i64,
}

#[derive(Clone, Debug)]
struct RepoRec {
    id: i64,
    user_id: i64,
    namespace: String,
    name: String,
    branch: String,
    source: ConfigSource,
    visibility: String,
    timeout: i64,
    /// Stand-in only: overrides `timeout` with seconds so timeout tests are fast.
    standin_timeout_seconds: Option<u64>,
    config_path: String,
    throttle: i64,
    counter: i64,
    branches: BTreeMap<String, String>,
    commits: HashMap<String, Commit>,
    secrets: BTreeMap<String, String>,
    created: i64,
    updated: i64,
    version: i64,
}

impl RepoRec {
    fn slug(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

struct BuildRec {
    build: Build,
    /// The config the build was triggered with (the runner gets the same text at the same sha).
    config: String,
}

struct RunnerCfg {
    capacity: usize,
    root: Option<PathBuf>,
    environ: BTreeMap<String, String>,
    name: String,
    labels: BTreeMap<String, String>,
    os: String,
    arch: String,
}

struct State {
    users: Vec<UserRec>,
    repos: Vec<RepoRec>,
    perms: HashMap<(i64, i64), Perm>,
    builds: Vec<BuildRec>,
    stages: Vec<Stage>,
    logs: HashMap<i64, Vec<LogLine>>,
    runner: RunnerCfg,
    /// Stages a runner slot is busy with: stage id → cancel flag.
    running: HashMap<i64, Arc<AtomicBool>>,
    next_id: i64,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, owner: &str, name: &str) -> Option<&RepoRec> {
        self.repos
            .iter()
            .find(|r| r.namespace == owner && r.name == name)
    }

    fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut RepoRec> {
        self.repos
            .iter_mut()
            .find(|r| r.namespace == owner && r.name == name)
    }

    fn build_idx(&self, repo_id: i64, number: i64) -> Option<usize> {
        self.builds
            .iter()
            .position(|b| b.build.repo_id == repo_id && b.build.number == number)
    }

    fn stages_of(&self, build_id: i64) -> Vec<Stage> {
        let mut v: Vec<Stage> = self
            .stages
            .iter()
            .filter(|s| s.build_id == build_id)
            .cloned()
            .collect();
        v.sort_by_key(|s| s.id);
        for s in v.iter_mut() {
            s.steps.sort_by_key(|st| st.id);
        }
        v
    }

    fn with_stages(&self, b: &Build) -> Build {
        let mut b = b.clone();
        b.stages = self.stages_of(b.id);
        b
    }
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    system: Mutex<runner::SystemVars>,
    scm_url: String,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stand-in Drone. Dropping it stops the HTTP server; running stages finish on
/// their own threads.
pub struct Drone {
    server: http::Server,
    inner: Arc<Inner>,
}

fn log_line(level: &str, msg: &str, kv: &[(&str, String)]) {
    let mut line = format!("{level} standin-drone: {msg}");
    for (k, v) in kv {
        if v.is_empty() || v.contains([' ', '"', '=']) {
            line.push_str(&format!(" {k}={v:?}"));
        } else {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    eprintln!("{line}");
}

impl Drone {
    pub fn start(opts: DroneOpts) -> Result<Drone> {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "arm" => "arm",
            other => other,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                users: Vec::new(),
                repos: Vec::new(),
                perms: HashMap::new(),
                builds: Vec::new(),
                stages: Vec::new(),
                logs: HashMap::new(),
                runner: RunnerCfg {
                    capacity: opts.runner_capacity,
                    root: opts.runner_root.clone(),
                    environ: opts.runner_environ.clone(),
                    name: opts.runner_name.clone(),
                    labels: opts.runner_labels.clone(),
                    os: std::env::consts::OS.to_owned(),
                    arch: arch.to_owned(),
                },
                running: HashMap::new(),
                next_id: 0,
            }),
            changed: Condvar::new(),
            system: Mutex::new(runner::SystemVars::default()),
            scm_url: opts.scm_url.trim_end_matches('/').to_owned(),
        });
        let handler_inner = inner.clone();
        let handler: http::Handler = Arc::new(move |req: &Request| handle(&handler_inner, req));
        let server = http::Server::start(opts.port, handler)
            .with_context(|| format!("starting the stand-in Drone on port {}", opts.port))?;
        let host = opts
            .server_host
            .clone()
            .unwrap_or_else(|| server.addr().to_string());
        *inner.system.lock().unwrap_or_else(|p| p.into_inner()) = runner::SystemVars {
            proto: opts.server_proto.clone(),
            host,
            version: VERSION.into(),
        };
        Ok(Drone { server, inner })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn inject(&self, rule: FaultRule) {
        self.server.inject(rule)
    }

    pub fn clear_faults(&self) {
        self.server.clear_faults()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.server.requests()
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests()
    }

    /// Creates a user with an API token (`token` = `None` picks a random one); returns it.
    pub fn create_user(&self, login: &str, admin: bool, token: Option<&str>) -> Result<String> {
        create_user(&self.inner, login, admin, true, token)
    }

    /// Marks a user active or inactive (an inactive user gets 403 on repo routes).
    pub fn set_user_active(&self, login: &str, active: bool) -> Result<()> {
        let mut st = self.inner.lock();
        let u = st
            .users
            .iter_mut()
            .find(|u| u.login == login)
            .ok_or_else(|| anyhow!("no user {login}"))?;
        u.active = active;
        Ok(())
    }

    pub fn create_repo(&self, repo: NewRepo) -> Result<RepoJson> {
        create_repo(&self.inner, repo)
    }

    pub fn set_permission(&self, owner: &str, name: &str, login: &str, perm: Perm) -> Result<()> {
        set_permission(&self.inner, owner, name, login, perm)
    }

    /// Sets the repo timeout in minutes, as Drone stores it.
    pub fn set_timeout_minutes(&self, owner: &str, name: &str, minutes: i64) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        r.timeout = minutes;
        Ok(())
    }

    /// Stand-in only: a per-stage timeout in seconds that overrides the minutes, so tests of
    /// the runner's timeout finish quickly. `None` goes back to the minutes.
    pub fn set_standin_timeout_seconds(
        &self,
        owner: &str,
        name: &str,
        secs: Option<u64>,
    ) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        r.standin_timeout_seconds = secs;
        Ok(())
    }

    /// Registers a branch head (for inline repos, or to override git).
    pub fn set_branch(&self, owner: &str, name: &str, branch: &str, sha: &str) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        r.branches.insert(branch.into(), sha.into());
        Ok(())
    }

    /// Registers a commit (for inline repos, or to give a git commit an author login).
    pub fn add_commit(&self, owner: &str, name: &str, commit: Commit) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        r.commits.insert(commit.sha.clone(), commit);
        Ok(())
    }

    /// Replaces an inline repo's YAML (a git repo's config changes by committing).
    pub fn set_config(&self, owner: &str, name: &str, yaml: &str) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        match &mut r.source {
            ConfigSource::Inline { yaml: y } => *y = yaml.to_owned(),
            ConfigSource::Git { .. } => bail!("{owner}/{name} reads its config from git"),
        }
        Ok(())
    }

    /// A repo secret, for `environment: {X: {from_secret: name}}`.
    pub fn set_secret(&self, owner: &str, name: &str, secret: &str, value: &str) -> Result<()> {
        let mut st = self.inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        r.secrets.insert(secret.into(), value.into());
        Ok(())
    }

    pub fn set_runner(&self, patch: RunnerPatch) {
        set_runner(&self.inner, patch)
    }

    /// The build with its stages, as `GET …/builds/{n}` shows it.
    pub fn build(&self, owner: &str, name: &str, number: i64) -> Option<Build> {
        let st = self.inner.lock();
        let repo_id = st.repo(owner, name)?.id;
        let i = st.build_idx(repo_id, number)?;
        Some(st.with_stages(&st.builds[i].build))
    }

    /// The stored log of a step, if uploaded.
    pub fn step_log(
        &self,
        owner: &str,
        name: &str,
        number: i64,
        stage: i64,
        step: i64,
    ) -> Option<Vec<LogLine>> {
        let b = self.build(owner, name, number)?;
        let s = b.stages.iter().find(|s| s.number == stage)?;
        let st = s.steps.iter().find(|x| x.number == step)?;
        self.inner.lock().logs.get(&st.id).cloned()
    }

    /// Stages a runner slot is busy with right now.
    pub fn busy_slots(&self) -> usize {
        self.inner.lock().running.len()
    }

    /// Waits (bounded) until the build is done; returns it with stages.
    pub fn wait_build(
        &self,
        owner: &str,
        name: &str,
        number: i64,
        timeout: Duration,
    ) -> Result<Build> {
        wait_build(&self.inner, owner, name, number, timeout)
    }

    /// Waits (bounded) until `pred` holds for the build; returns it.
    pub fn wait_build_until(
        &self,
        owner: &str,
        name: &str,
        number: i64,
        timeout: Duration,
        pred: impl Fn(&Build) -> bool,
    ) -> Result<Build> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if let Some(b) = st
                .repo(owner, name)
                .and_then(|r| st.build_idx(r.id, number))
                .map(|i| st.with_stages(&st.builds[i].build))
            {
                if pred(&b) {
                    return Ok(b);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("build {owner}/{name}#{number} did not reach the awaited state within {timeout:?}");
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits (bounded) until no runner slot is busy (every started stage has torn down).
    pub fn wait_idle(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        while !st.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "runner still busy with {} stage(s) after {timeout:?}",
                    st.running.len()
                );
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }
}

fn wait_build(
    inner: &Inner,
    owner: &str,
    name: &str,
    number: i64,
    timeout: Duration,
) -> Result<Build> {
    let deadline = Instant::now() + timeout;
    let mut st = inner.lock();
    loop {
        let repo_id = st
            .repo(owner, name)
            .map(|r| r.id)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        let i = st
            .build_idx(repo_id, number)
            .ok_or_else(|| anyhow!("no build {owner}/{name}#{number}"))?;
        // Done = finished and no runner slot still tearing a stage of it down.
        let b = &st.builds[i].build;
        let tearing_down = st
            .stages
            .iter()
            .any(|s| s.build_id == b.id && st.running.contains_key(&s.id));
        if status::is_done(&b.status) && !tearing_down {
            return Ok(st.with_stages(b));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "build {owner}/{name}#{number} still {} after {timeout:?}",
                st.builds[i].build.status
            );
        }
        st = inner
            .changed
            .wait_timeout(st, left.min(Duration::from_millis(100)))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn create_user(
    inner: &Inner,
    login: &str,
    admin: bool,
    active: bool,
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
        active,
        machine: false,
        token: token.clone(),
        created: runner::now(),
    });
    Ok(token)
}

fn create_repo(inner: &Inner, r: NewRepo) -> Result<RepoJson> {
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

fn set_permission(inner: &Inner, owner: &str, name: &str, login: &str, perm: Perm) -> Result<()> {
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

fn set_runner(inner: &Arc<Inner>, patch: RunnerPatch) {
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

fn clone_url(repo: &RepoRec) -> String {
    match &repo.source {
        ConfigSource::Git { path } => path.to_string_lossy().into_owned(),
        ConfigSource::Inline { .. } => String::new(),
    }
}

fn repo_json(inner: &Inner, r: &RepoRec) -> RepoJson {
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

fn git(dir: &Path, args: &[&str]) -> Option<String> {
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

fn find_ref(repo: &RepoRec, reference: &str) -> Option<String> {
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

fn find_commit(repo: &RepoRec, sha: &str) -> Option<Commit> {
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

fn find_config(repo: &RepoRec, sha: &str) -> Result<String> {
    match &repo.source {
        ConfigSource::Inline { yaml } => Ok(yaml.clone()),
        ConfigSource::Git { path } => git(path, &["show", &format!("{sha}:{}", repo.config_path)])
            .ok_or_else(|| anyhow!("config {} not found at {sha}", repo.config_path)),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

fn json_err(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &model::ApiError {
            message: message.into(),
        },
    )
}

/// `render.NotFound` with a store miss.
fn no_rows() -> Response {
    json_err(404, "sql: no rows in result set")
}

fn handle(inner: &Arc<Inner>, req: &Request) -> Response {
    let segs = req.segments();
    let m = req.method.as_str();
    match segs.as_slice() {
        ["_standin", "drone", rest @ ..] => control(inner, req, rest),
        ["api", "user"] if m == "GET" => match session(inner, req) {
            Some(u) => Response::json(
                200,
                &UserJson {
                    id: u.id,
                    login: u.login,
                    email: String::new(),
                    machine: u.machine,
                    admin: u.admin,
                    active: u.active,
                    avatar: String::new(),
                    syncing: false,
                    synced: u.created,
                    created: u.created,
                    updated: u.created,
                    last_login: 0,
                },
            ),
            None => json_err(401, "Unauthorized"),
        },
        ["api", "repos", owner, name, rest @ ..] => repo_routes(inner, req, owner, name, rest),
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// `session.Get`: an `Authorization` header (any `Bearer ` prefix stripped) or
/// `?access_token=`; an unknown token is a guest, not an error.
fn session(inner: &Inner, req: &Request) -> Option<UserRec> {
    let raw = match req.header("Authorization").filter(|h| !h.is_empty()) {
        Some(h) => h.to_owned(),
        None => req
            .query("access_token")
            .filter(|t| !t.is_empty())?
            .to_owned(),
    };
    let token = raw.strip_prefix("Bearer ").unwrap_or(&raw);
    inner
        .lock()
        .users
        .iter()
        .find(|u| u.token == token)
        .cloned()
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    Read,
    Write,
}

/// `acl.InjectRepository` + `acl.CheckAccess`.
fn check_access(
    st: &State,
    user: Option<&UserRec>,
    owner: &str,
    name: &str,
    need: Need,
) -> Result<i64, Response> {
    let Some(repo) = st.repo(owner, name) else {
        return Err(match user {
            Some(_) => json_err(404, "Not Found"),
            None => json_err(401, "Unauthorized"),
        });
    };
    let write = need == Need::Write;
    match user {
        None if write => return Err(json_err(401, "Unauthorized")),
        Some(u) if u.admin => return Ok(repo.id),
        _ => {}
    }
    if !write {
        match (repo.visibility.as_str(), user) {
            ("public", _) => return Ok(repo.id),
            (_, None) => return Err(json_err(401, "Unauthorized")),
            ("internal", Some(_)) => return Ok(repo.id),
            _ => {}
        }
    }
    let Some(user) = user else {
        return Err(json_err(401, "Unauthorized"));
    };
    let Some(perm) = st.perms.get(&(repo.id, user.id)) else {
        return Err(json_err(404, "Not Found"));
    };
    if !user.active {
        return Err(json_err(403, "Forbidden"));
    }
    if !perm.read || (write && !perm.write) {
        return Err(json_err(404, "Not Found"));
    }
    Ok(repo.id)
}

fn parse_number(s: &str) -> Result<i64, Response> {
    s.parse::<i64>().map_err(|_| {
        json_err(
            400,
            &format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
        )
    })
}

fn repo_routes(
    inner: &Arc<Inner>,
    req: &Request,
    owner: &str,
    name: &str,
    rest: &[&str],
) -> Response {
    let user = session(inner, req);
    let m = req.method.as_str();
    // Every repo route sits behind CheckReadAccess; writes add CheckWriteAccess.
    let need = match (m, rest) {
        ("POST", ["builds"]) | ("POST", ["builds", _]) | ("DELETE", ["builds", _]) => Need::Write,
        _ => Need::Read,
    };
    {
        let st = inner.lock();
        if let Err(r) = check_access(&st, user.as_ref(), owner, name, Need::Read) {
            return r;
        }
        if need == Need::Write {
            if let Err(r) = check_access(&st, user.as_ref(), owner, name, Need::Write) {
                return r;
            }
        }
    }
    match (m, rest) {
        ("GET", []) => {
            let st = inner.lock();
            match st.repo(owner, name) {
                Some(r) => Response::json(200, &repo_json(inner, r)),
                None => no_rows(),
            }
        }
        ("GET", ["builds"]) => list_builds(inner, req, owner, name),
        ("POST", ["builds"]) => match user {
            Some(u) => create_build(inner, req, &u, owner, name),
            None => json_err(401, "Unauthorized"),
        },
        ("GET", ["builds", "latest"]) => latest(inner, req, owner, name),
        ("GET", ["builds", n]) => match parse_number(n) {
            Ok(n) => {
                let st = inner.lock();
                let Some(repo) = st.repo(owner, name) else {
                    return no_rows();
                };
                match st.build_idx(repo.id, n) {
                    Some(i) => Response::json(200, &st.with_stages(&st.builds[i].build)),
                    None => no_rows(),
                }
            }
            Err(r) => r,
        },
        ("POST", ["builds", n]) => match (parse_number(n), user) {
            (Ok(n), Some(u)) => retry(inner, req, &u, owner, name, n),
            (Err(r), _) => r,
            (_, None) => json_err(401, "Unauthorized"),
        },
        ("DELETE", ["builds", n]) => match parse_number(n) {
            Ok(n) => cancel(inner, owner, name, n),
            Err(r) => r,
        },
        ("GET", ["builds", n, "logs", stage, step]) => {
            let (n, stage, step) = match (parse_number(n), parse_number(stage), parse_number(step))
            {
                (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
            };
            let st = inner.lock();
            let Some(repo) = st.repo(owner, name) else {
                return no_rows();
            };
            let Some(i) = st.build_idx(repo.id, n) else {
                return no_rows();
            };
            let bid = st.builds[i].build.id;
            let Some(sg) = st
                .stages
                .iter()
                .find(|s| s.build_id == bid && s.number == stage)
            else {
                return no_rows();
            };
            let Some(sp) = sg.steps.iter().find(|s| s.number == step) else {
                return no_rows();
            };
            match st.logs.get(&sp.id) {
                // The runner uploads its line history as is; a step that printed nothing
                // uploads a nil slice, which Go encodes as `null`.
                Some(lines) => {
                    let body = if lines.is_empty() {
                        b"null".to_vec()
                    } else {
                        serde_json::to_vec(lines).unwrap_or_else(|_| b"null".to_vec())
                    };
                    Response::new(200)
                        .header("Content-Type", "application/json")
                        .body(body)
                }
                None => no_rows(),
            }
        }
        _ => Response::text(404, "404 page not found\n"),
    }
}

/// `builds/list.go` `HandleList`.
fn list_builds(inner: &Inner, req: &Request, owner: &str, name: &str) -> Response {
    let page: i64 = req.query("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut limit: i64 = req
        .query("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if !(1..=100).contains(&limit) {
        limit = 25;
    }
    let offset = match page {
        0 | 1 => 0,
        p => (p - 1) * limit,
    };
    let reference = match (req.query("branch"), req.query("tag")) {
        (Some(b), _) if !b.is_empty() => Some(format!("refs/heads/{b}")),
        (_, Some(t)) if !t.is_empty() => Some(format!("refs/tags/{t}")),
        _ => None,
    };
    let st = inner.lock();
    let Some(repo) = st.repo(owner, name) else {
        return no_rows();
    };
    let mut items: Vec<&Build> = st
        .builds
        .iter()
        .map(|b| &b.build)
        .filter(|b| b.repo_id == repo.id)
        .filter(|b| reference.as_ref().is_none_or(|r| &b.reference == r))
        .collect();
    items.sort_by_key(|b| std::cmp::Reverse(b.id));
    // A negative offset (page < 0) is an SQL error in Drone; answer as its 500 would.
    if offset < 0 {
        return json_err(500, "pq: OFFSET must not be negative");
    }
    let page: Vec<Build> = items
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|b| {
            let mut b = b.clone();
            b.stages.clear();
            b
        })
        .collect();
    Response::json(200, &page)
}

/// `builds/latest.go` `HandleLast`.
fn latest(inner: &Inner, req: &Request, owner: &str, name: &str) -> Response {
    let st = inner.lock();
    let Some(repo) = st.repo(owner, name) else {
        return no_rows();
    };
    let mut reference = req
        .query("ref")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("refs/heads/{}", repo.branch));
    if let Some(b) = req.query("branch").filter(|b| !b.is_empty()) {
        reference = format!("refs/heads/{b}");
    }
    let found = st
        .builds
        .iter()
        .map(|b| &b.build)
        .filter(|b| b.repo_id == repo.id && b.reference == reference)
        .max_by_key(|b| b.id);
    match found {
        Some(b) => Response::json(200, &st.with_stages(b)),
        None => no_rows(),
    }
}

/// A `core.Hook` for the triggerer.
struct Hook {
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
fn query_map(req: &Request, skip: &[&str]) -> BTreeMap<String, String> {
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
fn create_build(
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

/// `builds/retry.go` `HandleRetry`.
fn retry(
    inner: &Arc<Inner>,
    req: &Request,
    user: &UserRec,
    owner: &str,
    name: &str,
    number: i64,
) -> Response {
    let (repo, prev) = {
        let st = inner.lock();
        let Some(repo) = st.repo(owner, name).cloned() else {
            return no_rows();
        };
        let Some(i) = st.build_idx(repo.id, number) else {
            return no_rows();
        };
        (repo, st.builds[i].build.clone())
    };
    match prev.status.as_str() {
        status::BLOCKED => return json_err(400, "cannot start a blocked build"),
        status::DECLINED => return json_err(400, "cannot start a declined build"),
        _ => {}
    }
    let mut params = query_map(req, &["access_token", "debug"]);
    // The old build's params win over the new query's.
    for (k, v) in &prev.params {
        params.insert(k.clone(), v.clone());
    }
    let hook = Hook {
        parent: prev.number,
        trigger: user.login.clone(),
        event: prev.event.clone(),
        action: prev.action.clone(),
        link: prev.link.clone(),
        message: prev.message.clone(),
        before: prev.before.clone(),
        after: prev.after.clone(),
        reference: prev.reference.clone(),
        source: prev.source.clone(),
        target: prev.target.clone(),
        author: prev.author_login.clone(),
        author_name: prev.author_name.clone(),
        author_email: prev.author_email.clone(),
        author_avatar: prev.author_avatar.clone(),
        sender: prev.sender.clone(),
        params,
        debug: req.query("debug") == Some("true"),
    };
    trigger_response(inner, &repo, hook)
}

fn trigger_response(inner: &Arc<Inner>, repo: &RepoRec, hook: Hook) -> Response {
    match trigger(inner, repo, hook) {
        Ok(Some(b)) => Response::json(200, &b),
        Ok(None) => Response::json(200, &serde_json::Value::Null),
        Err(e) => json_err(500, &format!("{e:#}")),
    }
}

/// `trigger/trigger.go` `Trigger`: the build, an error build, or `None` (no pipeline matched,
/// or the repo owner is inactive).
fn trigger(inner: &Arc<Inner>, repo: &RepoRec, hook: Hook) -> Result<Option<Build>> {
    let owner_active = inner
        .lock()
        .users
        .iter()
        .find(|u| u.id == repo.user_id)
        .map(|u| u.active)
        .unwrap_or(false);
    if !owner_active {
        return Ok(None);
    }
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

fn dependencies(
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

fn store_build(
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
fn cancel(inner: &Arc<Inner>, owner: &str, name: &str, number: i64) -> Response {
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

/// `queue.go` `withinLimits`: older incomplete stages of the same name and repo, and running
/// ones, count against `concurrency.limit`.
fn within_limits(stage: &Stage, all: &[Stage]) -> bool {
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
fn throttled(stage: &Stage, all: &[Stage]) -> bool {
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
fn dispatch(inner: &Arc<Inner>, st: &mut State) {
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
struct StageReporter {
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
fn teardown(st: &mut State, stage_id: i64, state: &StageState) {
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
fn deps_complete(st: &State, idx: &[usize], i: usize) -> bool {
    let deps = &st.stages[i].depends_on;
    idx.iter()
        .map(|&j| &st.stages[j])
        .filter(|s| deps.contains(&s.name))
        .all(|s| status::is_done(&s.status))
}

// ---------------------------------------------------------------------------------------
// Control surface

#[derive(Deserialize)]
struct NewUser {
    login: String,
    #[serde(default)]
    admin: bool,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    token: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct PermBody {
    login: String,
    #[serde(flatten)]
    perm: Perm,
}

#[derive(Deserialize)]
struct TimeoutBody {
    #[serde(default)]
    minutes: Option<i64>,
    /// Stand-in only (see [`Drone::set_standin_timeout_seconds`]); `null` clears it.
    #[serde(default)]
    standin_timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
struct BranchBody {
    branch: String,
    sha: String,
}

#[derive(Deserialize)]
struct ConfigBody {
    yaml: String,
}

#[derive(Deserialize)]
struct SecretBody {
    name: String,
    value: String,
}

fn control(inner: &Arc<Inner>, req: &Request, rest: &[&str]) -> Response {
    fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
        req.json::<T>()
            .map_err(|e| Response::text(400, &format!("bad control body: {e}")))
    }
    fn done(r: Result<()>) -> Response {
        match r {
            Ok(()) => Response::new(204),
            Err(e) => Response::text(400, &format!("{e:#}")),
        }
    }
    let m = req.method.as_str();
    let mut_repo = |owner: &str, name: &str, f: &mut dyn FnMut(&mut RepoRec)| -> Result<()> {
        let mut st = inner.lock();
        let r = st
            .repo_mut(owner, name)
            .ok_or_else(|| anyhow!("no repo {owner}/{name}"))?;
        f(r);
        Ok(())
    };
    match (m, rest) {
        ("POST", ["users"]) => match body::<NewUser>(req) {
            Ok(u) => match create_user(inner, &u.login, u.admin, u.active, u.token.as_deref()) {
                Ok(token) => {
                    Response::json(201, &serde_json::json!({"login": u.login, "token": token}))
                }
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
            Err(r) => r,
        },
        ("POST", ["users", login, "active"]) => match body::<serde_json::Value>(req) {
            Ok(v) => {
                let active = v.get("active").and_then(|a| a.as_bool()).unwrap_or(true);
                let mut st = inner.lock();
                match st.users.iter_mut().find(|u| u.login == *login) {
                    Some(u) => {
                        u.active = active;
                        Response::new(204)
                    }
                    None => Response::text(404, "no such user"),
                }
            }
            Err(r) => r,
        },
        ("POST", ["repos"]) => match body::<NewRepo>(req) {
            Ok(r) => match create_repo(inner, r) {
                Ok(j) => Response::json(201, &j),
                Err(e) => Response::text(400, &format!("{e:#}")),
            },
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "perms"]) => match body::<PermBody>(req) {
            Ok(p) => done(set_permission(inner, o, n, &p.login, p.perm)),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "timeout"]) => match body::<TimeoutBody>(req) {
            Ok(b) => done(mut_repo(o, n, &mut |r| {
                if let Some(m) = b.minutes {
                    r.timeout = m;
                }
                r.standin_timeout_seconds = b.standin_timeout_seconds;
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "branches"]) => match body::<BranchBody>(req) {
            Ok(b) => done(mut_repo(o, n, &mut |r| {
                r.branches.insert(b.branch.clone(), b.sha.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "commits"]) => match body::<Commit>(req) {
            Ok(c) => done(mut_repo(o, n, &mut |r| {
                r.commits.insert(c.sha.clone(), c.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "config"]) => match body::<ConfigBody>(req) {
            Ok(c) => done(mut_repo(o, n, &mut |r| {
                r.source = ConfigSource::Inline {
                    yaml: c.yaml.clone(),
                };
            })),
            Err(r) => r,
        },
        ("POST", ["repos", o, n, "secrets"]) => match body::<SecretBody>(req) {
            Ok(s) => done(mut_repo(o, n, &mut |r| {
                r.secrets.insert(s.name.clone(), s.value.clone());
            })),
            Err(r) => r,
        },
        ("POST", ["runner"]) => match body::<RunnerPatch>(req) {
            Ok(p) => {
                set_runner(inner, p);
                Response::new(204)
            }
            Err(r) => r,
        },
        ("GET", ["repos", o, n, "builds", num, "wait"]) => {
            let Ok(num) = num.parse::<i64>() else {
                return Response::text(400, "bad build number");
            };
            // Bounded: at most 10 minutes, default 60 s.
            let ms = req
                .query("timeout_ms")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(60_000)
                .min(600_000);
            let exists = {
                let st = inner.lock();
                st.repo(o, n)
                    .and_then(|r| st.build_idx(r.id, num))
                    .is_some()
            };
            if !exists {
                return Response::text(404, "no such build");
            }
            match wait_build(inner, o, n, num, Duration::from_millis(ms)) {
                Ok(b) => Response::json(200, &b),
                Err(e) => Response::text(408, &format!("{e:#}")),
            }
        }
        _ => Response::text(404, "no such stand-in control"),
    }
}
