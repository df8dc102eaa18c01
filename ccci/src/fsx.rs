//! Writing files so that a crash never leaves half of one: temp file beside it, rename over
//! (and, for [`write_atomic`], fsync of both).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically and durably, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        replace_with(path, |tmp| {
            let mut f = File::create(tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })?;
        File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` (a file, a symlink, nothing) by what `make` puts at a temporary path beside
/// it, with one rename: a reader sees the old entry or the new one, never half of one, and a
/// symlink at `path` is replaced, never written through. Not fsynced.
pub fn replace_with(
    path: &Path,
    make: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = tmp_beside(path);
    // A crashed run's leftover would make a link or symlink fail.
    let _ = fs::remove_file(&tmp);
    make(&tmp)?;
    fs::rename(&tmp, path)
}

fn tmp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// An exclusive hold on a lock file (flock(2)), released when dropped or when the process
/// ends, however it ends.
pub struct Lock(#[allow(dead_code)] File);

impl Lock {
    /// Takes the lock at `path` (created 0600 if absent); `None` when another process holds
    /// it. (std's `File::try_lock` is newer than the Rust the NixOS release builds with.)
    #[allow(unsafe_code)]
    pub fn try_take(path: &Path) -> Result<Option<Lock>> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("opening the lock {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        Ok((rc == 0).then_some(Lock(f)))
    }
}
