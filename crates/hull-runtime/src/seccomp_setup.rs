//! The runtime's use of the seccomp compiler: compile in the caller before
//! clone (a bad profile fails `create` before anything exists), install in
//! the container's process at the point runc does, and hand a NOTIFY
//! listener to the agent at `listenerPath`.
//!
//! When to install: without no_new_privs, loading a filter needs
//! CAP_SYS_ADMIN, so it happens before the capabilities are dropped;
//! with no_new_privs, as late as possible, just before execve, so that
//! few of our own syscalls run under the user's filter.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;

use oci_spec::runtime::{Process, Spec};

use crate::console::{self, ConsoleError};
use crate::seccomp::{self, Filter, SeccompError};

#[derive(Debug, thiserror::Error)]
pub enum SeccompSetupError {
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// runc's words for it (seccomp-notify.bats matches them).
    #[error("linux.seccomp.listenerPath {path}: failed to connect with seccomp agent")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.seccomp.listenerPath: sending the listener")]
    Send(#[source] ConsoleError),
}

/// A compiled profile and, for NOTIFY profiles, the connection to the agent.
pub(crate) struct Prepared {
    filter: Filter,
    agent: Option<UnixStream>,
    metadata: String,
}

/// Compiles `linux.seccomp` and connects to its agent (from the host's
/// mount namespace, before clone: the path is a host path).
pub(crate) fn prepare(spec: &Spec) -> Result<Option<Prepared>, SeccompSetupError> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let filter = seccomp::compile(s)?;
    let agent = match (filter.has_listener(), s.listener_path()) {
        (true, Some(p)) => {
            Some(
                UnixStream::connect(p).map_err(|source| SeccompSetupError::Connect {
                    path: p.display().to_string(),
                    source,
                })?,
            )
        }
        _ => None,
    };
    Ok(Some(Prepared {
        filter,
        agent,
        metadata: s.listener_metadata().clone().unwrap_or_default(),
    }))
}

/// Whether the filter goes in early (before the capability drop).
pub(crate) fn early(p: &Process) -> bool {
    !p.no_new_privileges().unwrap_or(false)
}

/// Installs the filter; sends a NOTIFY listener to the agent with runc's
/// message (`ContainerProcessState`: the fd names, pid, metadata, state).
pub(crate) fn install(p: &Prepared, pid: i32, state_json: &str) -> Result<(), SeccompSetupError> {
    let Some(fd) = seccomp::install(&p.filter)? else {
        return Ok(());
    };
    let Some(agent) = &p.agent else { return Ok(()) };
    let state: serde_json::Value = serde_json::from_str(state_json).unwrap_or_default();
    let msg = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": p.metadata,
        "state": state,
    });
    console::send_fd(agent.as_fd(), fd.as_raw_fd(), &msg.to_string())
        .map_err(SeccompSetupError::Send)
}
