//! Opening entries of a tree that someone else may be changing (the rootfs or upper dir of a
//! running container, for `export` and `commit --pause=false`).
//!
//! Every step is relative to an already-open directory fd and never follows a symlink, and
//! what was opened is checked against what the listing saw (device, inode, type): a file
//! swapped for a symlink to a host file, or for a FIFO or a device, between the `lstat` and
//! the open is refused instead of read (a host file in the tar, or an open that blocks
//! forever). Regular files are first opened `O_PATH`, which never runs a device's or FIFO's
//! open, and only reopened for reading once the fd is known to be a regular file.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Opens the top of a tree (a path the engine chose) as a directory fd.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)?;
    Ok(f.into())
}

/// `/proc/self/fd/DIR/NAME`: the kernel resolves `DIR` to exactly the open directory (no
/// path walk that a rename could redirect); `l*` calls on it do not follow a final symlink.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = fd_path(dir.as_raw_fd());
    p.push(name);
    p
}

fn fd_path(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// The directory `name` under `dir`, if it is still the one `want` describes.
pub(crate) fn open_dir_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    want: &fs::Metadata,
) -> io::Result<OwnedFd> {
    let fd = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
    same(&fd, want, libc::S_IFDIR)?;
    Ok(fd)
}

/// The regular file `name` under `dir` opened for reading, if it is still the one `want`
/// describes; anything else (a symlink, FIFO, device, another file) is refused unopened.
pub(crate) fn open_file_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    want: &fs::Metadata,
) -> io::Result<fs::File> {
    let p = openat(dir, name, libc::O_PATH)?;
    same(&p, want, libc::S_IFREG)?;
    // Reopening the O_PATH fd through its magic link opens that very inode, which is now
    // known to be a regular file.
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(fd_path(p.as_raw_fd()))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a nul byte"))?;
    // SAFETY: c is a valid nul-terminated string; openat keeps no pointer.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Fails unless `fd` is the inode `want` describes and of type `kind` (an `S_IF*` value).
fn same(fd: &OwnedFd, want: &fs::Metadata, kind: libc::mode_t) -> io::Result<()> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open (O_PATH fds can be fstat'ed) and st is a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != kind || st.st_dev != want.dev() || st.st_ino != want.ino() {
        return Err(io::Error::other(
            "replaced while being read (the container changed it)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::mpsc;
    use std::time::Duration;

    fn root(d: &Path) -> OwnedFd {
        open_root(d).expect("open root")
    }

    #[test]
    fn refuses_a_symlink() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::write(d.path().join("secret"), b"host").expect("write");
        fs::write(d.path().join("f"), b"x").expect("write");
        let want = fs::symlink_metadata(d.path().join("f")).expect("lstat");
        fs::remove_file(d.path().join("f")).expect("rm");
        std::os::unix::fs::symlink(d.path().join("secret"), d.path().join("f")).expect("ln");
        let r = root(d.path());
        assert!(open_file_at(r.as_fd(), OsStr::new("f"), &want).is_err());
        // Even handed the symlink's own metadata, it is not a regular file.
        let lm = fs::symlink_metadata(d.path().join("f")).expect("lstat");
        assert!(open_file_at(r.as_fd(), OsStr::new("f"), &lm).is_err());
    }

    #[test]
    fn refuses_a_fifo_without_blocking() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("fifo");
        let c = CString::new(p.as_os_str().as_bytes()).expect("cstr");
        // SAFETY: c is a valid nul-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let want = fs::symlink_metadata(&p).expect("lstat");
        let r = root(d.path());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let res = open_file_at(r.as_fd(), OsStr::new("fifo"), &want).map(|_| ());
            let _ = tx.send(res.is_err());
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO blocked");
        assert!(refused);
    }

    #[test]
    fn refuses_a_swapped_directory() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("a")).expect("mkdir");
        let want = fs::symlink_metadata(d.path().join("a")).expect("lstat");
        fs::remove_dir(d.path().join("a")).expect("rmdir");
        std::os::unix::fs::symlink("/etc", d.path().join("a")).expect("ln");
        let r = root(d.path());
        assert!(open_dir_at(r.as_fd(), OsStr::new("a"), &want).is_err());
    }
}
