//! `hull cp`: docker cp's rules for copying between a container and the host.
//!
//! Paths in the container are resolved by the kernel with `openat2(RESOLVE_IN_ROOT)` on a
//! directory fd of the container's root: `/proc/<init>/root` while it runs (its own mount
//! table, volumes and tmpfs included), else the rootfs mount. A symlink in the container,
//! however it is swapped in, resolves inside that root (CVE-2018-15664, where docker
//! resolved the path first and used it later; CVE-2019-14271, where `docker cp` ran code of
//! the container's: we run nothing of it). Below the start, [`tree`] copies fd by fd.
//!
//! The rules (docker's, `SRC/.` meaning the directory's contents):
//! a file goes to DEST when DEST is a file or missing, into DEST when DEST is a directory,
//! and DEST ending in `/` must be an existing directory; a directory becomes DEST when DEST is
//! missing, goes into DEST when it is a directory (its contents only with `SRC/.`), and never
//! onto a file. The parent of a missing DEST must exist.

mod stream;
mod tree;

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::engine::{Engine, State};
use crate::record::Record;

pub use tree::Owner;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("destination directory {0} does not exist")]
    NoDestDir(String),
    #[error("cannot copy a directory to a file: {0}")]
    DirOntoFile(String),
    #[error("{0} is not a directory")]
    NotADir(String),
    #[error("cannot open {what} {path}")]
    Open {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the tar stream")]
    Unpack(#[source] hull_image::UnpackError),
    #[error("tar stream limits")]
    Limits(#[source] hull_image::limits::LimitError),
    #[error("copying {from} to {to}")]
    Copy {
        from: String,
        to: String,
        #[source]
        source: std::io::Error,
    },
}

/// One end of a copy.
pub enum Side<'a> {
    Host(&'a Path),
    Container(&'a Record, &'a str),
}

/// Where paths of one side are resolved from: the host's `/` (paths as usual) or the
/// container's root (confined).
struct Root {
    fd: OwnedFd,
    confined: bool,
    /// How paths of this side are named in errors (`NAME:` for the container).
    prefix: String,
}

impl Root {
    fn open(&self, path: &str, flags: i32) -> std::io::Result<OwnedFd> {
        if self.confined {
            tree::open_in_root(self.fd.as_fd(), OsStr::new(path), flags)
        } else {
            let flags = flags & !libc::O_NOFOLLOW;
            let c = std::ffi::CString::new(path)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: NUL-terminated path; the result is checked.
            let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this fd.
            Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
        }
    }
    fn name(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

/// `path` cleaned lexically, as Go's `filepath.Clean` that docker cp applies: `.` dropped and
/// each `..` taking the component before it (never above `/`). Without it `CTR:/etc/..` split
/// into `/etc` and `..`, and a `..` handed to openat names the parent of the directory being
/// copied into: the container's tree landed beside the destination. A trailing `/` is kept
/// (it means "a directory").
fn clean(path: &str) -> String {
    let abs = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            ".." if abs => {}
            c => out.push(c),
        }
    }
    let mut s = out.join("/");
    if abs {
        s.insert(0, '/');
    }
    if s.is_empty() {
        s.push('.');
    }
    if path.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    s
}

/// `path` split into its parent and last component; `None` for `/` (or `/.`).
fn split(path: &str) -> (String, Option<String>) {
    let cleaned = clean(path);
    let t = cleaned.trim_end_matches('/');
    let t = t.strip_suffix("/.").unwrap_or(t).trim_end_matches('/');
    match t.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() && n != "." && n != ".." => (
            if p.is_empty() { "/".into() } else { p.into() },
            Some(n.into()),
        ),
        None if !t.is_empty() && t != "." && t != ".." => (".".into(), Some(t.into())),
        // A relative path of only `..`s (the host side): a directory, with no last name.
        _ if t == ".." || t.ends_with("/..") => (t.into(), None),
        _ => ("/".into(), None),
    }
}

impl Engine {
    /// Copies `src` to `dst` (one of them in a container); `follow`: `-L`, a symlink named
    /// by SRC is followed; `owner`: who owns the copies.
    pub fn copy(
        &self,
        src: &Side<'_>,
        dst: &Side<'_>,
        follow: bool,
        owner: Owner,
    ) -> Result<(), crate::Error> {
        let (sroot, spath) = self.root_of(src)?;
        let (droot, dpath) = self.root_of(dst)?;
        copy(&sroot, spath, &droot, dpath, follow, owner).map_err(crate::Error::from)
    }

    fn root_of<'a>(&self, side: &'a Side<'a>) -> Result<(Root, &'a str), crate::Error> {
        match side {
            Side::Host(p) => {
                let path = p
                    .to_str()
                    .ok_or_else(|| Error::NotFound(p.display().to_string()))?;
                let fd = Root {
                    fd: open_dir("/")?,
                    confined: false,
                    prefix: String::new(),
                };
                Ok((fd, path))
            }
            Side::Container(r, path) => {
                let dir: PathBuf = match self.state(r) {
                    State::Running { pid } | State::Paused { pid } => {
                        format!("/proc/{pid}/root").into()
                    }
                    _ => r.rootfs.clone(),
                };
                let fd = open_dir(&dir.to_string_lossy())?;
                Ok((
                    Root {
                        fd,
                        confined: true,
                        prefix: format!("{}:", r.name),
                    },
                    path,
                ))
            }
        }
    }
}

