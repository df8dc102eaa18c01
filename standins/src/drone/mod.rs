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
//! `POST users`, `POST repos`, `POST repos/{o}/{n}/branches`, `POST repos/{o}/{n}/commits`,
//! `GET repos/{o}/{n}/builds/{b}/wait?timeout_ms=` (what the Python tests and the dashboard
//! bench use).

mod builds;
mod control;
pub mod model;
mod repos;
mod routes;
mod schedule;

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
use builds::*;
use control::*;
pub use model::{Build, RepoJson, Stage, Step, UserJson};
use repos::*;
use routes::*;
use schedule::*;

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
        create_user(&self.inner, login, admin, token)
    }

    pub fn create_repo(&self, repo: NewRepo) -> Result<RepoJson> {
        create_repo(&self.inner, repo)
    }

    pub fn set_permission(&self, owner: &str, name: &str, login: &str, perm: Perm) -> Result<()> {
        set_permission(&self.inner, owner, name, login, perm)
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
