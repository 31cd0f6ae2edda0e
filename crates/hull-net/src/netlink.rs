//! Links, addresses and routes over rtnetlink: a plain blocking `NETLINK_ROUTE` socket and
//! netlink-packet-route's message types (no tokio). Work inside a container's network
//! namespace goes through a socket opened by a short-lived thread that `setns`es into it first:
//! a netlink socket stays bound to the namespace it was created in, and only that thread ever
//! changes namespace.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::CloneFlags;

use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink reply to {what}: {detail}")]
    Decode { what: String, detail: String },
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
}

/// A link as listed on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSummary {
    pub name: String,
    pub index: u32,
    /// `IFLA_INFO_KIND`: "bridge", "veth", ...
    pub kind: Option<String>,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
}

/// What a container's veth pair needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethRequest {
    /// Host end (stays on the host, enslaved to `bridge`).
    pub host_name: String,
    pub bridge: String,
    /// The container's network namespace, e.g. `/proc/PID/ns/net`.
    pub netns: PathBuf,
    /// Name of the container end inside its namespace (`eth0`).
    pub container_ifname: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Hardware address of the container end.
    pub mac: [u8; 6],
    /// Route the container's default traffic through `gateway` (not for an interface
    /// hot-plugged next to one that already does).
    pub default_route: bool,
}

/// The kernel boundary for links, faked in tests.
pub trait Links: Send + Sync {
    /// Creates the bridge unless it exists, gives it `gateway/prefix`, sets the MTU and brings
    /// it up.
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), LinkError>;
    /// Creates the veth pair, moves one end into the namespace and configures both ends
    /// (address, MTU, up, default route, loopback up).
    fn add_veth(&self, req: &VethRequest) -> Result<(), LinkError>;
    /// Deletes a host link; `Ok(false)` when it did not exist.
    fn delete_link(&self, name: &str) -> Result<bool, LinkError>;
    /// Deletes a container's host veth, unless the kernel is about to: when the peer's
    /// network namespace is being destroyed (the container exited and nothing else holds it),
    /// the pair goes with it, and an RTM_DELLINK would only wait (~12 ms) for the RCU grace
    /// periods of an unregistration the kernel does anyway. `Ok(false)` when it did not exist.
    fn release_veth(&self, name: &str) -> Result<bool, LinkError> {
        self.delete_link(name)
    }
    /// Every host link.
    fn links(&self) -> Result<Vec<LinkSummary>, LinkError>;
    /// Destinations of the host's IPv4 routes in the main table (default route excluded),
    /// with their output interface's index.
    fn routes(&self) -> Result<Vec<(Subnet, Option<u32>)>, LinkError>;
    /// Writes `/proc/sys/<key>` (`key` is a path such as `net/ipv4/ip_forward`).
    fn sysctl(&self, key: &str, value: &str) -> Result<(), LinkError>;
}

/// The real implementation over rtnetlink and /proc/sys.
#[derive(Debug, Default, Clone)]
pub struct Netlink;

struct Nl {
    sock: Socket,
    seq: Cell<u32>,
}

fn nl_err(what: &str) -> impl FnOnce(io::Error) -> LinkError + '_ {
    move |source| LinkError::Netlink {
        what: what.to_string(),
        source,
    }
}

