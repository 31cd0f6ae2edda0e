//! IPv4 subnets: parsing, overlap checks and the addresses a network reserves.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Errors about subnets.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubnetError {
    #[error("invalid subnet {0:?}: expected A.B.C.D/N")]
    Parse(String),
    #[error("subnet {0}: prefix length must be between 8 and 30")]
    Prefix(String),
    #[error("subnet {0}: host bits set (did you mean {1}?)")]
    HostBits(String, Subnet),
    #[error("subnet {subnet} overlaps {other} ({what})")]
    Overlap {
        subnet: Subnet,
        other: Subnet,
        what: String,
    },
    #[error("no free subnet left in pool {0}")]
    PoolExhausted(Subnet),
}

/// An IPv4 network such as `10.87.0.0/24` (host bits are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Subnet {
    /// A subnet from any address inside it and a prefix length (host bits are cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// The gateway (the bridge's address): the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// Addresses containers may get: every host address but the gateway.
    pub fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.gateway()).saturating_add(1);
        let last = u32::from(self.broadcast()).saturating_sub(1);
        (first..=last).map(Ipv4Addr::from)
    }

    /// True when `ip` may be leased to a container.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.broadcast() && ip != self.gateway()
    }

    /// The `n`-th subnet of length `prefix` inside `self`, if any.
    pub fn nth_child(&self, prefix: u8, n: u32) -> Option<Subnet> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(n) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let base = u64::from(u32::from(self.addr)) + u64::from(n) * step;
        Some(Subnet::new(
            Ipv4Addr::from(u32::try_from(base).ok()?),
            prefix,
        ))
    }

    /// Checks that the subnet is usable for a bridge network.
    pub fn validate(&self) -> Result<(), SubnetError> {
        if !(8..=30).contains(&self.prefix) {
            return Err(SubnetError::Prefix(self.to_string()));
        }
        Ok(())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    /// Parses `A.B.C.D/N`; an address with host bits set is an error.
    fn from_str(s: &str) -> Result<Self, SubnetError> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| SubnetError::Parse(s.to_string()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| SubnetError::Parse(s.to_string()))?;
        let prefix: u8 = len.parse().map_err(|_| SubnetError::Parse(s.to_string()))?;
        if prefix > 32 {
            return Err(SubnetError::Parse(s.to_string()));
        }
        let net = Subnet::new(ip, prefix);
        if net.addr != ip {
            return Err(SubnetError::HostBits(s.to_string(), net));
        }
        Ok(net)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Subnets of other container engines' default bridges, which hull must not collide with.
pub const FOREIGN_DEFAULTS: &[(&str, [u8; 4], u8)] = &[
    ("docker's docker0", [172, 17, 0, 0], 16),
    ("podman's podman0", [10, 88, 0, 0], 16),
    ("podman's user-network pool start", [10, 89, 0, 0], 24),
    ("nerdctl's nerdctl0", [10, 4, 0, 0], 24),
];

/// Returns an error when `subnet` overlaps any of `taken` (each with a description).
pub fn check_collision(subnet: Subnet, taken: &[(Subnet, String)]) -> Result<(), SubnetError> {
    for (other, what) in taken {
        if subnet.overlaps(other) {
            return Err(SubnetError::Overlap {
                subnet,
                other: *other,
                what: what.clone(),
            });
        }
    }
    Ok(())
}

/// The first `/24` of `pool` that overlaps nothing in `taken`.
pub fn pick_free(pool: Subnet, taken: &[(Subnet, String)]) -> Result<Subnet, SubnetError> {
    let mut n = 0;
    while let Some(candidate) = pool.nth_child(24, n) {
        if check_collision(candidate, taken).is_ok() {
            return Ok(candidate);
        }
        n += 1;
    }
    Err(SubnetError::PoolExhausted(pool))
}

/// The foreign engines' default subnets as a `taken` list.
pub fn foreign_defaults() -> Vec<(Subnet, String)> {
    FOREIGN_DEFAULTS
        .iter()
        .map(|(what, a, p)| (Subnet::new(Ipv4Addr::from(*a), *p), (*what).to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().expect("subnet")
    }

    #[test]
    fn parse_and_reserved_addresses() {
        let n = s("10.87.0.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 87, 0, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 87, 0, 255));
        assert_eq!(n.assignable().count(), 253);
        assert!(!n.is_assignable(n.network()));
        assert!(!n.is_assignable(n.gateway()));
        assert!(!n.is_assignable(n.broadcast()));
        assert!(n.is_assignable(Ipv4Addr::new(10, 87, 0, 2)));
        assert_eq!(n.to_string(), "10.87.0.0/24");
        assert!(matches!(
            "10.87.0.1/24".parse::<Subnet>(),
            Err(SubnetError::HostBits(..))
        ));
        assert!(matches!(
            "10.87.0.0".parse::<Subnet>(),
            Err(SubnetError::Parse(_))
        ));
        assert!(matches!(
            "10.87.0.0/33".parse::<Subnet>(),
            Err(SubnetError::Parse(_))
        ));
        assert!(s("10.0.0.0/31").validate().is_err());
        assert!(s("10.0.0.0/30").validate().is_ok());
        assert_eq!(s("10.0.0.0/30").assignable().count(), 1);
    }

    #[test]
    fn default_subnet_collides_with_no_other_engine() {
        let hull = s(crate::DEFAULT_SUBNET);
        check_collision(hull, &foreign_defaults()).expect("hull's default is free");
        for bad in [
            "172.17.5.0/24",
            "10.88.0.0/24",
            "10.4.0.0/24",
            "10.0.0.0/8",
            "10.89.0.0/24",
        ] {
            let err = check_collision(s(bad), &foreign_defaults()).expect_err(bad);
            assert!(err.to_string().contains("overlaps"), "{err}");
        }
    }

    #[test]
    fn pick_free_skips_taken() {
        let pool = s("10.87.0.0/16");
        let taken = vec![
            (s("10.87.0.0/24"), "a".to_string()),
            (s("10.87.1.0/25"), "b".to_string()),
        ];
        assert_eq!(pick_free(pool, &taken), Ok(s("10.87.2.0/24")));
        let full = vec![(pool, "all".to_string())];
        assert_eq!(
            pick_free(pool, &full),
            Err(SubnetError::PoolExhausted(pool))
        );
    }
}
