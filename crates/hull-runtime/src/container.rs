//! Lifecycle operations on an existing container: start, state, kill,
//! delete, list (runtime-spec runtime.md "Operations", with runc's rules
//! where the spec leaves room).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::{CgroupError, Cgroups};
use crate::config::{self, ConfigError};
use crate::hooks;
use crate::parent::dir_entry;
use crate::signal::{self, SignalError};
use crate::state::{self, ContainerDir, Saved, StateError, Status, START_SOCK, STATE_FILE};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container {id} is {status}: {what}")]
    WrongStatus {
        id: String,
        status: Status,
        what: &'static str,
    },
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting container process: {0}")]
    Exec(String),
    #[error("container {0} did not stop after SIGKILL")]
    Unkillable(String),
    #[error("deleting container {id}: {errors}")]
    Teardown { id: String, errors: String },
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let op = op.into();
    move |source| ContainerError::Sys { op, source }
}

/// The runtime-spec state, as `hullc state` prints it (runc's fields).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
}

fn status_of(root: &Path, id: &str, saved: Option<&Saved>) -> Status {
    // No state yet, or only the early record without a pid: being created
    // (or its creator died half-way; `delete --force` cleans that up).
    let Some(s) = saved.filter(|s| s.pid != 0) else {
        return Status::Creating;
    };
    if !state::init_alive(s) {
        return Status::Stopped;
    }
    if root.join(id).join(START_SOCK).exists() {
        return Status::Created;
    }
    match Cgroups::from_json(s.cgroup.as_ref()).map(|c| c.is_frozen()) {
        Some(Ok(true)) => Status::Paused,
        _ => Status::Running,
    }
}

fn to_state(root: &Path, id: &str, saved: Option<Saved>) -> State {
    let status = status_of(root, id, saved.as_ref());
    match saved {
        Some(s) => State {
            oci_version: oci_spec::runtime::VERSION.to_string(),
            pid: if status == Status::Stopped { 0 } else { s.pid },
            id: s.id,
            status,
            bundle: s.bundle,
            rootfs: s.rootfs,
            created: s.created,
            owner: s.owner,
            annotations: s.annotations,
        },
        None => State {
            oci_version: oci_spec::runtime::VERSION.to_string(),
            id: id.to_string(),
            pid: 0,
            status,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created: String::new(),
            owner: String::new(),
            annotations: Default::default(),
        },
    }
}

/// Reads a container's state without taking its lock: state.json is
/// replaced atomically, so a reader sees a whole file (runc does the same).
fn read_saved(root: &Path, id: &str) -> Result<Option<Saved>, ContainerError> {
    config::validate_id(id)?;
    let dir = root.join(id);
    if !dir.is_dir() {
        return Err(StateError::NotFound(id.to_string()).into());
    }
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(d) => Ok(Some(
            serde_json::from_slice(&d).map_err(|source| StateError::Corrupt { path, source })?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sys(format!("reading {}", path.display()))(e)),
    }
}

pub fn state(root: &Path, id: &str) -> Result<State, ContainerError> {
    Ok(to_state(root, id, read_saved(root, id)?))
}

/// Every container under `root`, sorted by id; unreadable entries are
/// listed as `creating` rather than hidden.
pub fn list(root: &Path) -> Result<Vec<State>, ContainerError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(sys(format!("reading {}", root.display()))(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| config::validate_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|id| {
            let saved = read_saved(root, &id).ok().flatten();
            to_state(root, &id, saved)
        })
        .collect())
}

/// Opens the barrier: connects to init's start socket and waits until the
/// program has been exec'd (EOF) or init reports why it could not.
pub fn start(root: &Path, id: &str) -> Result<(), ContainerError> {
    config::validate_id(id)?;
    let dir = ContainerDir::open(root, id)?;
    let saved = dir.load()?;
    let status = status_of(root, id, saved.as_ref());
    if status != Status::Created {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            status,
            what: "only a created container can be started",
        });
    }
    let mut conn = UnixStream::connect(dir_entry(&dir, START_SOCK))
        .map_err(sys("connecting to the container's start socket"))?;
    conn.write_all(&[0]).map_err(sys("signalling start"))?;
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    std::fs::remove_file(dir.file(START_SOCK)).map_err(sys("removing start socket"))?;
    if !reply.is_empty() {
        return Err(ContainerError::Exec(start_failure(&dir, &reply)));
    }
    if let Some(s) = saved.filter(|s| s.late_hooks) {
        let Some(spec) = saved_spec(&dir) else {
            return Ok(());
        };
        let state = hooks::state_json(&spec, id, "running", s.pid, &s.bundle);
        hooks::run_logged(&spec, hooks::Kind::Poststart, &state);
    }
    Ok(())
}

