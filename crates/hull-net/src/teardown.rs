//! Teardown: detach, network removal and reset. Every step runs even when an earlier one
//! failed (as netavark does); the errors are collected into one [`TeardownError`].

use std::fmt::Display;
use std::path::Path;

use crate::ipam::{check_name, Lease, NetworkState};
use crate::network::{NetError, Networks};
use crate::nft;

/// Errors of the teardown steps that failed, in order.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("teardown: {}", .0.join("; "))]
pub struct TeardownError(pub Vec<String>);

/// Collects the errors of teardown steps.
#[derive(Debug, Default)]
pub struct Teardown {
    errors: Vec<String>,
}

impl Teardown {
    /// Records `what: error` if the step failed; returns the value otherwise.
    pub fn step<T, E: Display>(&mut self, what: impl Display, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    pub fn finish(self) -> Result<(), TeardownError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownError(self.errors))
        }
    }
}

impl Networks {
    /// Disconnects a container from a network: its veth (the container end goes with it),
    /// its published-port rules, its lease; other containers' hosts files are rewritten.
    /// Returns the released lease (`None` if it had none: detach is idempotent).
    pub fn detach(&self, network: &str, container_id: &str) -> Result<Option<Lease>, NetError> {
        check_name(network)?;
        let _all = self.store.lock_all(false)?;
        let _net = self.store.lock_network(network)?;
        let Some(mut state) = self.store.read(network)? else {
            return Ok(None);
        };
        let Some(lease) = state.release(container_id) else {
            return Ok(None);
        };
        let mut td = Teardown::default();
        self.unplumb(&state.config, &lease, &mut td);
        td.step(
            format!("release lease {} on {network}", lease.ip),
            self.store.write_leases(&state),
        );
        self.refresh_hosts(&state, None);
        // Its own hosts file, when it stays on other networks, no longer names this one's.
        self.write_hosts_of(&state, container_id, lease.hosts_file.as_deref());
        td.finish()?;
        Ok(Some(lease))
    }

    /// Disconnects a container from every network it is on (container stop/rm).
    pub fn detach_all(&self, container_id: &str) -> Result<Vec<Lease>, NetError> {
        let mut td = Teardown::default();
        let mut out = Vec::new();
        let names = self.store.names()?;
        for n in names {
            if let Some(Some(l)) =
                td.step(format!("detach from {n}"), self.detach(&n, container_id))
            {
                out.push(l);
            }
        }
        td.finish()?;
        Ok(out)
    }

