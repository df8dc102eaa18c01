//! The stand-in swarm: what Docker Swarm keeps for abra (stacks with their services and
//! labels, volumes, secrets) plus backupbot's snapshot store, on disk under
//! `$STANDIN_SWARM_DIR` so it is shared by every `abra` invocation and every `$ABRA_DIR`, as the
//! host's one Docker daemon is. A lock file serialises changes between concurrent invocations.
//!
//! Layout: `state.json` (stacks → services with pid/port/state, labels), `volumes/<stack>_<vol>/`,
//! `secrets/<stack>_<secret>_<version>` (the value, mode 0600), `backups/<stack>/<snapshot>/`,
//! `logs/<stack>_<service>.log`, `faults` (fault knobs, one per line), `lock`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// How long an invocation waits for another to release the lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Docker's secret/config name rule and message. Mirrors moby/swarmkit
/// manager/controlapi/common.go validateConfigOrSecretAnnotations.
pub const SECRET_NAME_ERROR: &str = "Error response from daemon: rpc error: code = InvalidArgument desc = invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end character must be [a-zA-Z0-9]";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub stacks: BTreeMap<String, Stack>,
}

/// One deployed stack (`docker stack ls` entry).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stack {
    pub domain: String,
    pub server: String,
    pub recipe: String,
    /// Stack-level labels abra writes: `coop-cloud.<stack>.version`, `.chaos`, `.chaos-version`.
    pub labels: BTreeMap<String, String>,
    pub services: Vec<Service>,
    /// Remote names of the secrets the services use (docker refuses to remove them).
    pub secrets: Vec<String>,
    pub deployed_at_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Service {
    /// Short name as in compose (`app`); docker's name is `<stack>_<name>`.
    pub name: String,
    pub image: String,
    /// `running`, `starting` (never converged) or `failed`.
    pub state: String,
    pub pid: Option<u32>,
    /// `/proc/<pid>/stat` start time, so a recycled pid is never mistaken for ours.
    pub start_time: Option<u64>,
    pub port: Option<u16>,
    /// (volume remote name, container target path).
    pub mounts: Vec<(String, String)>,
    /// (secret remote name, container target path).
    pub secret_mounts: Vec<(String, String)>,
    pub env: BTreeMap<String, String>,
}

/// The swarm directory.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub dir: PathBuf,
}

/// Held while an invocation changes the swarm; removing the file releases it.
pub struct Lock {
    path: PathBuf,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Swarm {
    /// `$STANDIN_SWARM_DIR`, else `$HOME/.standin-swarm` (one per user, as one Docker daemon
    /// per host).
    pub fn from_env() -> Result<Swarm> {
        let dir = match std::env::var_os("STANDIN_SWARM_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .ok_or_else(|| anyhow!("neither STANDIN_SWARM_DIR nor HOME is set"))?;
                PathBuf::from(home).join(".standin-swarm")
            }
        };
        Swarm::open(&dir)
    }

    pub fn open(dir: &Path) -> Result<Swarm> {
        for sub in ["volumes", "secrets", "backups", "logs"] {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating swarm dir {}", dir.join(sub).display()))?;
        }
        Ok(Swarm {
            dir: dir.to_path_buf(),
        })
    }

