//! `hull ps`, `hull inspect`, `hull top`, `hull port`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::time::{ago, rfc3339};
use hull_engine::{net, record, Engine, Record, State};
use serde_json::{json, Value};

use super::images::Format;
use super::run::engine;

#[derive(Args)]
pub(crate) struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// Only print ids.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct OneArgs {
    container: String,
}

#[derive(Args)]
pub(crate) struct PortArgs {
    container: String,
    /// Only this container port: PORT[/PROTO].
    private_port: Option<String>,
}

fn status_text(st: &State, r: &Record, now: i128) -> String {
    match st {
        State::Created => "Created".into(),
        State::Running { .. } => format!("Up {}", since(r.started_ns.unwrap_or(r.created_ns), now)),
        State::Paused { .. } => format!(
            "Up {} (Paused)",
            since(r.started_ns.unwrap_or(r.created_ns), now)
        ),
        State::Exited(e) => format!("Exited ({}) {}", e.code, ago(e.at_ns, now)),
        State::Dead => "Dead".into(),
    }
}

fn since(ns: i128, now: i128) -> String {
    ago(ns, now).trim_end_matches(" ago").to_string()
}

fn exit_code(st: &State) -> u32 {
    match st {
        State::Exited(e) => e.code,
        _ => 0,
    }
}

