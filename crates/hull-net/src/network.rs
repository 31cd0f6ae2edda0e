//! The public API: [`Networks`] creates, lists and removes networks and attaches containers.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::files::{self, ExtraHost};
use crate::ipam::{check_name, IpamError, Lease, NetworkConfig, NetworkState, Store};
use crate::mode::DEFAULT_NETWORK;
use crate::netlink::{LinkError, Links, Netlink, VethRequest};
use crate::nft::{self, Nft, NftCommand, NftError};
use crate::ports::{check_duplicates, PortError, PortMapping};
use crate::subnet::{self, Subnet, SubnetError};
use crate::teardown::Teardown;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Subnet(#[from] SubnetError),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network {0} already exists")]
    Exists(String),
    #[error("network {0} has {1} attached container(s); detach them or force")]
    InUse(String, usize),
    #[error("invalid interface name {0:?}: 1-15 bytes of letters, digits, '_', '-', '.'")]
    BadIfName(String),
    #[error("invalid link prefix {0:?}: 1-7 bytes of letters, digits")]
    BadPrefix(String),
    #[error("bridge {bridge} is already used by network {network}")]
    BridgeTaken { bridge: String, network: String },
    #[error("host port {port} is already published by container {container} on network {network}")]
    PortTaken {
        port: String,
        container: String,
        network: String,
    },
    #[error("{0}")]
    Teardown(#[from] crate::teardown::TeardownError),
}

/// Where hull keeps its network state and how it names what it creates.
#[derive(Debug, Clone)]
pub struct Options {
    /// Network definitions, host-wide like podman's `/etc/containers/networks` (default
    /// `/var/lib/hull/networks`).
    pub state_dir: PathBuf,
    /// Leases and locks, host-wide runtime state lost at a reboot like the links it
    /// describes (default `/run/hull/net`).
    pub run_dir: PathBuf,
    /// The `--root` this handle acts for: recorded in the leases and networks it makes, and
    /// what [`Networks::reset`] is limited to. `None`: the whole host (reset removes all).
    pub owner: Option<PathBuf>,
    /// Prefix of every link hull creates (bridges `<prefix>N`, veths `<prefix><hash>`);
    /// reset removes every bridge/veth whose name starts with it.
    pub link_prefix: String,
    /// The nftables `inet` table.
    pub nft_table: String,
    /// Subnet of the default network (`bridge`).
    pub default_subnet: Subnet,
    /// Where user networks without `--subnet` get a free /24 from.
    pub subnet_pool: Subnet,
    pub mtu: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            state_dir: PathBuf::from("/var/lib/hull/networks"),
            run_dir: PathBuf::from("/run/hull/net"),
            owner: None,
            link_prefix: "hull".to_string(),
            nft_table: "hull".to_string(),
            default_subnet: Subnet::new(Ipv4Addr::new(10, 87, 0, 0), 24),
            subnet_pool: Subnet::new(Ipv4Addr::new(10, 87, 0, 0), 16),
            mtu: 1500,
        }
    }
}

/// `hull network create` arguments.
#[derive(Debug, Clone, Default)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: Option<Subnet>,
    /// Bridge name; default `<prefix>N`, the lowest free N (`hull0` for `bridge`).
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
}

/// What `attach` needs about a container.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container_id: String,
    /// Names others resolve it by (container name, hostname, aliases).
    pub names: Vec<String>,
    /// Its network namespace, e.g. `/proc/PID/ns/net`.
    pub netns: PathBuf,
    pub ports: Vec<PortMapping>,
    /// A fixed address (`--ip`); default: the lowest free.
    pub ip: Option<Ipv4Addr>,
    /// Interface inside the container (default `eth0`).
    pub ifname: Option<String>,
    /// The container's hosts file (the host-side file bind-mounted on /etc/hosts); when given,
    /// hull writes it now and rewrites it whenever a container joins or leaves the network.
    pub hosts_file: Option<PathBuf>,
    /// A path that exists while the container does (see [`Lease::holder`]).
    pub holder: Option<PathBuf>,
    /// `--add-host` entries for its hosts file.
    pub extra_hosts: Vec<ExtraHost>,
    /// A network added to a running container that is on another one already (docker's
    /// `network connect`): no default route through it, and its hosts file (shared with
    /// that other network's lease) keeps naming the container by its first address.
    pub secondary: bool,
}

/// The result of `attach`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub ifname: String,
    pub host_veth: String,
    pub mtu: u32,
    /// The container end's hardware address (`02:42:` + its IPv4 address, as docker).
    pub mac: String,
    /// The content for the container's /etc/hosts.
    pub hosts: String,
    /// The content for the container's /etc/resolv.conf.
    pub resolv_conf: String,
}

