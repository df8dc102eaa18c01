//! Atomic publishing.
//!
//! Each generation writes the overview, recipe pages, badges, feeds and the pages of unfinished
//! runs into a new sibling directory `site-<n>`, then swaps the symlink `current` to it with one
//! `rename`: a reader sees the old complete site or the new complete one, and a crash mid-write
//! leaves only an unpublished directory that the next run removes.
//!
//! Run pages (10,000 and more) would make every generation cost as many files, so they live in
//! a store shared by consecutive sites, `runs-<m>`, which each site reaches through its symlink
//! `runs`. The store keeps the published site intact by two rules:
//! - a page the published site lists is never changed before the swap; new pages are added
//!   (no published page links to them yet);
//! - an unfinished run's page lives in the site, at `live/<n>.html`, and the store holds a
//!   symlink `<n>.html -> ../current/live/<n>.html`, so it changes with the swap. Once the run
//!   is finished, its final page is published that way too, and after the swap the symlink is
//!   replaced by the file (same bytes).
//!
//! When a page the published site lists would have to change (a new renderer or
//! configuration), the generation starts a new store instead, and the old one is removed once
//! the new site is published.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ccci::fsx::replace_with;

const CURRENT: &str = "current";
const PREFIX: &str = "site-";
const STORE_PREFIX: &str = "runs-";
/// In a site: the symlink to its store, and the directory of live pages.
const RUNS: &str = "runs";
const LIVE: &str = "live";

/// A site being written.
pub struct Staging {
    out_dir: PathBuf,
    dir: PathBuf,
    name: String,
    prev: Option<PathBuf>,
    /// The store the previous site links to.
    prev_store: Option<String>,
    store: Option<Store>,
    made: HashSet<PathBuf>,
}

/// The run-page store this generation writes into.
struct Store {
    dir: PathBuf,
    name: String,
}

/// What the store holds for a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Absent,
    /// The symlink into the site's live pages.
    Live,
    File,
}

/// Holds `<out_dir>/.lock` for one generation: two at once (the timer's and one started by
/// hand) would remove each other's unpublished sites and share a store.
pub fn lock(out_dir: &Path) -> Result<ccci::fsx::Lock> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(".lock");
    match ccci::fsx::Lock::try_take(&path)? {
        Some(l) => Ok(l),
        None => bail!(
            "another dashboard-gen is publishing to {} (it holds {})",
            out_dir.display(),
            path.display()
        ),
    }
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

fn number(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.parse().ok()
}

