//! Container root filesystems: an overlayfs mount of the image's snapshot
//! chain plus a per-container upper/work dir, or a plain copy where the
//! kernel has no overlayfs.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use crate::digest::Digest;
use crate::store::{Store, StoreError};

mod copy;
mod fuse;
mod image_mount;

pub use fuse::set_mount_program;

/// The mode recorded in the store's `rootfs` row for a fuse-overlayfs mount: its upper dir
/// marks opaque directories with a `.wh..wh..opq` file too, the kernel's never does.
pub(crate) const FUSE_MODE: &str = "overlay-fuse";

/// Errors preparing or tearing down a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid container id {0:?}: use 1-128 of [A-Za-z0-9_.-], not starting with '.'")]
    BadId(String),
    #[error("container {0} already has a rootfs")]
    Exists(String),
    #[error("container {0} has no rootfs")]
    NotFound(String),
    #[error("image {0} is not mounted")]
    NotMounted(String),
    #[error("container {0} has no overlay upper directory (its rootfs is a copy)")]
    NoUpper(String),
    #[error("snapshot {0} of the image is missing; pull the image again")]
    MissingSnapshot(Digest),
    #[error("mounting overlay on {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "mounting overlay on {path}: the kernel refused overlayfs in the user namespace \
         (rootless overlay needs Linux >= 5.11 and a storage filesystem with user xattrs) and \
         fuse-overlayfs, the fallback, is not installed: install it (Debian: apt-get install \
         fuse-overlayfs)"
    )]
    NeedFuse {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting overlay on {path} with {program}: {detail}")]
    MountProgram {
        program: PathBuf,
        path: PathBuf,
        detail: String,
    },
    #[error("fuse-overlayfs cannot take the path {0} (it has ':' or ','): use another --root")]
    MountProgramPath(PathBuf),
    #[error("unmounting {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to build a rootfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsMode {
    /// overlayfs, falling back to a copy when the kernel lacks overlayfs.
    Auto,
    Overlay,
    Copy,
}

/// How durable a container's writable layer must be.
///
/// `Volatile` mounts the overlay with `volatile` (Linux ≥ 5.10): overlayfs then never syncs the
/// upper filesystem — not at `fsync`/`syncfs` inside the container and, above all, not at
/// unmount, where an ordinary overlay flushes *every* dirty page of the filesystem holding the
/// store (measured: one `umount2` took 578 ms while a compile wrote to the disk, 0.4 ms when
/// quiet). The price: after a host crash the upper dir may be inconsistent, so overlayfs marks
/// it (`work/work/incompat/volatile`) and refuses to mount it again. Meant for containers whose
/// upper dir is discarded anyway (`run --rm`), as podman does for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// The upper dir survives a host crash (docker semantics for kept containers).
    #[default]
    Durable,
    /// Nothing is synced; the upper dir is discarded after a crash.
    Volatile,
}

