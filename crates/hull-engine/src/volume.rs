//! Named volumes: directories under `<root>/volumes/<name>/_data` (docker's
//! layout), created on first use.

use std::path::{Path, PathBuf};

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
