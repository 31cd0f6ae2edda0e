//! Named volumes: directories under `<root>/volumes/<name>/_data` (docker's
//! layout), created on first use; anonymous ones (an image's `Volumes`) are
//! named by a random id and filled from the image (`populate`).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::record::valid_name;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid volume name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("volume {0} is in use by container {1}")]
    InUse(String, String),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

pub struct Volumes {
    dir: PathBuf,
    journal: crate::events::Journal,
}

impl Volumes {
    pub fn open(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
            journal: crate::events::Journal::open(root),
        }
    }

    /// The data directory of volume `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates `name` if it does not exist; returns its data directory.
    pub fn ensure(&self, name: &str) -> Result<PathBuf, Error> {
        if !valid_name(name) {
            return Err(Error::BadName(name.into()));
        }
        // Private like the rest of the root (hull_image::store::make_private fixes an old one).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        let p = self.path(name);
        let new = !p.is_dir();
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        if new {
            self.emit("create", name, &[]);
        }
        Ok(p)
    }

    pub fn list(&self) -> Result<Vec<String>, Error> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut out: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().join("_data").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes `name`; `users` are the containers whose mounts name it.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<(), Error> {
        if !valid_name(name) {
            return Err(Error::BadName(name.into()));
        }
        let d = self.dir.join(name);
        if !d.join("_data").is_dir() {
            return Err(Error::NotFound(name.into()));
        }
        if let Some(c) = users.first() {
            return Err(Error::InUse(name.into(), c.clone()));
        }
        std::fs::remove_dir_all(&d).map_err(io_err(&d))?;
        self.emit("destroy", name, &[]);
        Ok(())
    }

    /// A volume event of `name` (docker's attributes: `driver`, and more for `mount`).
    pub(crate) fn emit(&self, action: &str, name: &str, extra: &[(&str, &str)]) {
        let a = crate::events::attrs(
            [("driver", "local")]
                .into_iter()
                .chain(extra.iter().copied()),
        );
        self.journal.emit("volume", action, name, a);
    }
}

/// docker's copy-up: fills the empty volume `dst` with what the image has at `target` (an
/// absolute path in the container), with modes and owners, and gives `dst` the mode and owner
/// of that directory. Nothing is copied when the path is missing, not a directory, or reached
/// through a symlink (which could point out of the rootfs, at the host).
pub fn populate(rootfs: &Path, target: &str, dst: &Path) -> Result<(), Error> {
    let mut src = rootfs.to_path_buf();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => src.push(n),
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => return Ok(()),
        }
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.file_type().is_symlink() => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    let meta = std::fs::symlink_metadata(&src).map_err(io_err(&src))?;
    let empty = std::fs::read_dir(dst)
        .map_err(io_err(dst))?
        .next()
        .is_none();
    if !meta.is_dir() || !empty {
        return Ok(());
    }
    let dir = copy_dir(&src, dst)?;
    set_owner_mode(&dir, &meta).map_err(io_err(dst))
}

/// Opens the directory `dst` itself, refusing a symlink.
fn open_dir(dst: &Path) -> Result<OwnedFd, Error> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dst)
        .map_err(io_err(dst))?;
    Ok(f.into())
}

