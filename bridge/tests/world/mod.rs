//! The world the bridge's integration tests, crash test and benches run in: a forge (the
//! in-process stand-in Gitea, or the real Gitea where a test runs against both), a stand-in
//! Drone, and the real `cc-ci-bridge` binary started with a JSON config.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ccci::gitea::{Comment, GiteaClient};
use ccci::secret::Secret;
use standins::drone::{Commit, ConfigSource, Drone, DroneOpts, NewRepo, Perm};
use standins::forge::Forge;
use standins::gitea::{Gitea, PullSpec};
use standins::upstream::gitea::RealGitea;

pub const SHA: &str = "3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
pub const BOT: &str = "cc-ci-bot";

/// A pipeline that finishes at once, with the steps named like cc-ci's stages.
pub const QUICK: &str = "kind: pipeline
type: exec
name: cc-ci
clone:
  disable: true
trigger:
  event: [custom]
steps:
- name: install
  commands:
  - echo recipe=$RECIPE ref=$REF pr=$PR src=$SRC comment=$COMMENT
- name: teardown
  commands:
  - echo done
";

/// A pipeline that runs long enough to be superseded or followed across a restart.
pub const SLOW: &str = "kind: pipeline
type: exec
name: cc-ci
clone:
  disable: true
trigger:
  event: [custom]
steps:
- name: install
  commands:
  - sleep 4
";

/// How a world differs from the default one.
pub struct Opts<'a> {
    pub name: &'a str,
    pub yaml: &'a str,
    pub webhook_secrets: &'a [&'a str],
    /// Recipes enrolled besides `custom-html`: `recipe-N` → `coop-cloud/recipe-N`.
    pub extra_repos: usize,
    /// `DRONE_RUNNER_CAPACITY` of the stand-in Drone.
    pub runner_capacity: usize,
    /// Config keys to set on top of the defaults (poll 1 s, sweep 2 s, follow 1 s…).
    pub config: serde_json::Value,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            name: "world",
            yaml: QUICK,
            webhook_secrets: &[],
            extra_repos: 0,
            runner_capacity: 2,
            config: serde_json::json!({}),
        }
    }
}

pub struct World<F: Forge = Gitea> {
    pub gitea: F,
    pub drone: Drone,
    pub dir: PathBuf,
    pub listen: String,
    pub bot: GiteaClient,
    pub child: Option<Child>,
    pub webhook_secrets: Vec<String>,
    /// Secrets that must never show in the bridge's log.
    pub tokens: Vec<String>,
    /// Head SHA of each PR opened through [`World::open_pr_in`].
    heads: RefCell<BTreeMap<i64, String>>,
    forks: RefCell<BTreeSet<String>>,
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS:`, `VmHWM:`), 0 when unreadable: for the
/// benches' memory figures.
pub fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Starts the bridge binary on `dir/config.json` and waits until it listens on `listen`.
pub fn spawn_bridge(dir: &Path, listen: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bridge.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cc-ci-bridge"))
        .arg("--config")
        .arg(dir.join("config.json"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://{listen}/metrics");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if ureq::get(&url).call().is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the bridge exited at start: {status}");
        }
        assert!(
            Instant::now() < end,
            "the bridge did not listen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILL, as a crash or the OOM killer would.
pub fn kill_bridge(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The bot's comments on `coop-cloud/custom-html#pr`, read with the bot's own client.
pub fn bot_comments(bot: &GiteaClient, pr: i64) -> Vec<Comment> {
    bot.issue_comments("coop-cloud", "custom-html", pr, None)
        .unwrap()
        .into_iter()
        .filter(|c| c.user.as_ref().is_some_and(|u| u.login == BOT))
        .collect()
}

pub fn wait_bot_comment(bot: &GiteaClient, pr: i64, needle: &str, timeout: Duration) -> Comment {
    let mut found = None;
    wait_until(
        &format!("a bot comment containing {needle:?}"),
        timeout,
        || {
            found = bot_comments(bot, pr)
                .into_iter()
                .find(|c| c.body.contains(needle));
            found.is_some()
        },
    );
    found.unwrap()
}

impl World<Gitea> {
    pub fn new(name: &str, yaml: &str, webhook_secrets: &[&str]) -> World {
        World::with(Opts {
            name,
            yaml,
            webhook_secrets,
            ..Default::default()
        })
    }