impl Nl {
    fn new() -> io::Result<Nl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Nl {
            sock,
            seq: Cell::new(1),
        })
    }

    /// A socket in the network namespace at `path`.
    fn in_netns(path: &Path) -> Result<Nl, LinkError> {
        let ns_err = |source| LinkError::Netns {
            path: path.to_path_buf(),
            source,
        };
        let ns = File::open(path).map_err(ns_err)?;
        let joined = std::thread::scope(|s| {
            s.spawn(|| -> io::Result<Nl> {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Nl::new()
            })
            .join()
        });
        match joined {
            Ok(r) => r.map_err(ns_err),
            Err(_) => Err(ns_err(io::Error::other("setns thread panicked"))),
        }
    }

    /// Sends one request and collects the replies until the ACK (or `NLMSG_DONE` for dumps).
    fn request(
        &self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(nl_err(what))?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(nl_err(what))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| LinkError::Decode {
                        what: what.to_string(),
                        detail: e.to_string(),
                    })?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == seq {
                    match reply.payload {
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(out),
                                Some(_) => Err(nl_err(what)(e.to_io())),
                            }
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.link(name)?.map(|l| l.header.index))
    }

    fn link(&self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("look up link {name}"),
            RouteNetlinkMessage::GetLink(m),
            0,
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(LinkError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn must_index(&self, name: &str) -> Result<u32, LinkError> {
        self.index(name)?.ok_or_else(|| LinkError::Netlink {
            what: format!("look up link {name}"),
            source: io::Error::from_raw_os_error(libc::ENODEV),
        })
    }

    fn set_up(&self, name: &str, index: u32, mtu: Option<u32>) -> Result<(), LinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request(
            &format!("set link {name} up"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )
        .map(drop)
    }

    /// Adds `addr/prefix` to a link; an address that is already there is fine.
    fn add_addr(
        &self,
        name: &str,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), LinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        m.attributes.push(AddressAttribute::Broadcast(
            Subnet::new(addr, prefix).broadcast(),
        ));
        let what = format!("add address {addr}/{prefix} to {name}");
        match self.request(
            &what,
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(LinkError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            r => r.map(drop),
        }
    }

    fn default_route(&self, ifname: &str, index: u32, gateway: Ipv4Addr) -> Result<(), LinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        let what = format!("add default route via {gateway} dev {ifname}");
        self.request(
            &what,
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Whether `link` is one end of a pair (a veth) whose peer lives in a network namespace
    /// that is being destroyed: its last reference is gone, and the kernel's cleanup_net
    /// (a workqueue) will unregister the peer, which takes this end with it.
    ///
    /// The kernel shows this through the peer's namespace id (IFLA_LINK_NETNSID): hull's
    /// veths get one at creation (the lookup right after RTM_NEWLINK asks for it), and
    /// `get_net_ns_by_id` refuses a namespace whose count is zero, so a lookup of the peer
    /// through that id (IFLA_TARGET_NETNSID) fails with EINVAL; once cleanup_net has
    /// unhashed the id, the link reports -1 (NETNSA_NSID_NOT_ASSIGNED: peernet2id_alloc
    /// gives a dying namespace no new id). A namespace that is alive (a container still
    /// running, or one that others share) answers, and the caller deletes the link.
    fn peer_netns_dying(&self, link: &LinkMessage) -> bool {
        let (mut nsid, mut peer) = (None, None);
        for a in &link.attributes {
            match a {
                LinkAttribute::LinkNetNsId(i) => nsid = Some(*i),
                LinkAttribute::Link(p) => peer = Some(*p),
                _ => {}
            }
        }
        let (Some(nsid), Some(peer)) = (nsid, peer) else {
            return false;
        };
        if nsid < 0 {
            return true;
        }
        let mut m = LinkMessage::default();
        m.header.index = peer;
        m.attributes.push(LinkAttribute::IfNetnsId(nsid));
        matches!(
            self.request("look up veth peer", RouteNetlinkMessage::GetLink(m), 0),
            Err(LinkError::Netlink { source, .. }) if source.raw_os_error() == Some(libc::EINVAL)
        )
    }

    fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(index) = self.index(name)? else {
            return Ok(false);
        };
        self.delete_index(name, index)
    }

    fn delete_index(&self, name: &str, index: u32) -> Result<bool, LinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(m),
            0,
        ) {
            Err(LinkError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(false)
            }
            r => r.map(|_| true),
        }
    }
}

