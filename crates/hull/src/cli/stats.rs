//! `hull stats [--no-stream] [--format table|json] [NAME...]`: docker's live usage table.
//! Each row needs two samples (CPU % is usage over time), taken a second apart; streaming
//! redraws every second (clearing the screen on a terminal, as docker does) until Ctrl-C.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use hull_engine::stats::{bytes_binary, bytes_decimal, cpu_percent, Sample};
use hull_engine::{Engine, Record};
use serde_json::json;

use super::images::Format;
use super::run::engine;

#[derive(Args)]
pub(crate) struct StatsArgs {
    /// Show all containers (default: running ones); ignored when names are given.
    #[arg(short, long)]
    all: bool,
    /// Print one result and exit.
    #[arg(long)]
    no_stream: bool,
    /// Output format: table, or json (one object per container and line).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Do not truncate ids.
    #[arg(long)]
    no_trunc: bool,
    /// Containers (default: every running container).
    containers: Vec<String>,
}

/// How often a streaming `stats` refreshes (docker's interval).
const INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn run(root: &Path, a: StatsArgs) -> Result<u8> {
    let e = engine(root)?;
    // Named containers must exist (docker: "No such container"), before anything prints.
    let named: Vec<Record> = a
        .containers
        .iter()
        .map(|n| e.find(n))
        .collect::<Result<_, _>>()?;
    let clear =
        !a.no_stream && matches!(a.format, Format::Table) && std::io::stdout().is_terminal();
    let mut prev: HashMap<String, Sample> = HashMap::new();
    let mut first = true;
    loop {
        let rows = targets(&e, &named, a.all)?;
        let now: Vec<(Record, Sample)> = rows
            .into_iter()
            .map(|r| {
                let s = e.sample(&r).unwrap_or_else(|_| Sample::idle());
                (r, s)
            })
            .collect();
        // The first round only sets the baseline for CPU %.
        if first && now.iter().any(|(_, s)| s.cpu_ns > 0) {
            first = false;
            prev = now.iter().map(|(r, s)| (r.id.clone(), *s)).collect();
            std::thread::sleep(INTERVAL);
            continue;
        }
        first = false;
        if clear {
            // docker's redraw: clear the screen, cursor home.
            use std::io::Write as _;
            write!(std::io::stdout(), "\x1b[2J\x1b[H").map_err(super::out_err)?;
        }
        print_rows(&now, &prev, &a)?;
        if a.no_stream {
            return Ok(0);
        }
        prev = now.into_iter().map(|(r, s)| (r.id, s)).collect();
        std::thread::sleep(INTERVAL);
    }
}

/// The containers of this round: the named ones, else the running (or with -a all) ones.
fn targets(e: &Engine, named: &[Record], all: bool) -> Result<Vec<Record>> {
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    Ok(e.containers
        .list()?
        .into_iter()
        .filter(|r| all || e.state(r).is_live())
        .collect())
}

fn print_rows(
    now: &[(Record, Sample)],
    prev: &HashMap<String, Sample>,
    a: &StatsArgs,
) -> Result<()> {
    let row = |r: &Record, s: &Sample| {
        let cpu = prev.get(&r.id).map_or(0.0, |p| cpu_percent(p, s));
        let mem_pct = if s.mem_limit > 0 {
            s.mem_usage as f64 / s.mem_limit as f64 * 100.0
        } else {
            0.0
        };
        let id = if a.no_trunc { &r.id[..] } else { &r.id[..12] };
        (id.to_string(), cpu, mem_pct)
    };
    match a.format {
        Format::Json => {
            for (r, s) in now {
                let (id, cpu, mem_pct) = row(r, s);
                let v = json!({
                    "ID": id, "Container": r.name, "Name": r.name,
                    "CPUPerc": format!("{cpu:.2}%"),
                    "MemUsage": format!("{} / {}", bytes_binary(s.mem_usage), bytes_binary(s.mem_limit)),
                    "MemPerc": format!("{mem_pct:.2}%"),
                    "NetIO": format!("{} / {}", bytes_decimal(s.net_rx), bytes_decimal(s.net_tx)),
                    "BlockIO": format!("{} / {}", bytes_decimal(s.blk_read), bytes_decimal(s.blk_write)),
                    "PIDs": s.pids.to_string(),
                    // The figures before rounding, for scripts (not in docker's output).
                    "Raw": {"CPUPercent": cpu, "MemUsage": s.mem_usage, "MemLimit": s.mem_limit,
                        "NetRx": s.net_rx, "NetTx": s.net_tx, "BlockRead": s.blk_read,
                        "BlockWrite": s.blk_write, "PIDs": s.pids},
                });
                outln!("{v}")?;
            }
        }
        Format::Table => {
            let mut table = vec![[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ]
            .map(String::from)];
            for (r, s) in now {
                let (id, cpu, mem_pct) = row(r, s);
                table.push([
                    id,
                    r.name.clone(),
                    format!("{cpu:.2}%"),
                    format!(
                        "{} / {}",
                        bytes_binary(s.mem_usage),
                        bytes_binary(s.mem_limit)
                    ),
                    format!("{mem_pct:.2}%"),
                    format!("{} / {}", bytes_decimal(s.net_rx), bytes_decimal(s.net_tx)),
                    format!(
                        "{} / {}",
                        bytes_decimal(s.blk_read),
                        bytes_decimal(s.blk_write)
                    ),
                    s.pids.to_string(),
                ]);
            }
            for line in super::table::lines(&table) {
                outln!("{line}")?;
            }
        }
    }
    Ok(())
}