impl Staging {
    /// Removes unpublished leftovers (a crashed run's site or store, the site before the
    /// current one, stores no site links to), then starts `site-<n+1>`.
    pub fn begin(out_dir: &Path) -> Result<Staging> {
        fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let prev = current(out_dir)?.filter(|p| p.is_dir());
        let prev_name = prev
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let prev_store = prev
            .as_ref()
            .and_then(|p| fs::read_link(p.join(RUNS)).ok())
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| number(n, STORE_PREFIX).is_some() && out_dir.join(n).is_dir());
        let mut highest = 0;
        for entry in
            fs::read_dir(out_dir).with_context(|| format!("listing {}", out_dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = if let Some(n) = number(&name, PREFIX) {
                highest = highest.max(n);
                Some(&name) == prev_name.as_ref()
            } else if number(&name, STORE_PREFIX).is_some() {
                Some(&name) == prev_store.as_ref()
            } else {
                continue;
            };
            if !keep {
                fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
        let name = format!("{PREFIX}{}", highest + 1);
        let dir = out_dir.join(&name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            out_dir: out_dir.to_owned(),
            dir,
            name,
            prev,
            prev_store,
            store: None,
            made: HashSet::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn previous(&self) -> Option<&Path> {
        self.prev.as_deref()
    }

    /// Links the site to the previous site's store, or to a new empty one when `fresh` (or
    /// there is none); says whether the store is new.
    pub fn open_store(&mut self, fresh: bool) -> Result<bool> {
        let (name, fresh) = match (&self.prev_store, fresh) {
            (Some(name), false) => (name.clone(), false),
            _ => {
                let next = self
                    .prev_store
                    .as_deref()
                    .and_then(|n| number(n, STORE_PREFIX))
                    .unwrap_or(0)
                    + 1;
                let name = format!("{STORE_PREFIX}{next}");
                let dir = self.out_dir.join(&name);
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                (name, true)
            }
        };
        let link = self.dir.join(RUNS);
        std::os::unix::fs::symlink(format!("../{name}"), &link)
            .with_context(|| format!("creating symlink {}", link.display()))?;
        self.store = Some(Store {
            dir: self.out_dir.join(&name),
            name,
        });
        Ok(fresh)
    }

    fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("open_store before writing run pages")
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

    /// Writes `rel` (a path inside the site, not under `runs/`) with `bytes`.
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

    pub fn live_page(build: i64) -> String {
        format!("{LIVE}/{build}.html")
    }

    pub fn entry(&self, build: i64) -> Entry {
        let path = self.store().dir.join(format!("{build}.html"));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => Entry::Live,
            Ok(_) => Entry::File,
            Err(_) => Entry::Absent,
        }
    }

    /// Adds a finished run's page to the store. Only for a page the published site does not
    /// list (see the module's rules).
    pub fn store_page(&mut self, build: i64, bytes: &[u8]) -> Result<()> {
        let path = self.store().dir.join(format!("{build}.html"));
        // Usually nothing is there: create it in place (one directory operation instead of
        // a create and a rename, which counts in a store of 10,000 pages). `create_new`
        // never follows a symlink; whatever is there (a crashed run's leftover) is replaced.
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => f
                .write_all(bytes)
                .with_context(|| format!("writing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                replace_with(&path, |tmp| fs::File::create(tmp)?.write_all(bytes))
                    .with_context(|| format!("writing {}", path.display()))
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// Makes the store serve `build`'s page from the site's live pages.
    pub fn store_live(&mut self, build: i64) -> Result<()> {
        if self.entry(build) == Entry::Live {
            return Ok(());
        }
        let path = self.store().dir.join(format!("{build}.html"));
        replace_with(&path, |tmp| {
            std::os::unix::fs::symlink(format!("../{CURRENT}/{LIVE}/{build}.html"), tmp)
        })
        .with_context(|| format!("linking {} to the live page", path.display()))
    }

    /// Copies a file from outside the site (a run's screenshot) to `<store>/<build>/<rel>`,
    /// refusing anything but a regular file under `max_bytes`. A file already there is kept:
    /// the published site may show it.
    pub fn store_artifact(
        &mut self,
        build: i64,
        rel: &str,
        from: &Path,
        max_bytes: u64,
    ) -> Result<()> {
        let to = self.store().dir.join(build.to_string()).join(rel);
        if to.exists() {
            return Ok(());
        }
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
        self.parent_of(&to)?;
        replace_with(&to, |tmp| fs::copy(from, tmp).map(drop))
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))
    }

    /// Swaps `current` to the new site with one rename.
    pub fn publish(self) -> Result<Published> {
        replace_with(&self.out_dir.join(CURRENT), |tmp| {
            std::os::unix::fs::symlink(&self.name, tmp)
        })
        .with_context(|| {
            format!(
                "publishing {} as {}/current",
                self.name,
                self.out_dir.display()
            )
        })?;
        if let Ok(d) = fs::File::open(&self.out_dir) {
            let _ = d.sync_all();
        }
        Ok(Published {
            old_store: self
                .prev_store
                .filter(|p| self.store.as_ref().is_some_and(|s| &s.name != p))
                .map(|p| self.out_dir.join(p)),
            store: self.store.map(|s| s.dir),
            dir: self.dir,
        })
    }
}

/// A site that is live: what is left to tidy in the store.
pub struct Published {
    pub dir: PathBuf,
    store: Option<PathBuf>,
    old_store: Option<PathBuf>,
}

impl Published {
    /// Replaces the store's symlink for a finished run by the page it points at.
    pub fn promote(&self, build: i64) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let page = store.join(format!("{build}.html"));
        replace_with(&page, |tmp| {
            fs::hard_link(self.dir.join(Staging::live_page(build)), tmp)
        })
        .with_context(|| format!("storing {}", page.display()))
    }

    /// Removes what the published site no longer links: store entries of other runs,
    /// leftovers of a crashed run, and the store the previous site used if it was replaced.
    pub fn sweep(&self, keep: &BTreeSet<i64>) -> Result<usize> {
        if let Some(old) = &self.old_store {
            fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
        }
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in fs::read_dir(store).with_context(|| format!("listing {}", store.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let n: Option<i64> = name.strip_suffix(".html").unwrap_or(&name).parse().ok();
            if n.is_some_and(|n| keep.contains(&n)) {
                continue;
            }
            let path = entry.path();
            let gone = if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            gone.with_context(|| format!("removing {}", path.display()))?;
            removed += 1;
        }
        Ok(removed)
    }
}
