//! Error type for every cgroup operation.

use std::io;
use std::path::PathBuf;

/// Errors from detecting, creating, configuring or removing cgroups.
///
/// Messages are lower-case and name the file involved; the underlying I/O
/// error is kept as the `source` (print with `{:#}` / an error chain to see it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("create cgroup directory {path}")]
    Mkdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove cgroup directory {path}")]
    Rmdir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("open cgroup directory {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("no cgroup hierarchy is mounted (checked /proc/self/mountinfo)")]
    NoHierarchy,
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "{resource} is set but the {controller} cgroup controller is not available on this host"
    )]
    ControllerMissing {
        resource: &'static str,
        controller: &'static str,
    },
    /// runc's words lead ("invalid configuration: cannot use unified on
    /// cgroup v1"); runc's cgroups.bats matches them.
    #[error("invalid configuration: unified on a cgroup v1 host: {0}")]
    UnifiedOnV1(String),
    #[error("invalid {resource}: {reason}")]
    InvalidResource {
        resource: &'static str,
        reason: String,
    },
    #[error("cgroup {path} cannot take memory, io, cpu or hugetlb limits: its cgroup.type is {kind:?} (those controllers need a domain cgroup)")]
    CgroupType { path: PathBuf, kind: String },
    #[error("timed out waiting for {path} to report {state}")]
    Timeout { path: PathBuf, state: &'static str },
    #[error("send signal {signal} to pid {pid}")]
    Signal {
        pid: i32,
        signal: i32,
        #[source]
        source: io::Error,
    },
    #[error("bpf {op} for device cgroup {path}{}", if log.is_empty() { String::new() } else { format!(" (verifier log: {log})") })]
    Bpf {
        op: &'static str,
        path: PathBuf,
        log: String,
        #[source]
        source: io::Error,
    },
    #[error("{} errors, first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
    Multiple(Vec<Error>),
}

impl Error {
    /// The raw OS error number of an underlying I/O error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::Mkdir { source, .. }
            | Error::Rmdir { source, .. }
            | Error::Open { source, .. }
            | Error::Signal { source, .. }
            | Error::Bpf { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Collapse a list of errors: none → Ok, one → itself, more → `Multiple`.
    pub(crate) fn collect(mut errs: Vec<Error>) -> Result<(), Error> {
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(Error::Multiple(errs)),
        }
    }
}