/// What init (or the exec trampoline, as a binary errno report) said
/// instead of EOF: the text init sends when its own execve fails, either way.
fn start_failure(dir: &ContainerDir, reply: &[u8]) -> String {
    let Some(errno) = crate::trampoline::parse_report(reply) else {
        return String::from_utf8_lossy(reply).trim_end().to_string();
    };
    let spec = saved_spec(dir);
    let arg0 = spec
        .as_ref()
        .and_then(|s| s.process().as_ref())
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .map_or("", |a| a);
    let e = crate::process::exec_failure(arg0, nix::Error::from_raw(errno));
    crate::process::failure_text(&e)
}

/// The config as it was at create time (kept in the state dir).
pub(crate) fn saved_spec(dir: &ContainerDir) -> Option<oci_spec::runtime::Spec> {
    let path = dir.file(crate::state::CONFIG_FILE);
    let raw = std::fs::read(&path).ok()?;
    config::parse_spec(&path, &raw).ok()
}

/// Sends `sig` to init, or with `all` to every process in its cgroup.
/// As runc: `kill` of a stopped container is refused, `kill --all` of one
/// signals what is left in its cgroup (with the host's pid namespace, init's
/// children outlive it; containerd's shim sends this at every task exit)
/// and succeeds when nothing is.
pub fn kill(root: &Path, id: &str, sig: &str, all: bool) -> Result<(), ContainerError> {
    let sig = signal::parse(sig)?;
    config::validate_id(id)?;
    let dir = ContainerDir::open(root, id)?;
    let saved = dir.load()?;
    let status = status_of(root, id, saved.as_ref());
    let s = match (status, saved) {
        (Status::Created | Status::Running | Status::Paused, Some(s)) => s,
        (Status::Stopped, s) if all => {
            let cg = s
                .as_ref()
                .and_then(|s| Cgroups::from_json(s.cgroup.as_ref()));
            if let Some(cg) = cg {
                cg.kill_all(sig)?;
            }
            return Ok(());
        }
        (status, _) => {
            return Err(ContainerError::WrongStatus {
                id: id.into(),
                status,
                what: "cannot signal a container that is not running",
            })
        }
    };
    if all {
        if let Some(cg) = Cgroups::from_json(s.cgroup.as_ref()) {
            cg.kill_all(sig)?;
            return Ok(());
        }
    }
    signal_init(&s, sig)
}

fn signal_init(s: &Saved, sig: i32) -> Result<(), ContainerError> {
    let fd = match signal::pidfd_open(s.pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(sys(format!("pidfd_open({})", s.pid))(e)),
    };
    // The pidfd pins the process; check it is still ours before signalling.
    if !state::init_alive(s) {
        return Ok(());
    }
    signal::kill_pidfd(&fd, sig).map_err(sys(format!("sending signal {sig} to pid {}", s.pid)))
}

/// Deletes a container: a stopped or created one always, a running or
/// paused one only with `force` (after SIGKILL). Teardown carries on past
/// errors and reports them together.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    config::validate_id(id)?;
    let dir = match ContainerDir::open(root, id) {
        Err(StateError::NotFound(_)) if force => return Ok(()),
        r => r?,
    };
    let saved = dir.load()?;
    let status = status_of(root, id, saved.as_ref());
    if matches!(status, Status::Running | Status::Paused) && !force {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            status,
            what: "cannot delete a running container without --force",
        });
    }
    let mut errors = Vec::new();
    if let Some(s) = &saved {
        if status != Status::Stopped && s.pid != 0 {
            if let Err(e) = stop_now(s) {
                errors.push(e.to_string());
            }
        }
        if let Some(cg) = Cgroups::from_json(s.cgroup.as_ref()) {
            if let Err(e) = cg.kill_and_destroy() {
                errors.push(e.to_string());
            }
        }
    }
    // poststop: after the container is gone, before delete returns; a
    // failing hook is logged (runtime-spec: it must not stop the delete).
    if let Some(s) = saved.as_ref().filter(|s| s.late_hooks) {
        let spec = saved_spec(&dir).unwrap_or_default();
        let state = hooks::state_json(&spec, id, "stopped", s.pid, &s.bundle);
        hooks::run_logged(&spec, hooks::Kind::Poststop, &state);
    }
    if let Err(e) = dir.remove() {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ContainerError::Teardown {
            id: id.into(),
            errors: errors.join("; "),
        })
    }
}

/// SIGKILL to init (thawing it first: a frozen task dies only when thawed)
/// and wait until it is gone.
fn stop_now(s: &Saved) -> Result<(), ContainerError> {
    let fd = match signal::pidfd_open(s.pid) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    if !state::init_alive(s) {
        return Ok(());
    }
    signal::kill_pidfd(&fd, libc::SIGKILL).map_err(sys(format!("killing pid {}", s.pid)))?;
    if let Some(cg) = Cgroups::from_json(s.cgroup.as_ref()) {
        cg.thaw().ok();
    }
    if !signal::wait_exit(&fd, 10_000) {
        return Err(ContainerError::Unkillable(s.id.clone()));
    }
    Ok(())
}
