//! One container process (init or exec) as the shim tracks it.

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
