//! Thin wrappers over the libc calls std does not expose: xattrs, mknod,
//! lchown and nanosecond mtimes on symlinks.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) mod at;
mod rmtree;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a nul byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets an extended attribute without following a final symlink.
pub(crate) fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains nul"))?;
    // SAFETY: both pointers are valid nul-terminated strings owned above, and
    // value points to value.len() readable bytes for the duration of the call.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(rc)
}

/// Lists extended attributes of `path` (not following symlinks) with values.
pub(crate) fn lxattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = cpath(path)?;
    let mut names = vec![0u8; 4096];
    // SAFETY: p is a valid C string; names is a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // Filesystems without xattr support simply have none to copy.
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "xattr name contains nul"))?;
        let mut val = vec![0u8; 65536];
        // SAFETY: valid C strings and a writable buffer of val.len() bytes.
        let len = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        val.truncate(len as usize);
        out.push((name.to_vec(), val));
    }
    Ok(out)
}

/// Raw lsetxattr with a byte-string name (used when copying xattrs verbatim).
pub(crate) fn lsetxattr_raw(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    lsetxattr(path, &OsStr::from_bytes(name).to_string_lossy(), value)
}

/// mknod(2): `kind` is `libc::S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
pub(crate) fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let p = cpath(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: p is a valid C string; mknod does not retain the pointer.
    check(unsafe { libc::mknod(p.as_ptr(), kind | (perm & 0o7777) as libc::mode_t, dev) })
}

/// lchown(2): ownership of the entry itself, never a symlink's target.
pub(crate) fn lchown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is a valid C string.
    check(unsafe { libc::lchown(p.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) })
}

/// Sets atime and mtime (to the same value) without following symlinks.
pub(crate) fn set_mtime(path: &Path, secs: i64, nsecs: i64) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nsecs as _,
    };
    let times = [ts, ts];
    // SAFETY: p is a valid C string and times points to two timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Removes whatever is at `path` (file, symlink, device or whole tree).
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => rmtree::remove_tree(&cpath(path)?),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
