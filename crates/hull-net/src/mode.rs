//! `--network` modes and the network namespace each needs in the OCI spec.

use std::path::PathBuf;
use std::str::FromStr;

use crate::ipam::{check_name, IpamError};

/// The default network's name (`--network bridge`).
pub const DEFAULT_NETWORK: &str = "bridge";

/// A parsed `--network` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A network of hull's: `bridge` (the default one, bridge `hull0`) or a user network.
    Network(String),
    /// Own namespace with loopback only.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace: a container name/id the CLI resolves, or a netns path.
    Container(String),
}

/// What the OCI spec's `linux.namespaces` should say about the network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsConfig {
    /// `{"type": "network"}`: a new namespace; then, if `attach` names a network, call
    /// [`crate::Networks::attach`] with `/proc/<init pid>/ns/net` before starting the process.
    New { attach: Option<String> },
    /// No `network` entry: the container shares the host's namespace (and its /etc/hosts and
    /// /etc/resolv.conf).
    Host,
    /// `{"type": "network", "path": ...}`: join that namespace (and share that container's
    /// hosts and resolv.conf).
    Join(PathBuf),
}

impl FromStr for NetworkMode {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, IpamError> {
        Ok(match s {
            "" | "default" | DEFAULT_NETWORK => NetworkMode::Network(DEFAULT_NETWORK.to_string()),
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => match s.strip_prefix("container:") {
                Some(target) if !target.is_empty() => NetworkMode::Container(target.to_string()),
                _ => {
                    check_name(s)?;
                    NetworkMode::Network(s.to_string())
                }
            },
        })
    }
}

impl NetworkMode {
    /// The namespace config; `resolve` turns a `container:NAME` target into the path of that
    /// container's netns (`/proc/PID/ns/net`); an absolute path is used as is.
    pub fn netns_config<E>(
        &self,
        resolve: impl FnOnce(&str) -> Result<PathBuf, E>,
    ) -> Result<NetnsConfig, E> {
        Ok(match self {
            NetworkMode::Network(n) => NetnsConfig::New {
                attach: Some(n.clone()),
            },
            NetworkMode::None => NetnsConfig::New { attach: None },
            NetworkMode::Host => NetnsConfig::Host,
            NetworkMode::Container(t) if t.starts_with('/') => NetnsConfig::Join(PathBuf::from(t)),
            NetworkMode::Container(t) => NetnsConfig::Join(resolve(t)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> NetnsConfig {
        let mode: NetworkMode = s.parse().expect("mode");
        mode.netns_config(|name| Ok::<_, ()>(PathBuf::from(format!("/proc/42/ns/net#{name}"))))
            .expect("config")
    }

    #[test]
    fn modes() {
        assert_eq!(
            cfg("bridge"),
            NetnsConfig::New {
                attach: Some("bridge".into())
            }
        );
        assert_eq!(
            cfg(""),
            NetnsConfig::New {
                attach: Some("bridge".into())
            }
        );
        assert_eq!(
            cfg("mynet"),
            NetnsConfig::New {
                attach: Some("mynet".into())
            }
        );
        assert_eq!(cfg("none"), NetnsConfig::New { attach: None });
        assert_eq!(cfg("host"), NetnsConfig::Host);
        assert_eq!(
            cfg("container:web"),
            NetnsConfig::Join("/proc/42/ns/net#web".into())
        );
        assert_eq!(
            cfg("container:/proc/7/ns/net"),
            NetnsConfig::Join("/proc/7/ns/net".into())
        );
        assert!("container:".parse::<NetworkMode>().is_err());
        assert!("bad/name".parse::<NetworkMode>().is_err());
    }
}
