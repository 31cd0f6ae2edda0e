//! Published ports: `-p [IP:]HOST:CTR[/tcp|/udp]`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("invalid port mapping {0:?}: expected [IP:]HOST:CTR[/tcp|/udp]")]
    Syntax(String),
    #[error("invalid port mapping {0:?}: bad port {1:?} (1-65535)")]
    Port(String, String),
    #[error("invalid port mapping {0:?}: bad host address {1:?} (IPv4 only)")]
    Address(String, String),
    #[error("invalid port mapping {0:?}: unknown protocol {1:?} (tcp or udp)")]
    Protocol(String, String),
    #[error("host port {0} is published twice")]
    Duplicate(String),
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Only connections to this host address are forwarded; `None` = every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

fn port(spec: &str, s: &str) -> Result<u16, PortError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PortError::Port(spec.to_string(), s.to_string())),
    }
}

impl FromStr for PortMapping {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<Self, PortError> {
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => {
                return Err(PortError::Protocol(spec.to_string(), other.to_string()))
            }
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [host, ctr] => (None, *host, *ctr),
            [ip, host, ctr] => (Some(*ip), *host, *ctr),
            _ => return Err(PortError::Syntax(spec.to_string())),
        };
        let host_ip = match ip {
            None | Some("") | Some("0.0.0.0") => None,
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| PortError::Address(spec.to_string(), ip.to_string()))?,
            ),
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(spec, host)?,
            container_port: port(spec, ctr)?,
            protocol,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

/// Refuses two mappings of one host port and protocol whose addresses can clash.
pub fn check_duplicates(ports: &[PortMapping]) -> Result<(), PortError> {
    for (i, a) in ports.iter().enumerate() {
        for b in &ports[i + 1..] {
            let same_ip = a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip;
            if a.host_port == b.host_port && a.protocol == b.protocol && same_ip {
                return Err(PortError::Duplicate(b.to_string()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PortMapping, PortError> {
        s.parse()
    }

    #[test]
    fn parses_all_forms() {
        let m = p("8080:80").expect("plain");
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.protocol),
            (None, 8080, 80, Protocol::Tcp)
        );
        let m = p("127.0.0.1:5353:53/udp").expect("ip udp");
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(m.protocol, Protocol::Udp);
        assert_eq!(m.to_string(), "127.0.0.1:5353:53/udp");
        assert_eq!(p("0.0.0.0:1:2/tcp").expect("any").host_ip, None);
        assert_eq!(p(":1:2").expect("empty ip").host_ip, None);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(p("80"), Err(PortError::Syntax(_))));
        assert!(matches!(p("a:b:c:d"), Err(PortError::Syntax(_))));
        assert!(matches!(p("0:80"), Err(PortError::Port(..))));
        assert!(matches!(p("70000:80"), Err(PortError::Port(..))));
        assert!(matches!(p("80:http"), Err(PortError::Port(..))));
        assert!(matches!(p("80:80/sctp"), Err(PortError::Protocol(..))));
        assert!(matches!(p("::1:80:80"), Err(PortError::Syntax(_))));
        assert!(matches!(
            p("example.com:80:80"),
            Err(PortError::Address(..))
        ));
        let e = p("80:80/sctp").expect_err("sctp").to_string();
        assert!(e.contains("sctp"), "{e}");
    }

    #[test]
    fn duplicates() {
        let ok = [
            p("80:80").expect("a"),
            p("80:80/udp").expect("b"),
            p("81:80").expect("c"),
        ];
        check_duplicates(&ok).expect("distinct");
        let bad = [p("127.0.0.1:80:80").expect("a"), p("80:81").expect("b")];
        assert!(check_duplicates(&bad).is_err());
        let ok = [
            p("127.0.0.1:80:80").expect("a"),
            p("127.0.0.2:80:81").expect("b"),
        ];
        check_duplicates(&ok).expect("different ips");
    }
}