/// `hull network inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    #[serde(flatten)]
    pub config: NetworkConfig,
    pub containers: Vec<Lease>,
}

/// hull's networks on this host.
pub struct Networks {
    pub(crate) opts: Options,
    pub(crate) store: Store,
    pub(crate) links: Box<dyn Links>,
    pub(crate) nft: Box<dyn Nft>,
}

pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A container's hardware address: locally administered `02:42:` + its IPv4 address, as
/// docker does, so that it is stable and unique on the bridge without a registry of its own.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Networks {
    /// Opens the state dir with the real kernel backends (rtnetlink, `nft`).
    pub fn open(opts: Options) -> Result<Networks, NetError> {
        Networks::with_backends(opts, Box::new(Netlink), Box::new(NftCommand::default()))
    }

    /// Opens the state dir with the given backends (tests pass fakes).
    pub fn with_backends(
        opts: Options,
        links: Box<dyn Links>,
        nft: Box<dyn Nft>,
    ) -> Result<Networks, NetError> {
        let p = &opts.link_prefix;
        if p.is_empty() || p.len() > 7 || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(NetError::BadPrefix(p.clone()));
        }
        let store = Store::open(&opts.state_dir, &opts.run_dir)?;
        Ok(Networks {
            opts,
            store,
            links,
            nft,
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Host veth name of a container on a network: `<prefix>` + hash, 15 bytes.
    pub fn veth_name(&self, network: &str, container_id: &str) -> String {
        let p = &self.opts.link_prefix;
        let hex = format!("{:016x}", crate::fnv1a(&[network, container_id]));
        format!("{p}{}", &hex[..15 - p.len()])
    }

    /// Creates a network (its bridge and rules appear with the first container).
    pub fn create(&self, spec: &NetworkSpec) -> Result<NetworkConfig, NetError> {
        check_name(&spec.name)?;
        let _all = self.store.lock_all(true)?;
        self.create_locked(spec)
    }

    fn create_locked(&self, spec: &NetworkSpec) -> Result<NetworkConfig, NetError> {
        if self.store.read(&spec.name)?.is_some() {
            return Err(NetError::Exists(spec.name.clone()));
        }
        let existing = self.store.all()?;
        let bridge = match &spec.bridge {
            Some(b) => b.clone(),
            None => {
                let used: Vec<&str> = existing.iter().map(|s| s.config.bridge.as_str()).collect();
                let start = if spec.name == DEFAULT_NETWORK { 0 } else { 1 };
                let p = &self.opts.link_prefix;
                (start..)
                    .map(|n| format!("{p}{n}"))
                    .find(|b| !used.contains(&b.as_str()))
                    .unwrap_or_else(|| format!("{p}x"))
            }
        };
        if !valid_ifname(&bridge) {
            return Err(NetError::BadIfName(bridge));
        }
        if let Some(other) = existing.iter().find(|s| s.config.bridge == bridge) {
            return Err(NetError::BridgeTaken {
                bridge,
                network: other.config.name.clone(),
            });
        }
        let mut taken: Vec<(Subnet, String)> = existing
            .iter()
            .map(|s| (s.config.subnet, format!("hull network {}", s.config.name)))
            .collect();
        // Host routes, except those through the bridges of hull's own networks (covered above)
        // and through the bridge we are about to (re)use.
        let links = self.links.links()?;
        let ours: Vec<&str> = existing
            .iter()
            .map(|s| s.config.bridge.as_str())
            .chain([bridge.as_str()])
            .collect();
        for (dst, oif) in self.links.routes()? {
            let dev = oif.and_then(|i| links.iter().find(|l| l.index == i));
            if dev.is_some_and(|l| ours.contains(&l.name.as_str())) {
                continue;
            }
            let dev = dev.map(|l| l.name.as_str()).unwrap_or("?");
            taken.push((dst, format!("host route via {dev}")));
        }
        let subnet = match spec.subnet {
            Some(s) => {
                s.validate()?;
                subnet::check_collision(s, &taken)?;
                s
            }
            None => {
                let mut avoid = taken.clone();
                avoid.extend(subnet::foreign_defaults());
                let default = self.opts.default_subnet;
                if spec.name == DEFAULT_NETWORK && subnet::check_collision(default, &avoid).is_ok()
                {
                    default
                } else {
                    // The default network's subnet stays free for it.
                    avoid.push((default, format!("hull network {DEFAULT_NETWORK}")));
                    subnet::pick_free(self.opts.subnet_pool, &avoid)?
                }
            }
        };
        let config = NetworkConfig {
            name: spec.name.clone(),
            bridge,
            subnet,
            gateway: subnet.gateway(),
            mtu: spec.mtu.unwrap_or(self.opts.mtu),
            created: now(),
            owner: self.opts.owner.clone(),
        };
        self.store.write(&NetworkState::new(config.clone()))?;
        Ok(config)
    }

    /// A network's definition and leases.
    pub fn inspect(&self, name: &str) -> Result<NetworkInfo, NetError> {
        let s = self
            .store
            .read(name)?
            .ok_or_else(|| NetError::NotFound(name.to_string()))?;
        Ok(NetworkInfo {
            config: s.config,
            containers: s.leases.into_values().collect(),
        })
    }

    /// Every network's definition.
    pub fn list(&self) -> Result<Vec<NetworkConfig>, NetError> {
        Ok(self.store.all()?.into_iter().map(|s| s.config).collect())
    }

    /// Connects a container to a network (the default `bridge` network is created on demand):
    /// lease, bridge, veth pair into its namespace, NAT and published ports, hosts file.
    pub fn attach(&self, network: &str, req: &AttachRequest) -> Result<Attachment, NetError> {
        check_name(network)?;
        if network == DEFAULT_NETWORK && self.store.read(network)?.is_none() {
            let _all = self.store.lock_all(true)?;
            if self.store.read(network)?.is_none() {
                self.create_locked(&NetworkSpec {
                    name: network.to_string(),
                    ..NetworkSpec::default()
                })?;
            }
        }
        let _all = self.store.lock_all(false)?;
        let _net = self.store.lock_network(network)?;
        let mut state = self
            .store
            .read(network)?
            .ok_or_else(|| NetError::NotFound(network.to_string()))?;
        let ifname = req.ifname.clone().unwrap_or_else(|| "eth0".to_string());
        if !valid_ifname(&ifname) {
            return Err(NetError::BadIfName(ifname));
        }
        // Ports are host-wide but this holds only its own network's lock: the check and the
        // claim (the lease written) go under the ports lock, or an attach to another network
        // could pass the check in between and take the same port.
        let ports_lock = match req.ports.is_empty() {
            true => None,
            false => Some(self.store.lock_ports()?),
        };
        self.check_ports(&req.ports)?;
        let cfg = state.config.clone();
        self.reclaim_stale(&mut state);
        let ip = state.pick(&req.container_id, req.ip)?;
        let lease = self.lease_for(&cfg, req, ip);
        state.insert(lease.clone());
        // The lease is on disk before anything is made in the kernel, so that detach or reset
        // finds whatever a crash leaves behind.
        self.store.write_leases(&state)?;
        drop(ports_lock);
        if let Err(e) = self.plumb(&cfg, &lease, &req.netns, &ifname) {
            self.roll_back(&mut state, &lease);
            return Err(e);
        }
        let hosts = self.refresh_hosts(&state, Some(&req.container_id));
        Ok(Attachment {
            network: network.to_string(),
            ip,
            prefix: cfg.subnet.prefix(),
            gateway: cfg.gateway,
            ifname,
            host_veth: lease.host_veth,
            mtu: cfg.mtu,
            mac: format_mac(mac_for(ip)),
            hosts,
            resolv_conf: files::host_resolv_conf(),
        })
    }

    /// The lease `req` gets at `ip` on network `cfg` (`--add-host`'s `host-gateway`: the
    /// network's gateway).
    fn lease_for(&self, cfg: &NetworkConfig, req: &AttachRequest, ip: Ipv4Addr) -> Lease {
        let extra_hosts = req
            .extra_hosts
            .iter()
            .map(|x| ExtraHost {
                name: x.name.clone(),
                ip: Some(x.ip.unwrap_or(cfg.gateway.into())),
            })
            .collect();
        Lease {
            container_id: req.container_id.clone(),
            ip,
            names: req.names.clone(),
            host_veth: self.veth_name(&cfg.name, &req.container_id),
            ports: req.ports.clone(),
            hosts_file: req.hosts_file.clone(),
            owner: self.opts.owner.clone(),
            holder: req.holder.clone(),
            extra_hosts,
            secondary: req.secondary,
        }
    }

    /// Undoes an attach whose plumbing failed: what it made, and its lease.
    fn roll_back(&self, state: &mut NetworkState, lease: &Lease) {
        let mut td = Teardown::default();
        self.unplumb(&state.config, lease, &mut td);
        state.release(&lease.container_id);
        td.step(
            format!("release lease {}", lease.ip),
            self.store.write_leases(state),
        );
        if !td.is_empty() {
            tracing::warn!(
                "rollback of attach to {}: {}",
                state.config.name,
                td.errors().join("; ")
            );
        }
    }

    /// Releases the leases whose holder is gone (a root deleted with its containers running,
    /// a container directory removed by hand): their veths and port rules go, and their
    /// addresses are free again. Under the network's lock (or the exclusive store lock); the
    /// caller writes the leases. Returns how many it released.
    pub(crate) fn reclaim_stale(&self, state: &mut crate::ipam::NetworkState) -> usize {
        let stale: Vec<String> = state
            .leases
            .values()
            .filter(|l| l.is_stale())
            .map(|l| l.container_id.clone())
            .collect();
        let n = stale.len();
        for id in stale {
            let Some(lease) = state.release(&id) else {
                continue;
            };
            tracing::warn!(
                "network {}: reclaiming {} of container {id}, whose holder {} is gone",
                state.config.name,
                lease.ip,
                lease
                    .holder
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"))
                    .display()
            );
            let mut td = Teardown::default();
            self.unplumb(&state.config, &lease, &mut td);
            if !td.is_empty() {
                tracing::warn!("reclaim: {}", td.errors().join("; "));
            }
        }
        n
    }

    /// Refuses ports that clash among themselves or with any container's published ports.
    fn check_ports(&self, ports: &[PortMapping]) -> Result<(), NetError> {
        check_duplicates(ports)?;
        if ports.is_empty() {
            return Ok(());
        }
        for s in self.store.all()? {
            for l in s.leases.values().filter(|l| !l.is_stale()) {
                let mut both = l.ports.clone();
                for p in ports {
                    both.push(p.clone());
                    if check_duplicates(&both).is_err() {
                        return Err(NetError::PortTaken {
                            port: p.to_string(),
                            container: l.container_id.clone(),
                            network: s.config.name.clone(),
                        });
                    }
                    both.pop();
                }
            }
        }
        Ok(())
    }

    /// Kernel side of attach: forwarding, bridge, network rules, veth, port rules.
    fn plumb(
        &self,
        cfg: &NetworkConfig,
        lease: &Lease,
        netns: &std::path::Path,
        ifname: &str,
    ) -> Result<(), NetError> {
        self.links.sysctl("net/ipv4/ip_forward", "1")?;
        self.links
            .ensure_bridge(&cfg.bridge, cfg.gateway, cfg.subnet.prefix(), cfg.mtu)?;
        // DNATed connections from 127.0.0.1 keep their loopback source until postrouting's
        // masquerade; without this the kernel drops them as martians on the bridge.
        self.links
            .sysctl(&format!("net/ipv4/conf/{}/route_localnet", cfg.bridge), "1")?;
        self.links.add_veth(&VethRequest {
            host_name: lease.host_veth.clone(),
            bridge: cfg.bridge.clone(),
            netns: netns.to_path_buf(),
            container_ifname: ifname.to_string(),
            addr: lease.ip,
            prefix: cfg.subnet.prefix(),
            gateway: cfg.gateway,
            mtu: cfg.mtu,
            mac: mac_for(lease.ip),
            default_route: !lease.secondary,
        })?;
        // One nft run per attach: the network's rules (rewritten, idempotently) and the
        // container's ports, in one transaction. After the veth: a failure rolls both back.
        let table = &self.opts.nft_table;
        let mut batch = nft::network_rules(table, &cfg.name, &cfg.bridge, cfg.subnet);
        if !lease.ports.is_empty() {
            let tag = nft::container_tag(&cfg.name, &lease.container_id);
            batch.extend(nft::port_rules(table, &tag, lease.ip, &lease.ports));
        }
        self.nft.apply(&serde_json::json!({ "nftables": batch }))?;
        Ok(())
    }

    /// Removes a lease's veth and port rules, collecting errors.
    pub(crate) fn unplumb(&self, cfg: &NetworkConfig, lease: &Lease, td: &mut Teardown) {
        td.step(
            format!("delete veth {}", lease.host_veth),
            self.links.release_veth(&lease.host_veth),
        );
        if !lease.ports.is_empty() {
            let tag = nft::container_tag(&cfg.name, &lease.container_id);
            td.step(
                format!("remove port rules of {} ({tag})", lease.container_id),
                nft::remove_tagged(self.nft.as_ref(), &self.opts.nft_table, &tag),
            );
        }
    }
}