pub(crate) fn ps(root: &Path, a: PsArgs) -> Result<u8> {
    let e = engine(root)?;
    let now = record::now_ns();
    let rows: Vec<(Record, State)> = e
        .containers
        .list()?
        .into_iter()
        .map(|r| {
            let st = e.state(&r);
            (r, st)
        })
        .filter(|(_, st)| a.all || st.is_live())
        .collect();
    if a.quiet {
        for (r, _) in &rows {
            println!("{}", if a.no_trunc { &r.id[..] } else { &r.id[..12] });
        }
        return Ok(0);
    }
    if let Format::Json = a.format {
        let v: Vec<Value> = rows
            .iter()
            .map(|(r, st)| {
                json!({
                    "Id": r.id, "Names": [r.name], "Image": r.image, "ImageID": r.image_id,
                    "Command": r.args, "Created": (r.created_ns / 1_000_000_000) as i64,
                    "State": st.name(), "Status": status_text(st, r, now),
                    "ExitCode": exit_code(st), "Labels": labels(r),
                    "Networks": [network_name(r)],
                    "Ports": r.net.as_ref().map(|n| net::ports_column(&n.ports)).unwrap_or_default(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{:<14}{:<24}{:<24}{:<20}{:<26}{:<24}NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS"
    );
    for (r, st) in &rows {
        let mut cmd = format!("\"{}\"", r.args.join(" "));
        if !a.no_trunc && cmd.chars().count() > 22 {
            cmd = format!("{}…\"", cmd.chars().take(19).collect::<String>());
        }
        // What is published right now: a released (exited) container shows none.
        let ports = r.net.as_ref().map(|n| net::ports_column(&n.ports));
        println!(
            "{:<14}{:<24}{:<24}{:<20}{:<26}{:<24}{}",
            &r.id[..12],
            r.image,
            cmd,
            ago(r.created_ns, now),
            status_text(st, r, now),
            ports.unwrap_or_default(),
            r.name
        );
    }
    Ok(0)
}

fn labels(r: &Record) -> Value {
    r.options
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The network as docker names it: `bridge`, `none`, `host`, `container:ID`, or a network.
fn network_name(r: &Record) -> String {
    match r.options.network.as_str() {
        "" => hull_net::DEFAULT_NETWORK.into(),
        n => n.into(),
    }
}

fn inspect_one(e: &Engine, r: &Record) -> Value {
    let st = e.state(r);
    // state() may have just released the network of an exited container.
    let r = &e.find(&r.id).unwrap_or_else(|_| r.clone());
    let config: Value = std::fs::read(e.dir(r).join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let pid = match st {
        State::Running { pid } | State::Paused { pid } => pid,
        _ => 0,
    };
    let (finished, code) = match st {
        State::Exited(x) => (rfc3339(x.at_ns), x.code),
        _ => ("0001-01-01T00:00:00Z".into(), 0),
    };
    let p = &config["process"];
    let mounts: Vec<Value> = config["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| {
                    m["type"] == "bind"
                        && !m["source"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with(&*e.dir(r).to_string_lossy())
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    json!({
        "Id": r.id,
        "Created": rfc3339(r.created_ns),
        "Path": r.args.first(),
        "Args": r.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": st.name(), "Running": matches!(st, State::Running { .. } | State::Paused { .. }),
            "Paused": matches!(st, State::Paused { .. }), "Dead": matches!(st, State::Dead),
            "Pid": pid, "ExitCode": code,
            "StartedAt": r.started_ns.map_or("0001-01-01T00:00:00Z".into(), rfc3339),
            "FinishedAt": finished,
        },
        "Image": r.image_id,
        "ImageName": r.image,
        "Name": format!("/{}", r.name),
        "Config": {
            "Hostname": r.hostname, "User": r.options.user.clone().unwrap_or_default(),
            "Env": p["env"], "Cmd": r.options.cmd, "Entrypoint": r.options.entrypoint,
            "WorkingDir": p["cwd"], "Tty": r.options.tty, "OpenStdin": r.options.stdin,
            "Image": r.image, "Labels": labels(r),
        },
        "HostConfig": {
            "NetworkMode": network_name(r), "ReadonlyRootfs": r.options.read_only,
            "PortBindings": net::ports_json(&r.options.publish),
            "Privileged": r.options.privileged, "AutoRemove": r.options.auto_remove,
            "Memory": r.options.memory.unwrap_or(0),
            "NanoCpus": r.options.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": r.options.pids_limit,
            "CapAdd": r.options.cap_add, "CapDrop": r.options.cap_drop,
            "DeviceRequests": super::cdi::device_requests(&r.options),
        },
        "Mounts": mounts,
        "NetworkSettings": net::settings_json(r.net.as_ref(),
            (pid > 0 && !r.options.network.starts_with("container:") && r.options.network != "host")
                .then(|| format!("/proc/{pid}/ns/net"))),
        "Process": p,
        "ResolvConfPath": e.dir(r).join("resolv.conf"),
        "HostnamePath": e.dir(r).join("hostname"),
        "HostsPath": e.dir(r).join("hosts"),
        "LogPath": e.dir(r).join(hull_engine::logs::LOG),
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": r.rootfs}},
    })
}

pub(crate) fn inspect(root: &Path, a: InspectArgs) -> Result<u8> {
    let e = engine(root)?;
    let mut out = Vec::new();
    for c in &a.containers {
        out.push(inspect_one(&e, &e.find(c)?));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn proc_line(pid: u32) -> (String, String) {
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_default();
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    (uid, cmd)
}

pub(crate) fn top(root: &Path, a: OneArgs) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    if !e.state(&r).is_live() {
        anyhow::bail!("container {} is not running", r.name);
    }
    let pids = e.shim(&r)?.pids()?;
    println!("{:<10}{:<10}CMD", "UID", "PID");
    for pid in pids {
        let (uid, cmd) = proc_line(pid);
        println!("{uid:<10}{pid:<10}{cmd}");
    }
    Ok(0)
}

/// `hull port NAME [PORT[/PROTO]]`: the mappings in force (none once it exited).
pub(crate) fn port(root: &Path, a: PortArgs) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    e.state(&r);
    let r = e.find(&r.id)?;
    let ports: Vec<hull_net::PortMapping> = match &r.net {
        Some(n) => n.ports.clone(),
        None => Vec::new(),
    };
    let want = a.private_port.as_deref().map(|p| match p.split_once('/') {
        Some((n, proto)) => (n.to_string(), proto.to_string()),
        None => (p.to_string(), "tcp".to_string()),
    });
    let ports: Vec<_> = ports
        .into_iter()
        .filter(|p| {
            want.as_ref().is_none_or(|(n, proto)| {
                p.container_port.to_string() == *n && p.protocol.as_str() == proto
            })
        })
        .collect();
    if let (Some(p), true) = (&a.private_port, ports.is_empty()) {
        anyhow::bail!("no public port {p} published for {}", r.name);
    }
    for line in net::port_lines(&ports) {
        match &a.private_port {
            // docker prints only the host side when one port is asked for.
            Some(_) => println!("{}", line.split(" -> ").nth(1).unwrap_or(&line)),
            None => println!("{line}"),
        }
    }
    Ok(0)
}