    /// Removes a network: with `force`, detaches its containers first; deletes its bridge and
    /// rules, and the nft table once no network is left.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), NetError> {
        check_name(name)?;
        let _all = self.store.lock_all(true)?;
        let mut state = self
            .store
            .read(name)?
            .ok_or_else(|| NetError::NotFound(name.to_string()))?;
        // Stale leases (their holder gone) keep the network no more than they keep an address.
        if self.reclaim_stale(&mut state) > 0 && !state.leases.is_empty() && !force {
            self.store.write_leases(&state)?;
        }
        if !state.leases.is_empty() && !force {
            return Err(NetError::InUse(name.to_string(), state.leases.len()));
        }
        let mut td = Teardown::default();
        for lease in state.leases.values() {
            self.unplumb(&state.config, lease, &mut td);
        }
        self.drop_network(&state, &mut td);
        let table = &self.opts.nft_table;
        if let Some(names) = td.step("list networks", self.store.names()) {
            if names.is_empty() {
                td.step(
                    format!("delete nft table inet {table}"),
                    nft::remove_table(self.nft.as_ref(), table),
                );
            }
        }
        td.finish()?;
        Ok(())
    }

    /// A network's bridge, its rules and its files (its leases are released already).
    fn drop_network(&self, state: &NetworkState, td: &mut Teardown) {
        let cfg = &state.config;
        let name = &cfg.name;
        td.step(
            format!("delete bridge {}", cfg.bridge),
            self.links.delete_link(&cfg.bridge),
        );
        td.step(
            format!("remove rules of network {name}"),
            nft::remove_network(self.nft.as_ref(), &self.opts.nft_table, name, &cfg.bridge),
        );
        td.step(
            format!("delete network file {name}"),
            self.store.delete(name),
        );
    }

    /// `system reset` of one root (`Options::owner`): releases the leases of its containers
    /// (and stale ones) on every network. Returns whether other roots' containers still
    /// hold leases: then the shared bridges, nft table and networks in use stay, and only
    /// the idle networks this root created go (unless `keep_networks`).
    fn reset_owner(
        &self,
        owner: &Path,
        states: &mut [NetworkState],
        keep_networks: bool,
        td: &mut Teardown,
    ) -> bool {
        let mine = |l: &Lease| l.owner.as_deref().is_none_or(|o| o == owner) || l.is_stale();
        for s in states.iter_mut() {
            let ids: Vec<String> = s
                .leases
                .values()
                .filter(|l| mine(l))
                .map(|l| l.container_id.clone())
                .collect();
            if ids.is_empty() {
                continue;
            }
            for id in ids {
                if let Some(l) = s.release(&id) {
                    self.unplumb(&s.config, &l, td);
                }
            }
            td.step(
                format!("release leases on {}", s.config.name),
                self.store.write_leases(s),
            );
        }
        if states.iter().all(|s| s.leases.is_empty()) {
            return false;
        }
        for s in states.iter() {
            let own = s.config.owner.as_deref().is_none_or(|o| o == owner);
            if s.leases.is_empty() && own && !keep_networks {
                self.drop_network(s, td);
            }
        }
        true
    }

    /// Removes everything hull made, even after a crash: every lease's veth, every network's
    /// bridge, any other bridge or veth named `<prefix>*` and any link enslaved to one of those
    /// bridges, the nft table, and the network files (with `keep_networks`, the definitions
    /// stay and only the leases go).
    ///
    /// With an `owner` (a root's `system reset`), only that root's containers lose their
    /// networking while other roots' containers hold leases (see `reset_owner`); once none
    /// does, the rest goes as above, except the definitions other roots created.
    pub fn reset(&self, keep_networks: bool) -> Result<(), NetError> {
        let _all = self.store.lock_all(true)?;
        let mut td = Teardown::default();
        let mut states = td
            .step("read networks", self.store.all())
            .unwrap_or_default();
        let owner = self.opts.owner.clone();
        if let Some(o) = &owner {
            if self.reset_owner(o, &mut states, keep_networks, &mut td) {
                td.finish()?;
                return Ok(());
            }
        }
        let mut bridges: Vec<String> = states.iter().map(|s| s.config.bridge.clone()).collect();
        let mut doomed: Vec<String> = states
            .iter()
            .flat_map(|s| s.leases.values().map(|l| l.host_veth.clone()))
            .collect();
        let prefix = &self.opts.link_prefix;
        if let Some(links) = td.step("list links", self.links.links()) {
            for l in &links {
                let hull_kind = matches!(l.kind.as_deref(), Some("bridge" | "veth"));
                if hull_kind && l.name.starts_with(prefix.as_str()) {
                    if l.kind.as_deref() == Some("bridge") {
                        bridges.push(l.name.clone());
                    } else {
                        doomed.push(l.name.clone());
                    }
                }
            }
            let bridge_idx: Vec<u32> = links
                .iter()
                .filter(|l| bridges.contains(&l.name))
                .map(|l| l.index)
                .collect();
            for l in &links {
                if l.master.is_some_and(|m| bridge_idx.contains(&m)) {
                    doomed.push(l.name.clone());
                }
            }
        }
        doomed.sort();
        doomed.dedup();
        bridges.sort();
        bridges.dedup();
        for name in doomed.iter().chain(bridges.iter()) {
            td.step(format!("delete link {name}"), self.links.delete_link(name));
        }
        let table = &self.opts.nft_table;
        td.step(
            format!("delete nft table inet {table}"),
            nft::remove_table(self.nft.as_ref(), table),
        );
        for mut s in states {
            let name = s.config.name.clone();
            let foreign = match (&owner, &s.config.owner) {
                (Some(me), Some(creator)) => me != creator,
                _ => false,
            };
            if keep_networks || foreign {
                s.leases.clear();
                td.step(format!("clear leases of {name}"), self.store.write(&s));
            } else {
                td.step(
                    format!("delete network file {name}"),
                    self.store.delete(&name),
                );
            }
        }
        td.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_and_continues() {
        let mut td = Teardown::default();
        assert_eq!(td.step("a", Ok::<_, String>(1)), Some(1));
        assert_eq!(td.step("delete veth hullx", Err::<(), _>("ENODEV")), None);
        assert_eq!(td.step("b", Err::<(), _>("boom")), None);
        let e = td.finish().expect_err("two failures");
        assert_eq!(
            e.to_string(),
            "teardown: delete veth hullx: ENODEV; b: boom"
        );
    }
}
