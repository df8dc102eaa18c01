//! Atomic publishing: each generation writes a complete new site into a sibling directory
//! `site-<n>`, then swaps the symlink `current` to it with one `rename`. The web server serves
//! `<out_dir>/current`; until the swap it sees the previous complete site, and a crash
//! mid-write leaves only an unpublished directory that the next run removes.
//!
//! Pages that did not change are hard-linked from the previous site instead of rewritten.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const CURRENT: &str = "current";
const PREFIX: &str = "site-";

/// A site being written.
pub struct Staging {
    out_dir: PathBuf,
    dir: PathBuf,
    name: String,
    prev: Option<PathBuf>,
    made: HashSet<PathBuf>,
}

/// The directory `current` points at, if any.
pub fn current(out_dir: &Path) -> Result<Option<PathBuf>> {
    let link = out_dir.join(CURRENT);
    match fs::symlink_metadata(&link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", link.display())),
        Ok(m) if !m.file_type().is_symlink() => bail!(
            "{} is not a symlink; move it away (dashboard-gen publishes by swapping a symlink)",
            link.display()
        ),
        Ok(_) => {
            let target =
                fs::read_link(&link).with_context(|| format!("reading {}", link.display()))?;
            Ok(Some(out_dir.join(target)))
        }
    }
}

fn site_number(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

impl Staging {
    /// Removes unpublished leftovers (a crashed run's directory, the site before the current
    /// one), then starts `site-<n+1>`.
    pub fn begin(out_dir: &Path) -> Result<Staging> {
        fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let prev = current(out_dir)?;
        let prev_name = prev
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let mut highest = 0;
        for entry in
            fs::read_dir(out_dir).with_context(|| format!("listing {}", out_dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = site_number(&name) else {
                continue;
            };
            highest = highest.max(n);
            if Some(&name) != prev_name.as_ref() {
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing old site {}", entry.path().display()))?;
            }
        }
        let name = format!("{PREFIX}{}", highest + 1);
        let dir = out_dir.join(&name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            out_dir: out_dir.to_owned(),
            dir,
            name,
            prev: prev.filter(|p| p.is_dir()),
            made: HashSet::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn previous(&self) -> Option<&Path> {
        self.prev.as_deref()
    }

    fn parent_of(&mut self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            if !self.made.contains(parent) {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
                self.made.insert(parent.to_owned());
            }
        }
        Ok(())
    }

    /// Writes `rel` (a path inside the site) with `bytes`.
    pub fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        self.parent_of(&path)?;
        let mut f =
            fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Hard-links `rel` from the previous site; `false` when there is nothing to link.
    pub fn reuse(&mut self, rel: &str) -> bool {
        let Some(prev) = &self.prev else { return false };
        let from = prev.join(rel);
        let to = self.dir.join(rel);
        if self.parent_of(&to).is_err() {
            return false;
        }
        fs::hard_link(&from, &to).is_ok()
    }

    /// Copies a file from outside the site (a run's screenshot) to `rel`, refusing anything
    /// but a regular file under `max_bytes`.
    pub fn copy_in(&mut self, rel: &str, from: &Path, max_bytes: u64) -> Result<()> {
        let meta =
            fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
        if !meta.file_type().is_file() {
            bail!("{} is not a regular file", from.display());
        }
        if meta.len() > max_bytes {
            bail!(
                "{} is {} bytes, over the {max_bytes}-byte limit",
                from.display(),
                meta.len()
            );
        }
        let to = self.dir.join(rel);
        self.parent_of(&to)?;
        fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(())
    }

    /// Swaps `current` to the new site with one rename.
    pub fn publish(self) -> Result<PathBuf> {
        let tmp = self
            .out_dir
            .join(format!(".{CURRENT}.tmp.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&self.name, &tmp)
            .with_context(|| format!("creating symlink {}", tmp.display()))?;
        fs::rename(&tmp, self.out_dir.join(CURRENT)).with_context(|| {
            format!(
                "publishing {} as {}/current",
                self.name,
                self.out_dir.display()
            )
        })?;
        if let Ok(d) = fs::File::open(&self.out_dir) {
            let _ = d.sync_all();
        }
        Ok(self.dir)
    }
}
