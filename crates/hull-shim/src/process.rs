//! One container process (init or exec) as the shim tracks it.

use std::path::PathBuf;

use crate::reaper::Exit;
use crate::stdio::{ProcessIo, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exec registered but not started, or init created but not started.
    Created,
    Running,
    Paused,
    Stopped,
}

pub struct Proc {
    /// 0 until the process exists.
    pub pid: i32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdio: StdioPaths,
    pub(crate) io: Option<ProcessIo>,
    /// runtime-spec Process JSON of an exec, until it is started.
    pub(crate) spec: Option<Vec<u8>>,
}

impl Proc {
    pub(crate) fn new(stdio: StdioPaths) -> Self {
        Proc {
            pid: 0,
            status: Status::Created,
            exit: None,
            stdio,
            io: None,
            spec: None,
        }
    }
}

/// A snapshot of a process for State/Wait/Delete answers.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdio: StdioPaths,
}

impl From<&Proc> for ProcInfo {
    fn from(p: &Proc) -> Self {
        ProcInfo {
            pid: p.pid,
            status: p.status,
            exit: p.exit,
            stdio: p.stdio.clone(),
        }
    }
}

/// Where the memory controller counts OOM kills for a process's cgroup:
/// `memory.oom_control` on v1, `memory.events` on v2. Both have an
/// `oom_kill N` line.
pub fn oom_counter_file(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(
                PathBuf::from("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.oom_control"),
            );
        }
        if ctrls.is_empty() {
            unified = Some(
                PathBuf::from("/sys/fs/cgroup")
                    .join(path)
                    .join("memory.events"),
            );
        }
    }
    unified.filter(|p| p.exists())
}

pub fn read_oom_kills(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::zombie_processes)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n").unwrap();
        assert_eq!(read_oom_kills(&f), 4);
        assert_eq!(read_oom_kills(&d.path().join("none")), 0);
    }

    #[test]
    fn own_cgroup_file() {
        // Whatever the host layout, our own memory cgroup resolves somewhere
        // under /sys/fs/cgroup.
        if let Some(p) = oom_counter_file(std::process::id() as i32) {
            assert!(p.starts_with("/sys/fs/cgroup"));
        }
    }
}
