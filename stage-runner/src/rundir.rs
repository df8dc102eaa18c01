//! A run's private directory (mode 0700) under the state directory: what every stage of the
//! run must agree on — its params, app domain, versions, the values generated for the tests —
//! plus the run's own `ABRA_DIR` and the files secrets are inserted from.
//!
//! ```text
//! <state_dir>/runs/<run id>/
//!   run.json      this file's [`Run`]
//!   values.json   generated values (0600), read by the tests' `values` fixture
//!   kv.json       the tests' key-value store across phases
//!   secrets/      one file per inserted secret value (0600)
//!   abra/         ABRA_DIR: servers -> the host's, recipes/ fresh for this run
//!   lock          held (flock) by the stage-runner working on the run
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ci::CiSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// Drone build number; 0 for a `local` run.
    pub build: i64,
    pub recipe: String,
    #[serde(rename = "ref")]
    pub sha: String,
    pub pr: i64,
    pub src: String,
    pub domain: String,
    /// The newest release at or before the head (what `abra` would call its version).
    pub version: String,
    /// The published version the upgrade starts from; `None` with `upgrade_skip` set.
    pub upgrade_base: Option<String>,
    pub upgrade_skip: String,
    pub ci: CiSettings,
    pub created: i64,
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

pub fn dir(state_dir: &Path, id: &str) -> PathBuf {
    runs_dir(state_dir).join(id)
}

impl Run {
    pub fn load(dir: &Path) -> Result<Run> {
        let p = dir.join("run.json");
        let bytes = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        ccci::fsx::write_atomic(&dir.join("run.json"), &serde_json::to_vec_pretty(self)?)
    }
}

/// Creates the run directory, private to this user.
pub fn create(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    for sub in ["secrets", "abra/recipes"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Writes a file only this user can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Random URL-safe text from the kernel's CSPRNG.
pub fn random_token(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len * 2];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // Rejection sampling keeps the distribution uniform (62 does not divide 256).
    let out: String = bytes
        .iter()
        .filter(|b| (**b as usize) < 248)
        .map(|b| ALPHABET[*b as usize % 62] as char)
        .take(len)
        .collect();
    if out.len() < len {
        bail!("not enough random bytes");
    }
    Ok(out)
}

pub fn load_values(dir: &Path) -> Result<BTreeMap<String, String>> {
    match fs::read(dir.join("values.json")) {
        Ok(b) => serde_json::from_slice(&b).context("parsing values.json"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).context("reading values.json"),
    }
}

pub fn save_values(dir: &Path, values: &BTreeMap<String, String>) -> Result<()> {
    write_private(
        &dir.join("values.json"),
        &serde_json::to_vec_pretty(values)?,
    )
}

/// An exclusive hold on a run: the janitor never reaps a run that a stage is working on.
pub struct Lock(#[allow(dead_code)] ccci::fsx::Lock);

impl Lock {
    /// `None` when another process holds it.
    pub fn try_take(dir: &Path) -> Result<Option<Lock>> {
        Ok(ccci::fsx::Lock::try_take(&dir.join("lock"))?.map(Lock))
    }
}
