//! Container networking over hull-net: what `--network` means for the OCI spec, the attach
//! after `hullc create` (the container's netns exists, its process has not started), the
//! release when it exits or is removed, and `hull network` / `system reset`.
//!
//! The network state is host-wide, shared by every `--root` (the links, bridges and nft table
//! it describes are host-wide too): definitions in `/var/lib/hull/networks`, leases and locks
//! in `/run/hull/net`, each lease naming its root and container directory. `HULL_NET_STATE=DIR`
//! moves both (to `DIR/networks` and `DIR/run`). Link prefix, nft table and subnets can be
//! changed with `HULL_NET_PREFIX`, `HULL_NET_TABLE`, `HULL_NET_SUBNET` (the default network's)
//! and `HULL_NET_POOL` (where user networks without `--subnet` get theirs): the tests use them
//! to stay clear of a real `hull0` and of each other.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use hull_net::{
    AttachRequest, NetError, NetnsConfig, NetworkMode, Networks, Options, PortMapping, Protocol,
    DEFAULT_NETWORK,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, State};
use crate::net_opts;
use crate::opts::ContainerOptions;
use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--network {0}: no such network (create it with `hull network create {0}`)")]
    NoNetwork(String),
    #[error("--network {0}")]
    Network(String, #[source] NetError),
    #[error("-p {0}: host port {1}/{2} is already published by container {3} (network {4})")]
    PortTaken(String, u16, &'static str, String, String),
    #[error("-p {0}: host port {1}/{2} is already in use on the host")]
    PortInUse(String, u16, &'static str, #[source] std::io::Error),
    #[error("--network container:{0}: container {0} is not running")]
    TargetNotRunning(String),
    #[error("invalid {0}={1:?}")]
    Env(&'static str, String),
    #[error("network {0} is in use by container(s) {1}: remove them first")]
    InUse(String, String),
    #[error("{0} is a predefined network and cannot be removed (`hull system reset` resets all)")]
    Predefined(String),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Opts(#[from] net_opts::Error),
    #[error("cannot write {0}")]
    Hosts(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Rootless(#[from] crate::rootless::net::Error),
    #[error(transparent)]
    RootlessNetns(#[from] crate::rootless::netns::Error),
}

/// A container's place on its network, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSettings {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub ports: Vec<PortMapping>,
}

/// How the spec's network namespace is made, and whose etc files the container shares.
pub(crate) struct NetPlan {
    pub(crate) netns: NetnsConfig,
    /// `container:NAME`: that container's directory (its hosts and resolv.conf are shared).
    pub(crate) shared_etc: Option<PathBuf>,
}

fn env(var: &'static str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// An absolute form of `p` (it is recorded in the host-wide leases and compared there).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// hull-net's options for a `--root`: the host-wide state (or `HULL_NET_STATE`), acting for
/// `root`; the rest from the environment.
pub fn options(root: &Path) -> Result<Options, Error> {
    let mut o = Options {
        owner: Some(absolute(root)),
        ..Options::default()
    };
    if let Some(d) = env("HULL_NET_STATE") {
        o.state_dir = Path::new(&d).join("networks");
        o.run_dir = Path::new(&d).join("run");
    }
    if let Some(p) = env("HULL_NET_PREFIX") {
        o.link_prefix = p;
    }
    if let Some(t) = env("HULL_NET_TABLE") {
        o.nft_table = t;
    }
    let subnet = |var| match env(var) {
        Some(s) => s.parse().map(Some).map_err(|_| Error::Env(var, s)),
        None => Ok(None),
    };
    if let Some(s) = subnet("HULL_NET_SUBNET")? {
        o.default_subnet = s;
    }
    if let Some(s) = subnet("HULL_NET_POOL")? {
        o.subnet_pool = s;
    }
    Ok(o)
}

/// Refuses a published port that a host process already holds: the DNAT rules would
/// silently shadow it (docker's proxy and podman's port reservation fail the same way).
fn check_host_ports(ports: &[PortMapping]) -> Result<(), Error> {
    for p in ports {
        let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
        let held = match p.protocol {
            Protocol::Tcp => TcpListener::bind(addr).map(drop),
            Protocol::Udp => UdpSocket::bind(addr).map(drop),
        };
        if let Err(e) = held {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(Error::PortInUse(
                    p.to_string(),
                    p.host_port,
                    p.protocol.as_str(),
                    e,
                ));
            }
        }
    }
    Ok(())
}

impl Engine {
    /// hull's networks (host-wide), acting for this root.
    /// Rootless: the user's own networks (their bridges live in the user's rootless netns).
    pub fn networks(&self) -> Result<Networks, Error> {
        if crate::rootless::active() {
            return Ok(Networks::open(crate::rootless::net_options(&self.root)?)?);
        }
        Ok(Networks::open(options(&self.root)?)?)
    }

    /// Checks what can be checked before anything is made (the network exists, the host
    /// ports are free, a `container:` target runs) and says how the netns is set up.
    pub(crate) fn plan_network(&self, o: &ContainerOptions) -> Result<NetPlan, crate::Error> {
        let mode = o.network_mode();
        o.net_opts.check(&o.network).map_err(Error::from)?;
        if crate::rootless::active() {
            if let Some(netns) =
                crate::rootless::net::plan(&mode, &o.publish).map_err(Error::from)?
            {
                check_host_ports(&o.publish)?;
                return Ok(NetPlan {
                    netns,
                    shared_etc: None,
                });
            }
        }
        if let NetworkMode::Network(n) = &mode {
            if n != DEFAULT_NETWORK {
                let info = match self.networks()?.inspect(n) {
                    Err(NetError::NotFound(_)) => return Err(Error::NoNetwork(n.clone()).into()),
                    r => r.map_err(|e| Error::Network(n.clone(), e))?,
                };
                if let Some(ip) = o.net_opts.ip {
                    self.check_fixed_ip(ip, &info)?;
                }
            }
            check_host_ports(&o.publish)?;
        }
        let mut shared_etc = None;
        let netns = mode.netns_config(|target| -> Result<PathBuf, crate::Error> {
            let r = self.find(target)?;
            match self.state(&r) {
                State::Running { pid } | State::Paused { pid } => {
                    shared_etc = Some(self.dir(&r));
                    Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
                }
                _ => Err(Error::TargetNotRunning(target.into()).into()),
            }
        })?;
        Ok(NetPlan { netns, shared_etc })
    }

    /// `--ip`: an assignable address of the network that no live container holds (attach
    /// checks again under the network's lock; this is for a clear error before anything is
    /// made).
    fn check_fixed_ip(&self, ip: Ipv4Addr, info: &hull_net::NetworkInfo) -> Result<(), Error> {
        let network = info.config.name.clone();
        if !info.config.subnet.is_assignable(ip) {
            return Err(net_opts::Error::IpOutside {
                ip,
                network,
                subnet: info.config.subnet.to_string(),
            }
            .into());
        }
        if let Some(l) = info.containers.iter().find(|l| l.ip == ip && !l.is_stale()) {
            let holder = self.name_of(&l.container_id);
            return Err(net_opts::Error::IpTaken {
                ip,
                network,
                holder,
            }
            .into());
        }
        Ok(())
    }

    /// `--add-host` lines for a container without a network of hull's (whose hosts file
    /// hull-net does not write): appended to the one `create` wrote; `host-gateway` is the
    /// default bridge's gateway, as docker's is docker0's.
    pub(crate) fn write_add_hosts(&self, dir: &Path, o: &ContainerOptions) -> Result<(), Error> {
        if o.net_opts.add_hosts.is_empty() || matches!(o.network_mode(), NetworkMode::Network(_)) {
            return Ok(());
        }
        let gateway = match self.networks().map(|n| n.inspect(DEFAULT_NETWORK)) {
            Ok(Ok(info)) => info.config.gateway,
            _ => options(&self.root)?.default_subnet.gateway(),
        };
        let p = dir.join("hosts");
        let old = std::fs::read_to_string(&p).unwrap_or_default();
        let text = format!("{old}{}", o.net_opts.hosts_lines(gateway));
        std::fs::write(&p, text).map_err(|e| Error::Hosts(p, e))
    }

    /// Connects a created container (init `pid`, not started yet) to its network; its hosts
    /// file is written by hull-net and kept current as others come and go.
    ///
    /// `ip`: the address to ask for (a restart's old one); when it is taken, the lowest free.
    /// A `--ip` is asked for instead, and never given up.
    pub(crate) fn attach(
        &self,
        rec: &Record,
        pid: u32,
        ip: Option<Ipv4Addr>,
    ) -> Result<Option<NetSettings>, Error> {
        let NetworkMode::Network(net) = rec.options.network_mode() else {
            return Ok(None);
        };
        let rootless = crate::rootless::active();
        if rootless && (net == DEFAULT_NETWORK || net == crate::rootless::net::PASTA) {
            let ports = &rec.options.publish;
            return Ok(Some(crate::rootless::net::attach(
                &self.dir(rec),
                pid,
                ports,
            )?));
        }
        let mut names = vec![rec.name.clone()];
        if rec.hostname != rec.name {
            names.push(rec.hostname.clone());
        }
        let no = &rec.options.net_opts;
        for a in &no.aliases {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        let dir = absolute(&self.dir(rec));
        let req = AttachRequest {
            container_id: rec.id.clone(),
            names,
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
            ports: rec.options.publish.clone(),
            hosts_file: Some(dir.join("hosts")),
            ip: no.ip.or(ip),
            // The lease is stale once the container's directory is gone (see hull-net).
            holder: Some(dir),
            extra_hosts: no.add_hosts.clone(),
            ..AttachRequest::default()
        };
        let att = if rootless {
            self.attach_user_network(&net, req, no.ip.is_some())?
        } else {
            let nets = self.networks()?;
            let mut att = nets.attach(&net, &req);
            if att.is_err() && req.ip.is_some() && no.ip.is_none() {
                att = nets.attach(&net, &AttachRequest { ip: None, ..req });
            }
            att.map_err(|e| self.attach_error(&net, e))?
        };
        self.emit_network("connect", &att.network, &[("container", &rec.id)]);
        Ok(Some(NetSettings {
            network: att.network,
            ip: att.ip,
            prefix: att.prefix,
            gateway: att.gateway,
            mac: att.mac,
            ports: rec.options.publish.clone(),
        }))
    }

    /// An attach failure in the user's words (a port's holder by name, a missing network).
    pub(crate) fn attach_error(&self, net: &str, e: NetError) -> Error {
        match e {
            NetError::NotFound(n) => Error::NoNetwork(n),
            NetError::PortTaken {
                port,
                container,
                network,
            } => {
                let p: Option<PortMapping> = port.parse().ok();
                Error::PortTaken(
                    port,
                    p.as_ref().map_or(0, |p| p.host_port),
                    p.map_or("tcp", |p| p.protocol.as_str()),
                    self.name_of(&container),
                    network,
                )
            }
            e => Error::Network(net.to_string(), e),
        }
    }

    /// Moves a created (or exited) container to `network` (`none`: no network) with
    /// `aliases` — docker's `network connect`/`disconnect`, which docker-compose sends
    /// between create and start. A container's network is attached when its init is
    /// created, so the old attachment is released and the new one made on the same init.
    /// `rec` is read under the run and store locks, which the caller holds.
    pub(crate) fn reconnect_locked(
        &self,
        mut rec: Record,
        network: &str,
        aliases: Vec<String>,
    ) -> Result<Record, crate::Error> {
        let created = match self.state(&rec) {
            State::Created => true,
            // Released at the exit; the next start attaches from the options.
            State::Exited(_) => false,
            _ => return Err(crate::Error::Running(rec.name)),
        };
        let mut o = rec.options.clone();
        o.network = network.into();
        o.net_opts.aliases = aliases;
        if !created {
            rec.options = o;
            self.containers.save(&rec)?;
            return Ok(rec);
        }
        self.plan_network(&o)?;
        let pid = self.shim(&rec)?.state("")?.pid;
        self.release_network(&rec.id)?;
        rec.options = o;
        rec.net = self.attach(&rec, pid, None)?;
        rec.last_ip = rec.net.as_ref().map(|n| n.ip);
        // The release took the connected networks' interfaces too.
        let plugged = self.attach_extras(&mut rec, pid);
        self.containers.save(&rec)?;
        plugged?;
        Ok(rec)
    }

    /// Releases whatever container `id` holds on any network (veth, port rules, lease).
    /// Idempotent; cheap when this root never had a network.
    pub(crate) fn release_network(&self, id: &str) -> Result<(), Error> {
        if crate::rootless::active() {
            let dir = self.containers.dir_of(id);
            crate::rootless::net::release(&dir);
            return self.release_user_network(id);
        }
        let o = options(&self.root)?;
        if !o.run_dir.is_dir() {
            return Ok(());
        }
        Networks::open(o)?.detach_all(id)?;
        Ok(())
    }

    /// After the container exited: release its network (docker does on stop) and forget the
    /// settings. Failures are kept for `rm`, which tries again.
    pub(crate) fn release_after_exit(&self, r: &Record) {
        let held: Vec<&str> = r
            .net
            .iter()
            .chain(r.extra_nets.iter().filter_map(|x| x.settings.as_ref()))
            .map(|n| n.network.as_str())
            .collect();
        if held.is_empty() || self.release_network(&r.id).is_err() {
            return;
        }
        for n in held {
            self.emit_network("disconnect", n, &[("container", &r.id)]);
        }
        if let Ok(mut r) = self.containers.find(&r.id) {
            r.net = None;
            for x in &mut r.extra_nets {
                x.settings = None;
            }
            let _ = self.containers.save(&r);
        }
    }

    /// A container's name for messages; its short id when it has no record (any more).
    fn name_of(&self, id: &str) -> String {
        self.containers
            .find(id)
            .map_or_else(|_| id.chars().take(12).collect(), |r| r.name)
    }

    /// `hull network rm`: refuses a network with containers, naming them.
    pub fn remove_network(&self, name: &str) -> Result<(), crate::Error> {
        if matches!(name, "none" | "host" | DEFAULT_NETWORK) {
            return Err(Error::Predefined(name.into()).into());
        }
        let nets = self.networks()?;
        let info = nets.inspect(name).map_err(|e| match e {
            NetError::NotFound(n) => Error::NoNetwork(n),
            e => Error::Net(e),
        })?;
        // A lease whose holder is gone (a root deleted with its containers running) is
        // stale: hull-net reclaims it at the removal, as it does when allocating.
        let live: Vec<_> = info.containers.iter().filter(|l| !l.is_stale()).collect();
        if !live.is_empty() {
            let names: Vec<String> = live.iter().map(|l| self.name_of(&l.container_id)).collect();
            return Err(Error::InUse(name.into(), names.join(", ")).into());
        }
        if crate::rootless::active() {
            self.remove_user_network(name)?;
        } else {
            nets.remove(name, false).map_err(Error::Net)?;
        }
        self.emit_network("destroy", name, &[]);
        Ok(())
    }

    /// A network event; the actor is the network's name (hull's networks have no other id).
    pub fn emit_network(&self, action: &str, name: &str, extra: &[(&str, &str)]) {
        let a = [("name", name), ("type", "bridge")];
        let a = crate::events::attrs(a.into_iter().chain(extra.iter().copied()));
        self.journal().emit("network", action, name, a);
    }
}

/// docker's port map: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn ports_json(list: &[PortMapping]) -> serde_json::Value {
    use serde_json::json;
    let mut ports = serde_json::Map::new();
    for p in list {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let host = json!({"HostIp": p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "HostPort": p.host_port.to_string()});
        match ports.get_mut(&key).and_then(|v| v.as_array_mut()) {
            Some(list) => list.push(host),
            None => drop(ports.insert(key, json!([host]))),
        }
    }
    ports.into()
}

/// docker's `NetworkSettings` for `inspect`.
pub fn settings_json(net: Option<&NetSettings>, sandbox: Option<String>) -> serde_json::Value {
    use serde_json::json;
    let Some(n) = net else {
        return json!({"Ports": {}, "IPAddress": "", "Gateway": "", "IPPrefixLen": 0,
            "MacAddress": "", "SandboxKey": sandbox.unwrap_or_default(), "Networks": {}});
    };
    let endpoint = json!({"IPAddress": n.ip.to_string(), "IPPrefixLen": n.prefix,
        "Gateway": n.gateway.to_string(), "MacAddress": n.mac, "NetworkID": n.network});
    json!({
        "Ports": ports_json(&n.ports), "IPAddress": n.ip.to_string(), "IPPrefixLen": n.prefix,
        "Gateway": n.gateway.to_string(), "MacAddress": n.mac,
        "SandboxKey": sandbox.unwrap_or_default(),
        "Networks": {n.network.clone(): endpoint},
    })
}

/// `hull port` lines: `80/tcp -> 0.0.0.0:8080`.
pub fn port_lines(ports: &[PortMapping]) -> Vec<String> {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}/{} -> {}:{}",
                p.container_port,
                p.protocol.as_str(),
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port
            )
        })
        .collect()
}

/// `hull ps`'s PORTS column: `0.0.0.0:8080->80/tcp`.
pub fn ports_column(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn inspect_and_port_formats() {
        let p: PortMapping = "127.0.0.1:8080:80".parse().unwrap();
        let q: PortMapping = "5353:53/udp".parse().unwrap();
        let n = NetSettings {
            network: "bridge".into(),
            ip: Ipv4Addr::new(10, 87, 0, 2),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 87, 0, 1),
            mac: "02:42:0a:57:00:02".into(),
            ports: vec![p.clone(), q.clone()],
        };
        let v = settings_json(Some(&n), None);
        assert_eq!(v["IPAddress"], "10.87.0.2");
        assert_eq!(v["Ports"]["80/tcp"][0]["HostIp"], "127.0.0.1");
        assert_eq!(v["Ports"]["53/udp"][0]["HostPort"], "5353");
        assert_eq!(v["Networks"]["bridge"]["Gateway"], "10.87.0.1");
        assert_eq!(
            port_lines(&[p.clone(), q.clone()]),
            ["80/tcp -> 127.0.0.1:8080", "53/udp -> 0.0.0.0:5353"]
        );
        assert_eq!(
            ports_column(&[p, q]),
            "127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp"
        );
        assert_eq!(settings_json(None, None)["IPAddress"], "");
    }
}