/// openat(2) relative to `dir`, never following a symlink in `name`.
fn open_at(dir: BorrowedFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor and `name` a NUL-terminated string, both alive for
    // the call; a non-negative result is a new descriptor that nothing else owns.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Owner and mode of `m` on the open file or directory `fd`: fchown and fchmod act on what
/// was opened, never on whatever a path names by now. The owner first: chown clears set-id
/// bits.
fn set_owner_mode(fd: &OwnedFd, m: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: plain syscalls on a descriptor this function borrows.
    check(unsafe { libc::fchown(fd.as_raw_fd(), m.uid(), m.gid()) })?;
    // SAFETY: as above.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), m.mode() & 0o7777) })
}

/// Copies the contents of `src` into the directory `dst` without following symlinks on
/// either side; special files (devices, fifos, sockets) are skipped. The volume may be
/// shared with a running container, which can plant a symlink in it at any moment (after
/// `populate`'s emptiness check too): so every entry is created relative to the descriptor
/// of its directory, exclusively (mkdirat, symlinkat, openat with O_CREAT|O_EXCL all fail on
/// an existing name, a symlink included) and never through a symlink; a name that is
/// already there fails the copy. Returns `dst`'s descriptor.
fn copy_dir(src: &Path, dst: &Path) -> Result<OwnedFd, Error> {
    let dir = open_dir(dst)?;
    copy_into(src, dir.as_fd(), dst)?;
    Ok(dir)
}

fn copy_into(src: &Path, dir: BorrowedFd, dst: &Path) -> Result<(), Error> {
    for e in std::fs::read_dir(src).map_err(io_err(src))? {
        let e = e.map_err(io_err(src))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let name = CString::new(e.file_name().as_bytes()).map_err(|_| Error::Io {
            path: to.clone(),
            source: io::ErrorKind::InvalidInput.into(),
        })?;
        let m = std::fs::symlink_metadata(&from).map_err(io_err(&from))?;
        let ft = m.file_type();
        if ft.is_dir() {
            // SAFETY: `dir` is open and `name` NUL-terminated for the call.
            check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })
                .map_err(io_err(&to))?;
            let sub =
                open_at(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(io_err(&to))?;
            copy_into(&from, sub.as_fd(), &to)?;
            set_owner_mode(&sub, &m).map_err(io_err(&to))?;
        } else if ft.is_symlink() {
            let link = std::fs::read_link(&from).map_err(io_err(&from))?;
            let target = CString::new(link.as_os_str().as_bytes()).map_err(|_| Error::Io {
                path: from.clone(),
                source: io::ErrorKind::InvalidInput.into(),
            })?;
            // SAFETY: both strings are NUL-terminated and `dir` is open for the call.
            check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
                .map_err(io_err(&to))?;
            // SAFETY: as above; AT_SYMLINK_NOFOLLOW changes the link, not what it names.
            check(unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    m.uid(),
                    m.gid(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })
            .map_err(io_err(&to))?;
        } else if ft.is_file() {
            let out = open_at(
                dir,
                &name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )
            .map_err(io_err(&to))?;
            let mut input = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&from)
                .map_err(io_err(&from))?;
            let mut output = std::fs::File::from(out);
            io::copy(&mut input, &mut output).map_err(io_err(&to))?;
            set_owner_mode(&output.into(), &m).map_err(io_err(&to))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn populate_copies_and_refuses_symlinked_paths() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("data/l")).unwrap();
        std::fs::set_permissions(root.join("data"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        let v = t.path().join("v");
        std::fs::create_dir(&v).unwrap();
        populate(&root, "/data/", &v).unwrap();
        assert_eq!(std::fs::read_to_string(v.join("sub/f")).unwrap(), "x");
        assert_eq!(std::fs::read_link(v.join("l")).unwrap(), Path::new("sub/f"));
        assert_eq!(std::fs::metadata(&v).unwrap().mode() & 0o777, 0o750);
        let w = t.path().join("w");
        std::fs::create_dir(&w).unwrap();
        populate(&root, "/evil", &w).unwrap();
        populate(&root, "/missing", &w).unwrap();
        assert_eq!(std::fs::read_dir(&w).unwrap().count(), 0);
    }

    #[test]
    fn copy_never_writes_through_a_symlink_planted_in_the_volume() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::fs::write(src.join("passwd"), "image").unwrap();
        std::fs::set_permissions(src.join("passwd"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        std::fs::write(src.join("new"), "image").unwrap();
        // Host files a container sharing the volume points at between populate's emptiness
        // check and the copy: an existing one and one that does not exist yet.
        let host = t.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret"), "host").unwrap();
        std::fs::set_permissions(host.join("secret"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        for (planted, target) in [("passwd", "secret"), ("new", "created")] {
            let v = t.path().join(format!("v-{planted}"));
            std::fs::create_dir(&v).unwrap();
            std::os::unix::fs::symlink(host.join(target), v.join(planted)).unwrap();
            let err = copy_dir(&src, &v).expect_err("copy through a symlink");
            assert!(
                matches!(&err, Error::Io { path, source }
                    if path == &v.join(planted)
                        && source.kind() == io::ErrorKind::AlreadyExists),
                "{err:?}"
            );
            // The link is left as it was, not followed.
            assert!(std::fs::symlink_metadata(v.join(planted))
                .unwrap()
                .file_type()
                .is_symlink());
        }
        assert_eq!(
            std::fs::read_to_string(host.join("secret")).unwrap(),
            "host"
        );
        let m = std::fs::metadata(host.join("secret")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
        assert!(!host.join("created").exists());
        // Nor a directory planted as a symlink.
        let v = t.path().join("v-dir");
        std::fs::create_dir(&v).unwrap();
        std::os::unix::fs::symlink(&host, v.join("d")).unwrap();
        assert!(copy_dir(&src, &v).is_err());
        // Nor the volume directory itself.
        let l = t.path().join("v-link");
        std::os::unix::fs::symlink(&host, &l).unwrap();
        assert!(copy_dir(&src, &l).is_err());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1);
    }
}