    /// Takes the lock, breaking it if its holder died.
    pub fn lock(&self) -> Result<Lock> {
        let path = self.dir.join("lock");
        let start = Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    // An empty file is a holder between create and write: give it a moment.
                    if let Some(pid) = holder {
                        if !pid_alive(pid, None) {
                            let _ = fs::remove_file(&path);
                            continue;
                        }
                    }
                    if start.elapsed() > LOCK_WAIT {
                        bail!(
                            "swarm {} is locked by pid {:?} for over {}s",
                            self.dir.display(),
                            holder,
                            LOCK_WAIT.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating lock {}", path.display()))
                }
            }
        }
    }

    pub fn load(&self) -> Result<State> {
        let p = self.dir.join("state.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes atomically (temp file + rename) so a reader never sees half a state.
    pub fn save(&self, state: &State) -> Result<()> {
        let p = self.dir.join("state.json");
        let tmp = self.dir.join(format!("state.json.{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &p).with_context(|| format!("renaming to {}", p.display()))
    }

    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    /// Volumes whose names start with `<stack>_`.
    pub fn stack_volumes(&self, stack: &str) -> Result<Vec<String>> {
        let prefix = format!("{stack}_");
        let mut out = Vec::new();
        for e in fs::read_dir(self.dir.join("volumes")).context("listing volumes")? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn secret_path(&self, name: &str) -> PathBuf {
        self.dir.join("secrets").join(name)
    }

    pub fn secret_exists(&self, name: &str) -> bool {
        self.secret_path(name).is_file()
    }

    /// `docker secret create`: name rule, then "already exists" (swarmkit
    /// manager/controlapi/secret.go CreateSecret answers codes.AlreadyExists).
    pub fn create_secret(&self, name: &str, value: &[u8]) -> Result<()> {
        if !valid_secret_name(name) {
            bail!("{SECRET_NAME_ERROR}");
        }
        let p = self.secret_path(name);
        let mut f = match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                bail!("Error response from daemon: rpc error: code = AlreadyExists desc = secret {name} already exists")
            }
            Err(e) => return Err(e).with_context(|| format!("creating secret {name}")),
        };
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(fs::Permissions::from_mode(0o600));
        f.write_all(value)
            .with_context(|| format!("writing secret {name}"))
    }

    pub fn list_secrets(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.dir.join("secrets")).context("listing secrets")? {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    pub fn backups_dir(&self, stack: &str) -> PathBuf {
        self.dir.join("backups").join(stack)
    }

    pub fn log_path(&self, stack: &str, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{stack}_{service}.log"))
    }

    /// Active fault knobs: `$STANDIN_ABRA_FAULT` (comma-separated) plus the lines of the
    /// `faults` file in the swarm dir (so a test can flip them between stages).
    pub fn faults(&self) -> Vec<String> {
        let mut out: Vec<String> = std::env::var("STANDIN_ABRA_FAULT")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if let Ok(text) = fs::read_to_string(self.dir.join("faults")) {
            out.extend(
                text.lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty() && !l.starts_with('#')),
            );
        }
        out
    }

    pub fn fault(&self, name: &str) -> bool {
        self.faults().iter().any(|f| f == name)
    }
}

/// Mirrors swarmkit's `^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$` and the 64-char cap.
pub fn valid_secret_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses `/proc/<pid>/stat`: (state char, start time).
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn proc_start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Alive = exists, is not a zombie, and (if given) started when we recorded it.
pub fn pid_alive(pid: u32, start_time: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((state, t)) => state != 'Z' && state != 'X' && start_time.is_none_or(|s| s == t),
        None => false,
    }
}

/// SIGTERM, wait up to 5 s, then SIGKILL; only if the pid is still the process we started.
pub fn stop_process(pid: u32, start_time: Option<u64>) {
    if !pid_alive(pid, start_time) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !pid_alive(pid, start_time) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && pid_alive(pid, start_time) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops every service process recorded in a swarm dir and marks the stacks gone: the
/// teardown of last resort for tests and the local run. Needs no lock (used from Drop guards).
pub fn stop_all(dir: &Path) {
    let Ok(swarm) = Swarm::open(dir) else { return };
    let Ok(mut state) = swarm.load() else { return };
    for stack in state.stacks.values() {
        for svc in &stack.services {
            if let Some(pid) = svc.pid {
                stop_process(pid, svc.start_time);
            }
        }
    }
    state.stacks.clear();
    let _ = swarm.save(&state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_swarmkit() {
        assert!(valid_secret_name("example_wordpress_db_password_v1"));
        assert!(!valid_secret_name(&"a".repeat(65)));
        assert!(valid_secret_name(&"a".repeat(64)));
        assert!(!valid_secret_name("_x"));
        assert!(!valid_secret_name("x-"));
    }
}
