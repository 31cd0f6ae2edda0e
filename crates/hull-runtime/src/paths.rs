//! Resolving paths inside the container's rootfs without escaping it.
//!
//! A rootfs is untrusted: an image can plant a symlink `/proc -> /` or swap a
//! directory for a link between our check and our use (CVE-2021-30465). So
//! every mount target and device node is reached through `openat2` with
//! `RESOLVE_IN_ROOT`, which makes the kernel resolve `..` and symlinks as if
//! the rootfs were `/`, and the mount then goes to `/proc/self/fd/N`, the
//! very inode we resolved, never to a path string resolved a second time.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// What to create at the end of a path when it is missing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Dir,
    File,
}

fn openat2(dirfd: i32, path: &Path, flags: i32, resolve: u64) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: the path is NUL-terminated and `how` lives across the call
        // with its true size passed; the kernel returns a new fd or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just gave us this fd; nobody else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = std::io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup (documented for openat2).
        if e.raw_os_error() != Some(libc::EAGAIN) && e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The components of `p` below the root, without `.`, `..` or `/` (those are
/// resolved by the kernel, confined to the root).
fn rel_components(p: &Path) -> Vec<&std::ffi::OsStr> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Opens `path` (absolute inside the container) under `root` as an `O_PATH`
/// fd, creating missing directories and, when `kind` is `File`, an empty
/// file at the end.
pub(crate) fn open_in_root(
    root: &File,
    path: &Path,
    kind: Option<Kind>,
) -> std::io::Result<OwnedFd> {
    let rel: PathBuf = Path::new(".").join(path.strip_prefix("/").unwrap_or(path));
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    match openat2(root.as_raw_fd(), &rel, libc::O_PATH, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind.is_some() => {}
        Err(e) => return Err(e),
    }
    let comps = rel_components(path);
    let mut cur = PathBuf::from(".");
    let mut parent = openat2(
        root.as_raw_fd(),
        &cur,
        libc::O_PATH | libc::O_DIRECTORY,
        resolve,
    )?;
    for (i, name) in comps.iter().enumerate() {
        cur.push(name);
        let last = i + 1 == comps.len();
        match openat2(root.as_raw_fd(), &cur, libc::O_PATH, resolve) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let cname = CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // O_PATH fds cannot be used with mkdirat/openat directly for creation
        // unless they are directories; `parent` is one (we just walked it).
        let made = if last && kind == Some(Kind::File) {
            // SAFETY: NUL-terminated name, valid dirfd; returns an fd we close at once.
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    cname.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: we own the fd just returned.
                unsafe { libc::close(fd) };
                0
            } else {
                -1
            }
        } else {
            // SAFETY: NUL-terminated name, valid dirfd.
            unsafe { libc::mkdirat(parent.as_raw_fd(), cname.as_ptr(), 0o755) }
        };
        if made != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        parent = openat2(root.as_raw_fd(), &cur, libc::O_PATH, resolve)?;
    }
    Ok(parent)
}

/// The path through which syscalls that take a path (mount, mknod targets)
/// reach the inode behind `fd`.
pub(crate) fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens the parent of `path` inside `root` (creating it) and returns it with
/// the last component, for `mknodat`/`symlinkat`.
pub(crate) fn parent_in_root(root: &File, path: &Path) -> std::io::Result<(File, CString)> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let fd = open_in_root(root, parent, Some(Kind::Dir))?;
    // Re-open as a real directory fd: *at syscalls that create need one.
    let dir = File::open(fd_path(&fd))?;
    let cname = CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok((dir, cname))
}

/// A procfs file that may not be written: something other than the procfs
/// file we named is in its place.
#[derive(Debug, thiserror::Error)]
#[error("{path} is overmounted or not on procfs (refusing to write through it, CVE-2025-52881)")]
pub(crate) struct Overmounted {
    path: String,
}

/// procfs's root directory inode number (`PROC_ROOT_INO` in the kernel).
const PROC_ROOT_INO: u64 = 1;

fn overmounted(path: &str) -> std::io::Error {
    std::io::Error::other(Overmounted {
        path: path.to_string(),
    })
}

