//! The hosts files of containers on hull's networks. A container on several networks
//! (hot-plug) has one hosts file naming the containers of all of them, so a change on one
//! network rewrites files that other networks' changes (under their own locks) rewrite
//! too: each file is rendered and written under a lock of its own (see [`HostsLock`]),
//! from the networks' states as they are on disk then.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::files::{self, HostEntry};
use crate::ipam::{Lease, NetworkState};
use crate::Networks;

/// An flock on a sidecar file next to a hosts file (`.hosts.lock`), held while it is
/// rendered and written. A sidecar and not the hosts file itself: that one is bind-mounted
/// into the container, whose processes could flock it and stall every network change.
struct HostsLock(#[allow(dead_code)] File);

impl HostsLock {
    /// `None` when the lock cannot be had (the container's directory is gone: nothing to
    /// write then).
    fn take(hosts: &Path) -> Option<HostsLock> {
        let p = sidecar(hosts);
        let f = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("lock hosts file {}: {e}", p.display());
                return None;
            }
        };
        // SAFETY: flock on a descriptor we own; closing it (drop) releases the lock.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!("lock hosts file {}: {e}", p.display());
            return None;
        }
        Some(HostsLock(f))
    }
}

/// The lock file of hosts file `hosts`.
fn sidecar(hosts: &Path) -> PathBuf {
    let name = hosts.file_name().map(|n| n.to_string_lossy().into_owned());
    hosts.with_file_name(format!(".{}.lock", name.as_deref().unwrap_or("hosts")))
}

impl Networks {
    /// Renders the hosts file of every container on the network, writes those that have a
    /// hosts file, and returns the one of `own` (`state` under its network's lock, as
    /// written).
    pub(crate) fn refresh_hosts(&self, state: &NetworkState, own: Option<&str>) -> String {
        let mut mine = files::render_hosts(None, &entries(state, None), &[]);
        for l in state.leases.values() {
            let text = self.write_hosts_of(state, &l.container_id, l.hosts_file.as_deref());
            if own == Some(l.container_id.as_str()) {
                mine = text;
            }
        }
        mine
    }

    /// Renders container `id`'s hosts file from every network it is on (`state` as given,
    /// the others read under the file's lock), writes it to `hosts`, and returns it (empty
    /// when it is on none). Reading under the lock is what keeps the file whole and current:
    /// a writer for another network that changed its state before this one took the lock
    /// is seen here; one that changes it after writes the file again after this one.
    pub(crate) fn write_hosts_of(
        &self,
        state: &NetworkState,
        id: &str,
        hosts: Option<&Path>,
    ) -> String {
        let lock = hosts.and_then(HostsLock::take);
        let all = self.states_with(state);
        let text = render_for(&all, id);
        if let (Some(path), Some(_)) = (hosts, &lock) {
            if let Err(e) = files::write_in_place(path, &text) {
                tracing::warn!("update hosts file {}: {e}", path.display());
            }
        }
        text
    }

    /// Every network's state, `state` as given (it may be newer than what another
    /// process reads).
    fn states_with(&self, state: &NetworkState) -> Vec<NetworkState> {
        let mut all: Vec<NetworkState> = self
            .store
            .all()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.config.name != state.config.name)
            .collect();
        all.push(state.clone());
        all
    }
}

/// Container `id`'s hosts file from `all` networks' states.
fn render_for(all: &[NetworkState], id: &str) -> String {
    let mut mine: Vec<(&NetworkState, &Lease)> = all
        .iter()
        .filter_map(|s| s.leases.get(id).map(|l| (s, l)))
        .collect();
    // The first network's lease (not hot-plugged) names the container itself.
    mine.sort_by_key(|(s, l)| (l.secondary, s.config.name.clone()));
    let Some((_, first)) = mine.first() else {
        return String::new();
    };
    let me = HostEntry {
        ip: first.ip,
        names: first.names.clone(),
    };
    let others: Vec<HostEntry> = mine
        .iter()
        .flat_map(|(s, _)| entries(s, Some(id)))
        .collect();
    files::render_hosts(Some(&me), &others, &first.extra_hosts)
}

/// The hosts entries of a network's containers, `except` one.
fn entries(state: &NetworkState, except: Option<&str>) -> Vec<HostEntry> {
    state
        .leases
        .values()
        .filter(|l| except != Some(l.container_id.as_str()))
        .map(|l| HostEntry {
            ip: l.ip,
            names: l.names.clone(),
        })
        .collect()
}
