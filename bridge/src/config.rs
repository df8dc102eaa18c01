//! The bridge's configuration: one JSON file (the NixOS module renders it), tokens and webhook
//! secrets read from the files it names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use ccci::secret::Secret;

/// The file as written. Field names are the config keys `--help` documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Gitea's root URL, e.g. `https://git.coopcloud.tech` (the API is under `/api/v1`).
    pub gitea_url: String,
    /// The bot account's login; its own comments are never commands.
    pub bot_user: String,
    pub gitea_token_file: PathBuf,
    /// Drone's root URL, e.g. `https://drone.ci.coopcloud.tech`.
    pub drone_url: String,
    pub drone_token_file: PathBuf,
    /// The Drone repository whose pipeline runs the tests, `owner/name`.
    pub drone_repo: String,
    /// Branch of `drone_repo` to build; Drone's default branch when absent.
    #[serde(default)]
    pub drone_branch: Option<String>,
    /// Enrolled recipes: recipe name → Gitea repository `owner/name`.
    pub recipes: BTreeMap<String, String>,
    /// Members of these Gitea organisations may trigger runs.
    #[serde(default)]
    pub orgs: Vec<String>,
    /// These Gitea logins may trigger runs too.
    #[serde(default)]
    pub allow_users: Vec<String>,
    /// Seconds between fast polls (Gitea's notifications: one request per cycle).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Seconds between full sweeps of every enrolled repository's comments.
    #[serde(default = "default_sweep")]
    pub sweep_interval_secs: u64,
    /// Seconds between checks of the runs being followed in Drone.
    #[serde(default = "default_follow")]
    pub follow_interval_secs: u64,
    /// Timeout of every request to Gitea or Drone, in seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Address for `/hook`, `/healthz` and `/metrics`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Webhook secrets, one per file; several while rotating. None: `/hook` answers 404.
    #[serde(default)]
    pub webhook_secret_files: Vec<PathBuf>,
    /// Where the state file lives; must be writable.
    pub state_dir: PathBuf,
    /// The dashboard's root URL, linked from PR comments.
    pub dashboard_url: String,
    /// The context of the commit status set on each run's head (needs write on the code).
    #[serde(default = "default_status_context")]
    pub status_context: String,
    /// Scheduled re-tests (`--retest`): every enrolled recipe's default branch is tested
    /// once per slot of this many days (UTC days since the epoch, in steps of it).
    #[serde(default = "default_retest_every")]
    pub retest_every_days: u64,
    /// A default branch unchanged since its last green scheduled run is re-tested only
    /// after this many days.
    #[serde(default = "default_retest_unchanged")]
    pub retest_unchanged_days: u64,
    /// At most this many re-tests are started by one `--retest` invocation.
    #[serde(default = "default_retest_batch")]
    pub retest_batch: u64,
    /// No re-test is started while this many cc-ci builds are pending or running.
    #[serde(default = "default_retest_queue_limit")]
    pub retest_queue_limit: u64,
    /// Open an issue on the recipe's repository when a re-test regresses (fails on the commit
    /// whose last re-test passed), once, and close it when a re-test passes again. Needs the
    /// bot's token to have `write:issue` (it has, for comments).
    #[serde(default)]
    pub retest_open_issues: bool,
    /// Where results shipped by runners on other hosts are stored: the results directory
    /// dashboard-gen reads. Without it (or without `runner_token_files`) `PUT /results/…`
    /// answers 404.
    #[serde(default)]
    pub results_dir: Option<PathBuf>,
    /// Runner name (`DRONE_RUNNER_NAME`, Drone's `stage.machine`) → the file holding the token
    /// that runner ships its results with. A token writes only builds Drone ran on that runner.
    #[serde(default)]
    pub runner_token_files: BTreeMap<String, PathBuf>,
    /// Results of a build are taken this many seconds after it finished, no later.
    #[serde(default = "default_results_accept")]
    pub results_accept_secs: u64,
}

fn default_results_accept() -> u64 {
    3600
}

