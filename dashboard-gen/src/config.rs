//! dashboard-gen's configuration: one JSON file (`/etc/cc-ci/dashboard-gen.json`), the Drone
//! token read from the file it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use ccci::secret::Secret;

/// The file as written. Field names are the config keys `--help` documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Drone's root URL, e.g. `https://drone.ci.coopcloud.tech`.
    pub drone_url: String,
    pub drone_token_file: PathBuf,
    /// The Drone repository whose pipeline runs the tests, `owner/name`.
    pub drone_repo: String,
    /// Gitea's root URL, for PR links.
    pub gitea_url: String,
    /// Enrolled recipes: recipe name → Gitea repository `owner/name`.
    pub recipes: BTreeMap<String, String>,
    /// Where stage-runner writes `<build>/summary.json`.
    pub results_dir: PathBuf,
    /// Where the site is published: `<out_dir>/current` is what the web server serves.
    pub out_dir: PathBuf,
    /// Where finished builds are kept between runs.
    pub cache_dir: PathBuf,
    /// The site's public root URL (Atom ids and links, badge snippets).
    pub site_url: String,
    /// Runs shown per recipe page (and kept per recipe).
    #[serde(default = "default_history")]
    pub history: usize,
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Pages of 100 builds read at most per run.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

fn default_history() -> usize {
    50
}
fn default_timeout() -> u64 {
    10
}
fn default_max_pages() -> u32 {
    120
}

pub use ccci::config::Repo;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub drone_url: String,
    pub drone_token: Secret,
    pub drone_repo: Repo,
    pub gitea_url: String,
    pub recipes: BTreeMap<String, Repo>,
    pub results_dir: PathBuf,
    pub out_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub site_url: String,
    pub history: usize,
    pub request_timeout: Duration,
    pub max_pages: u32,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let file: File = ccci::config::load_json(path)?;
        Config::validate(file).with_context(|| format!("config {}", path.display()))
    }

    pub fn validate(f: File) -> Result<Config> {
        let url = ccci::config::http_url;
        let recipes = ccci::config::recipes(&f.recipes)?;
        if f.history == 0 || f.history > 1000 {
            bail!("history must be between 1 and 1000 runs, got {}", f.history);
        }
        if f.request_timeout_secs == 0 || f.request_timeout_secs > 600 {
            bail!(
                "request_timeout_secs must be between 1 and 600, got {}",
                f.request_timeout_secs
            );
        }
        if f.max_pages == 0 || f.max_pages > 10_000 {
            bail!("max_pages must be between 1 and 10000, got {}", f.max_pages);
        }
        for (key, dir) in [
            ("results_dir", &f.results_dir),
            ("out_dir", &f.out_dir),
            ("cache_dir", &f.cache_dir),
        ] {
            if dir.as_os_str().is_empty() {
                bail!("{key} must not be empty");
            }
        }
        Ok(Config {
            drone_url: url("drone_url", &f.drone_url)?,
            drone_token: Secret::from_file(&f.drone_token_file)?,
            drone_repo: Repo::parse(&f.drone_repo).context("drone_repo")?,
            gitea_url: url("gitea_url", &f.gitea_url)?,
            recipes,
            results_dir: f.results_dir,
            out_dir: f.out_dir,
            cache_dir: f.cache_dir,
            site_url: url("site_url", &f.site_url)?,
            history: f.history,
            request_timeout: Duration::from_secs(f.request_timeout_secs),
            max_pages: f.max_pages,
        })
    }
}
