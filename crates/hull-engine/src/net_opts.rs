//! docker's per-container network flags of `run`/`create`: `--ip` (a fixed address on a user
//! network), `--network-alias` (more names other containers on the network resolve it by)
//! and `--add-host NAME:IP` (`/etc/hosts` entries; `host-gateway` is the network's gateway).

use std::net::{IpAddr, Ipv4Addr};

use hull_net::files::{valid_hostname, ExtraHost};
use hull_net::{NetworkMode, DEFAULT_NETWORK};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid --ip {0:?}: not an IPv4 address")]
    Ip(String),
    #[error("invalid --add-host {0:?}: expected HOST:IP (IP may be host-gateway)")]
    AddHostSyntax(String),
    #[error("invalid --add-host {0:?}: {1:?} is not a valid host name")]
    AddHostName(String, String),
    #[error("invalid --add-host {0:?}: {1:?} is neither an IP address nor host-gateway")]
    AddHostIp(String, String),
    #[error("invalid --network-alias {0:?}: use letters, digits, '-', '.', '_'")]
    Alias(String),
    /// docker: "user specified IP address is supported on user defined networks only".
    #[error("{flag} is supported on user-defined networks only, not --network {network}")]
    UserNetworkOnly { flag: &'static str, network: String },
    /// docker: "conflicting options: custom host-to-IP mapping and the network mode".
    #[error(
        "--add-host cannot be combined with --network {0}: its hosts file is the other container's"
    )]
    AddHostShared(String),
    #[error("--ip {ip}: not an assignable address of network {network} ({subnet})")]
    IpOutside {
        ip: Ipv4Addr,
        network: String,
        subnet: String,
    },
    #[error("--ip {ip}: already in use by container {holder} on network {network}")]
    IpTaken {
        ip: Ipv4Addr,
        network: String,
        holder: String,
    },
}

/// The flags as given (checked when the options are made, see [`NetOptions::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetOptions {
    /// `--ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `--add-host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<ExtraHost>,
}

/// `--ip 10.89.0.7`.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, Error> {
    s.trim().parse().map_err(|_| Error::Ip(s.into()))
}

/// `--add-host NAME:IP`, split at the first colon as docker does (so `h:::1` is IPv6 `::1`);
/// `host-gateway` stays unresolved (`ip: None`) until the network is known.
pub fn parse_add_host(s: &str) -> Result<ExtraHost, Error> {
    let Some((name, ip)) = s.split_once(':') else {
        return Err(Error::AddHostSyntax(s.into()));
    };
    if !valid_hostname(name) {
        return Err(Error::AddHostName(s.into(), name.into()));
    }
    let ip = match ip {
        "host-gateway" => None,
        // docker accepts `[::1]` too.
        ip => Some(
            ip.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| Error::AddHostIp(s.into(), ip.into()))?,
        ),
    };
    Ok(ExtraHost {
        name: name.into(),
        ip,
    })
}

/// `--network-alias NAME`: a name that may appear in a hosts file.
pub fn parse_alias(s: &str) -> Result<String, Error> {
    if valid_hostname(s) {
        Ok(s.into())
    } else {
        Err(Error::Alias(s.into()))
    }
}

impl NetOptions {
    /// `--ip` and `--network-alias` need a user network: on docker's default bridge neither
    /// a fixed address nor an alias is allowed, and without a network of hull's there is
    /// nothing to give them to.
    /// `network`: `--network` as given ("" is the default bridge).
    pub fn check(&self, network: &str) -> Result<(), Error> {
        let network = if network.is_empty() {
            DEFAULT_NETWORK
        } else {
            network
        };
        if network.starts_with("container:") && !self.add_hosts.is_empty() {
            return Err(Error::AddHostShared(network.into()));
        }
        let user = matches!(network.parse(), Ok(NetworkMode::Network(n)) if n != DEFAULT_NETWORK);
        if user {
            return Ok(());
        }
        let network = network.to_string();
        if self.ip.is_some() {
            return Err(Error::UserNetworkOnly {
                flag: "--ip",
                network,
            });
        }
        if !self.aliases.is_empty() {
            return Err(Error::UserNetworkOnly {
                flag: "--network-alias",
                network,
            });
        }
        Ok(())
    }

    /// The `--add-host` lines of a hosts file for a container not on a network of hull's:
    /// `host-gateway` is then `gateway` (the default bridge's).
    pub fn hosts_lines(&self, gateway: Ipv4Addr) -> String {
        self.add_hosts
            .iter()
            .map(|x| format!("{}\t{}\n", x.ip.unwrap_or(gateway.into()), x.name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let h = parse_add_host("db.local:192.0.2.9").unwrap();
        assert_eq!(
            (h.name.as_str(), h.ip),
            ("db.local", Some("192.0.2.9".parse().unwrap()))
        );
        assert_eq!(
            parse_add_host("v6:::1").unwrap().ip,
            Some("::1".parse().unwrap())
        );
        assert_eq!(parse_add_host("gw:host-gateway").unwrap().ip, None);
        assert!(matches!(
            parse_add_host("nocolon"),
            Err(Error::AddHostSyntax(_))
        ));
        assert!(matches!(
            parse_add_host("a b:1.2.3.4"),
            Err(Error::AddHostName(..))
        ));
        assert!(matches!(
            parse_add_host("a:1.2.3"),
            Err(Error::AddHostIp(..))
        ));
        assert_eq!(parse_ip("10.89.0.7").unwrap(), Ipv4Addr::new(10, 89, 0, 7));
        assert!(parse_ip("10.89.0.300").is_err() && parse_ip("::1").is_err());
        assert!(parse_alias("web-1").is_ok() && parse_alias("-x").is_err());
        let o = NetOptions {
            ip: Some(Ipv4Addr::new(10, 89, 0, 7)),
            ..NetOptions::default()
        };
        assert!(o.check("appnet").is_ok());
        let e = o.check("").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--ip is supported on user-defined networks only, not --network bridge"
        );
        assert!(o.check("host").is_err() && o.check("container:x").is_err());
    }
}
