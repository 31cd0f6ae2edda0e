//! Container networking for hull: bridge networks (a Linux bridge per network, a veth pair per
//! container moved into its network namespace, configured over rtnetlink), IPAM with a
//! host-wide locked lease store shared by every hull root (see [`ipam`]), nftables NAT (masquerade, published ports including from
//! the host's 127.0.0.1), `/etc/hosts` and `/etc/resolv.conf` contents, leak-free teardown
//! and reset.
//!
//! ```no_run
//! use hull_net::{AttachRequest, Networks, Options};
//! # fn main() -> Result<(), hull_net::NetError> {
//! let nets = Networks::open(Options::default())?;
//! let att = nets.attach("bridge", &AttachRequest {
//!     container_id: "abc123".into(),
//!     names: vec!["web".into()],
//!     netns: "/proc/4242/ns/net".into(),
//!     ports: vec!["127.0.0.1:8080:80".parse()?],
//!     ..AttachRequest::default()
//! })?;
//! println!("{} via {}", att.ip, att.gateway);
//! nets.detach_all("abc123")?;
//! # Ok(()) }
//! ```

pub mod files;
mod hosts;
pub mod ipam;
pub mod mode;
pub mod netlink;
mod network;
pub mod nft;
pub mod ports;
pub mod subnet;
mod teardown;

pub use ipam::{Lease, NetworkConfig};
pub use mode::{NetnsConfig, NetworkMode, DEFAULT_NETWORK};
pub use network::{
    format_mac, mac_for, AttachRequest, Attachment, NetError, NetworkInfo, NetworkSpec, Networks,
    Options,
};
pub use ports::{PortMapping, Protocol};
pub use subnet::Subnet;
pub use teardown::{Teardown, TeardownError};

/// hull's default subnet. 10.87.0.0/24 collides with none of docker's 172.17.0.0/16 (nor its
/// 172.16.0.0/12 + 192.168.0.0/16 pools), podman's 10.88.0.0/16 and its user-network pool that
/// starts at 10.89.0.0/24, nerdctl's 10.4.0.0/24, nor the common Kubernetes ranges
/// (10.42/16, 10.43/16, 10.96/12, 10.244/16).
pub const DEFAULT_SUBNET: &str = "10.87.0.0/24";

/// FNV-1a over the parts (with a separator), for short stable names.
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod fake_tests;
