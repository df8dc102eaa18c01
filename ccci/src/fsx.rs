//! Writing files so that a crash never leaves half of one: temp file beside it, fsync,
//! rename, fsync of the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing {}", path.display()))
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
