//! Copying a file tree between two directory fds, one entry at a time and never through a
//! path: every step below the starting point is an `openat(…, O_NOFOLLOW)` (or
//! `fstatat(AT_SYMLINK_NOFOLLOW)`, `readlinkat`, `symlinkat`, `mkdirat`, `unlinkat`) relative to
//! a directory fd already held, so a container process that swaps a directory for a symlink
//! while we copy gets an `ELOOP`/`ENOTDIR` instead of redirecting us (CVE-2018-15664: docker
//! resolved the path, then used it). Symlinks are copied as symlinks, never followed.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

/// Who owns what the copy creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The source's owners (`cp -a`).
    Keep,
    /// Everything owned by this uid:gid (docker's default: the destination's user).
    Fixed(u32, u32),
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
pub(crate) fn open_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid fd and NUL-terminated name; the result is checked.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    })
}

/// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` and every
/// symlink on the way (absolute ones too) are resolved as if `root` were `/`, by the kernel,
/// atomically; `/proc/self/…` style magic links are refused.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    let rel = path.as_bytes().trim_ascii_start();
    let rel: &[u8] = match rel.iter().position(|&b| b != b'/') {
        Some(i) => &rel[i..],
        None => b".",
    };
    let c = cstr(OsStr::from_bytes(rel))?;
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: NUL-terminated path, `how` outlives the call and its true size is passed;
        // the kernel returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match owned(fd as libc::c_int) {
            // EAGAIN: a concurrent rename raced the lookup (openat2(2) says: retry).
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            r => return r,
        }
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `name` empty: the fd itself.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<libc::stat> {
    let c = cstr(name)?;
    // SAFETY: stat is plain old data, filled by the kernel on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: valid fd, NUL-terminated name, `st` is writable.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

pub(crate) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The target of the symlink `name` in `dir` (`name` empty: the O_PATH fd `dir` itself).
fn read_link_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<CString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, NUL-terminated name, buffer of the given length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    CString::new(buf).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reopens an `O_PATH` fd for real I/O through our own `/proc/self/fd` entry (the documented
/// way; it names exactly the inode the fd holds, whatever the path does meanwhile).
fn reopen(fd: BorrowedFd<'_>, flags: i32) -> io::Result<OwnedFd> {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: NUL-terminated path; the result is checked.
    owned(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Names in the directory `dir` (without `.` and `..`).
fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        out.push(e?.file_name());
    }
    out.sort();
    Ok(out)
}

/// Removes `name` from `dst` unless it is a directory (replaced by what we copy).
fn remove_non_dir(dst: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid fd and NUL-terminated name.
    let r = unsafe { libc::unlinkat(dst.as_raw_fd(), name.as_ptr(), 0) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// Copies the entry `src` (an `O_PATH | O_NOFOLLOW` fd) to `name` in directory `dst`.
pub(crate) fn copy_entry(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    owner: Owner,
) -> io::Result<()> {
    // `..` names the parent of `dst`: never a place to copy to (see `clean` in mod.rs).
    if name == OsStr::new("..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "'..' as a copy target",
        ));
    }
    let st = stat_at(src, OsStr::new(""))?;
    let (uid, gid) = match owner {
        Owner::Keep => (st.st_uid, st.st_gid),
        Owner::Fixed(u, g) => (u, g),
    };
    let perm = st.st_mode & 0o7777;
    let c = cstr(name)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let from = reopen(src, libc::O_RDONLY | libc::O_DIRECTORY)?;
            let to = make_dir(dst, name)?;
            copy_children(from.as_fd(), to.as_fd(), owner)?;
            finish(to.as_fd(), uid, gid, perm, &st)
        }
        libc::S_IFREG => {
            let mut from = File::from(reopen(src, libc::O_RDONLY)?);
            // Always a new file (docker's rule: unlink, then create): whatever is there — a
            // symlink, a FIFO that would hang us, a device node the container made (CAP_MKNOD,
            // no nodev on its rootfs) that would have us write a host disk — is replaced, never
            // opened. A directory there makes the unlink fail (EISDIR), as it should.
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
            let to = match open_at(dst, name, flags, 0o600) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    remove_non_dir(dst, &c)?;
                    open_at(dst, name, flags, 0o600)?
                }
                r => r?,
            };
            let mut to = File::from(to);
            io::copy(&mut from, &mut to)?;
            finish(to.as_fd(), uid, gid, perm, &st)
        }
        libc::S_IFLNK => {
            let target = read_link_at(src, OsStr::new(""))?;
            remove_non_dir(dst, &c)?;
            // SAFETY: NUL-terminated strings, valid fd.
            check(unsafe { libc::symlinkat(target.as_ptr(), dst.as_raw_fd(), c.as_ptr()) })?;
            // SAFETY: as above; AT_SYMLINK_NOFOLLOW changes the link itself.
            check(unsafe {
                libc::fchownat(
                    dst.as_raw_fd(),
                    c.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?;
            let times = [st_atime(&st), st_mtime(&st)];
            // SAFETY: as above; `times` holds two timespecs.
            check(unsafe {
                libc::utimensat(
                    dst.as_raw_fd(),
                    c.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
        }
        _ => {
            // fifos, sockets and device nodes: made anew, as tar does.
            remove_non_dir(dst, &c)?;
            // SAFETY: NUL-terminated name, valid fd.
            check(unsafe { libc::mknodat(dst.as_raw_fd(), c.as_ptr(), st.st_mode, st.st_rdev) })?;
            let node = open_at(dst, name, libc::O_PATH, 0)?;
            let p = CString::new(format!("/proc/self/fd/{}", node.as_raw_fd()))
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: NUL-terminated path naming our own O_PATH fd of the new node.
            check(unsafe { libc::chown(p.as_ptr(), uid, gid) })?;
            // SAFETY: as above.
            check(unsafe { libc::chmod(p.as_ptr(), perm) })
        }
    }
}

/// Copies every entry of directory `from` into directory `to`.
pub(crate) fn copy_children(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    owner: Owner,
) -> io::Result<()> {
    for n in list(from)? {
        let child = open_at(from, &n, libc::O_PATH, 0)?;
        copy_entry(child.as_fd(), to, &n, owner)?;
    }
    Ok(())
}

/// `name` in `dst` as a directory we may fill: made (0700 until [`finish`]) or, when one is
/// there already, opened without following a symlink.
fn make_dir(dst: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid fd and NUL-terminated name.
    let r = unsafe { libc::mkdirat(dst.as_raw_fd(), c.as_ptr(), 0o700) };
    match check(r) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        r => r?,
    }
    match open_at(dst, name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot overwrite non-directory {:?} with directory", name),
            ))
        }
        r => r,
    }
}

fn st_atime(st: &libc::stat) -> libc::timespec {
    libc::timespec {
        tv_sec: st.st_atime,
        tv_nsec: st.st_atime_nsec,
    }
}

fn st_mtime(st: &libc::stat) -> libc::timespec {
    libc::timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec,
    }
}

/// Owner, mode (after the owner: chown clears set-id bits) and times of a copied file or dir.
fn finish(fd: BorrowedFd<'_>, uid: u32, gid: u32, perm: u32, st: &libc::stat) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: valid fd for the three calls; `times` holds two timespecs.
    unsafe {
        check(libc::fchown(raw, uid, gid))?;
        check(libc::fchmod(raw, perm))?;
        let times = [st_atime(st), st_mtime(st)];
        check(libc::futimens(raw, times.as_ptr()))
    }
}
