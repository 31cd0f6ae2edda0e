//! Staging directories under `<root>/tmp`: one per pull, load or gc, `stage-XXXXXX`, flocked
//! by its owner for as long as it lives and removed when it ends.
//!
//! A pull killed with SIGKILL leaves its staged blobs and half-unpacked snapshots behind.
//! Every open of the store removes the stage directories nobody holds a lock on any more
//! (the kernel drops a dead process's flocks), and leaves those of pulls still running: a
//! live owner's lock makes our non-blocking `flock` fail.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, StoreError};

const PREFIX: &str = "stage-";

/// A staging directory of this process; removed on drop.
pub(crate) struct Stage {
    path: PathBuf,
    _lock: fs::File,
}

impl Stage {
    /// Creates and locks a fresh stage directory in `tmp`.
    pub(crate) fn create(tmp: &Path) -> Result<Stage, StoreError> {
        // A cleaner may lock and remove the directory between its creation and our lock:
        // then the path is gone or names another inode once we hold the lock; start over.
        for _ in 0..16 {
            let dir = tempfile::Builder::new()
                .prefix(PREFIX)
                .tempdir_in(tmp)
                .map_err(io_err(tmp))?
                .keep();
            let Some(lock) = try_lock(&dir).map_err(io_err(&dir))? else {
                continue;
            };
            let ours = lock.metadata().map_err(io_err(&dir))?.ino();
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.ino() == ours) {
                return Ok(Stage {
                    path: dir,
                    _lock: lock,
                });
            }
        }
        Err(io_err(tmp)(io::Error::other(
            "could not create a staging directory (removed by concurrent cleanups)",
        )))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Still locked: no cleaner touches it meanwhile.
        if let Err(e) = crate::fsutil::remove_any(&self.path) {
            tracing::warn!("remove staging directory {}: {e}", self.path.display());
        }
    }
}

/// Opens `dir` and takes an exclusive flock without waiting; `None` when another process
/// holds it.
fn try_lock(dir: &Path) -> io::Result<Option<fs::File>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    // SAFETY: flock on a descriptor `f` owns; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(f));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(None),
        _ => Err(e),
    }
}

/// Removes the stage directories of `tmp` whose owner is gone; with `legacy`, also every
/// other entry (the loose staging files of older hull versions: the caller holds the store
/// lock exclusively, so no pull of theirs runs). Returns how many entries went.
pub(crate) fn clean_stale(tmp: &Path, legacy: bool) -> Result<usize, StoreError> {
    let mut removed = 0;
    for e in fs::read_dir(tmp).map_err(io_err(tmp))?.flatten() {
        let path = e.path();
        let staged = e.file_name().to_string_lossy().starts_with(PREFIX)
            && e.file_type().is_ok_and(|t| t.is_dir());
        if !staged {
            if legacy {
                crate::fsutil::remove_any(&path).map_err(io_err(&path))?;
                removed += 1;
            }
            continue;
        }
        let lock = match try_lock(&path) {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            // Removed by another cleaner meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        crate::fsutil::remove_any(&path).map_err(io_err(&path))?;
        drop(lock);
        removed += 1;
    }
    Ok(removed)
}
