//! A recipe's CI settings, `tests/<recipe>/ci.json` (documented in docs/writing-tests.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CiSettings {
    /// Path that answers 2xx/3xx once the app is up.
    #[serde(default = "default_health")]
    pub health_path: String,
    /// Overrides the global deploy timeout for slow apps.
    #[serde(default)]
    pub deploy_timeout_secs: Option<u64>,
    /// Lines set in the app's `.env` before deploying (e.g. `LETS_ENCRYPT_ENV` empty).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets to insert with a value of ours instead of abra generating them.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Values generated for the run (admin password …), handed to the tests.
    #[serde(default)]
    pub values: Vec<String>,
    /// Pins the version the upgrade stage starts from.
    #[serde(default)]
    pub upgrade_base: Option<String>,
    /// Stages skipped for this recipe, with the reason shown everywhere.
    #[serde(default)]
    pub skip: BTreeMap<String, String>,
    /// The page the run's card shows, screenshot after install's readiness check.
    #[serde(default = "default_screenshot")]
    pub screenshot_path: String,
}

fn default_screenshot() -> String {
    "/".into()
}

fn default_health() -> String {
    "/".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Version to insert at, e.g. `v2` (abra's generated ones are `v1`).
    #[serde(default = "default_version")]
    pub version: String,
    /// Generate it with abra (the default) rather than insert one of ours.
    #[serde(default)]
    pub generate: bool,
    /// Insert the run's generated value of this name.
    #[serde(default)]
    pub value_from: Option<String>,
}

fn default_version() -> String {
    "v1".into()
}

impl CiSettings {
    pub fn load(recipe_tests: &Path) -> Result<CiSettings> {
        let p = recipe_tests.join("ci.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CiSettings {
                health_path: default_health(),
                screenshot_path: default_screenshot(),
                ..Default::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
}