fn default_retest_every() -> u64 {
    1
}
fn default_retest_unchanged() -> u64 {
    7
}
fn default_retest_batch() -> u64 {
    4
}
fn default_retest_queue_limit() -> u64 {
    2
}

fn default_status_context() -> String {
    "cc-ci/testme".into()
}

fn default_poll() -> u64 {
    15
}
fn default_sweep() -> u64 {
    120
}
fn default_follow() -> u64 {
    5
}
fn default_timeout() -> u64 {
    10
}
fn default_listen() -> String {
    "127.0.0.1:8088".into()
}

pub use ccci::config::Repo;

/// The validated configuration the bridge runs with.
#[derive(Debug)]
pub struct Config {
    pub gitea_url: String,
    pub bot_user: String,
    pub gitea_token: Secret,
    pub drone_url: String,
    pub drone_token: Secret,
    pub drone_repo: Repo,
    pub drone_branch: Option<String>,
    /// Enrolled recipes, recipe → repository.
    pub recipes: BTreeMap<String, Repo>,
    pub orgs: Vec<String>,
    pub allow_users: Vec<String>,
    pub poll_interval: Duration,
    pub sweep_interval: Duration,
    pub follow_interval: Duration,
    pub request_timeout: Duration,
    pub listen: SocketAddr,
    pub webhook_secrets: Vec<Secret>,
    pub state_dir: PathBuf,
    pub dashboard_url: String,
    pub status_context: String,
    pub retest: Retest,
    /// Results shipped by other runner hosts, when enabled.
    pub results: Option<Results>,
}

/// What `PUT /results/…` needs (`results_*` and `runner_token_files` keys).
#[derive(Debug, Clone)]
pub struct Results {
    pub dir: PathBuf,
    /// Runner name → its token.
    pub runners: Vec<(String, Secret)>,
    pub accept_secs: i64,
}

