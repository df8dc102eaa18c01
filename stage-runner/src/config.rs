//! stage-runner's settings: one JSON file (the NixOS module renders it); every setting also
//! has a flag of the same name (`--base-domain X` for `base_domain`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The abra server apps are deployed to (`default` for `abra server add --local`).
    #[serde(default = "default_server")]
    pub server: String,
    /// Apps are deployed at `<recipe>-<run>.<base_domain>`.
    pub base_domain: String,
    /// Run directories (params, generated values, per-run ABRA_DIR) live here.
    pub state_dir: PathBuf,
    /// Run summaries and artifacts, read by dashboard-gen.
    pub results_dir: PathBuf,
    /// The recipes this host tests (enrolled): a `!testme` for any other is refused.
    pub recipes: Vec<String>,
    /// cc-ci's `tests/` tree: `tests/<recipe>/` holds a recipe's own checks and `ci.json`,
    /// added to the generic ones every enrolled recipe gets.
    pub tests_dir: PathBuf,
    /// The abra executable.
    #[serde(default = "default_abra")]
    pub abra: PathBuf,
    /// The host's abra state; each run shares its `servers/` and gets a fresh `recipes/`.
    pub abra_dir: PathBuf,
    /// Python with pytest, playwright and requests.
    #[serde(default = "default_python")]
    pub python: PathBuf,
    #[serde(default = "default_chromium")]
    pub chromium: PathBuf,
    /// `PATTERN=ADDRESS` (`*.ci.test=127.0.0.1`): app names matching PATTERN are reached at
    /// ADDRESS, where no DNS knows them (a test machine, Traefik on 127.0.0.1). None on a
    /// host, whose DNS points the app domain at itself.
    #[serde(default)]
    pub resolve: Option<String>,
    /// `https`, as Traefik serves apps; `http` only for a proxy without TLS.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default = "default_tls_verify")]
    pub tls_verify: bool,
    /// How long an app may take to answer after a deploy; caps a recipe's own
    /// `deploy_timeout_secs`.
    #[serde(default = "default_deploy_timeout")]
    pub deploy_timeout_secs: u64,
    /// Bound on one abra command or one pytest phase.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// A whole run's bound, from prepare on: past it the stage still running is stopped, the
    /// app torn down, and every later stage (teardown aside) is an error "deadline". Keep
    /// Drone's build timeout above it, so cc-ci stops first and tears down.
    #[serde(default = "default_run_deadline")]
    pub run_deadline_secs: u64,
    /// The janitor reaps CI apps and run directories older than this.
    #[serde(default = "default_janitor_age")]
    pub janitor_max_age_secs: u64,
    /// Where a PR's source repository may be fetched from: a source must have the same scheme
    /// and host and start with the same path segments (compared as URL parts, not text), e.g.
    /// `https://git.coopcloud.tech/`.
    pub allowed_src: Vec<String>,
    /// Extra environment for abra and the engine questions asked beside it (e.g. `DOCKER_HOST`
    /// for an engine that is not the default one).
    #[serde(default)]
    pub abra_env: std::collections::BTreeMap<String, String>,
    /// Recipes whose own `tests/` may run on this host: that code comes with the PR, and the
    /// runner can reach the docker socket. Empty (the default): nobody's; no wildcard.
    #[serde(default)]
    pub trusted_recipes: Vec<String>,
    /// A runner on another host than the server: the server's bridge, where each stage ships
    /// the run's results (`<url>/results/<build>/…`, e.g. `https://hook.ci.coopcloud.tech`).
    /// None: the server reads `results_dir` itself (one host).
    #[serde(default)]
    pub results_url: Option<String>,
    /// The file holding this runner's token for `results_url` (the server's
    /// `runner_token_files` holds the same under this runner's name).
    #[serde(default)]
    pub results_token_file: Option<PathBuf>,
}

