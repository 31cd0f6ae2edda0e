//! `hull network create|ls|inspect|rm|connect|disconnect` and `hull system reset`.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use hull_net::{NetworkSpec, Subnet, DEFAULT_NETWORK};
use serde_json::{json, Value};

use super::images::Format;
use super::run::engine;

#[derive(Subcommand)]
pub(crate) enum NetworkCommand {
    /// Create a bridge network.
    Create {
        /// Its IPv4 subnet (default: a free /24 of 10.87.0.0/16).
        #[arg(long)]
        subnet: Option<String>,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show networks and their containers as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks no container uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network; a running one gets a new interface at once.
    Connect {
        /// A further name for the container on this network (repeatable).
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network; a running one loses that interface at once.
    Disconnect { network: String, container: String },
}

#[derive(Subcommand)]
pub(crate) enum SystemCommand {
    /// Remove every container of this root and its networking (veths, leases, port rules), and
    /// the networks it created; links and the nft table too once no root's container is on a
    /// network (images and named volumes stay).
    Reset {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Serve the Docker Engine API (v1.41) for docker clients (DOCKER_HOST=unix://PATH).
    Service(super::service::ServiceArgs),
}

pub(crate) fn run(root: &Path, c: NetworkCommand) -> Result<u8> {
    let e = engine(root)?;
    match c {
        NetworkCommand::Create { subnet, name } => {
            if ["none", "host", "default", DEFAULT_NETWORK].contains(&name.as_str()) {
                anyhow::bail!("network name {name:?} is reserved");
            }
            let parsed = subnet
                .as_deref()
                .map(|s| s.parse::<Subnet>())
                .transpose()
                .context("invalid --subnet")?;
            let spec = NetworkSpec {
                name: name.clone(),
                subnet: parsed,
                ..NetworkSpec::default()
            };
            e.networks()?.create(&spec).with_context(|| match &subnet {
                Some(s) => format!("network create --subnet {s} {name}"),
                None => format!("network create {name}"),
            })?;
            e.emit_network("create", &name, &[]);
            outln!("{name}")?;
        }
        NetworkCommand::Ls { quiet, format } => {
            let nets = e.networks()?;
            ensure_default(&nets);
            let list = nets.list()?;
            if quiet {
                for n in &list {
                    outln!("{}", n.name)?;
                }
            } else if let Format::Json = format {
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                outln!("{:<24}{:<10}{:<20}BRIDGE", "NAME", "DRIVER", "SUBNET")?;
                for n in list {
                    let subnet = n.subnet.to_string();
                    outln!("{:<24}{:<10}{subnet:<20}{}", n.name, "bridge", n.bridge)?;
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let nets = e.networks()?;
            if names.iter().any(|n| n == DEFAULT_NETWORK) {
                ensure_default(&nets);
            }
            let mut out: Vec<Value> = Vec::new();
            for n in &names {
                let info = nets.inspect(n)?;
                let mut v = serde_json::to_value(&info)?;
                // Names next to the ids, as docker's "Containers" map has them.
                let named: Vec<Value> = info
                    .containers
                    .iter()
                    .map(|l| {
                        let name = e.find(&l.container_id).map(|r| r.name).unwrap_or_default();
                        json!({"Id": l.container_id, "Name": name, "IPv4Address":
                            format!("{}/{}", l.ip, info.config.subnet.prefix())})
                    })
                    .collect();
                v["Containers"] = Value::Array(named);
                out.push(v);
            }
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        NetworkCommand::Connect {
            aliases,
            network,
            container,
        } => {
            let r = e.find(&container)?;
            e.connect(&r, &network, aliases)
                .with_context(|| format!("network connect {network} {container}"))?;
        }
        NetworkCommand::Disconnect { network, container } => {
            let r = e.find(&container)?;
            e.disconnect(&r, &network)
                .with_context(|| format!("network disconnect {network} {container}"))?;
        }
        NetworkCommand::Rm { names } => {
            for n in names {
                e.remove_network(&n)?;
                outln!("{n}")?;
            }
        }
    }
    Ok(0)
}

/// `bridge` is listed before its first container, like docker's predefined network.
fn ensure_default(nets: &hull_net::Networks) {
    // Rootless, `bridge` is the user-mode network (pasta), not one of hull-net's.
    if hull_engine::rootless::active() {
        return;
    }
    if nets.inspect(DEFAULT_NETWORK).is_err() {
        let spec = NetworkSpec {
            name: DEFAULT_NETWORK.into(),
            ..NetworkSpec::default()
        };
        if let Err(err) = nets.create(&spec) {
            eprintln!("warning: cannot define the default network: {err}");
        }
    }
}

pub(crate) fn system(root: &Path, c: SystemCommand) -> Result<u8> {
    let force = match c {
        SystemCommand::Reset { force } => force,
        SystemCommand::Service(a) => return super::service::run(root, a),
    };
    if !force && !confirm()? {
        anyhow::bail!("reset not confirmed (use -f/--force to skip the question)");
    }
    let e = engine(root)?;
    e.reset()?;
    hull_engine::rootless::reset_user(root)?;
    Ok(0)
}

fn confirm() -> Result<bool> {
    let mut err = std::io::stderr();
    writeln!(
        err,
        "WARNING! This removes every container of this root with its networking, and the networks it created."
    )?;
    write!(err, "Are you sure you want to continue? [y/N] ")?;
    err.flush()?;
    // End of input (a script without -f) answers no.
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}
