//! Which namespaces the container creates and which it joins.
//!
//! New namespaces come from the `clone3` flags, except two that must wait:
//! - cgroup: unshared by init only after the parent placed it in its cgroup,
//!   so that the namespace root is the container's cgroup, not the caller's;
//! - time: `CLONE_NEWTIME` cannot be a clone flag before clone3 and its
//!   offsets must be written before any process enters it, so the parent
//!   unshares it for its children and writes `timens_offsets` (see parent.rs).
//!
//! Namespaces with a `path` are joined with `setns`: pid by the parent before
//! clone (setns(pid) only affects children), the others by init, user first
//! so that the rest are joined with its privileges.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("linux.namespaces: opening namespace {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.namespaces: joining {kind} namespace {path}")]
    Join {
        kind: LinuxNamespaceType,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unsharing the {0} namespace")]
    Unshare(LinuxNamespaceType, #[source] std::io::Error),
}

/// The namespace part of the config, split by who acts on it and when.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Flags for clone3 (new namespaces made at clone time).
    pub(crate) clone_flags: u64,
    /// Unshared by init after it joined its cgroup.
    pub(crate) new_cgroup_ns: bool,
    /// Unshared by the parent before clone.
    pub(crate) new_time_ns: bool,
    /// Namespaces to join, by the stage that joins them.
    pub(crate) join_pid: Option<PathBuf>,
    pub(crate) join_in_init: Vec<(LinuxNamespaceType, PathBuf)>,
    pub(crate) new_user_ns: bool,
    pub(crate) new_mount_ns: bool,
    pub(crate) new_pid_ns: bool,
}

pub(crate) fn plan(spec: &Spec) -> Plan {
    let mut p = Plan::default();
    let nss = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in nss {
        let t = ns.typ();
        if let Some(path) = ns.path() {
            match t {
                LinuxNamespaceType::Pid => p.join_pid = Some(path.clone()),
                _ => p.join_in_init.push((t, path.clone())),
            }
            continue;
        }
        match t {
            LinuxNamespaceType::Cgroup => p.new_cgroup_ns = true,
            LinuxNamespaceType::Time => p.new_time_ns = true,
            _ => p.clone_flags |= t as u64,
        }
        p.new_user_ns |= t == LinuxNamespaceType::User;
        p.new_mount_ns |= t == LinuxNamespaceType::Mount;
        p.new_pid_ns |= t == LinuxNamespaceType::Pid;
    }
    // Join the user namespace first: the others are owned by it.
    p.join_in_init
        .sort_by_key(|(t, _)| *t != LinuxNamespaceType::User);
    p
}

/// `setns` into the namespace at `path`.
pub(crate) fn join(kind: LinuxNamespaceType, path: &PathBuf) -> Result<(), NamespaceError> {
    let f = File::open(path).map_err(|source| NamespaceError::Open {
        path: path.clone(),
        source,
    })?;
    // SAFETY: setns on a valid fd we own; the nstype is a CLONE_NEW* constant.
    let rc = unsafe { libc::setns(f.as_raw_fd(), kind as i32) };
    if rc != 0 {
        return Err(NamespaceError::Join {
            kind,
            path: path.clone(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

pub(crate) fn unshare(kind: LinuxNamespaceType) -> Result<(), NamespaceError> {
    // SAFETY: unshare takes only flags.
    if unsafe { libc::unshare(kind as i32) } != 0 {
        return Err(NamespaceError::Unshare(
            kind,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    #[test]
    fn plan_splits_new_and_joined() {
        let mut spec = Spec::default();
        let mk = |t, p: Option<&str>| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = p {
                b = b.path(p);
            }
            b.build().expect("namespace")
        };
        let mut linux = spec.linux().clone().expect("linux");
        linux.set_namespaces(Some(vec![
            mk(LinuxNamespaceType::Pid, None),
            mk(LinuxNamespaceType::Cgroup, None),
            mk(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            mk(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
        ]));
        spec.set_linux(Some(linux));
        let p = plan(&spec);
        assert_eq!(p.clone_flags, libc::CLONE_NEWPID as u64);
        assert!(p.new_cgroup_ns && p.new_pid_ns && !p.new_user_ns);
        assert_eq!(p.join_in_init[0].0, LinuxNamespaceType::User);
    }
}