/// Opens `path` (`/proc/...`) for writing only if it is the very procfs file
/// the name says, and writes `data` in one write(2) (the LSMs and sysctls
/// parse each write whole).
///
/// The container's /proc is built from its config and image, so a bind mount
/// can put any file in the place of a procfs file: `/proc/sysrq-trigger` or
/// `/proc/sys/kernel/core_pattern` over `attr/apparmor/exec` or over a sysctl
/// still passes an `fstatfs(PROC_SUPER_MAGIC)` check, and our write, made with
/// init's privileges, lands in the host's kernel (CVE-2025-52881). So, as
/// runc's fix does, the file is opened through a handle on the procfs root
/// with `RESOLVE_NO_XDEV`: a mount over the file or over any directory on
/// the way makes the open fail (EXDEV). The root itself must be a procfs
/// root, not some procfs directory bind-mounted on /proc. `self` and
/// `thread-self` are procfs' own symlinks, so only they may be followed, and
/// only as the first component (the kernel resolves them in the procfs
/// instance's pid namespace, so a /proc of another pid namespace gives ENOENT
/// rather than another process's files).
pub(crate) fn write_procfs(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let shown = path.display().to_string();
    let rel = path
        .strip_prefix("/proc")
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let root = procfs_root().map_err(|e| match e.raw_os_error() {
        Some(_) => e,
        None => overmounted(&shown),
    })?;
    let mut comps = rel.components();
    let (dir, rest) = match comps.next() {
        Some(Component::Normal(first)) if first == "self" || first == "thread-self" => {
            let d = openat2(
                root.as_raw_fd(),
                Path::new(first),
                libc::O_PATH | libc::O_DIRECTORY,
                libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS,
            );
            (Some(d.map_err(|e| exdev(e, &shown))?), comps.as_path())
        }
        _ => (None, rel),
    };
    let dirfd = dir.as_ref().unwrap_or(&root).as_raw_fd();
    let fd = openat2(
        dirfd,
        rest,
        libc::O_WRONLY | libc::O_NOCTTY,
        libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| exdev(e, &shown))?;
    let mut f = File::from(fd);
    // Belt and braces: what we opened is on procfs.
    if !on_procfs(&f)? {
        return Err(overmounted(&shown));
    }
    f.write_all(data)
}

/// EXDEV from `RESOLVE_NO_XDEV` means a mount on the way: say so.
fn exdev(e: std::io::Error, path: &str) -> std::io::Error {
    if e.raw_os_error() == Some(libc::EXDEV) {
        overmounted(path)
    } else {
        e
    }
}

/// `/proc` as a directory fd, if it is the root of a procfs mount; an error
/// without an errno when it is not.
fn procfs_root() -> std::io::Result<OwnedFd> {
    let root = openat2(
        libc::AT_FDCWD,
        Path::new("/proc"),
        libc::O_PATH | libc::O_DIRECTORY,
        libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS,
    )?;
    let f = File::from(root);
    let ino = f.metadata()?.ino();
    if !on_procfs(&f)? || ino != PROC_ROOT_INO {
        return Err(std::io::Error::other("not a procfs root"));
    }
    Ok(OwnedFd::from(f))
}

fn on_procfs(f: &File) -> std::io::Result<bool> {
    let st = nix::sys::statfs::fstatfs(f).map_err(std::io::Error::from)?;
    Ok(st.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_writes_follow_only_procfs_own_self_links() {
        // Our own thread's name: harmless, and it takes the `thread-self`
        // first-component path the LSM writes take.
        write_procfs(Path::new("/proc/thread-self/comm"), b"hull-procfs").expect("comm");
        let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("read comm");
        assert_eq!(comm.trim_end(), "hull-procfs");
        let e = write_procfs(Path::new("/tmp/x"), b"1").expect_err("not under /proc");
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        // `<pid>/exe`-style magic links and any other symlink are refused.
        let e = write_procfs(Path::new("/proc/thread-self/cwd/x"), b"1").expect_err("magic link");
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::os::unix::fs::symlink("/", root.join("escape")).expect("symlink");
        std::os::unix::fs::symlink("../../../..", root.join("up")).expect("symlink");
        let rootf = File::open(&root).expect("open root");
        for p in ["/escape/newdir", "/up/newdir2"] {
            let fd = open_in_root(&rootf, Path::new(p), Some(Kind::Dir)).expect(p);
            let real = std::fs::read_link(fd_path(&fd)).expect("readlink");
            assert!(
                real.starts_with(&root),
                "{p} resolved to {}",
                real.display()
            );
        }
        let fd = open_in_root(&rootf, Path::new("/a/b/file"), Some(Kind::File)).expect("file");
        let real = std::fs::read_link(fd_path(&fd)).expect("readlink");
        assert_eq!(real, root.join("a/b/file"));
        assert!(root.join("a/b/file").is_file());
    }
}
