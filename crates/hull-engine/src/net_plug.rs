//! docker's `network connect` / `disconnect`, shared by `hull network connect|disconnect`
//! and the API. A container's first network (`--network`) is attached when its init is
//! created; more can be hot-plugged while its namespace exists: a veth from the network's
//! bridge into the namespace as `eth1`, `eth2`... (no default route: the first network
//! keeps it; a container without one gets it through its first connected one), a lease, and the hosts files of every container on that network rewritten
//! (the container's own names all its networks' containers). Disconnect deletes the veth
//! (its container end goes with it), releases the lease and rewrites the hosts files.
//! Connected networks are kept in the record and attached again when it starts again.

use std::path::PathBuf;

use hull_net::{AttachRequest, NetError, NetworkMode, DEFAULT_NETWORK};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, State};
use crate::net::{self, NetSettings};
use crate::record::{Record, StoreLock};
use crate::restart::RunLock;

/// A network connected besides the first (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraNet {
    pub network: String,
    /// Names it has there besides its name and hostname.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its interface in the container.
    pub ifname: String,
    /// Its place there while attached.
    #[serde(default)]
    pub settings: Option<NetSettings>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} is already connected to network {1}")]
    AlreadyOn(String, String),
    #[error("container {0} is not connected to network {1}")]
    NotOn(String, String),
    #[error(
        "container {0} shares a network namespace (--network {1}): it cannot be connected to \
         or disconnected from a network"
    )]
    Shared(String, String),
    #[error("network {0} cannot be connected: use `--network {0}` when the container is created")]
    Special(String),
    #[error(
        "network {0} is not supported rootless: the network's bridge lives in the user's \
         rootless netns, which the container's new interface cannot be plugged from yet; give \
         the network with `--network NAME` when the container is created"
    )]
    Rootless(&'static str),
}

/// The network `rec` was given at creation, when it is one of hull's.
fn first_network(rec: &Record) -> Option<String> {
    match rec.options.network_mode() {
        NetworkMode::Network(n) => Some(n),
        _ => None,
    }
}

/// Whether `rec` has a network with the default route: its first, or a connected one
/// plugged as primary after the first was disconnected.
fn has_primary(rec: &Record) -> bool {
    first_network(rec).is_some() || rec.extra_nets.iter().any(|x| x.settings.is_some())
}

/// The lowest `ethN` (N ≥ 1) none of `rec`'s connected networks uses.
fn free_ifname(rec: &Record) -> String {
    (1..)
        .map(|n| format!("eth{n}"))
        .find(|i| rec.extra_nets.iter().all(|x| &x.ifname != i))
        .unwrap_or_else(|| "eth1".into())
}

impl Engine {
    /// Connects `r` to `network` with `aliases`: hot-plugged when its namespace exists
    /// (created, running, paused); an exited container gets it at its next start. A
    /// container without a network (`none`) that has not started is moved instead, as
    /// docker-compose expects between create and start.
    pub fn connect(
        &self,
        r: &Record,
        network: &str,
        aliases: Vec<String>,
    ) -> Result<Record, crate::Error> {
        // hull-net would run in the host's namespace, where the user may not make links.
        if crate::rootless::active() {
            return Err(Error::Rootless("connect").into());
        }
        if matches!(network, "host" | "none") || network.starts_with("container:") {
            return Err(Error::Special(network.into()).into());
        }
        let _locks = self.plug_locks(&r.id)?;
        let mut rec = self.containers.find(&r.id)?;
        let mode = rec.options.network_mode();
        if matches!(mode, NetworkMode::Host | NetworkMode::Container(_)) {
            return Err(Error::Shared(rec.name, rec.options.network).into());
        }
        let on = first_network(&rec).as_deref() == Some(network)
            || rec.extra_nets.iter().any(|x| x.network == network);
        if on {
            return Err(Error::AlreadyOn(rec.name, network.into()).into());
        }
        self.check_network(network)?;
        let st = self.state(&rec);
        let pid = match st {
            State::Created | State::Exited(_) if matches!(mode, NetworkMode::None) => {
                return self.reconnect_locked(rec, network, aliases);
            }
            State::Exited(_) => None,
            State::Created => Some(self.shim(&rec)?.state("")?.pid),
            State::Running { pid } | State::Paused { pid } => Some(pid),
            _ => return Err(crate::Error::Dead(rec.name)),
        };
        if matches!(mode, NetworkMode::None) && !has_primary(&rec) {
            // A running container without a network: this one becomes its first.
            let pid = pid.unwrap_or_default();
            rec.options.network = network.into();
            rec.options.net_opts.aliases = aliases;
            rec.options.publish.clear();
            rec.net = self.attach(&rec, pid, None)?;
            rec.last_ip = rec.net.as_ref().map(|n| n.ip);
            self.containers.save(&rec)?;
            return Ok(rec);
        }
        let mut x = ExtraNet {
            network: network.into(),
            aliases,
            ifname: free_ifname(&rec),
            settings: None,
        };
        if let Some(pid) = pid {
            let secondary = has_primary(&rec);
            x.settings = Some(self.plug(&rec, pid, &x, secondary)?);
        }
        rec.extra_nets.push(x);
        if let Err(e) = self.containers.save(&rec) {
            let _ = self.unplug(&rec, network);
            return Err(e.into());
        }
        Ok(rec)
    }

