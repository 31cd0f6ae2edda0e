//! User networks rootless: hull-net's bridges, IPAM and hosts files, run inside the user's
//! rootless network namespace ([`super::netns`]) instead of the host's, with the user's own
//! state (definitions in `<data dir>/networks`, leases and locks in `<run dir>/net`).
//! Containers find each other by name as root's do: hull-net rewrites every container's
//! hosts file as others join and leave. The namespace (and its pasta) is made by the first
//! container on a user network and ended with the last one; its pasta forwards the ports
//! published on the user's networks.

use std::path::{Path, PathBuf};

use hull_net::{AttachRequest, Attachment, Networks, Options};

use super::netns;
use crate::engine::Engine;
use crate::net::Error;

/// hull-net's options for the user's networks, acting for `root`. The `HULL_NET_*`
/// variables are root's (host-wide state and names): not read here.
pub(crate) fn options(root: &Path) -> Result<Options, Error> {
    let dirs = super::inherited().ok_or(super::net::Error::NotRootless)?;
    Ok(Options {
        state_dir: dirs.data.join("networks"),
        run_dir: dirs.run.join("net"),
        owner: Some(std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf())),
        ..Options::default()
    })
}

fn run_dir() -> Result<PathBuf, Error> {
    Ok(super::run_dir().ok_or(super::net::Error::NotRootless)?)
}

impl Engine {
    /// Connects a created container to user network `net` in the rootless netns (made
    /// first when missing), then has that namespace's pasta forward its ports too.
    pub(crate) fn attach_user_network(
        &self,
        net: &str,
        req: AttachRequest,
        fixed_ip: bool,
    ) -> Result<Attachment, Error> {
        let run = run_dir()?;
        let opts = options(&self.root)?;
        let _lock = netns::lock(&run)?;
        let ns = netns::ensure(&run)?;
        let cid = req.container_id.clone();
        let o = opts.clone();
        let att = netns::run_in(Some(&ns), move || {
            let nets = Networks::open(o)?;
            let att = nets.attach(net, &req);
            if att.is_err() && req.ip.is_some() && !fixed_ip {
                return nets.attach(net, &AttachRequest { ip: None, ..req });
            }
            att
        });
        let att = match att {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                self.user_netns_gc(&run, &opts);
                return Err(self.attach_error(net, e));
            }
            Err(e) => {
                self.user_netns_gc(&run, &opts);
                return Err(e.into());
            }
        };
        if let Err(e) = netns::publish(&run, &ns, &all_ports(&opts)) {
            let (n, o) = (att.network.clone(), opts.clone());
            let _ = netns::run_in(Some(&ns), move || {
                Networks::open(o).and_then(|nets| nets.detach(&n, &cid))
            });
            // The failed start may have left the user's other containers without a pasta
            // (no egress, no ports): theirs again.
            if in_use(&opts) {
                if let Err(e) = netns::publish(&run, &ns, &all_ports(&opts)) {
                    eprintln!("WARN: forwarding the user's other published ports again: {e}");
                }
            }
            self.user_netns_gc(&run, &opts);
            return Err(e.into());
        }
        Ok(att)
    }

    /// Releases container `id` from the user's networks (placeholder, veth, lease); ends the
    /// rootless netns when no container is left on any of them.
    pub(crate) fn release_user_network(&self, id: &str) -> Result<(), Error> {
        let opts = options(&self.root)?;
        if !opts.run_dir.is_dir() {
            return Ok(());
        }
        let run = run_dir()?;
        let _lock = netns::lock(&run)?;
        let ns = netns::bound(&run);
        let id = id.to_string();
        let o = opts.clone();
        let r = netns::run_in(ns.as_deref(), move || {
            Networks::open(o).and_then(|n| n.detach_all(&id))
        })?;
        if let Some(ns) = ns.filter(|_| in_use(&opts)) {
            // Its ports closed now, not at the next container's start.
            netns::publish(&run, &ns, &all_ports(&opts))?;
        }
        self.user_netns_gc(&run, &opts);
        r?;
        Ok(())
    }

    /// `hull network rm` of a user network, in the namespace that holds its bridge (an
    /// empty one when it is gone).
    pub(crate) fn remove_user_network(&self, name: &str) -> Result<(), Error> {
        let run = run_dir()?;
        let opts = options(&self.root)?;
        let _lock = netns::lock(&run)?;
        let ns = netns::bound(&run);
        let (n, o) = (name.to_string(), opts.clone());
        let r = netns::run_in(ns.as_deref(), move || {
            Networks::open(o).and_then(|nets| nets.remove(&n, false))
        })?;
        self.user_netns_gc(&run, &opts);
        Ok(r?)
    }

    /// `system reset`'s network part rootless: hull-net's reset for this root inside the
    /// namespace, then the namespace and its pasta when nothing else holds a lease.
    pub(crate) fn reset_user_networks(&self) -> Result<(), String> {
        let run = run_dir().map_err(|e| e.to_string())?;
        let opts = options(&self.root).map_err(|e| e.to_string())?;
        let _lock = netns::lock(&run).map_err(|e| e.to_string())?;
        let mut errs = Vec::new();
        if opts.run_dir.is_dir() {
            let ns = netns::bound(&run);
            let o = opts.clone();
            let r = netns::run_in(ns.as_deref(), move || {
                Networks::open(o).and_then(|n| n.reset(false))
            });
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errs.push(e.to_string()),
                Err(e) => errs.push(e.to_string()),
            }
        }
        if !opts.run_dir.is_dir() || !in_use(&opts) {
            errs.extend(netns::teardown(&run));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Ends the rootless netns once no lease is left (the caller holds its lock).
    fn user_netns_gc(&self, run: &Path, opts: &Options) {
        if in_use(opts) {
            return;
        }
        let errs = netns::teardown(run);
        if !errs.is_empty() {
            eprintln!("WARN: ending the rootless netns: {}", errs.join("; "));
        }
    }
}

/// Every port published on the user's networks (what the namespace's pasta forwards).
fn all_ports(opts: &Options) -> Vec<hull_net::PortMapping> {
    let Ok(nets) = Networks::open(opts.clone()) else {
        return Vec::new();
    };
    let names = nets.list().unwrap_or_default();
    names
        .iter()
        .filter_map(|c| nets.inspect(&c.name).ok())
        .flat_map(|i| i.containers.into_iter().flat_map(|l| l.ports))
        .collect()
}

/// Whether any container holds a lease on a user network (unreadable state counts as
/// used: the namespace is kept rather than pulled from under a container).
fn in_use(opts: &Options) -> bool {
    let Ok(nets) = Networks::open(opts.clone()) else {
        return true;
    };
    let Ok(list) = nets.list() else {
        return true;
    };
    // A stale lease (its holder gone) holds nothing: as `network rm` counts.
    list.iter().any(|c| {
        nets.inspect(&c.name)
            .map_or(true, |i| i.containers.iter().any(|l| !l.is_stale()))
    })
}
