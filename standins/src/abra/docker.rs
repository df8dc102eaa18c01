//! The real Docker engine, through the `docker` CLI (it honours `DOCKER_HOST`, as abra's
//! Docker client does). Every call is bounded; what the engine says on failure is passed on
//! word for word, as abra passes on the daemon's errors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Bound on one docker CLI call (a `stack deploy` of a large stack included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The daemon's message: stderr's last non-empty line (docker prints one per failure).
    pub fn said(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

/// What a call reads on stdin.
pub enum Input<'a> {
    Nothing,
    Bytes(&'a [u8]),
    File(File),
}

/// Runs `docker ARGS`, killing it past the bound. `env`, when given, is the whole
/// environment docker sees besides `PATH`, `HOME` and `DOCKER_*` (a deploy interpolates the
/// compose files from the app's env only, as abra does). `stdout_to` sends stdout to a file.
pub fn call_with(
    args: &[&str],
    input: Input,
    env: Option<&BTreeMap<String, String>>,
    stdout_to: Option<File>,
) -> Result<Out> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    if let Some(env) = env {
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let keep = k
                .to_str()
                .is_some_and(|k| k == "PATH" || k == "HOME" || k.starts_with("DOCKER_"));
            if keep {
                cmd.env(k, v);
            }
        }
        cmd.envs(env);
    }
    let (stdin, data) = match input {
        Input::Nothing => (Stdio::null(), None),
        Input::Bytes(b) => (Stdio::piped(), Some(b.to_vec())),
        Input::File(f) => (Stdio::from(f), None),
    };
    let to_file = stdout_to.is_some();
    let mut child = cmd
        .stdin(stdin)
        .stdout(stdout_to.map_or_else(Stdio::piped, Stdio::from))
        .stderr(Stdio::piped())
        .spawn()
        .context("running docker (is Debian's docker.io installed and DOCKER_HOST set?)")?;
    if let (Some(data), Some(mut pipe)) = (data, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let out_t = (!to_file)
        .then(|| child.stdout.take())
        .flatten()
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut b = Vec::new();
                let _ = p.read_to_end(&mut b);
                b
            })
        });
    let mut err_pipe = child.stderr.take().context("docker stderr")?;
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CALL_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "docker {} did not finish within {} s",
                args.first().copied().unwrap_or(""),
                CALL_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Out {
        code: status.code(),
        stdout: out_t
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
    })
}

pub fn call(args: &[&str]) -> Result<Out> {
    call_with(args, Input::Nothing, None, None)
}

/// Runs and requires success; the error is the daemon's own message.
pub fn ok(args: &[&str]) -> Result<String> {
    ok_in(args, Input::Nothing)
}

pub fn ok_in(args: &[&str], input: Input) -> Result<String> {
    let out = call_with(args, input, None, None)?;
    if !out.success() {
        bail!("{}", out.said());
    }
    Ok(out.text())
}

/// Non-empty output lines.
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

pub const NAMESPACE: &str = "com.docker.stack.namespace";

/// The parts of `docker service inspect` the stand-in reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub spec: ServiceSpec,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub task_template: TaskSpec,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskSpec {
    /// Kept whole: a task is up to date when its container spec equals the service's.
    #[serde(default)]
    pub container_spec: serde_json::Value,
    #[serde(default)]
    pub force_update: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mode {
    #[serde(default)]
    pub replicated: Option<Replicated>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Replicated {
    #[serde(default)]
    pub replicas: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    pub spec: TaskSpec,
    pub desired_state: String,
    pub status: TaskStatus,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    pub timestamp: String,
    pub state: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub err: String,
}

impl Service {
    /// The short name (`app` of `example_com_app`).
    pub fn short<'a>(&'a self, stack: &str) -> &'a str {
        self.spec
            .name
            .strip_prefix(stack)
            .and_then(|s| s.strip_prefix('_'))
            .unwrap_or(&self.spec.name)
    }

    /// One of the labels abra writes at deploy, `coop-cloud.<stack>.<key>`.
    pub fn abra_label(&self, stack: &str, key: &str) -> Option<String> {
        self.spec
            .labels
            .get(&format!("coop-cloud.{stack}.{key}"))
            .cloned()
    }

    /// Replicas wanted (a global service runs one task on this one node).
    pub fn desired(&self) -> u64 {
        self.spec
            .mode
            .replicated
            .as_ref()
            .map_or(1, |r| r.replicas.unwrap_or(1))
    }
}

/// The stack's services, by `com.docker.stack.namespace` label.
pub fn services(stack: &str) -> Result<Vec<Service>> {
    let ids = lines(&ok(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label={NAMESPACE}={stack}"),
    ])?);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["service", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let out = call(&args)?;
    // A service removed between the two calls: inspect the rest again next time.
    if !out.success() && !out.said().contains("no such service") {
        bail!("{}", out.said());
    }
    let mut v: Vec<Service> = serde_json::from_str(out.text().trim())
        .context("reading docker service inspect's output")?;
    v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(v)
}

/// Every task of a service still in the swarm's history, newest first.
pub fn tasks(service: &str) -> Result<Vec<Task>> {
    let ids = lines(&ok(&["service", "ps", "-q", "--no-trunc", service])?);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--type", "task"];
    args.extend(ids.iter().map(String::as_str));
    let out = call(&args)?;
    // A crash-looping service's old tasks are pruned from the history between the two calls:
    // docker prints the others and names the gone ones.
    if !out.success() && !out.said().contains("not found") {
        bail!("{}", out.said());
    }
    let text = out.text();
    let mut v: Vec<Task> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(text.trim()).context("reading docker inspect's task output")?
    };
    // RFC 3339 timestamps from one clock sort as strings.
    v.sort_by(|a, b| b.status.timestamp.cmp(&a.status.timestamp));
    Ok(v)
}

/// The newest running container of a stack service.
pub fn running_container(service: &str) -> Result<Option<String>> {
    Ok(lines(&ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--filter",
        "status=running",
    ])?)
    .into_iter()
    .next())
}

/// Names of one kind of object (`container`, `volume`, `network`, `config`) of a stack.
pub fn stack_objects(kind: &str, stack: &str) -> Result<Vec<String>> {
    let filter = format!("label={NAMESPACE}={stack}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-aq", "--filter", &filter],
        other => vec![other, "ls", "-q", "--filter", &filter],
    };
    Ok(lines(&ok(&args)?))
}
