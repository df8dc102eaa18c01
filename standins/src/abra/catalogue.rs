//! Builds the stand-in recipe catalogue: each `standins/recipes/<recipe>/<version>/` holds the
//! plain files of one release; [`build`] turns them into `<dest>/<recipe>` git repos with one
//! commit and one annotated tag per release, oldest first, as recipe maintainers publish them.
//! `abra recipe fetch` then clones from there (`$STANDIN_ABRA_CATALOGUE`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::recipe::{git, parse_version};

/// Hidden `abra` mode that builds a catalogue (for the local run's setup).
pub const MODE: &str = "__standin-catalogue";

/// The recipe sources shipped with the stand-ins.
pub fn source_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes"))
}

/// A throwaway host's abra side, under one directory.
pub struct Host {
    /// An `ABRA_DIR` that knows the local engine as server `default`.
    pub abra_dir: PathBuf,
    /// The recipe catalogue, built from [`source_dir`].
    pub catalogue: PathBuf,
}

/// Builds the catalogue and registers the local engine with `abra server add --local`, run by the
/// stand-in `abra` binary at `abra`.
pub fn host(dir: &Path, abra: &Path) -> Result<Host> {
    let host = Host {
        abra_dir: dir.join("abra"),
        catalogue: dir.join("catalogue"),
    };
    build(&source_dir(), &host.catalogue)?;
    let out = std::process::Command::new(abra)
        .args(["server", "add", "--local"])
        .env("ABRA_DIR", &host.abra_dir)
        .output()
        .with_context(|| format!("running the stand-in abra {}", abra.display()))?;
    if !out.status.success() {
        anyhow::bail!("abra server add: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(host)
}

/// Builds every recipe under `src` into `dest/<recipe>`; returns the recipe names.
/// An existing `dest/<recipe>` is replaced.
pub fn build(src: &Path, dest: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut names = Vec::new();
    for e in fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let e = e?;
        if !e.file_type()?.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        build_recipe(&e.path(), &dest.join(&name))
            .with_context(|| format!("building recipe {name}"))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// One recipe: a repo on branch `main`, a commit + tag per release directory.
pub fn build_recipe(src: &Path, repo: &Path) -> Result<()> {
    let mut versions: Vec<String> = fs::read_dir(src)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|v| parse_version(v).is_some())
        .collect();
    versions.sort_by_key(|v| parse_version(v));
    if repo.exists() {
        fs::remove_dir_all(repo).with_context(|| format!("removing {}", repo.display()))?;
    }
    fs::create_dir_all(repo)?;
    git(repo, &["init", "-q", "-b", "main"])?;
    for v in &versions {
        // Replace the worktree with this release's files, so deletions are releases too.
        for e in fs::read_dir(repo)? {
            let e = e?;
            if e.file_name() == ".git" {
                continue;
            }
            if e.file_type()?.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        copy_tree(&src.join(v), repo)?;
        git(repo, &["add", "-A"])?;
        git(
            repo,
            &["commit", "-q", "-m", &format!("chore: publish {v} release")],
        )?;
        git(
            repo,
            &["tag", "-a", v, "-m", &format!("chore: publish {v} release")],
        )?;
    }
    Ok(())
}

/// Copies a directory tree (regular files and dirs, modes kept).
pub fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    for e in fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            fs::copy(e.path(), &to)
                .with_context(|| format!("copying {} to {}", e.path().display(), to.display()))?;
        }
    }
    Ok(())
}