impl Links for Netlink {
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), LinkError> {
        let nl = Nl::new().map_err(nl_err("open netlink socket"))?;
        if nl.index(name)?.is_none() {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(name.to_string()));
            m.attributes.push(LinkAttribute::Mtu(mtu));
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Bridge,
                )]));
            let what = format!("create bridge {name}");
            match nl.request(
                &what,
                RouteNetlinkMessage::NewLink(m),
                NLM_F_CREATE | NLM_F_EXCL,
            ) {
                // Another hull process created it meanwhile.
                Err(LinkError::Netlink { source, .. })
                    if source.raw_os_error() == Some(libc::EEXIST) => {}
                r => r.map(drop)?,
            }
        }
        let index = nl.must_index(name)?;
        nl.add_addr(name, index, gateway, prefix)?;
        nl.set_up(name, index, Some(mtu))
    }

    fn add_veth(&self, req: &VethRequest) -> Result<(), LinkError> {
        let host = Nl::new().map_err(nl_err("open netlink socket"))?;
        let bridge = host.must_index(&req.bridge)?;
        let ns = File::open(&req.netns).map_err(|source| LinkError::Netns {
            path: req.netns.clone(),
            source,
        })?;
        // A leftover of a crashed attach with the same (container-derived) name.
        host.delete(&req.host_name)?;

        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(req.container_ifname.clone()));
        peer.attributes.push(LinkAttribute::Mtu(req.mtu));
        peer.attributes
            .push(LinkAttribute::Address(req.mac.to_vec()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(&ns)));
        let mut m = LinkMessage::default();
        m.attributes
            .push(LinkAttribute::IfName(req.host_name.clone()));
        m.attributes.push(LinkAttribute::Mtu(req.mtu));
        m.attributes.push(LinkAttribute::Controller(bridge));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let what = format!(
            "create veth {} (peer {} in {})",
            req.host_name,
            req.container_ifname,
            req.netns.display()
        );
        host.request(
            &what,
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        drop(ns);
        // This lookup also makes the kernel give the peer's netns an id in ours
        // (IFLA_LINK_NETNSID), which release_veth relies on.
        let index = host.must_index(&req.host_name)?;
        host.set_up(&req.host_name, index, None)?;

        let ctr = Nl::in_netns(&req.netns)?;
        let lo = ctr.must_index("lo")?;
        ctr.set_up("lo", lo, None)?;
        let eth = ctr.must_index(&req.container_ifname)?;
        ctr.add_addr(&req.container_ifname, eth, req.addr, req.prefix)?;
        ctr.set_up(&req.container_ifname, eth, None)?;
        if !req.default_route {
            return Ok(());
        }
        ctr.default_route(&req.container_ifname, eth, req.gateway)
    }

    fn delete_link(&self, name: &str) -> Result<bool, LinkError> {
        Nl::new()
            .map_err(nl_err("open netlink socket"))?
            .delete(name)
    }

    fn release_veth(&self, name: &str) -> Result<bool, LinkError> {
        let nl = Nl::new().map_err(nl_err("open netlink socket"))?;
        let Some(link) = nl.link(name)? else {
            return Ok(false);
        };
        if nl.peer_netns_dying(&link) {
            tracing::debug!("veth {name}: its peer's netns is being destroyed; left to the kernel");
            return Ok(true);
        }
        nl.delete_index(name, link.header.index)
    }

    fn links(&self) -> Result<Vec<LinkSummary>, LinkError> {
        let nl = Nl::new().map_err(nl_err("open netlink socket"))?;
        let replies = nl.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .map(|l| {
                let mut s = LinkSummary {
                    name: String::new(),
                    index: l.header.index,
                    kind: None,
                    master: None,
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => s.name = n,
                        LinkAttribute::Controller(m) => s.master = Some(m),
                        LinkAttribute::LinkInfo(infos) => {
                            for i in infos {
                                if let LinkInfo::Kind(k) = i {
                                    s.kind = Some(k.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                }
                s
            })
            .collect())
    }

    fn routes(&self) -> Result<Vec<(Subnet, Option<u32>)>, LinkError> {
        let nl = Nl::new().map_err(nl_err("open netlink socket"))?;
        let mut q = RouteMessage::default();
        q.header.address_family = AddressFamily::Inet;
        let replies = nl.request("list routes", RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewRoute(r) = r else {
                continue;
            };
            let len = r.header.destination_prefix_length;
            if r.header.table != RouteHeader::RT_TABLE_MAIN || len == 0 {
                continue;
            }
            let mut dst = None;
            let mut oif = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            if let Some(ip) = dst {
                out.push((Subnet::new(ip, len), oif));
            }
        }
        Ok(out)
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<(), LinkError> {
        let path = Path::new("/proc/sys").join(key);
        std::fs::write(&path, value).map_err(|source| LinkError::Sysctl {
            key: key.to_string(),
            source,
        })
    }
}
