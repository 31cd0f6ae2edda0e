//! `-u`/image `User` → numeric ids, read from the container's own
//! /etc/passwd and /etc/group (like docker: names mean the image's users).
//!
//! The files belong to the image (or to a running container, which can rewrite them at any
//! time), so they are opened inside the rootfs: `openat2(RESOLVE_IN_ROOT)` resolves every
//! symlink and `..` as if the rootfs were `/` (a link to `/etc/shadow` stays the rootfs's own
//! `/etc/shadow`, never the host's), only a regular file is read (no fifo that blocks, no
//! `/dev/zero` that never ends, no device opened at all), and at most [`MAX_DB`] bytes.
//! podman reads them the same way.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The largest /etc/passwd or /etc/group read (a real one is a few KiB).
pub const MAX_DB: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to find user {0}: no matching entries in the container's /etc/passwd")]
    User(String),
    #[error("unable to find group {0}: no matching entries in the container's /etc/group")]
    Group(String),
    #[error("cannot read the container's {file} (in {rootfs})")]
    Read {
        file: String,
        rootfs: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the container's {0} is not a regular file")]
    NotRegular(String),
    #[error("the container's {0} is larger than {max} MiB", max = MAX_DB >> 20)]
    TooLarge(String),
}

/// `openat2(dir, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
fn open_in_root(dir: &File, path: &str) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: open_how is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid descriptor, NUL-terminated path and an open_how of the size passed; the
    // kernel returns a new descriptor that we own, or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor the kernel just gave us and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The contents of `rootfs/etc/<file>` as the container sees them; `None` when it does not
/// exist. The O_PATH descriptor is checked with fstat before anything opens the file for
/// reading (opening a device can act on it), then reopened through procfs, which reopens
/// that very inode rather than resolving a path again.
fn read_in_root(rootfs: &Path, file: &str) -> Result<Option<String>, Error> {
    let name = format!("/etc/{file}");
    let err = |source| Error::Read {
        file: name.clone(),
        rootfs: rootfs.into(),
        source,
    };
    let dir = File::open(rootfs).map_err(err)?;
    let path = match open_in_root(&dir, &name) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let proc_path = format!("/proc/self/fd/{}", path.as_raw_fd());
    let meta = std::fs::metadata(&proc_path).map_err(err)?;
    if !meta.is_file() {
        return Err(Error::NotRegular(name));
    }
    let f = File::open(&proc_path).map_err(err)?;
    let mut data = Vec::new();
    f.take(MAX_DB + 1).read_to_end(&mut data).map_err(err)?;
    if data.len() as u64 > MAX_DB {
        return Err(Error::TooLarge(name));
    }
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn read_db(rootfs: &Path, file: &str) -> Result<Vec<Vec<String>>, Error> {
    // A missing file is an image without that database; numeric ids still work.
    Ok(read_in_root(rootfs, file)?
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(String::from).collect())
        .collect())
}

/// Resolves `user[:group]` (names or numbers; empty means root).
pub fn resolve(rootfs: &Path, spec: &str) -> Result<User, Error> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let passwd = read_db(rootfs, "passwd")?;
    let entry = passwd
        .iter()
        .find(|e| e.len() >= 4 && (e[0] == u || e[2] == u));
    let (uid, mut gid, name, home) = match (entry, u.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse().map_err(|_| Error::User(u.into()))?,
            e[3].parse().map_err(|_| Error::User(u.into()))?,
            e[0].clone(),
            e.get(5).cloned().unwrap_or_else(|| "/".into()),
        ),
        (None, Ok(uid)) => (uid, 0, String::new(), "/".into()),
        (None, Err(_)) => return Err(Error::User(u.into())),
    };
    let groups = read_db(rootfs, "group")?;
    if let Some(g) = g {
        gid = match groups.iter().find(|e| e.len() >= 3 && e[0] == g) {
            Some(e) => e[2].parse().map_err(|_| Error::Group(g.into()))?,
            None => g.parse().map_err(|_| Error::Group(g.into()))?,
        };
    }
    // Supplementary groups: the user's memberships, only when no group was
    // forced (docker's behaviour).
    let additional_gids = if g.is_none() && !name.is_empty() {
        groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name))
            .filter_map(|e| e[2].parse().ok())
            .filter(|&x| x != gid)
            .collect()
    } else {
        Vec::new()
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1000:\nwheel:x:10:web\n",
        )
        .unwrap();
        let u = resolve(d.path(), "web").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/web"));
        assert_eq!(u.additional_gids, vec![10]);
        assert_eq!(resolve(d.path(), "web:wheel").unwrap().gid, 10);
        assert_eq!(resolve(d.path(), "").unwrap().uid, 0);
        assert_eq!(resolve(d.path(), "123:45").unwrap().gid, 45);
        assert!(resolve(d.path(), "nobody").is_err());
    }

    #[test]
    fn links_stay_in_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), "evil:x:4242:4242::/:/bin/sh\n").unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path(), d.path().join("etc/passwd")).unwrap();
        assert!(matches!(resolve(d.path(), "evil"), Err(Error::User(_))));
        // Inside the rootfs the same absolute link names the rootfs's file.
        let inner = d.path().join(host.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(inner.parent().unwrap()).unwrap();
        std::fs::write(&inner, "inner:x:7:7::/:/bin/sh\n").unwrap();
        assert_eq!(resolve(d.path(), "inner").unwrap().uid, 7);
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("etc/passwd")).unwrap();
        assert!(matches!(resolve(d.path(), "x"), Err(Error::User(_))));
        std::fs::create_dir_all(d.path().join("dev")).unwrap();
        std::os::unix::fs::symlink("/proc/self/root/dev/zero", d.path().join("dev/zero")).unwrap();
        assert!(resolve(d.path(), "x").is_err());
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            vec![b'#'; (MAX_DB + 1) as usize],
        )
        .unwrap();
        assert!(matches!(resolve(d.path(), "x"), Err(Error::TooLarge(_))));
    }
}