fn default_server() -> String {
    "default".into()
}
fn default_abra() -> PathBuf {
    "abra".into()
}
fn default_python() -> PathBuf {
    "python3".into()
}
fn default_chromium() -> PathBuf {
    "/usr/bin/chromium".into()
}
fn default_scheme() -> String {
    "https".into()
}
fn default_tls_verify() -> bool {
    true
}
fn default_deploy_timeout() -> u64 {
    900
}
fn default_command_timeout() -> u64 {
    1800
}
fn default_run_deadline() -> u64 {
    3600
}
fn default_janitor_age() -> u64 {
    6 * 3600
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let cfg: Config = ccci::config::load_json(path)?;
        cfg.validate()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(cfg)
    }

    /// Applies `--key value` overrides (underscores or hyphens) on top of the file.
    pub fn apply(mut self, overrides: &[(String, String)]) -> Result<Config> {
        let mut v = serde_json::to_value(&self)?;
        for (k, val) in overrides {
            let key = k.replace('-', "_");
            let obj = v.as_object_mut().expect("config is an object");
            let Some(slot) = obj.get_mut(&key) else {
                bail!("--{k}: no such setting (see --help)");
            };
            *slot = match slot {
                serde_json::Value::Number(_) => serde_json::Value::Number(
                    val.parse::<u64>()
                        .with_context(|| format!("--{k} takes a number"))?
                        .into(),
                ),
                serde_json::Value::Bool(_) => serde_json::Value::Bool(
                    val.parse()
                        .with_context(|| format!("--{k} takes true or false"))?,
                ),
                serde_json::Value::Array(_) => {
                    serde_json::Value::Array(val.split(',').map(|s| s.trim().into()).collect())
                }
                serde_json::Value::Object(_) => {
                    bail!("--{k}: set it in the config file")
                }
                _ => serde_json::Value::String(val.clone()),
            };
        }
        self = serde_json::from_value(v).context("applying overrides")?;
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<()> {
        if self.base_domain.is_empty()
            || !self
                .base_domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            bail!("base_domain {:?} is not a domain", self.base_domain);
        }
        for (key, v) in [
            ("deploy_timeout_secs", self.deploy_timeout_secs),
            ("command_timeout_secs", self.command_timeout_secs),
            ("run_deadline_secs", self.run_deadline_secs),
            // 0 would reap every run at every prepare, the ones in flight on other slots too.
            ("janitor_max_age_secs", self.janitor_max_age_secs),
        ] {
            if v == 0 {
                bail!("{key} must be at least 1 second, got 0");
            }
        }
        for (key, dir) in [("tests_dir", &self.tests_dir), ("abra_dir", &self.abra_dir)] {
            if !dir.is_dir() {
                bail!("{key} {} is not a directory", dir.display());
            }
        }
        if !matches!(self.scheme.as_str(), "http" | "https") {
            bail!("scheme must be http or https");
        }
        if let Some(r) = &self.resolve {
            crate::resolve::Resolve::parse(r)?;
        }
        if self.allowed_src.is_empty() {
            bail!("allowed_src is empty: no PR source could be fetched");
        }
        for r in &self.recipes {
            ccci::run::check_recipe_name(r).with_context(|| format!("recipes: {r:?}"))?;
        }
        match (&self.results_url, &self.results_token_file) {
            (None, None) => {}
            (Some(u), Some(_)) => {
                ccci::config::http_url("results_url", u)?;
            }
            (Some(_), None) => bail!("results_url is set but results_token_file is not"),
            (None, Some(_)) => bail!("results_token_file is set but results_url is not"),
        }
        for r in &self.trusted_recipes {
            ccci::run::check_recipe_name(r).with_context(|| {
                format!("trusted_recipes: {r:?} (name each recipe; no wildcard)")
            })?;
        }
        Ok(())
    }

    pub fn deploy_timeout(&self) -> Duration {
        Duration::from_secs(self.deploy_timeout_secs)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }
}
