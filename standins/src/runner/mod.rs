//! Stand-in drone-runner-exec: runs one stage of a build for real, on this machine, the way
//! drone-runners/drone-runner-exec v1.0.0-beta.10 does it, and reports back to the stand-in
//! Drone server through [`Reporter`] (in place of the runner's RPC client).
//!
//! Why it is kept beside the real runner (docs/fidelity.md): a stage timeout in seconds (the
//! real one is whole minutes), capacity and concurrency tests, and running in-process with the
//! stand-in Drone. `standins/tests/runner_fidelity.rs` checks it against the real runner.
//!
//! Mirrors, file by file:
//! - `runtime/runner.go` `Run`: no `${VAR}` substitution of the YAML (a pipeline that needs
//!   it is refused; see [`refuse_substitution`]), parse, look up the pipeline by stage name,
//!   compile, report the stage running with its step list (steps that can never run are not
//!   reported), per-stage timeout;
//! - `engine/compiler/compiler.go` `Compile`: workspace `<root>/drone-<random>/drone/src`,
//!   `HOME=<root>/drone-<random>/home/drone`, scripts under `opt/`, the environment
//!   (`environ.Combine(host PATH/USER, runner environ, params, proxy, system, repo, build,
//!   stage, link, git, HOME…)`, later maps win), run policies, serial or DAG; no clone step
//!   (a pipeline must disable it);
//! - `runtime/execer.go` `Exec`/`exec`: the root is removed after the stage whatever happened,
//!   step env re-applied at run time, exit code 78 skips the rest, cancel → `state.Cancel`;
//! - `engine/exec.go` `Run`: `/bin/sh -e <script>` with only the computed env, stdout and
//!   stderr into one writer, on cancel or timeout `Process.Kill()` — SIGKILL to the shell's PID
//!   only, no process group, no SIGTERM, and no waiting for the output pipe;
//! - drone/runner-go `pipeline/state.go` (step/stage state transitions, exit codes 137/255),
//!   `environ/environ.go`, `clone/*.go`, `shell/bash/bash.go`, `livelog/livelog.go`
//!   (lines split per write, 5 MB tail), `engine/replacer/replacer.go` (secret masking per write).

pub mod manifest;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use manifest::{EnvValue, MatchInput, Pipeline};

/// livelog `defaultLimit`: 5 MB of log per step; past it the oldest lines are dropped.
pub const LOG_LIMIT: usize = 5 * 1024 * 1024;
/// Exit code that passes a step and skips the rest (`runtime/execer.go`).
pub const EXIT_SKIP: i32 = 78;

/// The step and stage statuses of drone `core/status.go`.
pub mod status {
    pub const SKIPPED: &str = "skipped";
    pub const BLOCKED: &str = "blocked";
    pub const DECLINED: &str = "declined";
    pub const WAITING: &str = "waiting_on_dependencies";
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    pub const KILLED: &str = "killed";
    pub const ERROR: &str = "error";

    /// `IsDone`: false only for waiting, pending, running and blocked.
    pub fn is_done(s: &str) -> bool {
        !matches!(s, WAITING | PENDING | RUNNING | BLOCKED)
    }

    pub fn is_failed(s: &str) -> bool {
        matches!(s, FAILURE | KILLED | ERROR)
    }
}

/// One log line as Drone stores it (`core/logs.go` `Line`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub pos: i64,
    pub out: String,
    pub time: i64,
}

/// `drone.System`.
#[derive(Clone, Debug, Default)]
pub struct SystemVars {
    pub proto: String,
    pub host: String,
    pub version: String,
}

/// `drone.Repo`, as the runner receives it.
#[derive(Clone, Debug, Default)]
pub struct RepoVars {
    pub namespace: String,
    pub name: String,
    pub slug: String,
    pub scm: String,
    pub link: String,
    pub branch: String,
    pub http_url: String,
    pub ssh_url: String,
    pub visibility: String,
    pub private: bool,
}

/// `drone.Build`, as the runner receives it.
#[derive(Clone, Debug, Default)]
pub struct BuildVars {
    pub number: i64,
    pub parent: i64,
    pub event: String,
    pub action: String,
    pub status: String,
    pub link: String,
    pub message: String,
    pub before: String,
    pub after: String,
    pub reference: String,
    pub source: String,
    pub target: String,
    pub author: String,
    pub author_name: String,
    pub author_email: String,
    pub author_avatar: String,
    pub deploy: String,
    pub cron: String,
    pub created: i64,
    pub started: i64,
    pub finished: i64,
    pub params: BTreeMap<String, String>,
    /// Name and status of every stage of the build when the stage was handed out.
    pub stages: Vec<(String, String)>,
}

/// `drone.Stage`, as the runner receives it.
#[derive(Clone, Debug, Default)]
pub struct StageVars {
    pub kind: String,
    pub type_: String,
    pub name: String,
    pub number: i64,
    pub machine: String,
    pub os: String,
    pub arch: String,
    pub variant: String,
    pub depends_on: Vec<String>,
}