fn open_dir(p: &str) -> Result<OwnedFd, Error> {
    let c = std::ffi::CString::new(p).map_err(|_| Error::NotFound(p.into()))?;
    // SAFETY: NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Error::Open {
            what: "root",
            path: p.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the kernel just returned this fd.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn not_found(root: &Root, path: &str) -> impl FnOnce(std::io::Error) -> Error {
    let name = root.name(path);
    move |e| {
        if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
            Error::NotFound(name)
        } else {
            Error::Open {
                what: "path",
                path: name,
                source: e,
            }
        }
    }
}

/// Opens the entry SRC names (`O_PATH`, the symlink itself unless `follow`).
fn open_src(root: &Root, path: &str, follow: bool) -> Result<OwnedFd, Error> {
    let (parent, name) = split(path);
    match name {
        Some(n) if !follow => {
            let dir = root
                .open(&parent, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(not_found(root, path))?;
            tree::open_at(dir.as_fd(), OsStr::new(&n), libc::O_PATH, 0)
                .map_err(not_found(root, path))
        }
        _ => root.open(path, libc::O_PATH).map_err(not_found(root, path)),
    }
}

fn copy(
    sroot: &Root,
    spath: &str,
    droot: &Root,
    dpath: &str,
    follow: bool,
    owner: Owner,
) -> Result<(), Error> {
    let src = open_src(sroot, spath, follow)?;
    let sst = tree::stat_at(src.as_fd(), OsStr::new("")).map_err(not_found(sroot, spath))?;
    let src_dir = tree::is_dir(&sst);
    if !src_dir && spath.ends_with('/') {
        return Err(Error::NotADir(sroot.name(spath)));
    }
    let contents_only = spath.ends_with("/.") || spath == ".";
    let (_, sname) = split(spath);
    // DEST as it is: an existing directory, an existing other thing, or missing.
    let dest = droot.open(dpath, libc::O_RDONLY | libc::O_DIRECTORY);
    let copy_err = |source| Error::Copy {
        from: sroot.name(spath),
        to: droot.name(dpath),
        source,
    };
    match dest {
        Ok(dir) => {
            if src_dir && (contents_only || sname.is_none()) {
                let from = open_dir_fd(src.as_fd()).map_err(copy_err)?;
                return tree::copy_children(from.as_fd(), dir.as_fd(), owner).map_err(copy_err);
            }
            let name = sname.unwrap_or_else(|| ".".into());
            tree::copy_entry(src.as_fd(), dir.as_fd(), OsStr::new(&name), owner).map_err(copy_err)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            if src_dir {
                return Err(Error::DirOntoFile(droot.name(dpath)));
            }
            into_parent(src.as_fd(), droot, dpath, owner).map_err(|e| match e {
                Error::Copy { source, .. } => copy_err(source),
                e => e,
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            if dpath.ends_with('/') && !src_dir {
                return Err(Error::NoDestDir(droot.name(dpath)));
            }
            into_parent(src.as_fd(), droot, dpath, owner).map_err(|e| match e {
                Error::Copy { source, .. } => copy_err(source),
                e => e,
            })
        }
        Err(e) => Err(Error::Open {
            what: "destination",
            path: droot.name(dpath),
            source: e,
        }),
    }
}

/// Copies `src` to DEST's last component in DEST's parent (which must exist).
fn into_parent(src: BorrowedFd<'_>, droot: &Root, dpath: &str, owner: Owner) -> Result<(), Error> {
    let (parent, name) = split(dpath);
    let name = name.ok_or_else(|| Error::NotFound(droot.name(dpath)))?;
    let dir = droot
        .open(&parent, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) {
                Error::NoDestDir(droot.name(&parent))
            } else {
                Error::Open {
                    what: "destination",
                    path: droot.name(&parent),
                    source: e,
                }
            }
        })?;
    tree::copy_entry(src, dir.as_fd(), OsStr::new(&name), owner).map_err(|source| Error::Copy {
        from: String::new(),
        to: droot.name(dpath),
        source,
    })
}

fn open_dir_fd(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    tree::open_at(fd, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::split;

    #[test]
    fn splits_like_docker() {
        let s = |p: &str| split(p);
        // Cleaned first: no `..` is ever a name (it would name the destination's parent).
        assert_eq!(s("/etc/.."), ("/".into(), None));
        assert_eq!(s("/a/b/../c"), ("/a".into(), Some("c".into())));
        assert_eq!(s("/../../etc/./x/"), ("/etc".into(), Some("x".into())));
        assert_eq!(s("../x"), ("..".into(), Some("x".into())));
        assert_eq!(s("../.."), ("../..".into(), None));
        assert_eq!(s("/a/b"), ("/a".into(), Some("b".into())));
        assert_eq!(s("/a/b/"), ("/a".into(), Some("b".into())));
        assert_eq!(s("/a/b/."), ("/a".into(), Some("b".into())));
        assert_eq!(s("/a"), ("/".into(), Some("a".into())));
        assert_eq!(s("/"), ("/".into(), None));
        assert_eq!(s("/."), ("/".into(), None));
        assert_eq!(s("rel"), (".".into(), Some("rel".into())));
    }
}
