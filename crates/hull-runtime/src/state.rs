//! Per-container state under the root dir (`/run/hullc/<id>/`).
//!
//! Layout of a container dir:
//! - `state.json` — [`Saved`], written atomically (temp file + rename) once
//!   init reported `Ready`; its absence means the container is still being
//!   created (or its creator died half-way).
//! - `config.json` — the bundle's config as it was at create time, so that
//!   later commands (`delete` hooks, `exec`) do not depend on the bundle.
//! - `start.sock` — the start barrier; present while the container is `created`.
//!
//! Every command takes `flock` on the container dir itself: exclusive for
//! commands that change the container, so concurrent commands on one id
//! serialize; `mkdir` of the dir is the atomic claim of a new id.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const START_SOCK: &str = "start.sock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The runtime-spec status values, plus `creating`, which runc reports too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// What `create` records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: tells our init from a reused pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// Whether the config has poststart/poststop hooks: only then do
    /// `start` and `delete` parse the saved config.
    #[serde(default)]
    pub late_hooks: bool,
    /// Where the container's cgroups live, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<serde_json::Value>,
}

/// An open, locked container dir.
pub struct ContainerDir {
    pub(crate) path: PathBuf,
    lock: File,
}

impl ContainerDir {
    /// Claims a new id: `mkdir` fails for every racer but one.
    pub(crate) fn claim(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io("creating state root", root))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(io("creating", &path)(e)),
        }
        Self::lock(path, id)
    }

    /// Opens and locks an existing container dir.
    pub(crate) fn open(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        let path = root.join(id);
        let dir = Self::lock(path, id)?;
        // A `delete` that held the lock before us may have removed the dir.
        if !dir.path.exists() {
            return Err(StateError::NotFound(id.to_string()));
        }
        Ok(dir)
    }

    fn lock(path: PathBuf, id: &str) -> Result<ContainerDir, StateError> {
        let lock = match File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io("opening", &path)(e)),
        };
        loop {
            // SAFETY: flock on an fd we own; no memory is involved.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(io("locking", &path)(e));
            }
        }
        Ok(ContainerDir { path, lock })
    }

    pub(crate) fn fd(&self) -> &File {
        &self.lock
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` atomically: a reader sees the old file or the new one.
    pub(crate) fn write_atomic(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let tmp = self.file(&format!(".{name}.tmp"));
        let dst = self.file(name);
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("writing", &tmp))?;
        f.write_all(data).map_err(io("writing", &tmp))?;
        // No fsync: the state root is a tmpfs (/run) whose contents die with
        // the machine anyway, and the rename is atomic for readers.
        std::fs::rename(&tmp, &dst).map_err(io("renaming", &dst))
    }

    pub(crate) fn save(&self, s: &Saved) -> Result<(), StateError> {
        let data = serde_json::to_vec(s).expect("state always serializes");
        self.write_atomic(STATE_FILE, &data)
    }

    /// The saved state, `None` while the container is being created.
    pub(crate) fn load(&self) -> Result<Option<Saved>, StateError> {
        let path = self.file(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Removes the dir and everything in it; the lock dies with the fd.
    pub(crate) fn remove(self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &self.path)(e)),
        }
    }
}

/// Field 22 (starttime) of `/proc/<pid>/stat` and whether the process is a
/// zombie; `None` when there is no such process.
pub(crate) fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

/// Whether the saved init process is still our live process.
pub(crate) fn init_alive(s: &Saved) -> bool {
    matches!(proc_stat(s.pid), Some((start, zombie)) if start == s.start_time && !zombie)
}

/// Now as RFC 3339 with nanoseconds, UTC (what runc prints in `state`).
pub(crate) fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_420), (2025, 11, 28));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn own_stat_is_alive() {
        let (start, zombie) = proc_stat(std::process::id() as i32).expect("own stat");
        assert!(start > 0 && !zombie);
        assert!(proc_stat(-5).is_none());
    }

    #[test]
    fn claim_is_exclusive_and_state_round_trips() {
        let root = tempfile::tempdir().expect("tempdir");
        let d = ContainerDir::claim(root.path(), "c1").expect("claim");
        assert!(matches!(
            ContainerDir::claim(root.path(), "c1"),
            Err(StateError::Exists(_))
        ));
        assert!(d.load().expect("load").is_none());
        let s = Saved {
            id: "c1".into(),
            pid: 1,
            start_time: 2,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: Default::default(),
            cgroup: None,
            late_hooks: false,
        };
        d.save(&s).expect("save");
        assert_eq!(d.load().expect("load").expect("some").pid, 1);
        d.remove().expect("remove");
        assert!(matches!(
            ContainerDir::open(root.path(), "c1"),
            Err(StateError::NotFound(_))
        ));
    }
}
