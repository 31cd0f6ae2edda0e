//! `run`/`create` flags for a container's place on its network (hull-engine's `net_opts`).

use anyhow::Result;
use clap::Args;
use hull_engine::net_opts::{self, NetOptions};

#[derive(Args, Clone)]
pub(crate) struct NetArgs {
    /// Fixed IPv4 address on a user-defined network.
    #[arg(long)]
    ip: Option<String>,
    /// More names other containers on the user-defined network resolve it by (repeatable).
    #[arg(long)]
    network_alias: Vec<String>,
    /// Add an /etc/hosts entry HOST:IP; IP host-gateway is the network's gateway (repeatable).
    #[arg(long, value_name = "HOST:IP")]
    add_host: Vec<String>,
}

impl NetArgs {
    /// The checked [`NetOptions`] for `--network` `network` (as parsed).
    pub(crate) fn to_net_opts(&self, network: &str) -> Result<NetOptions> {
        let o = NetOptions {
            ip: self.ip.as_deref().map(net_opts::parse_ip).transpose()?,
            aliases: self
                .network_alias
                .iter()
                .map(|a| net_opts::parse_alias(a))
                .collect::<Result<_, _>>()?,
            add_hosts: self
                .add_host
                .iter()
                .map(|h| net_opts::parse_add_host(h))
                .collect::<Result<_, _>>()?,
        };
        o.check(network)?;
        Ok(o)
    }
}