    /// Disconnects `r` from `network`: its interface there goes now (if attached), and the
    /// network is forgotten. A container that has not started and loses its first network
    /// has none (`none`); a running one keeps its other interfaces.
    pub fn disconnect(&self, r: &Record, network: &str) -> Result<Record, crate::Error> {
        if crate::rootless::active() {
            return Err(Error::Rootless("disconnect").into());
        }
        let _locks = self.plug_locks(&r.id)?;
        let mut rec = self.containers.find(&r.id)?;
        let mode = rec.options.network_mode();
        if matches!(mode, NetworkMode::Host | NetworkMode::Container(_)) {
            return Err(Error::Shared(rec.name, rec.options.network).into());
        }
        if let Some(i) = rec.extra_nets.iter().position(|x| x.network == network) {
            // Without a first network, the first attached connected one has the default
            // route (see `promote_extra`, `attach_extras`): the next one takes it over.
            let primary = first_network(&rec).is_none()
                && rec.extra_nets.iter().position(|x| x.settings.is_some()) == Some(i);
            if rec.extra_nets[i].settings.is_some() {
                self.unplug(&rec, network)?;
            }
            rec.extra_nets.remove(i);
            let promoted = match primary {
                true => self.promote_extra(&mut rec),
                false => Ok(()),
            };
            self.containers.save(&rec)?;
            promoted?;
            return Ok(rec);
        }
        if first_network(&rec).as_deref() != Some(network) {
            return Err(Error::NotOn(rec.name, network.into()).into());
        }
        if !self.state(&rec).is_live() {
            return self.reconnect_locked(rec, "none", Vec::new());
        }
        if rec.net.is_some() {
            self.unplug(&rec, network)?;
        }
        rec.options.network = "none".into();
        rec.options.net_opts.aliases.clear();
        rec.options.publish.clear();
        rec.net = None;
        let promoted = self.promote_extra(&mut rec);
        self.containers.save(&rec)?;
        promoted?;
        Ok(rec)
    }

    /// The run lock, then the store lock (the order of a start, whose `recreate` takes the
    /// store lock under the run lock): a connect or disconnect reads, plugs and saves the
    /// record while no start (a restart policy's), update or other connect can save an
    /// older one over it or pick the same interface name.
    fn plug_locks(&self, id: &str) -> Result<(RunLock, StoreLock), crate::Error> {
        let run = self.run_lock(id, true)?;
        let store = self.containers.lock()?;
        Ok((run, store))
    }

    /// Refuses a network that does not exist before anything is recorded: an exited
    /// container would otherwise keep it and fail every later start.
    fn check_network(&self, network: &str) -> Result<(), crate::Error> {
        if network == DEFAULT_NETWORK {
            return Ok(());
        }
        match self.networks()?.inspect(network) {
            Ok(_) => Ok(()),
            Err(NetError::NotFound(n)) => Err(net::Error::NoNetwork(n).into()),
            Err(e) => Err(net::Error::Network(network.into(), e).into()),
        }
    }

