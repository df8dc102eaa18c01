//! The whole cc-ci loop on one machine: Gitea and Drone (its exec runner running this
//! repository's real `.drone.yml`) — the stand-ins, or with [`Setup::real`] the real Gitea,
//! Drone and drone-runner-exec from `dev/upstream` — the stand-in abra deploying to the real
//! swarm behind the real Traefik ([`Ground`]), and the real bridge, stage-runner and
//! dashboard-gen, wired through the same config files the NixOS modules write. `dev/local` runs it for a person; the end-to-end tests drive it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::drone::{Build, ConfigSource, Drone, DroneOpts, NewRepo, Perm};
use crate::gitea::{Gitea, Options, PullSpec};
use crate::ground::Ground;
use crate::upstream::drone::{RealDrone, RealRunner};
use crate::upstream::gitea::RealGitea;

pub const BOT: &str = "cc-ci-bot";
pub const ORG: &str = "coop-cloud";
/// The demo recipe: the one a world enrolls unless told otherwise, and the first of
/// [`Setup::recipes`].
pub const RECIPE: &str = "custom-html";
pub const MAINTAINER: &str = "alice";
pub const OUTSIDER: &str = "eve";
const HOOK_SECRET: &str = "local-webhook-secret";

/// How a local world is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Everything lives under here; removed by [`World::stop`].
    pub dir: PathBuf,
    /// The cc-ci checkout: its committed `.drone.yml` and `tests/` are used.
    pub repo: PathBuf,
    /// Where the workspace's binaries are (`target/debug`).
    pub bin: PathBuf,
    /// Deliver webhooks to the bridge (else polling only).
    pub webhooks: bool,
    pub poll_secs: u64,
    /// Seconds between dashboard generations; 0 = never on a timer.
    pub dashboard_secs: u64,
    /// Concurrent stages on the runner.
    pub capacity: usize,
    /// stage-runner's cap on waiting for a deployed app to answer.
    pub deploy_timeout_secs: u64,
    /// The real Gitea, Drone and exec runner (`dev/upstream`) instead of the stand-ins.
    pub real: bool,
    /// Apps are deployed at `<recipe>-<run>.<base_domain>`: the proxy's own domain for one
    /// world alone on the engine, [`Ground::world_domain`] where worlds share it.
    pub base_domain: String,
    /// The enrolled recipes, each from the stand-in catalogue with a demo PR of its own; the
    /// first is the one [`World::pr`] and the one-recipe methods are about.
    pub recipes: Vec<String>,
    /// A second runner host beside the server's runner (real upstreams only): its own exec
    /// runner ([`RUNNER_2`], `capacity` runs), stage-runner config, state, results and abra
    /// directories and app domain, shipping its results to the bridge as a host that shares
    /// no disk with the server does ([`SecondHost`]).
    pub second_runner: bool,
    /// Recipe checkouts on disk (a git repository with its release tags, as a maintainer has
    /// one), enrolled beside [`Setup::recipes`] under their folder's name: their default
    /// branch (or `ref`) is the recipe's main, with a demo PR on top like every recipe's.
    pub checkouts: Vec<Checkout>,
}

/// A recipe from disk ([`Setup::checkouts`]).
#[derive(Clone, Debug)]
pub struct Checkout {
    pub path: PathBuf,
    /// The commit the recipe's main is at in the world (default: the checkout's HEAD).
    pub reference: Option<String>,
}

/// The second runner host's `DRONE_RUNNER_NAME`.
pub const RUNNER_2: &str = "cc-ci-runner-2";
/// The server's own runner's.
pub const RUNNER_1: &str = "cc-ci-test-runner";

/// What a world's second runner host is made of.
pub struct SecondHost {
    pub runner: RealRunner,
    /// Its stage-runner config: each stage reads it afresh, so a test may repoint
    /// `results_url` between runs.
    pub config: PathBuf,
    /// Where its runs' results are written before they are shipped.
    pub results: PathBuf,
    pub abra_dir: PathBuf,
    pub base_domain: String,
}