/// A prepared container root filesystem.
#[derive(Clone, Debug)]
pub struct Rootfs {
    pub container_id: String,
    /// The directory to use as the OCI bundle's `root.path`.
    pub path: PathBuf,
    /// `Overlay` or `Copy`: what was actually done.
    pub mode: RootfsMode,
    /// Whether the overlay was mounted `volatile` (always `Durable` for a copy).
    pub durability: Durability,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// overlayfs splits lowerdir on ':' and options on ','; both can be
/// escaped with a backslash.
fn escape_overlay(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ':' | ',' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

impl Store {
    /// Prepares the root filesystem of container `container_id` from image
    /// `image` (name or id): `<root>/containers/<id>/merged`, an overlay of
    /// the image's snapshots (top layer first in lowerdir) with a private
    /// `upper` and `work`. The snapshots stay alive until
    /// [`Store::teardown_rootfs`], even if the image is removed meanwhile.
    pub fn prepare_rootfs(
        &mut self,
        image: &str,
        container_id: &str,
        mode: RootfsMode,
    ) -> Result<Rootfs, RootfsError> {
        self.prepare_rootfs_with(image, container_id, mode, Durability::Durable)
    }

    /// [`Store::prepare_rootfs`] with a choice of [`Durability`] for the overlay's upper dir.
    pub fn prepare_rootfs_with(
        &mut self,
        image: &str,
        container_id: &str,
        mode: RootfsMode,
        durability: Durability,
    ) -> Result<Rootfs, RootfsError> {
        if !valid_id(container_id) {
            return Err(RootfsError::BadId(container_id.to_string()));
        }
        let _lock = self.lock_shared()?;
        let img = self.lookup(image)?;
        let chains: Vec<Digest> = img.layers.iter().map(|l| l.chain_id.clone()).collect();
        for c in &chains {
            if !self.has_snapshot(c) {
                return Err(RootfsError::MissingSnapshot(c.clone()));
            }
        }
        let dir = self.containers_dir().join(container_id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RootfsError::Exists(container_id.to_string()))
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        let how = Build { mode, durability };
        let result = self.build_rootfs(&dir, &img.id, &chains, container_id, how);
        if result.is_err() {
            let _ = unmount(&dir.join("merged"));
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn build_rootfs(
        &mut self,
        dir: &Path,
        image_id: &Digest,
        chains: &[Digest],
        id: &str,
        how: Build,
    ) -> Result<Rootfs, RootfsError> {
        let merged = dir.join("merged");
        for sub in ["upper", "work", "merged"] {
            let p = dir.join(sub);
            fs::create_dir(&p).map_err(io_err(&p))?;
        }
        let lowers: Vec<PathBuf> = chains.iter().rev().map(|c| self.snapshot_path(c)).collect();
        let (done, durability, mode_s) = make(dir, &lowers, how)?;
        let chains_json = serde_json::to_string(chains).map_err(|source| StoreError::Corrupt {
            what: format!("rootfs {id}"),
            source,
        })?;
        let inserted = self.db().execute(
            "INSERT OR IGNORE INTO rootfs(container_id, image_id, chains, mode) VALUES (?1, ?2, ?3, ?4)",
            params![id, image_id.to_string(), chains_json, mode_s],
        ).map_err(StoreError::from)?;
        if inserted == 0 {
            return Err(RootfsError::Exists(id.to_string()));
        }
        Ok(Rootfs {
            container_id: id.to_string(),
            path: merged,
            mode: done,
            durability,
        })
    }

    /// Unmounts and deletes the rootfs of `container_id`, then drops
    /// snapshots only it kept alive (when its image was removed meanwhile).
    pub fn teardown_rootfs(&mut self, container_id: &str) -> Result<(), RootfsError> {
        if !valid_id(container_id) {
            return Err(RootfsError::BadId(container_id.to_string()));
        }
        let image: Option<String> = self
            .db()
            .query_row(
                "SELECT image_id FROM rootfs WHERE container_id = ?1",
                [container_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::from)?;
        let dir = self.containers_dir().join(container_id);
        if image.is_none() && !dir.exists() {
            return Err(RootfsError::NotFound(container_id.to_string()));
        }
        let merged = dir.join("merged");
        if dir.join(VOLATILE_MARK).exists() && !is_mounted(&merged) {
            // A volatile overlay that is no longer mounted although never torn down: the host
            // went down under it (hull never remounts a rootfs), so its upper dir may be torn.
            // overlayfs would refuse to mount it again; it is only ever discarded, here.
            tracing::info!(
                "discarding the volatile upper dir of container {container_id} (unmounted by a host crash or reboot)"
            );
        }
        unmount(&merged)?;
        crate::fsutil::remove_any(&dir).map_err(io_err(&dir))?;
        self.db()
            .execute("DELETE FROM rootfs WHERE container_id = ?1", [container_id])
            .map_err(StoreError::from)?;
        if let Some(id) = image {
            if self.lookup(&id).is_err() {
                self.gc_if_idle()?;
            }
        }
        Ok(())
    }
}

/// Mounts or copies the rootfs in `dir`: what was done, its durability and the mode recorded.
/// The kernel's overlayfs unless a mount program is set; where the kernel refuses it in a
/// user namespace, fuse-overlayfs when installed (see [`fuse::fallback`]).
fn make(
    dir: &Path,
    lowers: &[PathBuf],
    how: Build,
) -> Result<(RootfsMode, Durability, &'static str), RootfsError> {
    let merged = dir.join("merged");
    let fuse = |program: &Path| -> Result<_, RootfsError> {
        let lowers = lowers_or_empty(dir, lowers)?;
        fuse::mount(
            program,
            &merged,
            &lowers,
            &dir.join("upper"),
            &dir.join("work"),
        )?;
        // fuse-overlayfs has no `volatile`; its upper dir is never refused after a crash.
        Ok((RootfsMode::Overlay, Durability::Durable, FUSE_MODE))
    };
    let copy = || -> Result<_, RootfsError> {
        copy::populate(lowers, &merged)?;
        Ok((RootfsMode::Copy, Durability::Durable, "copy"))
    };
    if how.mode == RootfsMode::Copy {
        return copy();
    }
    if let Some(program) = fuse::mount_program() {
        return fuse(program);
    }
    let volatile = how.durability == Durability::Volatile;
    match mount_overlay_durability(dir, lowers, volatile) {
        Ok(Durability::Volatile) => Ok((
            RootfsMode::Overlay,
            Durability::Volatile,
            "overlay-volatile",
        )),
        Ok(d) => Ok((RootfsMode::Overlay, d, "overlay")),
        Err(RootfsError::Mount { path, source }) => {
            let auto = how.mode == RootfsMode::Auto;
            match fuse::fallback(&source, crate::userns::active(), fuse::find(), auto) {
                fuse::Fallback::Fuse(program) => {
                    tracing::info!(
                        "the kernel refused overlayfs in the user namespace ({source}); \
                         mounting {} with {}",
                        path.display(),
                        program.display()
                    );
                    fuse(&program)
                }
                fuse::Fallback::Copy => copy(),
                fuse::Fallback::NeedFuse => Err(RootfsError::NeedFuse { path, source }),
                fuse::Fallback::Fail => Err(RootfsError::Mount { path, source }),
            }
        }
        Err(e) => Err(e),
    }
}

/// How to build a rootfs (prepare's choices, passed down as one value).
#[derive(Clone, Copy)]
struct Build {
    mode: RootfsMode,
    durability: Durability,
}

/// What overlayfs leaves in the work dir of a `volatile` mount (kernel
/// Documentation/filesystems/overlayfs.rst, "Volatile mount"): while it exists, the upper dir
/// cannot be mounted again.
const VOLATILE_MARK: &str = "work/work/incompat/volatile";

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Mounts the overlay, `volatile` when asked and the kernel has it; the durability it got.
fn mount_overlay_durability(
    dir: &Path,
    lowers: &[PathBuf],
    volatile: bool,
) -> Result<Durability, RootfsError> {
    with_volatile_fallback(volatile, |v| mount_overlay(dir, lowers, v))
}

/// Runs `mount` with `volatile`; when that fails with EINVAL, again without it. Kernels before
/// 5.10 do not know the `volatile` option and reject the whole mount with EINVAL: a durable
/// overlay is only slower to unmount, so `run --rm` still works there (and the rootfs is
/// recorded durable, so a restart never discards its upper dir). Any other failure, or one of
/// a durable mount, is returned as it is.
fn with_volatile_fallback(
    volatile: bool,
    mut mount: impl FnMut(bool) -> Result<(), RootfsError>,
) -> Result<Durability, RootfsError> {
    match mount(volatile) {
        Ok(()) if volatile => Ok(Durability::Volatile),
        Ok(()) => Ok(Durability::Durable),
        Err(RootfsError::Mount { path, source })
            if volatile && source.raw_os_error() == Some(libc::EINVAL) =>
        {
            tracing::debug!(
                "overlay at {} refused the volatile option ({source}); mounting it durable",
                path.display()
            );
            mount(false).map(|()| Durability::Durable)
        }
        Err(e) => Err(e),
    }
}

fn mount_overlay(dir: &Path, lowers: &[PathBuf], volatile: bool) -> Result<(), RootfsError> {
    let merged = dir.join("merged");
    let upper = dir.join("upper");
    let work = dir.join("work");
    let lowers = lowers_or_empty(dir, lowers)?;
    let tail = format!(
        "upperdir={},workdir={}{}{}",
        escape_overlay(&upper),
        escape_overlay(&work),
        if volatile { ",volatile" } else { "" },
        crate::userns::overlay_options()
    );
    mount_lowers(&merged, &lowers, &tail, 0)
}

/// `lowers`, or for an image without layers `dir/empty`: an overlay needs one lowerdir.
fn lowers_or_empty(dir: &Path, lowers: &[PathBuf]) -> Result<Vec<PathBuf>, RootfsError> {
    if !lowers.is_empty() {
        return Ok(lowers.to_vec());
    }
    let empty = dir.join("empty");
    // Already there when this is the retry of a refused mount (durable, or fuse-overlayfs).
    match fs::create_dir(&empty) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_err(&empty)(e)),
        _ => Ok(vec![empty]),
    }
}

/// Mounts an overlay of `lowers` (top first) on `target` with the options `tail` after
/// `lowerdir` and mount `flags`.
pub(crate) fn mount_lowers(
    target: &Path,
    lowers: &[PathBuf],
    tail: &str,
    flags: libc::c_ulong,
) -> Result<(), RootfsError> {
    let mount_err = |source| RootfsError::Mount {
        path: target.to_path_buf(),
        source,
    };
    let lower = lowers
        .iter()
        .map(|p| escape_overlay(p))
        .collect::<Vec<_>>()
        .join(":");
    let sep = if tail.is_empty() { "" } else { "," };
    let opts = format!("lowerdir={lower}{sep}{tail}");
    // mount(2) copies at most one page of options; deep images need the
    // /proc/self/fd form, which overlayfs resolves at mount time.
    let mut held = Vec::new();
    let opts = if opts.len() < 4000 {
        opts
    } else {
        let mut fds = Vec::new();
        for l in lowers {
            let f = fs::File::open(l).map_err(io_err(l))?;
            fds.push(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ));
            held.push(f);
        }
        format!("lowerdir={}{sep}{tail}", fds.join(":"))
    };
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| mount_err(io::Error::from(io::ErrorKind::InvalidInput)))
    };
    let target_c = c(target.as_os_str().as_bytes())?;
    let fstype = c(b"overlay")?;
    let data = c(opts.as_bytes())?;
    // SAFETY: all pointers are valid nul-terminated strings that outlive
    // the call; mount(2) copies them.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    drop(held);
    if rc < 0 {
        return Err(mount_err(io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn unmount(path: &Path) -> Result<(), RootfsError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| RootfsError::Unmount {
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: c is a valid C string. MNT_DETACH so a lingering process
    // inside the rootfs does not block teardown.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (copy mode, or already unmounted).
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(RootfsError::Unmount {
                path: path.to_path_buf(),
                source: e,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A mount that fails with `errno` whenever it is asked for `volatile`; the calls it got.
    fn fake(
        errno: Option<i32>,
        calls: &mut Vec<bool>,
    ) -> impl FnMut(bool) -> Result<(), RootfsError> + '_ {
        move |volatile| {
            calls.push(volatile);
            match errno {
                Some(e) if volatile => Err(RootfsError::Mount {
                    path: "/m".into(),
                    source: io::Error::from_raw_os_error(e),
                }),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn volatile_falls_back_to_durable_only_on_einval() {
        let mut calls = Vec::new();
        let d = with_volatile_fallback(true, fake(Some(libc::EINVAL), &mut calls)).unwrap();
        assert_eq!((d, calls), (Durability::Durable, vec![true, false]));

        let mut calls = Vec::new();
        let d = with_volatile_fallback(true, fake(None, &mut calls)).unwrap();
        assert_eq!((d, calls), (Durability::Volatile, vec![true]));

        let mut calls = Vec::new();
        let d = with_volatile_fallback(false, fake(None, &mut calls)).unwrap();
        assert_eq!((d, calls), (Durability::Durable, vec![false]));

        // Another failure (ENODEV: no overlayfs, for the copy fallback) is no reason to retry.
        let mut calls = Vec::new();
        let e = with_volatile_fallback(true, fake(Some(libc::ENODEV), &mut calls)).unwrap_err();
        assert!(
            matches!(&e, RootfsError::Mount { source, .. } if source.raw_os_error() == Some(libc::ENODEV)),
            "{e:?}"
        );
        assert_eq!(calls, vec![true]);

        // A durable mount that fails with EINVAL fails.
        let mut calls = Vec::new();
        let einval = |v: bool| {
            calls.push(v);
            Err(RootfsError::Mount {
                path: "/m".into(),
                source: io::Error::from_raw_os_error(libc::EINVAL),
            })
        };
        assert!(with_volatile_fallback(false, einval).is_err());
        assert_eq!(calls, vec![false]);
    }

    #[test]
    fn overlay_retry_tolerates_the_empty_lower_of_the_first_try() {
        // mount_overlay creates `empty` for an image without layers before mounting; the
        // durable retry must not fail on it. As an unprivileged or unsupported mount fails
        // past that point, the error seen is the mount's, never an Io error on `empty`.
        let t = tempfile::tempdir().unwrap();
        for sub in ["upper", "work", "merged"] {
            fs::create_dir(t.path().join(sub)).unwrap();
        }
        fs::create_dir(t.path().join("empty")).unwrap();
        match mount_overlay(t.path(), &[], false) {
            Ok(()) => unmount(&t.path().join("merged")).unwrap(),
            Err(e) => assert!(matches!(e, RootfsError::Mount { .. }), "{e:?}"),
        }
    }
}