/// The scheduled re-tests' settings (`retest_*` keys).
#[derive(Debug, Clone)]
pub struct Retest {
    pub every_days: u64,
    pub unchanged_days: u64,
    pub batch: u64,
    pub queue_limit: u64,
    pub open_issues: bool,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let file: File = ccci::config::load_json(path)?;
        Config::validate(file).with_context(|| format!("config {}", path.display()))
    }

    pub fn validate(f: File) -> Result<Config> {
        let url = ccci::config::http_url;
        let recipes = ccci::config::recipes(&f.recipes)?;
        if f.orgs.is_empty() && f.allow_users.is_empty() {
            bail!("orgs and allow_users are both empty: nobody could trigger a run");
        }
        for (key, v) in [
            ("poll_interval_secs", f.poll_interval_secs),
            ("sweep_interval_secs", f.sweep_interval_secs),
            ("follow_interval_secs", f.follow_interval_secs),
            ("request_timeout_secs", f.request_timeout_secs),
        ] {
            if v == 0 || v > 3600 {
                bail!("{key} must be between 1 and 3600 seconds, got {v}");
            }
        }
        let webhook_secrets = f
            .webhook_secret_files
            .iter()
            .map(|p| Secret::from_file(p))
            .collect::<Result<Vec<_>>>()?;
        if f.status_context.trim().is_empty() || f.status_context.len() > 255 {
            bail!(
                "status_context must be 1 to 255 characters, got {:?}",
                f.status_context
            );
        }
        for (key, v, max) in [
            ("retest_every_days", f.retest_every_days, 30),
            ("retest_unchanged_days", f.retest_unchanged_days, 365),
            ("retest_batch", f.retest_batch, 1000),
            ("retest_queue_limit", f.retest_queue_limit, 100),
        ] {
            if v == 0 || v > max {
                bail!("{key} must be between 1 and {max}, got {v}");
            }
        }
        if f.retest_unchanged_days < f.retest_every_days {
            bail!(
                "retest_unchanged_days ({}) must not be below retest_every_days ({})",
                f.retest_unchanged_days,
                f.retest_every_days
            );
        }
        let results = match (&f.results_dir, f.runner_token_files.is_empty()) {
            (None, true) => None,
            (None, false) => bail!(
                "runner_token_files is set but results_dir is not: where would the results go?"
            ),
            (Some(_), true) => bail!(
                "results_dir is set but runner_token_files is empty: no runner could ship results"
            ),
            (Some(dir), false) => {
                if !dir.is_dir() {
                    bail!("results_dir {} is not a directory", dir.display());
                }
                if f.results_accept_secs == 0 || f.results_accept_secs > 7 * 86400 {
                    bail!(
                        "results_accept_secs must be between 1 and 604800 (a week), got {}",
                        f.results_accept_secs
                    );
                }
                let mut runners = Vec::new();
                for (name, file) in &f.runner_token_files {
                    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                        bail!("runner_token_files: {name:?} is not a runner name");
                    }
                    let token = Secret::from_file(file)
                        .with_context(|| format!("runner_token_files.{name}"))?;
                    if token.expose().len() < 16 {
                        bail!("runner_token_files.{name}: the token in {} is shorter than 16 characters", file.display());
                    }
                    runners.push((name.clone(), token));
                }
                Some(Results {
                    dir: dir.clone(),
                    runners,
                    accept_secs: f.results_accept_secs as i64,
                })
            }
        };
        let listen = f
            .listen
            .parse()
            .with_context(|| format!("listen: {:?} is not an address:port", f.listen))?;
        Ok(Config {
            gitea_url: url("gitea_url", &f.gitea_url)?,
            bot_user: f.bot_user,
            gitea_token: Secret::from_file(&f.gitea_token_file)?,
            drone_url: url("drone_url", &f.drone_url)?,
            drone_token: Secret::from_file(&f.drone_token_file)?,
            drone_repo: Repo::parse(&f.drone_repo).context("drone_repo")?,
            drone_branch: f.drone_branch,
            recipes,
            orgs: f.orgs,
            allow_users: f.allow_users,
            poll_interval: Duration::from_secs(f.poll_interval_secs),
            sweep_interval: Duration::from_secs(f.sweep_interval_secs),
            follow_interval: Duration::from_secs(f.follow_interval_secs),
            request_timeout: Duration::from_secs(f.request_timeout_secs),
            listen,
            webhook_secrets,
            state_dir: f.state_dir,
            dashboard_url: url("dashboard_url", &f.dashboard_url)?,
            status_context: f.status_context,
            retest: Retest {
                every_days: f.retest_every_days,
                unchanged_days: f.retest_unchanged_days,
                batch: f.retest_batch,
                queue_limit: f.retest_queue_limit,
                open_issues: f.retest_open_issues,
            },
            results,
        })
    }

    /// The bot's Gitea client.
    pub fn gitea(&self) -> ccci::gitea::GiteaClient {
        ccci::gitea::GiteaClient::new(
            &format!("{}/api/v1", self.gitea_url),
            self.gitea_token.clone(),
            self.request_timeout,
        )
    }

    /// The bot's Drone client.
    pub fn drone(&self) -> ccci::drone::DroneClient {
        ccci::drone::DroneClient::new(
            &self.drone_url,
            self.drone_token.clone(),
            self.request_timeout,
        )
    }

    /// A run's page on the dashboard (the PR comment's and the commit status's link).
    pub fn run_page(&self, build: i64) -> String {
        format!("{}/runs/{build}.html", self.dashboard_url)
    }

    /// A recipe's page on the dashboard.
    pub fn recipe_page(&self, recipe: &str) -> String {
        format!("{}/recipes/{recipe}.html", self.dashboard_url)
    }

    /// The recipe enrolled for a repository, if any.
    pub fn recipe_of(&self, repo: &Repo) -> Option<&str> {
        self.recipes
            .iter()
            .find(|(_, r)| {
                r.owner.eq_ignore_ascii_case(&repo.owner) && r.name.eq_ignore_ascii_case(&repo.name)
            })
            .map(|(name, _)| name.as_str())
    }
}
