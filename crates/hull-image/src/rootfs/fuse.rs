//! fuse-overlayfs: the container rootfs overlay in user space, for a user namespace where the
//! kernel refuses overlayfs (or when the user forces it, podman's storage option
//! `mount_program`).
//!
//! The snapshots need no conversion: fuse-overlayfs (checked against 1.10, Debian's) reads
//! the layout unpacked for the kernel's `userxattr` overlay. A 0/0 character device is a
//! whiteout to it as to the kernel (`get_whiteout_name`, which also takes `.wh.NAME` files),
//! and a directory is opaque when it has `trusted.overlay.opaque`, `user.overlay.opaque` or
//! `user.fuseoverlayfs.opaque` = `y`, or, where the filesystem has no xattrs, a
//! `.wh..wh..opq` file (`is_directory_opaque`). In the upper dir it writes whiteouts as 0/0
//! character devices too (mknod of those is allowed in a user namespace since Linux 5.8) and
//! marks opaque directories with `user.fuseoverlayfs.opaque` (`trusted.*` is refused there)
//! *plus* a `.wh..wh..opq` file, which commit and diff read as the marker it is.
//!
//! The mount is made by the fuse-overlayfs process itself, from inside the user's namespace
//! (root there may mount FUSE since Linux 4.18): it mounts, then daemonizes, and its first
//! process exits once the mount is in place. The daemon serves until the mount is gone:
//! `umount2` in the same mount namespace (the pause process's, where every hull command
//! runs) makes its read of /dev/fuse fail with ENODEV and it exits. So teardown is the same
//! `umount2` as for the kernel's overlay; nothing else must be killed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::RootfsError;

/// The program that mounts every container overlay of this process instead of the kernel.
static MOUNT_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Mounts container overlays with `program` (fuse-overlayfs) instead of the kernel's overlayfs,
/// for the rest of this process: podman's storage option `mount_program`. A second call is
/// ignored.
pub fn set_mount_program(program: PathBuf) {
    let _ = MOUNT_PROGRAM.set(program);
}

/// The program set with [`set_mount_program`].
pub(crate) fn mount_program() -> Option<&'static Path> {
    MOUNT_PROGRAM.get().map(PathBuf::as_path)
}

/// Where Debian (package `fuse-overlayfs`) and others install it; then `$PATH`.
pub(crate) fn find() -> Option<PathBuf> {
    let fixed = ["/usr/bin/fuse-overlayfs", "/usr/local/bin/fuse-overlayfs"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path).map(|d| d.join("fuse-overlayfs")))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the kernel refused an overlay mount made in a user namespace for a reason the
/// kernel's overlayfs has and fuse-overlayfs has not:
///
/// - EPERM: before Linux 5.11 overlayfs is not mountable in a user namespace at all (no
///   `FS_USERNS_MOUNT`), and an LSM may forbid it;
/// - EINVAL: an option this overlayfs does not know (`userxattr` arrived with 5.11; some
///   distribution kernels allowed overlay in a user namespace earlier without it) or a store
///   filesystem overlayfs will not take as a layer;
/// - ENODEV: no overlay filesystem type (a kernel built without it, or its module missing);
/// - EOPNOTSUPP: a store filesystem without a feature the overlay needs there (e.g. xattrs
///   for `userxattr`).
///
/// Anything else (ENOENT, EBUSY, EACCES, ENOMEM...) would fail fuse-overlayfs just the same,
/// or is hull's own bug, and is reported as it is.
pub(crate) fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EINVAL | libc::ENODEV | libc::EOPNOTSUPP)
    )
}

