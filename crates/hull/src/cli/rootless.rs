//! The hook into rootless mode (hull-engine's `rootless`): enter the user's namespace before
//! anything else runs, and pick the storage root.

use std::path::PathBuf;

use hull_engine::rootless::{self, Mode};

/// Root's storage when `--root` is not given.
const SYSTEM_ROOT: &str = "/var/lib/hull";

/// Enters the user's namespace when unprivileged (see hull-engine's `rootless`) and returns
/// the storage root: `--root` when given, else root's or the user's default. Runs before
/// any thread is started.
pub(crate) fn storage_root(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let mode = rootless::enter()?;
    Ok(match (flag, mode) {
        (Some(r), _) => r,
        (None, Mode::Root) => PathBuf::from(SYSTEM_ROOT),
        (None, Mode::Rootless(dirs)) => dirs.data,
    })
}
