//! Commands that act on a running container's cgroup: pause, resume, ps,
//! update, events (runc's semantics).

use std::path::Path;

use hull_cgroups::LinuxResources;

use crate::cgroup::{CgroupError, Cgroups};
use crate::container::{self, ContainerError};
use crate::state::{ContainerDir, Saved, Status};

/// Loads the container and its cgroup, checking it is in one of `allowed`.
fn open(
    root: &Path,
    id: &str,
    allowed: &[Status],
    what: &'static str,
) -> Result<(Saved, Cgroups), ContainerError> {
    crate::config::validate_id(id)?;
    let dir = ContainerDir::open(root, id)?;
    let saved = dir.load()?;
    let status = container::state(root, id)?.status;
    match saved {
        Some(s) if allowed.contains(&status) => {
            let cg = Cgroups::from_json(s.cgroup.as_ref()).ok_or(CgroupError::Missing)?;
            Ok((s, cg))
        }
        _ => Err(ContainerError::WrongStatus {
            id: id.into(),
            status,
            what,
        }),
    }
}

const LIVE: &[Status] = &[Status::Created, Status::Running, Status::Paused];
const ANY: &[Status] = &[
    Status::Created,
    Status::Running,
    Status::Paused,
    Status::Stopped,
];

/// Freezes every process of the container (v1 freezer, v2 cgroup.freeze).
pub fn pause(root: &Path, id: &str) -> Result<(), ContainerError> {
    let (_, cg) = open(
        root,
        id,
        &[Status::Running, Status::Created],
        "only a running container can be paused",
    )?;
    Ok(cg.freeze()?)
}

pub fn resume(root: &Path, id: &str) -> Result<(), ContainerError> {
    let (_, cg) = open(
        root,
        id,
        &[Status::Paused],
        "only a paused container can be resumed",
    )?;
    Ok(cg.thaw()?)
}

/// Host pids of every process in the container.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, ContainerError> {
    // A stopped container is asked too (runc's ps.bats): what is left in its cgroup, usually
    // nothing, and nothing at all once the cgroup is gone.
    let (_, cg) = open(root, id, ANY, "container is not running")?;
    if !cg.exists() {
        return Ok(Vec::new());
    }
    let mut p = cg.pids()?;
    p.sort_unstable();
    Ok(p)
}

/// Applies `r` to the live container (only the fields it sets).
pub fn update(root: &Path, id: &str, r: &LinuxResources) -> Result<(), ContainerError> {
    let (_, cg) = open(
        root,
        id,
        LIVE,
        "cannot update a container that is not running",
    )?;
    Ok(cg.update(r)?)
}

/// One line of `events`, with runc's field order (`type`, `id`, `data`): callers and runc's own
/// tests match the text (`{"type":"oom","id":"ct"}`), and serde_json's map sorts keys.
#[derive(Debug, serde::Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// runc's `events --stats` object: `{"type":"stats","id":..,"data":{..}}`.
pub fn stats(root: &Path, id: &str) -> Result<Event, ContainerError> {
    let (_, cg) = open(root, id, LIVE, "container is not running")?;
    let data = cg.stats()?;
    Ok(Event {
        kind: "stats",
        id: id.into(),
        data: Some(serde_json::json!(data)),
    })
}

/// How many times the kernel's OOM killer struck in the container so far.
pub fn oom_kills(root: &Path, id: &str) -> Result<u64, ContainerError> {
    let (_, cg) = open(root, id, LIVE, "container is not running")?;
    Ok(cg.oom_kills()?)
}

/// [`oom_kills`] of a container that may have stopped: its cgroup stays until `delete`, so the
/// count read after the stop is final (an OOM kill that ended the container between two polls of
/// `events` is still seen). 0 once the cgroup is gone.
pub fn oom_kills_final(root: &Path, id: &str) -> Result<u64, ContainerError> {
    let (_, cg) = open(root, id, ANY, "container does not exist")?;
    if !cg.exists() {
        return Ok(0);
    }
    Ok(cg.oom_kills()?)
}
