//! The real upstream programs, where this machine's registries serve them (docs/fidelity.md):
//! found where `dev/upstream` installed them, started on 127.0.0.1 in a directory of their own,
//! and stopped (by the pid we started) when dropped.

pub mod drone;
pub mod gitea;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where `dev/upstream` put `program`: `$CCCI_REAL_<PROGRAM>` if set, else its cache default.
/// The error says how to install it, so a test that needs it fails with something to act on.
pub fn locate(program: &str, default_rel: &str) -> Result<PathBuf> {
    let var = format!("CCCI_REAL_{}", program.to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        let p = PathBuf::from(p);
        if p.exists() {
            return Ok(p);
        }
        bail!("${var} names {}, which does not exist", p.display());
    }
    let cache = match std::env::var_os("CCCI_UPSTREAM_DIR") {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(d) => PathBuf::from(d).join("cc-ci/upstream"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/cc-ci/upstream"),
        },
    };
    let p = cache.join(default_rel);
    if p.exists() {
        return Ok(p);
    }
    bail!(
        "the real {program} is not installed (looked for ${var}, then {}): run `dev/upstream {program}`",
        p.display()
    )
}

/// An agent for a real program's API: bounded, statuses as answers, no redirects followed.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// One API call to a real program (`program` names it in errors): `headers` (authorization
/// among them), a JSON body when given; the JSON answer (null when empty), or an error with
/// the status and what the program said.
pub(crate) fn call_json(
    program: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let a = agent();
    macro_rules! with_headers {
        ($b:expr) => {{
            let mut b = $b;
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b
        }};
    }
    let with_body = |b: ureq::RequestBuilder<ureq::typestate::WithBody>| match body {
        Some(v) => with_headers!(b).send_json(v),
        None => with_headers!(b).send_empty(),
    };
    let resp = match method {
        "GET" => with_headers!(a.get(url)).call(),
        "DELETE" => with_headers!(a.delete(url)).call(),
        "POST" => with_body(a.post(url)),
        "PATCH" => with_body(a.patch(url)),
        "PUT" => with_body(a.put(url)),
        _ => bail!("unsupported method {method}"),
    };
    let path = url.split_once("/api").map_or(url, |(_, p)| p);
    let mut resp = resp.with_context(|| format!("{method} {path} on the real {program}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if !(200..300).contains(&status) {
        bail!("{method} {path} on the real {program} answered {status}: {text}");
    }
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("binding a free port")?
        .local_addr()?
        .port())
}

/// A fresh directory for one run of a program, removed by [`Process`]'s drop.
pub fn scratch_dir(program: &str) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ccci-real-{program}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A program we started: SIGTERM, then SIGKILL after a grace period, on drop; its directory goes.
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Process {
    /// Spawns `cmd` with no stdin and its output appended to `dir/<name>.log`.
    pub fn spawn(name: &'static str, cmd: &mut Command, dir: PathBuf) -> Result<Process> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Process {
            name,
            child,
            dir,
            log,
        })
    }

    /// The last `n` lines of its log, for an error message.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `ready` until it is true, the process exits, or `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let end = Instant::now() + limit;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}):\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if Instant::now() >= end {
                bail!(
                    "{} did not answer within {limit:?}:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let pid = self.child.id();
        // The child is ours and not yet reaped, so its pid cannot name another process.
        if self.child.try_wait().ok().flatten().is_none() {
            terminate(pid);
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::env::var_os("CCCI_KEEP_UPSTREAM_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}