    pub fn with(o: Opts) -> World {
        World::with_forge(Gitea::start().unwrap(), o)
    }
}

impl World<RealGitea> {
    /// The same world around the real Gitea (`dev/upstream gitea`).
    pub fn real(name: &str, yaml: &str, webhook_secrets: &[&str]) -> World<RealGitea> {
        let gitea = RealGitea::start().unwrap_or_else(|e| panic!("{e:#}"));
        World::with_forge(
            gitea,
            Opts {
                name,
                yaml,
                webhook_secrets,
                ..Default::default()
            },
        )
    }
}

impl<F: Forge> World<F> {
    pub fn with_forge(gitea: F, o: Opts) -> World<F> {
        let dir = std::env::temp_dir().join(format!(
            "bridge-it-{}-{}-{}",
            o.name,
            gitea.kind().replace(' ', "-"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();

        for u in [BOT, "alice", "eve", "bob", "carol"] {
            gitea.create_user(u).unwrap();
        }
        gitea.create_org("coop-cloud").unwrap();
        // The bot is a (private) member: otherwise Gitea only tells it public membership.
        gitea.set_member("coop-cloud", BOT, false).unwrap();
        gitea.set_member("coop-cloud", "alice", false).unwrap();
        gitea
            .create_repo("coop-cloud", "custom-html", false)
            .unwrap();
        gitea.create_repo("coop-cloud", "other", false).unwrap();
        let mut recipes = serde_json::Map::new();
        recipes.insert("custom-html".into(), "coop-cloud/custom-html".into());
        for i in 0..o.extra_repos {
            let name = format!("recipe-{i}");
            gitea.create_repo("coop-cloud", &name, false).unwrap();
            recipes.insert(name.clone(), format!("coop-cloud/{name}").into());
        }
        let gitea_token = gitea
            .create_token(BOT, standins::local::BOT_SCOPES)
            .unwrap();

        let drone = Drone::start(DroneOpts {
            runner_root: Some(dir.join("runner")),
            runner_capacity: o.runner_capacity,
            ..Default::default()
        })
        .unwrap();
        drone.create_user("coop-cloud", false, None).unwrap();
        let drone_token = drone.create_user(BOT, false, None).unwrap();
        drone
            .create_repo(NewRepo::new(
                "coop-cloud",
                "cc-ci",
                ConfigSource::Inline {
                    yaml: o.yaml.into(),
                },
            ))
            .unwrap();
        drone
            .set_branch("coop-cloud", "cc-ci", "main", SHA)
            .unwrap();
        // Drone looks the branch head up in the forge; an unknown commit is a 404.
        drone
            .add_commit(
                "coop-cloud",
                "cc-ci",
                Commit {
                    sha: SHA.into(),
                    message: "cc-ci".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        drone
            .set_permission(
                "coop-cloud",
                "cc-ci",
                BOT,
                Perm {
                    read: true,
                    write: true,
                    admin: false,
                },
            )
            .unwrap();

        std::fs::write(dir.join("gitea-token"), format!("{gitea_token}\n")).unwrap();
        std::fs::write(dir.join("drone-token"), &drone_token).unwrap();
        let mut secret_files = Vec::new();
        for (i, s) in o.webhook_secrets.iter().enumerate() {
            let p = dir.join(format!("hook-secret-{i}"));
            std::fs::write(&p, s).unwrap();
            secret_files.push(p);
        }
        let listen = format!("127.0.0.1:{}", free_port());
        let mut config = serde_json::json!({
            "gitea_url": gitea.url(),
            "bot_user": BOT,
            "gitea_token_file": dir.join("gitea-token"),
            "drone_url": drone.url(),
            "drone_token_file": dir.join("drone-token"),
            "drone_repo": "coop-cloud/cc-ci",
            "recipes": recipes,
            "orgs": ["coop-cloud"],
            "allow_users": ["carol"],
            "poll_interval_secs": 1,
            "sweep_interval_secs": 2,
            "follow_interval_secs": 1,
            "request_timeout_secs": 2,
            "listen": listen,
            "webhook_secret_files": secret_files,
            "state_dir": dir.join("state"),
            "dashboard_url": "https://ci.example.org",
        });
        if let Some(extra) = o.config.as_object() {
            for (k, v) in extra {
                config[k] = v.clone();
            }
        }
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let bot = GiteaClient::new(
            &gitea.api_url(),
            Secret::new(gitea_token.clone()),
            Duration::from_secs(5),
        );
        World {
            gitea,
            drone,
            dir,
            listen,
            bot,
            child: None,
            webhook_secrets: o.webhook_secrets.iter().map(|s| s.to_string()).collect(),
            tokens: vec![gitea_token, drone_token],
            heads: RefCell::new(BTreeMap::new()),
            forks: RefCell::new(BTreeSet::new()),
        }
    }

    /// Rewrites one key of the bridge's config (takes effect at the next start).
    pub fn set_config(&self, key: &str, value: serde_json::Value) {
        let path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config[key] = value;
        std::fs::write(&path, config.to_string()).unwrap();
    }

    pub fn start(&mut self) {
        self.child = Some(spawn_bridge(&self.dir, &self.listen));
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        kill_bridge(&mut self.child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the bridge is running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bridge.log")).unwrap_or_default()
    }

    /// The bridge's state file as JSON.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("state/state.json")).unwrap()).unwrap()
    }

    pub fn open_pr(&self) -> i64 {
        self.open_pr_in("custom-html")
    }

    /// A PR by bob from his fork, as an outside contributor opens one (Gitea lets only those
    /// who may push open a PR from a branch of the base repository).
    pub fn open_pr_in(&self, repo: &str) -> i64 {
        if self.forks.borrow_mut().insert(repo.to_owned()) {
            self.gitea
                .fork_repo(&format!("coop-cloud/{repo}"), "bob")
                .unwrap();
        }
        let n = self.heads.borrow().len() + 1;
        let (pr, sha) = self
            .gitea
            .open_pull(
                "coop-cloud",
                repo,
                &PullSpec {
                    poster: "bob".into(),
                    title: "Bump nginx".into(),
                    body: String::new(),
                    head_repo: Some(format!("bob/{repo}")),
                    head_branch: format!("bump-{n}"),
                    head_sha: SHA.into(),
                    base_branch: None,
                },
            )
            .unwrap();
        self.heads.borrow_mut().insert(pr, sha);
        pr
    }

    /// The head SHA of a PR opened by [`World::open_pr_in`] (the stand-in's is [`SHA`]).
    pub fn head(&self, pr: i64) -> String {
        self.heads.borrow()[&pr].clone()
    }

    pub fn say(&self, pr: i64, who: &str, body: &str) -> i64 {
        self.gitea
            .comment("coop-cloud", "custom-html", pr, who, body)
            .unwrap()
    }

    pub fn builds(&self) -> Vec<standins::drone::Build> {
        (1..)
            .map_while(|n| self.drone.build("coop-cloud", "cc-ci", n))
            .collect()
    }

    pub fn bot_comments(&self, pr: i64) -> Vec<Comment> {
        bot_comments(&self.bot, pr)
    }

    pub fn wait_bot_comment(&self, pr: i64, needle: &str, timeout: Duration) -> Comment {
        wait_bot_comment(&self.bot, pr, needle, timeout)
    }

    pub fn hook_url(&self) -> String {
        format!("http://{}/hook", self.listen)
    }

    /// Registers a webhook on `coop-cloud/<repo>` to `url`, signed with the first secret.
    pub fn add_hook(&self, repo: &str, url: &str) {
        // Gitea files PR comments under `pull_request_comment` (routers/api/v1/utils/hook.go);
        // `issue_comment` alone hears only issues.
        self.gitea
            .add_webhook(
                "coop-cloud",
                repo,
                url,
                &self.webhook_secrets[0],
                &["pull_request_comment"],
            )
            .unwrap();
    }
}

impl<F: Forge> Drop for World<F> {
    fn drop(&mut self) {
        self.kill();
        let log = self.log();
        for t in &self.tokens {
            assert!(
                !log.contains(t.as_str()),
                "a token leaked into the bridge log"
            );
        }
        for s in &self.webhook_secrets {
            assert!(
                !log.contains(s.as_str()),
                "a webhook secret leaked into the bridge log"
            );
        }
        if std::thread::panicking() {
            let tail: String = log
                .lines()
                .rev()
                .take(400)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- bridge log (last 400 lines) ---\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pipeline whose steps end as stage-runner's do, with their verdict line last (one command
/// each: the runner traces every command with a `+` line first): install fails (exit 1) naming
/// a test; upgrade is skipped (exit 0, which Drone calls success).
pub const VERDICTS: &str = r#"kind: pipeline
type: exec
name: cc-ci
clone:
  disable: true
trigger:
  event: [custom]
steps:
- name: install
  commands:
  - printf '%s %s\n' 'cc-ci verdict:' '{"stage":"install","status":"failed","reason":"tests failed in phase install","tests":{"total":2,"passed":1,"failed":1,"skipped":0},"failures":[{"name":"custom-html/test_install.py::test_index","message":"assert 200 == 404"}],"more_failures":0}'; exit 1
- name: upgrade
  commands:
  - printf '%s %s\n' 'cc-ci verdict:' '{"stage":"upgrade","status":"skipped","reason":"install failed"}'
  when:
    status: [success, failure]
"#;
