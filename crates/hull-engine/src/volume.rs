//! Named volumes: directories under `<root>/volumes/<name>/_data` (docker's
//! layout), created on first use; anonymous ones (an image's `Volumes`) are
//! named by a random id and filled from the image (`populate`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
}

impl Volumes {
    pub fn open(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
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
        let p = self.path(name);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
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
        std::fs::remove_dir_all(&d).map_err(io_err(&d))
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
    copy_dir(&src, dst)?;
    set_owner_mode(dst, &meta)
}

fn set_owner_mode(p: &Path, m: &std::fs::Metadata) -> Result<(), Error> {
    std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid())).map_err(io_err(p))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err(p))?;
    }
    Ok(())
}

/// Copies the contents of `src` into `dst` without following symlinks; special files
/// (devices, fifos, sockets) are skipped.
fn copy_dir(src: &Path, dst: &Path) -> Result<(), Error> {
    for e in std::fs::read_dir(src).map_err(io_err(src))? {
        let e = e.map_err(io_err(src))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m = std::fs::symlink_metadata(&from).map_err(io_err(&from))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(io_err(&to))?;
            copy_dir(&from, &to)?;
        } else if ft.is_symlink() {
            let link = std::fs::read_link(&from).map_err(io_err(&from))?;
            std::os::unix::fs::symlink(link, &to).map_err(io_err(&to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io_err(&to))?;
        } else {
            continue;
        }
        set_owner_mode(&to, &m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
}
