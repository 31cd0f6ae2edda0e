//! `hull ps`, `hull inspect`, `hull top`, `hull port`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::inspect::{self, labels, network_name};
use hull_engine::time::{ago, rfc3339};
use hull_engine::{net, record, Engine, Record, State};
use serde_json::{json, Value};

use super::images::Format;
use super::run::engine;

mod select;

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
    /// Output format: table, json, or a Go-template-like string (`{{.Names}}\t{{.Status}}`,
    /// `table` prefix for a header and aligned columns).
    #[arg(long, default_value = "table")]
    format: String,
    /// Only containers matching KEY=VALUE: name, status, label, ancestor, id (repeatable).
    #[arg(short, long)]
    filter: Vec<String>,
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

fn exit_code(st: &State) -> u32 {
    match st {
        State::Exited(e) => e.code,
        _ => 0,
    }
}

pub(crate) fn ps(root: &Path, a: PsArgs) -> Result<u8> {
    let filters = select::Filters::parse(&a.filter)?;
    let format = match a.format.as_str() {
        "table" => Format::Table,
        "json" => Format::Json,
        t => return ps_template(root, &a, &filters, &super::template::Template::parse(t)?),
    };
    let e = engine(root)?;
    let now = record::now_ns();
    let rows = listed(&e, &a, &filters)?;
    if a.quiet {
        for (r, _) in &rows {
            outln!("{}", if a.no_trunc { &r.id[..] } else { &r.id[..12] })?;
        }
        return Ok(0);
    }
    if let Format::Json = format {
        let v: Vec<Value> = rows
            .iter()
            .map(|(r, st)| {
                json!({
                    "Id": r.id, "Names": [r.name], "Image": r.image, "ImageID": r.image_id,
                    "Command": r.args, "Created": (r.created_ns / 1_000_000_000) as i64,
                    "State": st.name(), "Status": inspect::status_with_health(&e, st, r, now),
                    "ExitCode": exit_code(st), "Labels": labels(r),
                    "Networks": [network_name(r)],
                    "Ports": ports_column(r, st),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    let mut table = vec![[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .map(String::from)];
    for (r, st) in &rows {
        let mut cmd = format!("\"{}\"", r.args.join(" "));
        if !a.no_trunc && cmd.chars().count() > CMD_WIDTH {
            cmd = format!("{}…\"", cmd.chars().take(CMD_WIDTH - 2).collect::<String>());
        }
        let ports = ports_column(r, st);
        let id = if a.no_trunc { &r.id[..] } else { &r.id[..12] };
        table.push([
            id.to_string(),
            r.image.clone(),
            cmd,
            ago(r.created_ns, now),
            inspect::status_with_health(&e, st, r, now),
            ports,
            r.name.clone(),
        ]);
    }
    for line in super::table::lines(&table) {
        outln!("{line}")?;
    }
    Ok(0)
}

/// The containers `ps` shows, with their state: live ones (all with `-a` or a status
/// filter) that match the filters.
fn listed(e: &Engine, a: &PsArgs, filters: &select::Filters) -> Result<Vec<(Record, State)>> {
    Ok(e.containers
        .list()?
        .into_iter()
        .map(|r| {
            let st = e.state(&r);
            (r, st)
        })
        .filter(|(r, st)| {
            (a.all || filters.names_status() || st.is_live()) && filters.matches(r, st)
        })
        .collect())
}

/// `ps --format TEMPLATE`.
fn ps_template(
    root: &Path,
    a: &PsArgs,
    filters: &select::Filters,
    t: &super::template::Template,
) -> Result<u8> {
    let e = engine(root)?;
    let now = record::now_ns();
    let rows: Vec<super::template::Row> = listed(&e, a, filters)?
        .iter()
        .map(|(r, st)| {
            let created = rfc3339(r.created_ns);
            let input = select::RowInput {
                id: if a.no_trunc {
                    r.id.clone()
                } else {
                    r.id[..12].to_string()
                },
                command: format!("\"{}\"", r.args.join(" ")),
                created_at: format!(
                    "{} +0000 UTC",
                    created.get(..19).unwrap_or(&created).replace('T', " ")
                ),
                running_for: ago(r.created_ns, now),
                ports: ports_column(r, st),
                status: inspect::status_with_health(&e, st, r, now),
                network: network_name(r),
                mounts: r
                    .options
                    .mounts
                    .iter()
                    .map(|m| m.target().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            select::row(r, st, input)
        })
        .collect();
    for line in t.lines(&rows, select::header, select::FIELDS)? {
        outln!("{line}")?;
    }
    Ok(0)
}

/// What is published right now: an exited container has released its ports (`r`, read
/// before `state()` learnt of the exit and released them, may still list them).
fn ports_column(r: &Record, st: &State) -> String {
    match (st.is_live(), &r.net) {
        (true, Some(n)) => net::ports_column(&n.ports),
        _ => String::new(),
    }
}

/// docker's width of a truncated COMMAND, quotes and ellipsis included.
const CMD_WIDTH: usize = 22;

pub(crate) fn inspect(root: &Path, a: InspectArgs) -> Result<u8> {
    let e = engine(root)?;
    let mut out = Vec::new();
    let mut store = None;
    for c in &a.containers {
        match e.find(c) {
            Ok(r) => out.push(inspect::inspect(&e, &r)),
            // As docker's `inspect`: a name no container has may be an image's.
            Err(not_container) => {
                if store.is_none() {
                    store = Some(super::open_store(root)?);
                }
                match store.as_ref().map(|s| super::images::inspect_image(s, c)) {
                    Some(Ok(v)) => out.push(v),
                    _ => return Err(not_container.into()),
                }
            }
        }
    }
    outln!("{}", serde_json::to_string_pretty(&out)?)?;
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
    outln!("{:<10}{:<10}CMD", "UID", "PID")?;
    for pid in pids {
        let (uid, cmd) = proc_line(pid);
        outln!("{uid:<10}{pid:<10}{cmd}")?;
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
            Some(_) => outln!("{}", line.split(" -> ").nth(1).unwrap_or(&line))?,
            None => outln!("{line}")?,
        }
    }
    Ok(0)
}
