//! Recursive mount attributes (`rro`, `rnosuid`, ... as runc 1.1 names
//! them): `mount_setattr(2)` with `AT_RECURSIVE` (Linux 5.12) sets them on a
//! mount and every mount below it, which a remount (one mount only) cannot.
//!
//! The constants are the kernel's ABI (include/uapi/linux/mount.h), spelled
//! out here because older `libc` releases the workspace accepts lack them.

use std::os::fd::{AsRawFd, OwnedFd};

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// The access-time field: one of the three values below, or 0 (relatime).
const MOUNT_ATTR_ATIME: u64 = 0x0000_0070;
const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Recursive mount options (runc's `recAttrFlags`): name, whether the
/// option clears the attribute, the attribute.
const REC: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rrelatime", false, MOUNT_ATTR_RELATIME),
    ("rnorelatime", true, MOUNT_ATTR_RELATIME),
    ("rnoatime", false, MOUNT_ATTR_NOATIME),
    ("ratime", true, MOUNT_ATTR_NOATIME),
    ("rstrictatime", false, MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", true, MOUNT_ATTR_STRICTATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// The names `features` lists.
pub(crate) fn option_names() -> impl Iterator<Item = &'static str> {
    REC.iter().map(|(n, _, _)| *n)
}

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecAttr {
    pub(crate) set: u64,
    pub(crate) clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl RecAttr {
    pub(crate) fn is_empty(&self) -> bool {
        self.set == 0 && self.clr == 0
    }

    /// Folds option `name` in, if it is a recursive one; later options win.
    pub(crate) fn apply(&mut self, name: &str) -> bool {
        let Some(&(_, clear, attr)) = REC.iter().find(|(n, _, _)| *n == name) else {
            return false;
        };
        let atime = attr & MOUNT_ATTR_ATIME == attr;
        if atime {
            // The access time is a field, not a bit: the kernel wants the
            // whole field in attr_clr whenever it changes (mount_setattr(2)),
            // and a partial field there is EINVAL. Clearing one setting means
            // the default, relatime.
            self.clr |= MOUNT_ATTR_ATIME;
            self.set &= !MOUNT_ATTR_ATIME;
            if !clear {
                self.set |= attr;
            }
        } else if clear {
            self.clr |= attr;
            self.set &= !attr;
        } else {
            self.set |= attr;
            self.clr &= !attr;
        }
        true
    }

    /// Applies the attributes to the mount at `fd` and every mount below it.
    pub(crate) fn set_recursive(&self, fd: &OwnedFd) -> std::io::Result<()> {
        let empty = c"";
        // SAFETY: a valid dirfd, a NUL-terminated empty path, and a pointer to
        // a live mount_attr of the size passed; the kernel only reads it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                fd.as_raw_fd(),
                empty.as_ptr(),
                (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
                self as *const RecAttr,
                std::mem::size_of::<RecAttr>(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_fold() {
        let mut a = RecAttr::default();
        assert!(a.apply("rro") && a.apply("rnosuid"));
        assert!(!a.apply("ro"));
        assert_eq!((a.set, a.clr), (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0));
        a.apply("rrw");
        assert_eq!((a.set, a.clr), (MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY));
        let mut a = RecAttr::default();
        a.apply("rnoatime");
        assert_eq!((a.set, a.clr), (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME));
        a.apply("rstrictatime");
        assert_eq!((a.set, a.clr), (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME));
        a.apply("rrelatime");
        assert_eq!((a.set, a.clr), (0, MOUNT_ATTR_ATIME));
        assert!(!a.is_empty());
    }
}