/// Everything one stage run needs (the runner's `Detail` answer plus its own settings).
#[derive(Clone, Debug)]
pub struct StageJob {
    pub config: String,
    pub system: SystemVars,
    pub repo: RepoVars,
    pub build: BuildVars,
    pub stage: StageVars,
    /// `DRONE_RUNNER_ENVIRON`.
    pub environ: BTreeMap<String, String>,
    /// Repo secrets by name, for `from_secret`.
    pub secrets: BTreeMap<String, String>,
    /// `DRONE_RUNNER_ROOT`; `None` = the system temp dir.
    pub root: Option<PathBuf>,
    /// The per-stage timeout (repo timeout).
    pub timeout: Duration,
    /// Set by the server when the build is cancelled (the runner's `Watch`).
    pub cancel: Arc<AtomicBool>,
}

/// A step as the runner tracks and reports it (`drone.Step`).
#[derive(Clone, Debug, Default)]
pub struct StepState {
    pub name: String,
    pub number: i64,
    pub status: String,
    pub exit_code: i64,
    pub error: String,
    pub errignore: bool,
    pub started: i64,
    pub stopped: i64,
    pub depends_on: Vec<String>,
    /// Optimistic-lock version, kept in step with the server by the [`Reporter`].
    pub version: i64,
}

/// The runner's copy of the stage (`pipeline.State`).
#[derive(Clone, Debug, Default)]
pub struct StageState {
    pub status: String,
    pub error: String,
    pub exit_code: i64,
    pub started: i64,
    pub stopped: i64,
    pub steps: Vec<StepState>,
    /// The build status as the runner sees it (set to failure when a step fails).
    pub build_status: String,
    /// The workspace root, for tests and logs.
    pub root: PathBuf,
}

