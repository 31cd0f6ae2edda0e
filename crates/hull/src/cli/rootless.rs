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

/// Applies `--storage-opt KEY=VALUE`. Only `mount_program` (podman's spelling, also as
/// `overlay.mount_program`) exists: the program that mounts container overlays.
pub(crate) fn storage_opts(opts: &[String]) -> anyhow::Result<()> {
    for o in opts {
        let Some((key, value)) = o.split_once('=') else {
            anyhow::bail!("--storage-opt {o}: expected KEY=VALUE");
        };
        match key {
            "mount_program" | "overlay.mount_program" if !value.is_empty() => {
                hull_image::rootfs::set_mount_program(PathBuf::from(value));
            }
            "mount_program" | "overlay.mount_program" => {
                anyhow::bail!("--storage-opt {o}: mount_program needs a program (fuse-overlayfs)")
            }
            _ => {
                anyhow::bail!("--storage-opt {o}: unknown option {key} (hull knows mount_program)")
            }
        }
    }
    Ok(())
}
