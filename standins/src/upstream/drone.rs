//! The real Drone server (`github.com/drone/drone` v1.10.1, `nolimit`: the edition that serves
//! remote runners, as the drone recipe's image does; the `oss` build has no runner RPC) with
//! SQLite and the real Gitea as its forge, and the real `drone-runner-exec` polling it.
//!
//! Drone learns a user's forge token only through an OAuth login in a browser. Here the bot
//! account is made by `DRONE_USER_CREATE` and its forge token (a Gitea access token, which
//! Gitea takes as a Bearer token too) is written into Drone's `users` table, with no refresh
//! token, so Drone never tries to renew it (service/token/renew.go). Everything after that —
//! repository sync, activation (which adds Drone's webhook to Gitea), builds, the runner — is
//! Drone's own doing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{agent, free_port, locate, scratch_dir, Process};

pub const DRONE_REL: &str = "drone-server-v1.10.1/drone-server";
pub const RUNNER_REL: &str = "drone-runner-exec-v1.0.0-beta.10/drone-runner-exec";

pub struct RealDrone {
    proc: Process,
    port: u16,
    /// The bot's Drone API token.
    pub token: String,
    rpc_secret: String,
}

impl RealDrone {
    /// Starts Drone for the forge at `gitea_url`, with `bot` (its Gitea token `gitea_token`)
    /// as Drone's admin, and activates `repos` (`owner/name`, which the bot must administer).
    pub fn start(
        gitea_url: &str,
        bot: &str,
        gitea_token: &str,
        repos: &[&str],
    ) -> Result<RealDrone> {
        let bin = locate("drone-server", DRONE_REL)?;
        let dir = scratch_dir("drone")?;
        let port = free_port()?;
        let token = crate::gitea::digest::token();
        let rpc_secret = crate::gitea::digest::token();
        let db = dir.join("drone.sqlite");
        let proc = Process::spawn(
            "drone-server",
            Command::new(&bin)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("DRONE_GITEA_SERVER", gitea_url)
                // Only the browser login uses the OAuth client; nothing here logs in.
                .env("DRONE_GITEA_CLIENT_ID", "unused")
                .env("DRONE_GITEA_CLIENT_SECRET", "unused")
                .env("DRONE_RPC_SECRET", &rpc_secret)
                .env("DRONE_SERVER_HOST", format!("127.0.0.1:{port}"))
                .env("DRONE_SERVER_PROTO", "http")
                .env("DRONE_SERVER_PORT", format!("127.0.0.1:{port}"))
                .env("DRONE_DATABASE_DRIVER", "sqlite3")
                .env("DRONE_DATABASE_DATASOURCE", &db)
                .env(
                    "DRONE_USER_CREATE",
                    format!("username:{bot},admin:true,token:{token}"),
                )
                .env("DRONE_CRON_DISABLED", "true"),
            dir,
        )?;
        let mut d = RealDrone {
            proc,
            port,
            token,
            rpc_secret,
        };
        let health = format!("{}/healthz", d.url());
        let agent = agent();
        d.proc.wait_ready(Duration::from_secs(30), || {
            agent.get(&health).call().is_ok_and(|r| r.status() == 200)
        })?;
        d.set_forge_token(&db, bot, gitea_token)?;
        d.call("POST", "/api/user/repos?async=false")?;
        for r in repos {
            d.call("POST", &format!("/api/repos/{r}"))
                .with_context(|| format!("activating {r} in Drone"))?;
        }
        Ok(d)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    fn set_forge_token(&self, db: &Path, bot: &str, gitea_token: &str) -> Result<()> {
        // Both values are ours (a login and 40 hex characters): no quoting to get wrong.
        if !bot
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || !gitea_token.chars().all(|c| c.is_ascii_hexdigit())
        {
            bail!("unexpected characters in the bot login or token");
        }
        let sql = format!(
            "UPDATE users SET user_oauth_token = '{gitea_token}', user_oauth_refresh = '', \
             user_oauth_expiry = 0 WHERE user_login = '{bot}';"
        );
        let out = Command::new("sqlite3")
            .arg(db)
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .context("running sqlite3 (Debian's sqlite3; dev/setup installs it)")?;
        if !out.status.success() {
            bail!(
                "writing the bot's forge token into Drone's database: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A bodiless call as the bot; the answer's JSON.
    pub fn call(&self, method: &str, path: &str) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.url());
        let auth = format!("Bearer {}", self.token);
        super::call_json("Drone", method, &url, &[("Authorization", &auth)], None)
    }

    /// Starts a real exec runner polling this Drone. `path` is the PATH its steps get
    /// (the runner hands them only PATH and USER from its own environment); `environ` is
    /// `DRONE_RUNNER_ENVIRON`, what every step gets besides.
    pub fn start_runner(
        &self,
        capacity: usize,
        path: &str,
        environ: &BTreeMap<String, String>,
    ) -> Result<RealRunner> {
        RealRunner::start(self, crate::local::RUNNER_1, capacity, path, environ)
    }

    /// [`RealDrone::start_runner`] as `DRONE_RUNNER_NAME` `name`: another runner host.
    pub fn start_runner_named(
        &self,
        name: &str,
        capacity: usize,
        path: &str,
        environ: &BTreeMap<String, String>,
    ) -> Result<RealRunner> {
        RealRunner::start(self, name, capacity, path, environ)
    }
}

pub struct RealRunner {
    proc: Process,
    /// Where the runner makes each stage's workspace (`DRONE_RUNNER_ROOT`).
    pub root: PathBuf,
}

impl RealRunner {
    fn start(
        drone: &RealDrone,
        name: &str,
        capacity: usize,
        path: &str,
        environ: &BTreeMap<String, String>,
    ) -> Result<RealRunner> {
        let bin = locate("drone-runner-exec", RUNNER_REL)?;
        let dir = scratch_dir("runner")?;
        let root = dir.join("root");
        std::fs::create_dir_all(&root)?;
        let environ: Vec<String> = environ.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        // Only what is set here reaches the runner (and, of it, only PATH and USER its steps).
        let mut cmd = Command::new(&bin);
        cmd.env_clear();
        // An empty DRONE_RUNNER_ENVIRON is refused ("invalid map item"), so it is set only
        // when there is something in it.
        if !environ.is_empty() {
            cmd.env("DRONE_RUNNER_ENVIRON", environ.join(","));
        }
        cmd.arg("daemon")
            .env("PATH", path)
            .env("DRONE_RPC_HOST", format!("127.0.0.1:{}", drone.port))
            .env("DRONE_RPC_PROTO", "http")
            .env("DRONE_RPC_SECRET", &drone.rpc_secret)
            .env("DRONE_RUNNER_NAME", name)
            .env("DRONE_RUNNER_CAPACITY", capacity.to_string())
            .env("DRONE_RUNNER_ROOT", &root)
            // Its status page would listen on every address (:3000) by default.
            .env("DRONE_HTTP_BIND", format!("127.0.0.1:{}", free_port()?));
        let mut proc = Process::spawn("drone-runner-exec", &mut cmd, dir)?;
        let log = proc.log.clone();
        proc.wait_ready(Duration::from_secs(30), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("polling the remote server"))
        })?;
        Ok(RealRunner { proc, root })
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.proc.log_tail(n)
    }

    /// SIGKILL to the runner and every process under it, at once, as a host that loses its
    /// power: no step finishes, no stage-runner tears down or ships anything more.
    pub fn kill_host(&mut self) {
        let mut tree = vec![self.proc.child.id()];
        let mut i = 0;
        // Bounded: a process tree of a few hundred at most.
        while i < tree.len() && tree.len() < 10_000 {
            let parent = tree[i];
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !tree.contains(&pid) {
                    tree.push(pid);
                }
            }
            i += 1;
        }
        for pid in &tree {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.proc.child.wait();
    }
}