/// How the runner talks back to the server (in place of runner-go's RPC client).
pub trait Reporter: Send + Sync {
    /// The stage starts executing with `state.steps` (`Client.Update` → manager `BeforeAll`).
    fn stage_started(&self, state: &mut StageState);
    /// Step `index` changed (`ReportStep`).
    fn step_updated(&self, state: &mut StageState, index: usize);
    /// The full log of step `index`, at step close (`livelog.Writer.Close` → `Upload`).
    fn upload(&self, state: &StageState, index: usize, lines: Vec<LogLine>);
    /// The stage is over (`ReportStage` → manager `AfterAll`).
    fn stage_finished(&self, state: &mut StageState);
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random alphanumeric string (uniuri's alphabet), seeded from the clock and a counter.
pub fn random_id(len: usize) -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (u64::from(std::process::id()) << 32);
    (0..len)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ALPHABET[(z % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Environment (drone/runner-go environ/environ.go, clone/environ.go, environ/proxy.go)

type Env = BTreeMap<String, String>;

fn combine(maps: &[&Env]) -> Env {
    let mut out = Env::new();
    for m in maps {
        for (k, v) in *m {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn env_of(pairs: &[(&str, String)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// `hostEnviron`: only PATH and USER come from the runner's own environment.
fn host_environ() -> Env {
    ["PATH", "USER"]
        .iter()
        .filter_map(|k| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| ((*k).to_owned(), v))
        })
        .collect()
}

/// `environ.Proxy`: the runner host's proxy settings, in both cases.
fn proxy_environ() -> Env {
    let mut out = Env::new();
    for name in ["no_proxy", "http_proxy", "https_proxy"] {
        let upper = name.to_uppercase();
        let value = std::env::var(&upper)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()));
        if let Some(v) = value {
            out.insert(name.to_owned(), v.clone());
            out.insert(upper, v);
        }
    }
    out
}

fn system_environ(s: &SystemVars) -> Env {
    env_of(&[
        ("CI", "true".into()),
        ("DRONE", "true".into()),
        ("DRONE_SYSTEM_PROTO", s.proto.clone()),
        ("DRONE_SYSTEM_HOST", s.host.clone()),
        ("DRONE_SYSTEM_HOSTNAME", s.host.clone()),
        ("DRONE_SYSTEM_VERSION", s.version.clone()),
    ])
}

fn repo_environ(r: &RepoVars) -> Env {
    env_of(&[
        ("DRONE_REPO", r.slug.clone()),
        ("DRONE_REPO_SCM", r.scm.clone()),
        ("DRONE_REPO_OWNER", r.namespace.clone()),
        ("DRONE_REPO_NAMESPACE", r.namespace.clone()),
        ("DRONE_REPO_NAME", r.name.clone()),
        ("DRONE_REPO_LINK", r.link.clone()),
        ("DRONE_REPO_BRANCH", r.branch.clone()),
        ("DRONE_REMOTE_URL", r.http_url.clone()),
        ("DRONE_GIT_HTTP_URL", r.http_url.clone()),
        ("DRONE_GIT_SSH_URL", r.ssh_url.clone()),
        ("DRONE_REPO_VISIBILITY", r.visibility.clone()),
        ("DRONE_REPO_PRIVATE", r.private.to_string()),
        ("CI_REPO", r.slug.clone()),
        ("CI_REPO_NAME", r.slug.clone()),
        ("CI_REPO_LINK", r.link.clone()),
        ("CI_REPO_REMOTE", r.http_url.clone()),
        ("CI_REMOTE_URL", r.http_url.clone()),
        ("CI_REPO_PRIVATE", r.private.to_string()),
    ])
}

fn build_environ(b: &BuildVars) -> Env {
    let mut env = env_of(&[
        ("DRONE_BRANCH", b.target.clone()),
        ("DRONE_SOURCE_BRANCH", b.source.clone()),
        ("DRONE_TARGET_BRANCH", b.target.clone()),
        ("DRONE_COMMIT", b.after.clone()),
        ("DRONE_COMMIT_SHA", b.after.clone()),
        ("DRONE_COMMIT_BEFORE", b.before.clone()),
        ("DRONE_COMMIT_AFTER", b.after.clone()),
        ("DRONE_COMMIT_REF", b.reference.clone()),
        ("DRONE_COMMIT_BRANCH", b.target.clone()),
        ("DRONE_COMMIT_LINK", b.link.clone()),
        ("DRONE_COMMIT_MESSAGE", b.message.clone()),
        ("DRONE_COMMIT_AUTHOR", b.author.clone()),
        ("DRONE_COMMIT_AUTHOR_EMAIL", b.author_email.clone()),
        ("DRONE_COMMIT_AUTHOR_AVATAR", b.author_avatar.clone()),
        ("DRONE_COMMIT_AUTHOR_NAME", b.author_name.clone()),
        ("DRONE_BUILD_NUMBER", b.number.to_string()),
        ("DRONE_BUILD_PARENT", b.parent.to_string()),
        ("DRONE_BUILD_EVENT", b.event.clone()),
        ("DRONE_BUILD_ACTION", b.action.clone()),
        ("DRONE_BUILD_STATUS", status::SUCCESS.into()),
        ("DRONE_BUILD_CREATED", b.created.to_string()),
        ("DRONE_BUILD_STARTED", b.started.to_string()),
        ("DRONE_BUILD_FINISHED", b.finished.to_string()),
        ("DRONE_DEPLOY_TO", b.deploy.clone()),
        ("CI_BUILD_NUMBER", b.number.to_string()),
        ("CI_PARENT_BUILD_NUMBER", b.parent.to_string()),
        ("CI_BUILD_CREATED", b.created.to_string()),
        ("CI_BUILD_STARTED", b.started.to_string()),
        ("CI_BUILD_FINISHED", b.finished.to_string()),
        ("CI_BUILD_STATUS", b.status.clone()),
        ("CI_BUILD_EVENT", b.event.clone()),
        ("CI_BUILD_LINK", b.link.clone()),
        ("CI_BUILD_TARGET", b.deploy.clone()),
        ("CI_COMMIT_SHA", b.after.clone()),
        ("CI_COMMIT_REF", b.reference.clone()),
        ("CI_COMMIT_BRANCH", b.target.clone()),
        ("CI_COMMIT_MESSAGE", b.message.clone()),
        ("CI_COMMIT_AUTHOR", b.author.clone()),
        ("CI_COMMIT_AUTHOR_NAME", b.author_name.clone()),
        ("CI_COMMIT_AUTHOR_EMAIL", b.author_email.clone()),
        ("CI_COMMIT_AUTHOR_AVATAR", b.author_avatar.clone()),
    ]);
    let failed: Vec<&str> = b
        .stages
        .iter()
        .filter(|(_, s)| status::is_failed(s))
        .map(|(n, _)| n.as_str())
        .collect();
    if status::is_failed(&b.status) || !failed.is_empty() {
        env.insert("DRONE_BUILD_STATUS".into(), status::FAILURE.into());
        env.insert("DRONE_FAILED_STAGES".into(), failed.join(","));
    }
    if b.started == 0 {
        env.insert("DRONE_BUILD_STARTED".into(), now().to_string());
    }
    if b.finished == 0 {
        env.insert("DRONE_BUILD_FINISHED".into(), now().to_string());
    }
    if b.event == "pull_request" {
        let digits: String = b
            .reference
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        env.insert("DRONE_PULL_REQUEST".into(), digits);
    }
    if let Some(tag) = b.reference.strip_prefix("refs/tags/") {
        env.insert("DRONE_TAG".into(), tag.to_owned());
    }
    env
}

fn stage_environ(s: &StageVars, state: Option<&StageState>) -> Env {
    let (started, stopped) = state.map(|st| (st.started, st.stopped)).unwrap_or((0, 0));
    let mut env = env_of(&[
        ("DRONE_STAGE_KIND", s.kind.clone()),
        ("DRONE_STAGE_TYPE", s.type_.clone()),
        ("DRONE_STAGE_NAME", s.name.clone()),
        ("DRONE_STAGE_NUMBER", s.number.to_string()),
        ("DRONE_STAGE_MACHINE", s.machine.clone()),
        ("DRONE_STAGE_OS", s.os.clone()),
        ("DRONE_STAGE_ARCH", s.arch.clone()),
        ("DRONE_STAGE_VARIANT", s.variant.clone()),
        ("DRONE_STAGE_STATUS", status::SUCCESS.into()),
        ("DRONE_STAGE_STARTED", started.to_string()),
        ("DRONE_STAGE_FINISHED", stopped.to_string()),
        ("DRONE_STAGE_DEPENDS_ON", s.depends_on.join(",")),
    ]);
    if let Some(st) = state {
        let failed: Vec<&str> = st
            .steps
            .iter()
            .filter(|v| !(v.errignore && v.status == status::FAILURE))
            .filter(|v| status::is_failed(&v.status))
            .map(|v| v.name.as_str())
            .collect();
        if status::is_failed(&st.status) || !failed.is_empty() {
            env.insert("DRONE_STAGE_STATUS".into(), status::FAILURE.into());
            env.insert("DRONE_FAILED_STEPS".into(), failed.join(","));
        }
    }
    if started == 0 {
        env.insert("DRONE_STAGE_STARTED".into(), now().to_string());
    }
    if stopped == 0 {
        env.insert("DRONE_STAGE_FINISHED".into(), now().to_string());
    }
    env
}

/// `DRONE_BUILD_LINK` = `<proto>://<host>/<slug>/<number>` (not the build JSON's commit link).
fn link_environ(s: &SystemVars, r: &RepoVars, b: &BuildVars) -> Env {
    env_of(&[(
        "DRONE_BUILD_LINK",
        format!("{}://{}/{}/{}", s.proto, s.host, r.slug, b.number),
    )])
}

fn git_environ(b: &BuildVars) -> Env {
    let name = if b.author_name.is_empty() {
        "drone".to_owned()
    } else {
        b.author_name.clone()
    };
    let email = if b.author_email.is_empty() {
        "noreply@drone".to_owned()
    } else {
        b.author_email.clone()
    };
    env_of(&[
        ("GIT_AUTHOR_NAME", name.clone()),
        ("GIT_AUTHOR_EMAIL", email.clone()),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
        ("GIT_TERMINAL_PROMPT", "0".into()),
    ])
}

/// The real runner passes the whole YAML through drone/envsubst first (`${NAME}`, its
/// operators, `$$` for a dollar). No pipeline cc-ci runs on the stand-in uses either, so the
/// stand-in does not implement them: it refuses such a pipeline rather than run it unsubstituted,
/// and a pipeline that needs them is tested against the real runner.
pub fn refuse_substitution(config: &str) -> Result<(), String> {
    match ["${", "$$"].iter().find(|p| config.contains(**p)) {
        Some(p) => Err(format!(
            "stand-in runner: the pipeline uses `{p}`, which only the real runner substitutes"
        )),
        None => Ok(()),
    }
}

/// Go's `%q` for a string (enough of it for the step scripts).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// runner-go `shell/bash` `Script`: `set -e`, then `echo + "<cmd>"` and the command.
pub fn shell_script(commands: &[String]) -> String {
    let mut s = String::from("\nset -e\n");
    for c in commands {
        let escaped = go_quote(c).replace('$', "\\$");
        s.push_str(&format!("\necho + {escaped}\n{c}\n"));
    }
    s
}

/// gosimple/slug-ish: lower-case, non-alphanumerics become `-`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// `os.Expand` with the runner host's environment, as `environ.Expand` does for PATH.
fn expand_host(s: &str) -> String {
    let mut out = String::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '$' && i + 1 < c.len() {
            if c[i + 1] == '{' {
                if let Some(end) = c[i + 2..].iter().position(|x| *x == '}') {
                    let name: String = c[i + 2..i + 2 + end].iter().collect();
                    out.push_str(&std::env::var(&name).unwrap_or_default());
                    i += end + 3;
                    continue;
                }
            } else {
                let name: String = c[i + 1..]
                    .iter()
                    .take_while(|x| x.is_alphanumeric() || **x == '_')
                    .collect();
                if !name.is_empty() {
                    out.push_str(&std::env::var(&name).unwrap_or_default());
                    i += 1 + name.chars().count();
                    continue;
                }
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------
// Compile (engine/compiler/compiler.go)

#[derive(Clone, Copy, Debug, PartialEq)]
enum RunPolicy {
    OnSuccess,
    OnFailure,
    Always,
    Never,
}

#[derive(Clone, Debug)]
struct CompiledStep {
    name: String,
    script: PathBuf,
    script_text: String,
    envs: Env,
    secrets: Vec<(String, String, String)>, // (env name, secret name, value)
    depends_on: Vec<String>,
    policy: RunPolicy,
    errignore: bool,
    detach: bool,
}

struct Spec {
    root: PathBuf,
    home: PathBuf,
    src: PathBuf,
    steps: Vec<CompiledStep>,
}

fn compile(job: &StageJob, p: &Pipeline) -> Spec {
    let base = job.root.clone().unwrap_or_else(std::env::temp_dir);
    let root = base.join(format!("drone-{}", random_id(16)));
    let home = root.join("home").join("drone");
    let src = root.join("drone").join("src");
    let home_s = home.to_string_lossy().into_owned();
    let src_s = src.to_string_lossy().into_owned();
    let envs = combine(&[
        &host_environ(),
        &job.environ,
        &job.build.params,
        &proxy_environ(),
        &system_environ(&job.system),
        &repo_environ(&job.repo),
        &build_environ(&job.build),
        &stage_environ(&job.stage, None),
        &link_environ(&job.system, &job.repo, &job.build),
        &git_environ(&job.build),
        &env_of(&[
            ("HOME", home_s.clone()),
            ("HOMEPATH", home_s.clone()),
            ("USERPROFILE", home_s),
            ("DRONE_HOME", src_s.clone()),
            ("DRONE_WORKSPACE", src_s),
            ("GIT_TERMINAL_PROMPT", "0".into()),
        ]),
    ]);
    let mut steps = Vec::new();
    let m = MatchInput {
        action: &job.build.action,
        branch: &job.build.target,
        cron: &job.build.cron,
        event: &job.build.event,
        instance: &job.system.host,
        reference: &job.build.reference,
        repo: &job.repo.slug,
        target: &job.build.deploy,
    };
    for s in &p.steps {
        let mut plain = Env::new();
        let mut secrets = Vec::new();
        for (k, v) in &s.environment {
            match v {
                EnvValue::Plain(v) => {
                    plain.insert(k.clone(), v.clone());
                }
                EnvValue::Secret(name) => {
                    if let Some(value) = job.secrets.get(name) {
                        secrets.push((k.clone(), name.clone(), value.clone()));
                    }
                }
            }
        }
        if let Some(path) = plain.get("PATH").filter(|p| !p.is_empty()).cloned() {
            plain.insert("PATH".into(), expand_host(&path));
        }
        let status = &s.when.status;
        let policy = if !s.when.matches(&m) {
            RunPolicy::Never
        } else if !status.is_empty()
            && status.matches(status::FAILURE)
            && status.matches(status::SUCCESS)
        {
            RunPolicy::Always
        } else if !status.is_empty() && status.matches(status::FAILURE) {
            RunPolicy::OnFailure
        } else {
            RunPolicy::OnSuccess
        };
        steps.push(CompiledStep {
            name: s.name.clone(),
            script: root.join("opt").join(slug(&s.name)),
            script_text: shell_script(&s.commands),
            envs: combine(&[&envs, &plain]),
            secrets,
            depends_on: s.depends_on.clone(),
            policy,
            errignore: s.failure.eq_ignore_ascii_case("ignore"),
            detach: s.detach,
        });
    }
    // Serial unless some step names a dependency (engine/compiler/util.go).
    let graph = steps.iter().any(|s| !s.depends_on.is_empty());
    if !graph {
        for i in 1..steps.len() {
            steps[i].depends_on = vec![steps[i - 1].name.clone()];
        }
    } else if !steps.iter().any(|s| s.name == "clone") {
        for s in steps.iter_mut() {
            if s.depends_on.len() == 1 && s.depends_on[0] == "clone" {
                s.depends_on.clear();
            }
        }
    }
    Spec {
        root,
        home,
        src,
        steps,
    }
}

fn setup(spec: &Spec) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::create_dir_all(&spec.root)?;
    for d in [&spec.home, &spec.src, &spec.root.join("opt")] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)?;
    }
    for s in &spec.steps {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&s.script)?;
        std::io::Write::write_all(&mut f, s.script_text.as_bytes())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// State transitions (drone/runner-go pipeline/state.go)

fn skip_step(v: &mut StepState) {
    if v.status == status::PENDING {
        let t = now();
        v.started = t;
        v.stopped = t;
        v.status = status::SKIPPED.into();
        v.exit_code = 0;
        v.error.clear();
    }
}

fn state_update(s: &mut StageState) {
    for v in &s.steps {
        match v.status.as_str() {
            status::KILLED => {
                s.exit_code = 137;
                s.status = status::KILLED.into();
                s.build_status = status::KILLED.into();
                return;
            }
            status::ERROR => {
                s.error = v.error.clone();
                s.exit_code = 255;
                s.status = status::ERROR.into();
                s.build_status = status::ERROR.into();
                return;
            }
            status::FAILURE if !v.errignore => {
                s.status = status::FAILURE.into();
                s.build_status = status::FAILURE.into();
                return;
            }
            _ => {}
        }
    }
}

fn state_cancel(s: &mut StageState) {
    for v in s.steps.iter_mut() {
        skip_step(v);
    }
    let t = now();
    s.error.clear();
    s.exit_code = 0;
    s.status = status::KILLED.into();
    s.stopped = t;
    if s.started == 0 {
        s.started = t;
    }
    for v in s.steps.iter_mut() {
        if v.status == status::RUNNING {
            v.status = status::KILLED.into();
            v.stopped = t;
            v.exit_code = 137;
            v.error.clear();
            if v.started == 0 {
                v.started = t;
            }
        }
    }
    state_update(s);
}

fn state_failed(s: &StageState) -> bool {
    if status::is_failed(&s.status) {
        return true;
    }
    s.steps
        .iter()
        .any(|v| !v.errignore && status::is_failed(&v.status))
}

fn state_finished(s: &StageState) -> bool {
    !s.steps
        .iter()
        .any(|v| v.status == status::RUNNING || v.status == status::PENDING)
}

fn state_skipped(s: &StageState) -> bool {
    state_finished(s) && s.steps.iter().any(|v| v.status == status::SKIPPED)
}

fn finish_step(v: &mut StepState, code: i64) {
    if v.status != status::RUNNING && v.status != status::PENDING {
        return;
    }
    v.exit_code = code;
    v.stopped = now();
    if v.started == 0 {
        v.started = v.stopped;
    }
    v.status = if code == 0 || code == i64::from(EXIT_SKIP) {
        status::SUCCESS.into()
    } else {
        status::FAILURE.into()
    };
}

fn fail_all(s: &mut StageState, err: &str) {
    if s.status == status::PENDING || s.status == status::RUNNING {
        let t = now();
        s.status = status::ERROR.into();
        s.error = err.to_owned();
        s.stopped = t;
        s.exit_code = 255;
        if s.started == 0 {
            s.started = t;
        }
    }
    for v in s.steps.iter_mut() {
        skip_step(v);
    }
    state_update(s);
}

fn finish_all(s: &mut StageState) {
    for v in s.steps.iter_mut() {
        if v.status == status::PENDING {
            skip_step(v);
        } else if v.status == status::RUNNING {
            finish_step(v, 0);
        }
    }
    let t = now();
    if s.status == status::RUNNING || s.status == status::PENDING {
        s.stopped = t;
        s.status = status::SUCCESS.into();
        if s.started == 0 {
            s.started = t;
        }
        if state_failed(s) {
            s.status = status::FAILURE.into();
        }
    } else {
        if s.started == 0 {
            s.started = t;
        }
        if s.stopped == 0 {
            s.stopped = t;
        }
    }
    state_update(s);
}

// ---------------------------------------------------------------------------------------
// Running a stage

struct Run<'a> {
    job: &'a StageJob,
    spec: &'a Spec,
    state: Mutex<StageState>,
    reporter: &'a dyn Reporter,
    deadline: Instant,
    /// Set when the stage is over, to stop detached steps (`defer cancel()` in `Run`).
    stage_over: Arc<AtomicBool>,
}

impl Run<'_> {
    fn cancelled(&self) -> bool {
        self.job.cancel.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }
}

/// The stage's pipeline, or why the stage fails before any step: a YAML or lint error, no
/// pipeline of that name, or what the stand-in does not implement.
fn runnable_pipeline(job: &StageJob) -> Result<Pipeline, String> {
    refuse_substitution(&job.config)?;
    let manifest = manifest::parse(&job.config)?;
    manifest::lint_exec(&manifest)?;
    let pipeline = manifest::lookup_exec(&manifest, &job.stage.name)?.clone();
    if !pipeline.clone_disable {
        return Err(
            "stand-in runner: the clone step is not implemented; set `clone: disable: \
                    true` (cc-ci's pipelines do) or test against the real runner"
                .into(),
        );
    }
    Ok(pipeline)
}

/// Runs one stage to the end and reports it. Blocks; the server calls it on a runner thread.
pub fn run_stage(job: StageJob, reporter: &dyn Reporter) {
    let started_at = Instant::now();
    let mut state = StageState {
        status: status::PENDING.into(),
        build_status: job.build.status.clone(),
        ..StageState::default()
    };
    let pipeline = match runnable_pipeline(&job) {
        Ok(p) => p,
        Err(e) => {
            fail_all(&mut state, &e);
            reporter.stage_finished(&mut state);
            return;
        }
    };
    let spec = compile(&job, &pipeline);
    state.root = spec.root.clone();
    for s in spec.steps.iter().filter(|s| s.policy != RunPolicy::Never) {
        let number = state.steps.len() as i64 + 1;
        state.steps.push(StepState {
            name: s.name.clone(),
            number,
            status: status::PENDING.into(),
            errignore: s.errignore,
            depends_on: Vec::new(),
            ..StepState::default()
        });
    }
    state.started = now();
    state.status = status::RUNNING.into();
    reporter.stage_started(&mut state);

    let run = Run {
        job: &job,
        spec: &spec,
        state: Mutex::new(state),
        reporter,
        deadline: started_at + job.timeout,
        stage_over: Arc::new(AtomicBool::new(false)),
    };
    exec(&run);
    run.stage_over.store(true, Ordering::SeqCst);
    // `defer e.engine.Destroy`: the workspace goes whatever happened.
    let _ = std::fs::remove_dir_all(&spec.root);
    let mut state = run.state.into_inner().unwrap_or_else(|p| p.into_inner());
    reporter.stage_finished(&mut state);
}

/// `execer.Exec`: setup, the step DAG, `FinishAll`.
fn exec(run: &Run) {
    if let Err(e) = setup(run.spec) {
        let mut st = run.state.lock().unwrap_or_else(|p| p.into_inner());
        fail_all(&mut st, &e.to_string());
        return;
    }
    let names: Vec<&str> = run.spec.steps.iter().map(|s| s.name.as_str()).collect();
    let done: (Mutex<HashSet<String>>, Condvar) = (Mutex::new(HashSet::new()), Condvar::new());
    thread::scope(|scope| {
        for step in &run.spec.steps {
            let done = &done;
            let names = &names;
            scope.spawn(move || {
                // Wait for the dependencies that exist (edges to unknown steps are dropped).
                let deps: Vec<&String> = step
                    .depends_on
                    .iter()
                    .filter(|d| names.contains(&d.as_str()))
                    .collect();
                let mut finished = done.0.lock().unwrap_or_else(|p| p.into_inner());
                while !deps.iter().all(|d| finished.contains(*d)) {
                    finished = done.1.wait(finished).unwrap_or_else(|p| p.into_inner());
                }
                drop(finished);
                exec_step(run, step);
                done.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(step.name.clone());
                done.1.notify_all();
            });
        }
    });
    let mut st = run.state.lock().unwrap_or_else(|p| p.into_inner());
    finish_all(&mut st);
}

fn step_index(st: &StageState, name: &str) -> Option<usize> {
    st.steps.iter().position(|s| s.name == name)
}

/// `execer.exec` for one step.
fn exec_step(run: &Run, step: &CompiledStep) {
    let mut st = run.state.lock().unwrap_or_else(|p| p.into_inner());
    if run.cancelled() {
        state_cancel(&mut st);
        return;
    }
    if state_skipped(&st) || st.status == status::KILLED || step.policy == RunPolicy::Never {
        return;
    }
    let Some(idx) = step_index(&st, &step.name) else {
        return;
    };
    let failed = state_failed(&st);
    let skip = match step.policy {
        RunPolicy::OnFailure => !failed,
        RunPolicy::OnSuccess => failed,
        _ => false,
    };
    if skip {
        skip_step(&mut st.steps[idx]);
        state_update(&mut st);
        run.reporter.step_updated(&mut st, idx);
        return;
    }
    {
        let v = &mut st.steps[idx];
        if v.status == status::PENDING {
            v.status = status::RUNNING.into();
            v.started = now();
            v.stopped = 0;
            v.exit_code = 0;
            v.error.clear();
        }
    }
    run.reporter.step_updated(&mut st, idx);
    // Step vars are re-applied at run time from the current state.
    let mut build = run.job.build.clone();
    build.status = st.build_status.clone();
    let mut envs = combine(&[
        &step.envs,
        &build_environ(&build),
        &stage_environ(&run.job.stage, Some(&st)),
    ]);
    envs.insert("DRONE_STEP_NAME".into(), st.steps[idx].name.clone());
    envs.insert("DRONE_STEP_NUMBER".into(), st.steps[idx].number.to_string());
    drop(st);

    let log = Arc::new(Mutex::new(LogBuffer::new(
        step.secrets
            .iter()
            .map(|(_, n, v)| (n.clone(), v.clone()))
            .collect(),
    )));
    if step.detach {
        let log2 = log.clone();
        let over = run.stage_over.clone();
        let cancel = run.job.cancel.clone();
        let deadline = run.deadline;
        let (script, src) = (step.script.clone(), run.spec.src.clone());
        let secrets = step.secrets.clone();
        // Detached steps are not waited for; they stop with the stage. Their log is lost
        // with the stage here (the real runner's upload races the stage teardown too).
        thread::spawn(move || {
            let stop = || {
                over.load(Ordering::SeqCst)
                    || cancel.load(Ordering::SeqCst)
                    || Instant::now() >= deadline
            };
            let _ = run_process(&script, &src, &envs, &secrets, &log2, &stop);
        });
        return;
    }
    let stop = || run.cancelled();
    let outcome = run_process(
        &step.script,
        &run.spec.src,
        &envs,
        &step.secrets,
        &log,
        &stop,
    );
    // `wc.Close()`: the log is uploaded before the step's final state is reported.
    let lines = log.lock().unwrap_or_else(|p| p.into_inner()).lines();
    let mut st = run.state.lock().unwrap_or_else(|p| p.into_inner());
    run.reporter.upload(&st, idx, lines);
    match outcome {
        Outcome::Exited(code) => {
            finish_step(&mut st.steps[idx], i64::from(code));
            state_update(&mut st);
            run.reporter.step_updated(&mut st, idx);
            if code == EXIT_SKIP {
                for v in st.steps.iter_mut() {
                    skip_step(v);
                }
                state_update(&mut st);
            }
        }
        Outcome::Cancelled => state_cancel(&mut st),
        Outcome::StartError(e) => {
            let t = now();
            let v = &mut st.steps[idx];
            v.status = status::ERROR.into();
            v.error = e;
            v.exit_code = 255;
            v.stopped = t;
            if v.started == 0 {
                v.started = t;
            }
            state_update(&mut st);
            run.reporter.step_updated(&mut st, idx);
        }
    }
}

enum Outcome {
    Exited(i32),
    Cancelled,
    StartError(String),
}

/// livelog's buffer: lines split per write, the 5 MB tail, secret masking per write.
struct LogBuffer {
    started: Instant,
    num: i64,
    size: usize,
    history: std::collections::VecDeque<LogLine>,
    masks: Vec<(String, String)>,
}

impl LogBuffer {
    fn new(secrets: Vec<(String, String)>) -> LogBuffer {
        LogBuffer {
            started: Instant::now(),
            num: 0,
            size: 0,
            history: Default::default(),
            masks: secrets
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(n, v)| (v, format!("[secret:{}]", n.to_lowercase())))
                .collect(),
        }
    }

    fn write(&mut self, chunk: &[u8]) {
        let mut s = String::from_utf8_lossy(chunk).into_owned();
        for (value, masked) in &self.masks {
            s = s.replace(value.as_str(), masked);
        }
        // livelog `split`: one line unless the text holds an inner newline, then SplitAfter
        // (which leaves an empty last part when the write ends with a newline).
        let parts: Vec<String> = if s.strip_suffix('\n').unwrap_or(&s).contains('\n') {
            let tail = s.ends_with('\n').then(String::new);
            s.split_inclusive('\n')
                .map(str::to_owned)
                .chain(tail)
                .collect()
        } else {
            vec![s.clone()]
        };
        for part in parts {
            while self.size + s.len() > LOG_LIMIT {
                match self.history.pop_front() {
                    Some(old) => self.size -= old.out.len(),
                    None => break,
                }
            }
            self.size += part.len();
            self.history.push_back(LogLine {
                pos: self.num,
                out: part,
                time: self.started.elapsed().as_secs() as i64,
            });
            self.num += 1;
        }
    }

    fn lines(&self) -> Vec<LogLine> {
        self.history.iter().cloned().collect()
    }
}

/// `engine.Run`: `/bin/sh -e <script>` with only `envs`; stdout and stderr into one pipe read
/// to EOF (so a background child holding the pipe keeps the step running, golang/go#23019);
/// when `stop` turns true, SIGKILL to the shell's PID and return at once.
fn run_process(
    script: &Path,
    dir: &Path,
    envs: &Env,
    secrets: &[(String, String, String)],
    log: &Arc<Mutex<LogBuffer>>,
    stop: &dyn Fn() -> bool,
) -> Outcome {
    // `exec` keeps one process: the PID we hold is the `/bin/sh -e <script>` itself, and
    // `2>&1` gives stderr the same pipe as stdout, as Go does for one shared writer.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("exec /bin/sh -e \"$0\" 2>&1")
        .arg(script)
        .env_clear()
        .envs(envs)
        .envs(secrets.iter().map(|(k, _, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::StartError(e.to_string()),
    };
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Outcome::StartError("no stdout pipe".into());
    };
    let (tx, rx) = mpsc::channel::<()>();
    let reader_log = log.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reader_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write(&buf[..n]),
            }
        }
        let _ = tx.send(());
    });
    let mut exit: Option<i32> = None;
    let mut eof = false;
    loop {
        if stop() {
            // The runner's only signal: SIGKILL to the shell. Grandchildren live on.
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Cancelled;
        }
        if exit.is_none() {
            match child.try_wait() {
                Ok(Some(st)) => exit = Some(st.code().unwrap_or(-1)),
                Ok(None) => {}
                Err(e) => return Outcome::StartError(e.to_string()),
            }
        }
        if !eof {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        } else {
            thread::sleep(Duration::from_millis(20));
        }
        if let (Some(code), true) = (exit, eof) {
            return Outcome::Exited(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_matches_runner_go_bash() {
        let s = shell_script(&["echo $HOME \"x\"".to_owned()]);
        assert_eq!(
            s,
            "\nset -e\n\necho + \"echo \\$HOME \\\"x\\\"\"\necho $HOME \"x\"\n"
        );
    }

    #[test]
    fn braces_and_double_dollars_are_refused_plain_dollars_pass() {
        assert!(refuse_substitution("commands:\n- echo \"$CCCI_CONFIG\"\n").is_ok());
        for bad in ["- echo ${DRONE_BUILD_NUMBER}", "- echo $$HOME"] {
            let e = refuse_substitution(bad).unwrap_err();
            assert!(e.contains("only the real runner"), "{e}");
        }
    }

    #[test]
    fn log_lines_split_per_write() {
        let mut b = LogBuffer::new(vec![("tok".into(), "s3cr3t".into())]);
        b.write(b"one\n");
        b.write(b"two\nthree s3cr3t\n");
        let l = b.lines();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].out, "one\n");
        assert_eq!(l[2].out, "three [secret:tok]\n");
        assert_eq!(l[3].out, "");
        assert_eq!(l[3].pos, 3);
    }
}