impl Setup {
    /// Every recipe of the stand-in catalogue, the demo recipe first.
    pub fn all_recipes() -> Result<Vec<String>> {
        let src = crate::abra::catalogue::source_dir();
        let mut names: Vec<String> = std::fs::read_dir(&src)
            .with_context(|| format!("listing {}", src.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by_key(|n| (n != RECIPE, n.clone()));
        Ok(names)
    }
}

/// A demo PR of a local world.
#[derive(Clone, Debug)]
pub struct Pr {
    pub recipe: String,
    pub number: i64,
    pub sha: String,
}

/// The forge of a local world.
pub enum LocalGitea {
    Standin(Gitea),
    Real(RealGitea),
}

impl LocalGitea {
    fn forge(&self) -> &dyn crate::forge::Forge {
        match self {
            LocalGitea::Standin(g) => g,
            LocalGitea::Real(g) => g,
        }
    }

    pub fn url(&self) -> String {
        self.forge().url()
    }

    pub fn api_url(&self) -> String {
        self.forge().api_url()
    }

    pub fn kind(&self) -> &'static str {
        self.forge().kind()
    }
}

/// The Drone of a local world, with its runner.
pub enum LocalDrone {
    Standin(Drone),
    Real(Box<(RealDrone, RealRunner)>),
}

impl LocalDrone {
    pub fn url(&self) -> String {
        match self {
            LocalDrone::Standin(d) => d.url(),
            LocalDrone::Real(r) => r.0.url(),
        }
    }

    /// A build with its stages, as Drone's API answers it; `None` when there is none.
    pub fn build(&self, owner: &str, name: &str, number: i64) -> Option<Build> {
        match self {
            LocalDrone::Standin(d) => d.build(owner, name, number),
            LocalDrone::Real(r) => {
                let v =
                    r.0.call("GET", &format!("/api/repos/{owner}/{name}/builds/{number}"))
                        .ok()?;
                serde_json::from_value(v).ok()
            }
        }
    }

    /// The stored log of a step, as Drone serves it once the step has finished.
    pub fn step_log(
        &self,
        owner: &str,
        name: &str,
        number: i64,
        stage: i64,
        step: i64,
    ) -> Option<Vec<crate::runner::LogLine>> {
        match self {
            LocalDrone::Standin(d) => d.step_log(owner, name, number, stage, step),
            LocalDrone::Real(r) => {
                let path = format!("/api/repos/{owner}/{name}/builds/{number}/logs/{stage}/{step}");
                serde_json::from_value(r.0.call("GET", &path).ok()?).ok()
            }
        }
    }

