//! Device nodes in the container's /dev: the runtime-spec's default set plus
//! `linux.devices`, and the standard symlinks.
//!
//! Outside a user namespace the nodes are made with `mknod`; inside one the
//! kernel refuses mknod of real devices, so the host's node is bind-mounted
//! onto an empty file instead (runc does the same).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::paths::{fd_path, open_in_root, parent_in_root, Kind};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("creating device {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.devices: {path}: {cause}")]
    Invalid { path: PathBuf, cause: &'static str },
}

/// A device node to create: path, type (`S_IFCHR`...), major, minor, mode, uid, gid.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) path: PathBuf,
    pub(crate) kind: libc::mode_t,
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// runtime-spec config-linux.md "Default Devices".
pub(crate) fn default_nodes() -> Vec<Node> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| Node {
        path: Path::new("/dev").join(name),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub(crate) fn from_spec(d: &LinuxDevice) -> Result<Node, DeviceError> {
    let invalid = |cause| DeviceError::Invalid {
        path: d.path().clone(),
        cause,
    };
    if !d.path().is_absolute() || !d.path().starts_with("/dev") {
        return Err(invalid("path must be absolute and under /dev"));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => return Err(invalid("type must be c, b, u or p")),
    };
    if d.major() < 0 || d.minor() < 0 {
        return Err(invalid("major and minor must not be negative"));
    }
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

fn create_err(path: &Path) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
    move |source| DeviceError::Create {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `n` under `root` by mknod, or by bind mount when `bind` is set.
pub(crate) fn create(root: &File, n: &Node, bind: bool) -> Result<(), DeviceError> {
    if bind {
        let target = open_in_root(root, &n.path, Some(Kind::File)).map_err(create_err(&n.path))?;
        return mount(
            Some(&n.path),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| create_err(&n.path)(e.into()));
    }
    let (dir, name) = parent_in_root(root, &n.path).map_err(create_err(&n.path))?;
    // A node left by the image (or by an earlier entry) is replaced, so that
    // the config, not the image, decides what the device is.
    // SAFETY: valid dirfd and NUL-terminated name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    let dev = libc::makedev(n.major as u32, n.minor as u32);
    // SAFETY: valid dirfd and NUL-terminated name; mknodat copies its arguments.
    let rc = unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), n.kind | n.mode, dev) };
    if rc != 0 {
        return Err(create_err(&n.path)(std::io::Error::last_os_error()));
    }
    // mknod applies the umask; set the exact mode and the owner.
    // SAFETY: as above; AT_SYMLINK_NOFOLLOW keeps us on the node we made.
    let rc = unsafe {
        libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), n.mode, 0)
            | libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                n.uid,
                n.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
    };
    if rc != 0 {
        return Err(create_err(&n.path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// /dev/fd, stdin, stdout, stderr and ptmx links (runc's default set), plus
/// /dev/core when the host has /proc/kcore.
pub(crate) fn create_links(root: &File) -> Result<(), DeviceError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let link = Path::new(link);
        let (dir, name) = parent_in_root(root, link).map_err(create_err(link))?;
        let t = std::ffi::CString::new(target).expect("static link targets have no NUL");
        if link == Path::new("/dev/ptmx") {
            // An image or tmpfs may hold a ptmx node already; the link wins.
            // SAFETY: valid dirfd and NUL-terminated name.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
        }
        // SAFETY: NUL-terminated strings and a valid dirfd.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(create_err(link)(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    #[test]
    fn spec_devices_are_checked() {
        let d = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o20666u32)
            .build()
            .expect("device");
        let n = from_spec(&d).expect("valid");
        assert_eq!((n.major, n.minor, n.mode), (10, 229, 0o666));
        let d = LinuxDeviceBuilder::default()
            .path("/etc/passwd")
            .typ(LinuxDeviceType::C)
            .build()
            .expect("device");
        assert!(from_spec(&d).is_err());
        assert_eq!(default_nodes().len(), 6);
    }
}
