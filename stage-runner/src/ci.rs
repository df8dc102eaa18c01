//! A recipe's CI settings, `tests/<recipe>/ci.json` (documented in docs/writing-tests.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ccci::summary::Stage;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CiSettings {
    /// Path that answers once the app is up, through Traefik.
    #[serde(default = "default_health")]
    pub health_path: String,
    /// The HTTP statuses at `health_path` that mean up (e.g. `[401]` for an API that wants a
    /// login); empty: any 2xx or 3xx.
    #[serde(default)]
    pub health_codes: Vec<u16>,
    /// Overrides the global deploy timeout for slow apps.
    #[serde(default)]
    pub deploy_timeout_secs: Option<u64>,
    /// Lines set in the app's `.env` before deploying (e.g. `LETS_ENCRYPT_ENV` empty). Values
    /// may name the run's domain: `{domain}` (the app's), `{app}` (its first label),
    /// `{base_domain}` — e.g. `"SANDBOX_DOMAIN": "{app}-sandbox.{base_domain}"`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A compose file beside ci.json added to every deploy (e.g. a longer `start_period`).
    #[serde(default)]
    pub overlay: Option<String>,
    /// A compose file beside ci.json added to the upgrade base's deploy only (what the old
    /// release needs and the head does not).
    #[serde(default)]
    pub base_overlay: Option<String>,
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
    /// Generic checks switched off, each with the reason shown on the run page:
    /// `backup-data` (the snapshot holds every backed-up path; the probes come back with the
    /// restore), `backup-dump` (database dumps in the snapshot are whole).
    #[serde(default)]
    pub checks_off: BTreeMap<String, String>,
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
    /// Insert the run's generated value of this name; without it abra generates the secret
    /// (its value reaches the tests as `values["secret_<name>"]`).
    #[serde(default)]
    pub value_from: Option<String>,
}

fn default_version() -> String {
    "v1".into()
}

/// The stages a recipe may declare skipped: the ladder's rungs above install, the floor every
/// run stands on.
fn skippable() -> Vec<&'static str> {
    Stage::LADDER[1..].iter().map(|s| s.as_str()).collect()
}

/// The generic checks a recipe may switch off, with a reason.
pub const SWITCHABLE: &[&str] = &["backup-data", "backup-dump"];

/// What `{…}` in an `env` value may name.
const PLACEHOLDERS: &[&str] = &["domain", "app", "base_domain"];

/// `check-suite DIR…`: each recipe suite's `ci.json` read exactly as a run reads it (the one
/// validator: the local check, `.ci/run` and prepare all say the same). 0 when all are valid.
pub fn check_suites(dirs: &[std::path::PathBuf]) -> u8 {
    let mut worst = 0;
    for d in dirs {
        let name = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let named = if name.starts_with('_') {
            Ok(())
        } else {
            ccci::run::check_recipe_name(name)
                .map_err(|e| anyhow::anyhow!("the folder is named after the recipe: {e:#}"))
        };
        let checked = named.and_then(|()| {
            if !d.join("ci.json").is_file() {
                bail!("{} has no ci.json", d.display());
            }
            CiSettings::load(d).map(drop)
        });
        match checked {
            Ok(()) => println!("{}: ci.json is valid", d.display()),
            Err(e) => {
                println!("ERROR {}: {e:#}", d.display());
                worst = 2;
            }
        }
    }
    worst
}

