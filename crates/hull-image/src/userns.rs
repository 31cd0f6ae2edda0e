//! The store used from inside a user namespace (rootless hull: the user's pause process's
//! namespace, where hull is root of that namespace only). The kernel then differs in three
//! ways that unpacking and mounting must follow, as podman's native overlay does:
//!
//! - `trusted.*` xattrs need CAP_SYS_ADMIN in the initial namespace: opaque directories are
//!   marked `user.overlay.opaque` and the overlay is mounted with `userxattr` (Linux ≥ 5.11),
//!   which makes overlayfs read (and write, on copy-up) the `user.overlay.*` names;
//! - mknod of real devices is refused (a 0/0 whiteout is allowed since Linux 5.8): device
//!   nodes of a layer are skipped with a warning; the runtime binds the container's /dev
//!   entries from the host anyway;
//! - chown to an id outside the namespace's map fails with EINVAL: with the single-id
//!   fallback (no subordinate ids) such files stay owned by the user (root inside), as
//!   podman's `ignore_chown_errors`.

use std::path::Path;
use std::sync::{Once, OnceLock};

/// The opaque-directory xattr names overlayfs reads, trusted (root) and user (userxattr), and
/// the one fuse-overlayfs writes in a user namespace (where `trusted.*` is refused; see
/// `rootfs/fuse.rs`).
pub(crate) const OPAQUE_XATTRS: [&[u8]; 3] = [
    b"trusted.overlay.opaque",
    b"user.overlay.opaque",
    b"user.fuseoverlayfs.opaque",
];

/// The file fuse-overlayfs puts in a directory of its upper dir that it makes opaque, next to
/// the xattr (the OCI layer marker's name). It describes the directory; it is not content.
pub(crate) const FUSE_OPAQUE_FILE: &str = ".wh..wh..opq";

/// Whether this process runs in a user namespace other than the initial one.
pub(crate) fn active() -> bool {
    static IN: OnceLock<bool> = OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
    })
}

/// The xattr that marks an opaque directory in a snapshot made here.
pub(crate) fn opaque_xattr() -> &'static str {
    if active() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// Extra overlay mount options (after the others, with the leading comma).
pub(crate) fn overlay_options() -> &'static str {
    if active() {
        ",userxattr"
    } else {
        ""
    }
}

/// Whether `name` is one of overlayfs's own xattrs (`trusted.overlay.*`, `user.overlay.*`
/// which a `userxattr` mount reads, `user.fuseoverlayfs.*` which fuse-overlayfs reads): they
/// describe the layer, not a file, and an image must not smuggle them in (opaque, redirect,
/// metacopy, origin).
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"user.fuseoverlayfs.")
}

/// Whether `name` marks an opaque directory, in either namespace.
pub(crate) fn is_opaque_xattr(name: &[u8]) -> bool {
    OPAQUE_XATTRS.contains(&name)
}

/// Says once per command that device nodes are left out.
pub(crate) fn skipped_device(path: &Path) {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        eprintln!(
            "WARN: rootless: device nodes in image layers cannot be created in a user \
             namespace and are skipped (first: {})",
            path.display()
        );
    });
}

/// Whether a failed chown should be ignored: an id the namespace does not map.
pub(crate) fn unmapped_id(e: &std::io::Error) -> bool {
    active() && e.raw_os_error() == Some(libc::EINVAL)
}