    /// Waits until no stage runs (bounded).
    fn wait_idle(&self, limit: Duration) {
        match self {
            LocalDrone::Standin(d) => {
                let _ = d.wait_idle(limit);
            }
            LocalDrone::Real(r) => {
                let end = Instant::now() + limit;
                while Instant::now() < end {
                    let busy =
                        r.0.call("GET", &format!("/api/repos/{ORG}/cc-ci/builds?per_page=5"))
                            .ok()
                            .and_then(|v| v.as_array().cloned())
                            .is_some_and(|list| {
                                list.iter()
                                    .any(|b| b["status"] == "running" || b["status"] == "pending")
                            });
                    if !busy {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
}

pub struct World {
    pub setup: Setup,
    pub gitea: LocalGitea,
    pub drone: LocalDrone,
    pub ground: Ground,
    /// The demo recipe's PR (the first of [`World::prs`]).
    pub pr: i64,
    pub sha: String,
    /// Each enrolled recipe's demo PR, in [`Setup::recipes`]' order.
    pub prs: Vec<Pr>,
    pub bridge_listen: String,
    /// The dashboard as the host serves it.
    pub site_server: crate::http::Server,
    bridge: Option<Child>,
    dashboard: Option<std::thread::JoinHandle<()>>,
    stop_dashboard: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The second runner host, when [`Setup::second_runner`].
    pub second: Option<SecondHost>,
    /// Held while dashboard-gen runs: the timer's generation and an asked-for one would
    /// otherwise meet at the site's lock, and the second would publish nothing.
    generating: std::sync::Arc<std::sync::Mutex<()>>,
}

/// The stand-in abra's git (fixed identity, no user config needed), output trimmed.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    Ok(crate::abra::recipe::git(dir, args)?.trim().to_owned())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl World {
    pub fn start(setup: Setup) -> Result<World> {
        let d = &setup.dir.clone();
        std::fs::create_dir_all(d)?;
        let crate::abra::catalogue::Host {
            abra_dir: host_abra,
            catalogue,
        } = crate::abra::catalogue::host(d, &setup.bin.join("abra"))
            .context("setting up the stand-in abra (is the workspace built?)")?;
        let mut setup = setup;
        for c in setup.checkouts.clone() {
            let name = add_checkout(&catalogue, &c)?;
            if !setup.recipes.contains(&name) {
                setup.recipes.push(name);
            }
        }
        let config_dir = d.join("etc");
        let stage_cfg = config_dir.join("stage-runner.json");
        let up = if setup.real {
            real_upstreams(&setup, &catalogue, &stage_cfg)?
        } else {
            standin_upstreams(&setup, &catalogue, &stage_cfg)?
        };
        let Upstreams {
            gitea,
            drone,
            gitea_token,
            drone_token,
            allowed_src,
        } = up;

        let ground = Ground::from_env()?;
        let mut abra_env = ground.abra_env();
        abra_env.insert(
            "STANDIN_ABRA_CATALOGUE".into(),
            catalogue.display().to_string(),
        );
        let site = d.join("site");
        let site_server = serve_site(site.join("current"))?;
        let site_url = site_server.url();
        let results = d.join("results");
        write(&config_dir.join("gitea-token"), &gitea_token)?;
        write(&config_dir.join("drone-token"), &drone_token)?;
        write(&config_dir.join("webhook-secret"), HOOK_SECRET)?;
        write(
            &stage_cfg,
            &json!({
                "server": "default",
                "base_domain": setup.base_domain,
                "state_dir": d.join("state"),
                "results_dir": results,
                "tests_dir": setup.repo.join("tests"),
                "abra": setup.bin.join("abra"),
                "abra_dir": host_abra,
                "python": setup.repo.join(".venv/bin/python"),
                "chromium": "/usr/bin/chromium",
                "resolve": ground.resolve(),
                "scheme": "https",
                // The local CA is not in the system's trust store.
                "tls_verify": false,
                "deploy_timeout_secs": setup.deploy_timeout_secs,
                "command_timeout_secs": 600,
                "janitor_max_age_secs": 3600,
                "allowed_src": [allowed_src],
                "recipes": setup.recipes,
                // The stand-in catalogue is this repository's own code.
                "trusted_recipes": setup.recipes,
                "abra_env": abra_env,
            })
            .to_string(),
        )?;
        let bridge_listen = format!("127.0.0.1:{}", free_port()?);
        let recipes: serde_json::Map<String, serde_json::Value> = setup
            .recipes
            .iter()
            .map(|r| (r.clone(), json!(format!("{ORG}/{r}"))))
            .collect();
        write(
            &config_dir.join("bridge.json"),
            &json!({
                "gitea_url": gitea.url(),
                "bot_user": BOT,
                "gitea_token_file": config_dir.join("gitea-token"),
                "drone_url": drone.url(),
                "drone_token_file": config_dir.join("drone-token"),
                "drone_repo": format!("{ORG}/cc-ci"),
                "drone_branch": "main",
                "recipes": recipes,
                "orgs": [ORG],
                "poll_interval_secs": setup.poll_secs,
                "sweep_interval_secs": setup.poll_secs * 4,
                "follow_interval_secs": 1,
                "request_timeout_secs": 5,
                "listen": bridge_listen,
                "webhook_secret_files": if setup.webhooks { vec![config_dir.join("webhook-secret")] } else { vec![] },
                "state_dir": d.join("bridge-state"),
                "dashboard_url": site_url,
                "results_dir": if setup.second_runner { json!(results) } else { json!(null) },
                "runner_token_files": if setup.second_runner {
                    json!({ RUNNER_2: config_dir.join("runner-2-token") })
                } else {
                    json!({})
                },
            })
            .to_string(),
        )?;
        write(
            &config_dir.join("dashboard-gen.json"),
            &json!({
                "drone_url": drone.url(),
                "drone_token_file": config_dir.join("drone-token"),
                "drone_repo": format!("{ORG}/cc-ci"),
                "gitea_url": gitea.url(),
                "recipes": recipes,
                "results_dir": results,
                "out_dir": site,
                "cache_dir": d.join("dashboard-cache"),
                "site_url": site_url,
            })
            .to_string(),
        )?;
        std::fs::create_dir_all(d.join("bridge-state"))?;
        std::fs::create_dir_all(&results)?;
        let second = if setup.second_runner {
            let LocalDrone::Real(real) = &drone else {
                bail!("a second runner host needs the real Drone and exec runner (Setup::real)");
            };
            Some(second_host(
                &setup,
                &real.0,
                &stage_cfg,
                &bridge_listen,
                &ground,
            )?)
        } else {
            None
        };
        for r in setup.recipes.iter().filter(|_| setup.webhooks) {
            // Gitea files PR comments under `pull_request_comment`; a hook on `issue_comment`
            // alone only hears comments on issues.
            gitea.forge().add_webhook(
                ORG,
                r,
                &format!("http://{bridge_listen}/hook"),
                HOOK_SECRET,
                &["pull_request_comment"],
            )?;
        }
        let mut w = World {
            setup,
            gitea,
            drone,
            ground,
            pr: 0,
            sha: String::new(),
            prs: Vec::new(),
            bridge_listen,
            site_server,
            bridge: None,
            second,
            dashboard: None,
            stop_dashboard: Default::default(),
            generating: Default::default(),
        };
        for recipe in w.setup.recipes.clone() {
            let (number, sha) = w.open_pr_on(&recipe, "tidy-readme", "Tidy the README", |dir| {
                let readme = dir.join("README.md");
                let text = std::fs::read_to_string(&readme).unwrap_or_default();
                write(&readme, &format!("{text}\nTidied up in a PR.\n"))
            })?;
            w.prs.push(Pr {
                recipe,
                number,
                sha,
            });
        }
        w.pr = w.prs[0].number;
        w.sha = w.prs[0].sha.clone();
        w.start_bridge()?;
        if w.setup.dashboard_secs > 0 {
            w.start_dashboard_timer();
        }
        Ok(w)
    }

    /// The demo recipe.
    pub fn recipe(&self) -> &str {
        &self.setup.recipes[0]
    }

    /// [`World::open_pr_on`] the demo recipe.
    pub fn open_pr(
        &self,
        branch: &str,
        title: &str,
        edit: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(i64, String)> {
        self.open_pr_on(self.recipe(), branch, title, edit)
    }

    /// Opens a PR on `recipe` from `branch`, whose one commit on top of the recipe's main is
    /// what `edit` makes of the checkout; returns its number and head sha. On the real Gitea
    /// the branch is pushed to bob's fork (only those who may push open PRs from the base
    /// repository).
    pub fn open_pr_on(
        &self,
        recipe: &str,
        branch: &str,
        title: &str,
        edit: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(i64, String)> {
        let work = self.setup.dir.join("pr-work").join(recipe);
        git(&work, &["checkout", "-q", "-B", branch, "origin/HEAD"])?;
        edit(&work)?;
        git(&work, &["commit", "-qam", title])?;
        let sha = git(&work, &["rev-parse", "HEAD"])?;
        match &self.gitea {
            LocalGitea::Standin(g) => {
                // HEAD, not the branch: `edit` may have moved to another (an orphan start).
                git(
                    &work,
                    &[
                        "push",
                        "-q",
                        "-f",
                        "origin",
                        &format!("HEAD:refs/heads/{branch}"),
                    ],
                )?;
                g.push_branch(ORG, recipe, branch, &sha)?;
                let pr = g.open_pull(
                    ORG,
                    recipe,
                    &PullSpec {
                        poster: "bob".into(),
                        title: title.into(),
                        body: String::new(),
                        head_repo: None,
                        head_branch: branch.into(),
                        head_sha: sha.clone(),
                        base_branch: None,
                    },
                )?;
                Ok((pr, sha))
            }
            LocalGitea::Real(g) => {
                let fork = g.push_url("bob", recipe, "bob");
                git(
                    &work,
                    &[
                        "push",
                        "-q",
                        "-f",
                        &fork,
                        &format!("HEAD:refs/heads/{branch}"),
                    ],
                )?;
                let (pr, head) =
                    g.create_pull(ORG, recipe, "bob", &format!("bob:{branch}"), "main", title)?;
                if head != sha {
                    bail!("Gitea says PR #{pr} is at {head}, pushed {sha}");
                }
                Ok((pr, sha))
            }
        }
    }

    /// Pushes one commit made by `edit` onto `recipe`'s default branch, as its maintainers
    /// merging would; returns the new head.
    pub fn push_main(
        &self,
        recipe: &str,
        title: &str,
        edit: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<String> {
        let work = self.setup.dir.join("pr-work").join(recipe);
        git(&work, &["fetch", "-q", "origin"])?;
        git(&work, &["checkout", "-q", "-B", "main", "origin/main"])?;
        edit(&work)?;
        git(&work, &["commit", "-qam", title])?;
        let sha = git(&work, &["rev-parse", "HEAD"])?;
        match &self.gitea {
            LocalGitea::Standin(g) => {
                git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"])?;
                g.push_branch(ORG, recipe, "main", &sha)?;
            }
            LocalGitea::Real(g) => {
                let push = g.push_url(ORG, recipe, BOT);
                git(&work, &["push", "-q", &push, "HEAD:refs/heads/main"])?;
            }
        }
        Ok(sha)
    }

    pub fn config(&self, name: &str) -> PathBuf {
        self.setup.dir.join("etc").join(name)
    }

    pub fn start_bridge(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.setup.dir.join("bridge.log"))?;
        let child = Command::new(self.setup.bin.join("cc-ci-bridge"))
            .arg("--config")
            .arg(self.config("bridge.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting cc-ci-bridge")?;
        self.bridge = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.bridge_listen).is_err() {
            if Instant::now() > end {
                bail!("the bridge did not listen on {}", self.bridge_listen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL, as a crash would.
    pub fn kill_bridge(&mut self) {
        if let Some(mut c) = self.bridge.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs dashboard-gen once; its error, if any.
    pub fn generate_dashboard(&self) -> Result<()> {
        let _one = self.generating.lock();
        run_dashboard(&self.setup.bin, &self.config("dashboard-gen.json"))
    }

    fn start_dashboard_timer(&mut self) {
        let bin = self.setup.bin.clone();
        let cfg = self.config("dashboard-gen.json");
        let every = Duration::from_secs(self.setup.dashboard_secs);
        let stop = self.stop_dashboard.clone();
        let generating = self.generating.clone();
        self.dashboard = Some(std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                {
                    let _one = generating.lock();
                    let _ = run_dashboard(&bin, &cfg);
                }
                let until = Instant::now() + every;
                while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }));
    }

    /// Posts a comment on the demo PR as `user`; returns its id.
    pub fn comment(&self, user: &str, body: &str) -> Result<i64> {
        self.comment_on(self.recipe(), self.pr, user, body)
    }

    pub fn comment_on(&self, recipe: &str, pr: i64, user: &str, body: &str) -> Result<i64> {
        self.gitea.forge().comment(ORG, recipe, pr, user, body)
    }

    pub fn builds(&self) -> Vec<Build> {
        (1..)
            .map_while(|n| self.drone.build(ORG, "cc-ci", n))
            .collect()
    }

    /// The bot's comments on the demo PR, oldest first, read through the public API.
    pub fn bot_comments(&self) -> Result<Vec<(i64, String)>> {
        self.bot_comments_on(self.recipe(), self.pr)
    }

    pub fn bot_comments_on(&self, recipe: &str, pr: i64) -> Result<Vec<(i64, String)>> {
        let url = format!(
            "{}/repos/{ORG}/{recipe}/issues/{pr}/comments",
            self.gitea.api_url()
        );
        let list: Vec<serde_json::Value> = ureq::get(&url)
            .call()
            .context("listing PR comments")?
            .body_mut()
            .read_json()
            .context("reading PR comments")?;
        Ok(list
            .iter()
            .filter(|c| c["user"]["login"] == BOT)
            .map(|c| {
                (
                    c["id"].as_i64().unwrap_or(0),
                    c["body"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }

    /// The commit status cc-ci set on `sha` of `recipe` (newest of context `cc-ci/testme`),
    /// read anonymously as a merge check would: (state, description, target_url).
    pub fn head_status(&self, recipe: &str, sha: &str) -> Result<Option<(String, String, String)>> {
        let url = format!(
            "{}/repos/{ORG}/{recipe}/commits/{sha}/status",
            self.gitea.api_url()
        );
        let c: serde_json::Value = ureq::get(&url)
            .call()
            .context("reading the combined commit status")?
            .body_mut()
            .read_json()
            .context("reading the combined commit status")?;
        // Gitea answers `statuses: null` when there are none.
        let found = c["statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["context"] == "cc-ci/testme");
        Ok(found.map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or("").to_owned();
            (f("status"), f("description"), f("target_url"))
        }))
    }

    pub fn site(&self) -> PathBuf {
        self.setup.dir.join("site").join("current")
    }

    pub fn bridge_log(&self) -> String {
        std::fs::read_to_string(self.setup.dir.join("bridge.log")).unwrap_or_default()
    }

    /// Stops everything and removes every trace: apps on the engine, the directory.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for World {
    /// Also when a test fails: no bridge, runner or app outlives the world. The directory
    /// stays after a panic, for its logs.
    fn drop(&mut self) {
        self.stop_dashboard
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.dashboard.take() {
            let _ = h.join();
        }
        self.kill_bridge();
        self.drone.wait_idle(Duration::from_secs(60));
        crate::abra::app::purge(&self.setup.dir.join("abra"));
        if let Some(h) = &self.second {
            crate::abra::app::purge(&h.abra_dir);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.setup.dir);
        }
    }
}

/// The second runner host: its config is the server runner's with its own directories, app
/// domain and `results_url` (the bridge) and token; its runner is named [`RUNNER_2`].
fn second_host(
    setup: &Setup,
    drone: &RealDrone,
    stage_cfg: &Path,
    bridge_listen: &str,
    ground: &Ground,
) -> Result<SecondHost> {
    let d = setup.dir.join("host-2");
    let abra_dir = d.join("abra");
    let out = Command::new(setup.bin.join("abra"))
        .args(["server", "add", "--local"])
        .env("ABRA_DIR", &abra_dir)
        .output()
        .context("abra server add on the second host")?;
    if !out.status.success() {
        bail!("abra server add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let token = format!("r2-{}", crate::runner::random_id(32));
    write(&setup.dir.join("etc/runner-2-token"), &token)?;
    write(&d.join("runner-token"), &token)?;
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(stage_cfg)?)?;
    let results = d.join("results");
    let base_domain = ground.world_domain();
    cfg["state_dir"] = json!(d.join("state"));
    cfg["results_dir"] = json!(results);
    cfg["abra_dir"] = json!(abra_dir);
    cfg["base_domain"] = json!(base_domain);
    cfg["results_url"] = json!(format!("http://{bridge_listen}"));
    cfg["results_token_file"] = json!(d.join("runner-token"));
    let config = d.join("stage-runner.json");
    write(&config, &cfg.to_string())?;
    let environ = BTreeMap::from([("CCCI_CONFIG".to_owned(), config.display().to_string())]);
    let runner = drone.start_runner_named(RUNNER_2, setup.capacity, &step_path(setup), &environ)?;
    Ok(SecondHost {
        runner,
        config,
        results,
        abra_dir,
        base_domain,
    })
}

/// Puts a recipe checkout into the world's catalogue (what the stand-in abra and the forge
/// read) under its folder's name, its `main` at the chosen commit; returns the name.
fn add_checkout(catalogue: &Path, c: &Checkout) -> Result<String> {
    let src = c
        .path
        .canonicalize()
        .with_context(|| format!("recipe checkout {}", c.path.display()))?;
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned();
    ccci::run::check_recipe_name(&name).with_context(|| {
        format!(
            "the checkout's folder is the recipe's name: {}",
            src.display()
        )
    })?;
    if !src.join(".git").exists() {
        bail!("{} is not a git checkout of a recipe", src.display());
    }
    let dest = catalogue.join(&name);
    let _ = std::fs::remove_dir_all(&dest);
    let (s, d) = (src.display().to_string(), dest.display().to_string());
    git(catalogue, &["clone", "-q", &s, &d])?;
    let at = c.reference.as_deref().unwrap_or("HEAD");
    let sha = git(
        &src,
        &["rev-parse", "--verify", &format!("{at}^{{commit}}")],
    )
    .with_context(|| format!("{at} is not a commit of {}", src.display()))?;
    git(&dest, &["checkout", "-q", "-B", "main", &sha])?;
    Ok(name)
}

struct Upstreams {
    gitea: LocalGitea,
    drone: LocalDrone,
    gitea_token: String,
    drone_token: String,
    /// stage-runner's `allowed_src`: where PR sources may be fetched from.
    allowed_src: String,
}

/// The bot's Gitea scopes, as the host's token has them.
pub const BOT_SCOPES: &[&str] = &[
    "read:issue",
    "write:issue",
    "write:repository",
    "read:organization",
    "write:notification",
];

/// What the runner's steps find in their environment, as the NixOS runner module sets it:
/// the config path, and cc-ci-stage-runner on PATH.
fn step_path(setup: &Setup) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", setup.bin.display())
}

fn standin_upstreams(setup: &Setup, catalogue: &Path, stage_cfg: &Path) -> Result<Upstreams> {
    let d = &setup.dir;
    let forge = d.join("forge");
    for r in &setup.recipes {
        // The forge's git side: what a clone URL of the stand-in Gitea points at.
        let bare = forge.join(ORG).join(format!("{r}.git"));
        std::fs::create_dir_all(bare.parent().unwrap())?;
        let recipe = catalogue.join(r).display().to_string();
        let bare = bare.display().to_string();
        git(d, &["clone", "-q", "--bare", &recipe, &bare])?;
        let work = d.join("pr-work").join(r).display().to_string();
        git(d, &["clone", "-q", &bare, &work])?;
    }
    let gitea = Gitea::start_with(Options {
        port: 0,
        root_url: Some(format!("file://{}/", forge.display())),
        ..Options::default()
    })?;
    for u in [BOT, MAINTAINER, OUTSIDER, "bob"] {
        gitea.create_user(u)?;
    }
    gitea.create_org(ORG)?;
    gitea.set_member(ORG, BOT, false)?;
    gitea.set_member(ORG, MAINTAINER, false)?;
    for r in &setup.recipes {
        gitea.create_repo(ORG, r, false)?;
        // The default branch's head as the forge's git side has it (the scheduled re-tests
        // read it through the API).
        let bare = forge.join(ORG).join(format!("{r}.git"));
        gitea.push_branch(ORG, r, "main", &git(&bare, &["rev-parse", "main"])?)?;
    }
    let gitea_token = gitea.create_token(BOT, BOT_SCOPES)?;

    let mut environ = BTreeMap::new();
    environ.insert("CCCI_CONFIG".to_owned(), stage_cfg.display().to_string());
    environ.insert("PATH".to_owned(), step_path(setup));
    let drone = Drone::start(DroneOpts {
        runner_capacity: setup.capacity,
        runner_root: Some(d.join("runner")),
        runner_environ: environ,
        ..Default::default()
    })?;
    drone.create_user(ORG, false, None)?;
    let drone_token = drone.create_user(BOT, false, None)?;
    // The real .drone.yml, read from this repository's commits, as Drone reads it.
    drone.create_repo(NewRepo::new(
        ORG,
        "cc-ci",
        ConfigSource::Git {
            path: setup.repo.clone(),
        },
    ))?;
    drone.set_permission(
        ORG,
        "cc-ci",
        BOT,
        Perm {
            read: true,
            write: true,
            admin: false,
        },
    )?;
    let head = git(&setup.repo, &["rev-parse", "HEAD"])?;
    drone.set_branch(ORG, "cc-ci", "main", &head)?;
    Ok(Upstreams {
        gitea: LocalGitea::Standin(gitea),
        drone: LocalDrone::Standin(drone),
        gitea_token,
        drone_token,
        allowed_src: format!("file://{}/", forge.display()),
    })
}

/// The same on the real Gitea, Drone and exec runner: the recipe's history (with its release
/// tags) pushed into Gitea, bob's fork of it, and the cc-ci repository holding this
/// checkout's committed `.drone.yml`, activated in Drone.
fn real_upstreams(setup: &Setup, catalogue: &Path, stage_cfg: &Path) -> Result<Upstreams> {
    let d = &setup.dir;
    let gitea = RealGitea::start()?;
    for u in [BOT, MAINTAINER, OUTSIDER, "bob"] {
        gitea.create_user(u)?;
    }
    gitea.create_org(ORG)?;
    gitea.set_member(ORG, BOT, false)?;
    gitea.set_member(ORG, MAINTAINER, false)?;
    for r in &setup.recipes {
        gitea.create_empty_repo(ORG, r)?;
        let recipe = catalogue.join(r);
        let push = gitea.push_url(ORG, r, BOT);
        git(&recipe, &["push", "-q", &push, "--all"])?;
        git(&recipe, &["push", "-q", &push, "--tags"])?;
        gitea.fork_repo(&format!("{ORG}/{r}"), "bob")?;
        let work = d.join("pr-work").join(r).display().to_string();
        let clone = format!("{}/{ORG}/{r}.git", gitea.url());
        git(d, &["clone", "-q", &clone, &work])?;
    }
    let gitea_token = gitea.create_token(BOT, BOT_SCOPES)?;

    gitea.create_repo(ORG, "cc-ci", false)?;
    let yaml = git(&setup.repo, &["show", "HEAD:.drone.yml"])?;
    gitea.put_file(ORG, "cc-ci", ".drone.yml", &format!("{yaml}\n"))?;
    // Drone activates a repository only for a user who administers it (it adds a hook).
    gitea.add_collaborator(ORG, "cc-ci", BOT, "admin")?;
    let forge_token = gitea.create_token(BOT, &["all"])?;
    let drone = RealDrone::start(&gitea.url(), BOT, &forge_token, &[&format!("{ORG}/cc-ci")])?;
    let environ = BTreeMap::from([("CCCI_CONFIG".to_owned(), stage_cfg.display().to_string())]);
    let runner = drone.start_runner(setup.capacity, &step_path(setup), &environ)?;
    let drone_token = drone.token.clone();
    Ok(Upstreams {
        allowed_src: format!("{}/", gitea.url()),
        gitea: LocalGitea::Real(gitea),
        drone: LocalDrone::Real(Box::new((drone, runner))),
        gitea_token,
        drone_token,
    })
}

fn run_dashboard(bin: &Path, cfg: &Path) -> Result<()> {
    let out = Command::new(bin.join("cc-ci-dashboard-gen"))
        .arg("--config")
        .arg(cfg)
        .output()
        .context("starting cc-ci-dashboard-gen")?;
    if !out.status.success() {
        bail!(
            "dashboard-gen: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Serves the published site (`<out_dir>/current`) read-only, as the host's web server does.
fn serve_site(root: PathBuf) -> Result<crate::http::Server> {
    use crate::http::{Response, Server};
    let handler = move |req: &crate::http::Request| {
        let rel = req.path.trim_start_matches('/');
        if rel.split('/').any(|s| s == "..") || req.method != "GET" {
            return Response::text(404, "404 page not found\n");
        }
        let mut path = root.join(rel);
        if path.is_dir() {
            path = path.join("index.html");
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let kind = match path.extension().and_then(|e| e.to_str()) {
                    Some("html") => "text/html; charset=utf-8",
                    Some("css") => "text/css",
                    Some("svg") => "image/svg+xml",
                    Some("png") => "image/png",
                    Some("json") => "application/json",
                    Some("atom") => "application/atom+xml",
                    _ => "application/octet-stream",
                };
                Response::new(200).header("Content-Type", kind).body(bytes)
            }
            Err(_) => Response::text(404, "404 page not found\n"),
        }
    };
    Ok(Server::start(0, std::sync::Arc::new(handler))?)
}