    /// A running container that lost its first network: its first attached connected
    /// network is plugged again as a primary one (a default route, its `--add-host`
    /// entries and its own name in the hosts file), as docker gives the remaining
    /// endpoint the gateway. Its address there may change.
    fn promote_extra(&self, rec: &mut Record) -> Result<(), crate::Error> {
        let Some(i) = rec.extra_nets.iter().position(|x| x.settings.is_some()) else {
            return Ok(());
        };
        let pid = match self.state(rec) {
            State::Running { pid } | State::Paused { pid } => pid,
            State::Created => self.shim(rec)?.state("")?.pid,
            _ => return Ok(()),
        };
        let x = rec.extra_nets[i].clone();
        self.unplug(rec, &x.network)?;
        rec.extra_nets[i].settings = None;
        rec.extra_nets[i].settings = Some(self.plug(rec, pid, &x, false)?);
        Ok(())
    }

    /// Attaches the connected networks again (a restart, a move between create and start).
    pub(crate) fn attach_extras(&self, rec: &mut Record, pid: u32) -> Result<(), net::Error> {
        let mut extras = std::mem::take(&mut rec.extra_nets);
        let mut res = Ok(());
        let mut secondary = first_network(rec).is_some();
        for x in &mut extras {
            let plugged = self.plug(rec, pid, x, secondary);
            secondary = true;
            match plugged {
                Ok(s) => x.settings = Some(s),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        rec.extra_nets = extras;
        res
    }

    /// A veth from `x.network`'s bridge into the namespace of init `pid`.
    /// Without a default route (`secondary`) when the container has one already.
    fn plug(
        &self,
        rec: &Record,
        pid: u32,
        x: &ExtraNet,
        secondary: bool,
    ) -> Result<NetSettings, net::Error> {
        let mut names = vec![rec.name.clone()];
        if rec.hostname != rec.name {
            names.push(rec.hostname.clone());
        }
        for a in &x.aliases {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        let dir = std::path::absolute(self.dir(rec)).unwrap_or_else(|_| self.dir(rec));
        let req = AttachRequest {
            container_id: rec.id.clone(),
            names,
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
            hosts_file: Some(dir.join("hosts")),
            ifname: Some(x.ifname.clone()),
            holder: Some(dir),
            // Its hosts file is rendered from its primary lease's: a container left only
            // on connected networks keeps its `--add-host` entries.
            extra_hosts: rec.options.net_opts.add_hosts.clone(),
            secondary,
            ..AttachRequest::default()
        };
        let att = self
            .networks()?
            .attach(&x.network, &req)
            .map_err(|e| match e {
                NetError::NotFound(n) => net::Error::NoNetwork(n),
                e => net::Error::Network(x.network.clone(), e),
            })?;
        self.emit_network("connect", &att.network, &[("container", &rec.id)]);
        Ok(NetSettings {
            network: att.network,
            ip: att.ip,
            prefix: att.prefix,
            gateway: att.gateway,
            mac: att.mac,
            ports: Vec::new(),
        })
    }

    /// Deletes `rec`'s veth on `network` and releases its lease there.
    fn unplug(&self, rec: &Record, network: &str) -> Result<(), net::Error> {
        self.networks()?.detach(network, &rec.id)?;
        self.emit_network("disconnect", network, &[("container", &rec.id)]);
        Ok(())
    }
}

/// docker's `NetworkSettings` of `r`: its first network's, with every attached network
/// under `Networks`.
pub fn settings_json(r: &Record, sandbox: Option<String>) -> serde_json::Value {
    let mut v = net::settings_json(r.net.as_ref(), sandbox);
    for n in r.extra_nets.iter().filter_map(|x| x.settings.as_ref()) {
        v["Networks"][&n.network] = serde_json::json!({"IPAddress": n.ip.to_string(),
            "IPPrefixLen": n.prefix, "Gateway": n.gateway.to_string(), "MacAddress": n.mac,
            "NetworkID": n.network});
    }
    v
}