impl CiSettings {
    /// `tests/<recipe>/ci.json`; a recipe without one (or without a test tree) gets the
    /// defaults: the generic checks alone.
    pub fn load(recipe_tests: &Path) -> Result<CiSettings> {
        let p = recipe_tests.join("ci.json");
        let ci = match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice::<CiSettings>(&b)
                .with_context(|| format!("parsing {}", p.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CiSettings {
                    health_path: default_health(),
                    screenshot_path: default_screenshot(),
                    ..Default::default()
                })
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        ci.check(recipe_tests)
            .with_context(|| format!("{}", p.display()))?;
        Ok(ci)
    }

    /// What serde cannot say: names that must exist, values that must make sense.
    fn check(&self, dir: &Path) -> Result<()> {
        for (key, path) in [
            ("health_path", &self.health_path),
            ("screenshot_path", &self.screenshot_path),
        ] {
            if !path.starts_with('/') {
                bail!("{key} {path:?} must start with /");
            }
        }
        if let Some(c) = self.health_codes.iter().find(|c| !(100..600).contains(*c)) {
            bail!("health_codes: {c} is no HTTP status");
        }
        declared(
            "skip",
            &self.skip,
            &skippable(),
            "cannot be skipped",
            "shown wherever the skip is",
        )?;
        declared(
            "checks_off",
            &self.checks_off,
            SWITCHABLE,
            "is no generic check that can be switched off",
            "shown on the run page",
        )?;
        for (key, value) in &self.env {
            for name in placeholders(value) {
                if !PLACEHOLDERS.contains(&name) {
                    bail!(
                        "env {key}: unknown placeholder {{{name}}} (known: {})",
                        PLACEHOLDERS
                            .iter()
                            .map(|n| format!("{{{n}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        for (key, file) in [
            ("overlay", &self.overlay),
            ("base_overlay", &self.base_overlay),
        ] {
            let Some(f) = file else { continue };
            let plain = !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !f.starts_with('.')
                && (f.ends_with(".yml") || f.ends_with(".yaml"));
            if !plain {
                bail!("{key} {f:?}: name a .yml file beside ci.json");
            }
            if !dir.join(f).is_file() {
                bail!("{key}: {} does not exist", dir.join(f).display());
            }
        }
        for (name, spec) in &self.secrets {
            if let Some(from) = &spec.value_from {
                if !self.values.contains(from) {
                    bail!("secrets {name}: value_from {from} is not in values");
                }
            }
        }
        Ok(())
    }

    /// The `env` values with the run's names put in.
    pub fn env_for(&self, domain: &str, base_domain: &str) -> Vec<(String, String)> {
        let app = domain.split('.').next().unwrap_or(domain);
        self.env
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace("{domain}", domain)
                    .replace("{app}", app)
                    .replace("{base_domain}", base_domain);
                (k.clone(), v)
            })
            .collect()
    }
}

/// A map of things switched off, each with its reason: only names in `allowed`, and no
/// reason left empty.
fn declared(
    key: &str,
    map: &BTreeMap<String, String>,
    allowed: &[&str],
    not_allowed: &str,
    shown: &str,
) -> Result<()> {
    for (name, why) in map {
        if !allowed.contains(&name.as_str()) {
            bail!(
                "{key}: {name:?} {not_allowed} (one of: {})",
                allowed.join(", ")
            );
        }
        if why.trim().is_empty() {
            bail!("{key}: {name} needs a reason, {shown}");
        }
    }
    Ok(())
}

/// The names inside `{…}` in a value.
fn placeholders(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/writing-tests.md's full example is a ci.json stage-runner reads, and it shows
    /// every key there is.
    #[test]
    fn the_documented_example_is_every_key_and_valid() {
        let doc = include_str!("../../docs/writing-tests.md");
        let start = doc.find("```json\n").expect("the example") + "```json\n".len();
        let example = &doc[start..start + doc[start..].find("```").unwrap()];
        let ci: CiSettings = serde_json::from_str(example).expect("the example parses");
        let shown: serde_json::Value = serde_json::from_str(example).unwrap();
        let keys = serde_json::to_value(&ci).unwrap();
        for k in keys.as_object().unwrap().keys() {
            assert!(shown.get(k).is_some(), "the example lacks {k}");
            assert!(doc.contains(&format!("- `{k}`")), "no bullet explains {k}");
        }
    }

    fn checked(json: &str) -> String {
        let dir = std::env::temp_dir().join(format!("ci-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ci.json"), json).unwrap();
        let r = CiSettings::load(&dir).map(|_| "ok".to_owned());
        let _ = std::fs::remove_dir_all(&dir);
        r.unwrap_or_else(|e| format!("{e:#}"))
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(checked("{}"), "ok");
        assert!(checked(r#"{"helth_path": "/"}"#).contains("unknown field `helth_path`"));
        assert!(checked(r#"{"skip": {"install": "x"}}"#).contains("\"install\" cannot be skipped"));
        assert!(checked(r#"{"skip": {"backup": " "}}"#).contains("backup needs a reason"));
        assert!(checked(r#"{"checks_off": {"answers": "x"}}"#).contains("no generic check"));
        assert!(checked(r#"{"env": {"X": "{domian}"}}"#).contains("unknown placeholder {domian}"));
        assert!(checked(r#"{"overlay": "../x.yml"}"#).contains("name a .yml file beside ci.json"));
        assert!(checked(r#"{"overlay": "ci.yml"}"#).contains("does not exist"));
        assert!(checked(r#"{"health_codes": [99]}"#).contains("99 is no HTTP status"));
        assert!(checked(r#"{"health_path": "x"}"#).contains("must start with /"));
        assert!(checked(r#"{"secrets": {"a": {"value_from": "p"}}}"#).contains("not in values"));
        // Once documented, never read: refused rather than silently ignored.
        assert!(checked(r#"{"secrets": {"a": {"generate": true}}}"#)
            .contains("unknown field `generate`"));
    }

    #[test]
    fn env_values_take_the_run_s_names() {
        let ci: CiSettings = serde_json::from_str(
            r#"{"env": {"S": "{app}-sandbox.{base_domain}", "D": "{domain}"}}"#,
        )
        .unwrap();
        let env = ci.env_for("cryptpad-12.ci.example.org", "ci.example.org");
        assert_eq!(
            env,
            [
                ("D".to_owned(), "cryptpad-12.ci.example.org".to_owned()),
                (
                    "S".to_owned(),
                    "cryptpad-12-sandbox.ci.example.org".to_owned()
                )
            ]
        );
    }
}