/// Mounts `lowers` (top first) with `upper` and `work` on `merged` through `program`.
pub(crate) fn mount(
    program: &Path,
    merged: &Path,
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<(), RootfsError> {
    // fuse-overlayfs before 1.15 splits lowerdir on ':' with no escape, and libfuse splits
    // -o on ','.
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        if p.to_string_lossy().contains([':', ',']) {
            return Err(RootfsError::MountProgramPath(p.to_path_buf()));
        }
    }
    let lower = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let failed = |detail: String| RootfsError::MountProgram {
        program: program.to_path_buf(),
        path: merged.to_path_buf(),
        detail,
    };
    // Its daemon redirects its stdio to /dev/null before the first process exits, so reading
    // stderr to the end waits for the mount only.
    let out = Command::new(program)
        .arg("-o")
        .arg(&opts)
        .arg(merged)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(failed(format!("{}: {}", out.status, err.trim())));
    }
    tracing::debug!("mounted {} with {}", merged.display(), program.display());
    Ok(())
}

/// What to do when the kernel's overlay mount failed with `e` (`in_userns`: hull runs
/// rootless; `fuse`: an installed fuse-overlayfs; `auto`: a copy is acceptable).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fallback {
    Fuse(PathBuf),
    Copy,
    Fail,
    /// Refused in a user namespace and no fuse-overlayfs: say what to install.
    NeedFuse,
}

pub(crate) fn fallback(
    e: &io::Error,
    in_userns: bool,
    fuse: Option<PathBuf>,
    auto: bool,
) -> Fallback {
    let nodev = e.raw_os_error() == Some(libc::ENODEV);
    match fuse {
        Some(p) if in_userns && refused(e) => Fallback::Fuse(p),
        // No overlayfs at all: a copy works anywhere (slow to make, but it works).
        _ if auto && nodev => Fallback::Copy,
        None if in_userns && refused(e) => Fallback::NeedFuse,
        _ => Fallback::Fail,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refused_mounts_fall_back_to_fuse_in_a_user_namespace_only() {
        let err = io::Error::from_raw_os_error;
        let fo = || Some(PathBuf::from("/usr/bin/fuse-overlayfs"));
        for errno in [libc::EPERM, libc::EINVAL, libc::ENODEV, libc::EOPNOTSUPP] {
            assert_eq!(
                fallback(&err(errno), true, fo(), true),
                Fallback::Fuse(fo().unwrap())
            );
            assert_eq!(
                fallback(&err(errno), true, fo(), false),
                Fallback::Fuse(fo().unwrap())
            );
        }
        // Not installed: a copy where there is no overlayfs and a copy will do, else the error
        // that says to install it.
        assert_eq!(
            fallback(&err(libc::ENODEV), true, None, true),
            Fallback::Copy
        );
        assert_eq!(
            fallback(&err(libc::EPERM), true, None, true),
            Fallback::NeedFuse
        );
        assert_eq!(
            fallback(&err(libc::ENODEV), true, None, false),
            Fallback::NeedFuse
        );
        // Root: as before (a copy without overlayfs, other errors as they are).
        assert_eq!(
            fallback(&err(libc::ENODEV), false, fo(), true),
            Fallback::Copy
        );
        assert_eq!(
            fallback(&err(libc::EPERM), false, fo(), true),
            Fallback::Fail
        );
        // Errors fuse-overlayfs would meet too.
        for errno in [libc::ENOENT, libc::EBUSY, libc::EACCES] {
            assert_eq!(fallback(&err(errno), true, fo(), true), Fallback::Fail);
        }
    }

    #[test]
    fn a_refusal_without_fuse_overlayfs_says_what_to_install() {
        let e = RootfsError::NeedFuse {
            path: "/s/containers/x/merged".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("/s/containers/x/merged")
                && msg.contains("apt-get install fuse-overlayfs"),
            "{msg}"
        );
    }

    #[test]
    fn paths_fuse_overlayfs_cannot_take_are_refused_before_running_it() {
        let e = mount(
            Path::new("/nonexistent/fuse-overlayfs"),
            Path::new("/m"),
            &[PathBuf::from("/a:b")],
            Path::new("/u"),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(
            matches!(&e, RootfsError::MountProgramPath(p) if p == Path::new("/a:b")),
            "{e:?}"
        );
        let e = mount(
            Path::new("/nonexistent/fuse-overlayfs"),
            Path::new("/m"),
            &[],
            Path::new("/u"),
            Path::new("/w"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/fuse-overlayfs"), "{e}");
    }
}
