//! `hull events [--since T] [--until T] [--filter K=V]... [--format json|TEMPLATE]`: the
//! root's event journal (hull_engine::events), streamed as docker's `docker events` is:
//! until Ctrl-C, or until `--until` has passed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::events::{parse_time, Event, Filters, Journal, Query};

use super::template::{Row, Template};

#[derive(Args)]
pub(crate) struct EventsArgs {
    /// Show events from this time on: RFC 3339 (2024-05-01T12:00:00Z), unix seconds, or a
    /// duration before now (10m, 1h30m).
    #[arg(long)]
    since: Option<String>,
    /// Stop at this time (same forms as --since); without it, stream until interrupted.
    #[arg(long)]
    until: Option<String>,
    /// Only matching events: container=, image=, event=, type=, label=, network=, volume=
    /// (repeat a key for either value).
    #[arg(short, long = "filter")]
    filters: Vec<String>,
    /// `json` (one event per line), or a Go template such as '{{json .}}' or
    /// '{{.Type}} {{.Action}} {{.Actor.ID}}'.
    #[arg(long)]
    format: Option<String>,
}

/// The fields a template may name.
const FIELDS: [&str; 10] = [
    "Type", "Action", "Actor.ID", "Status", "ID", "From", "Scope", "Time", "TimeNano", ".",
];

pub(crate) fn run(root: &Path, a: EventsArgs) -> Result<u8> {
    let now = hull_engine::record::now_ns();
    let since = a
        .since
        .as_deref()
        .map(|v| parse_time("--since", v, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|v| parse_time("--until", v, now))
        .transpose()?;
    let filters = Filters::parse(&a.filters)?;
    let template = match a.format.as_deref() {
        None => None,
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(t) => Some(Template::parse(t)?),
    };
    let q = Query {
        since,
        until,
        filters,
    };
    for e in Journal::open(root).read(q) {
        let e = e?;
        let line = match &template {
            None => plain(&e),
            Some(t) => t.lines(&[row(&e)], |f| f.to_string(), &FIELDS)?.concat(),
        };
        // Each event flushed as it comes: a pipe reader sees it at once.
        outln!("{line}")?;
    }
    Ok(0)
}

/// docker's default line: `TIME TYPE ACTION ID (k=v, ...)`.
fn plain(e: &Event) -> String {
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let time = hull_engine::time::rfc3339(i128::from(e.time_nano));
    let mut s = format!("{time} {} {} {}", e.kind, e.action, e.actor.id);
    if !attrs.is_empty() {
        s.push_str(&format!(" ({})", attrs.join(", ")));
    }
    s
}

fn row(e: &Event) -> Row {
    let fields = BTreeMap::from([
        ("Type", e.kind.clone()),
        ("Action", e.action.clone()),
        ("Actor.ID", e.actor.id.clone()),
        ("Status", e.status.clone().unwrap_or_default()),
        ("ID", e.id.clone().unwrap_or_default()),
        ("From", e.from.clone().unwrap_or_default()),
        ("Scope", e.scope.clone()),
        ("Time", e.time.to_string()),
        ("TimeNano", e.time_nano.to_string()),
        (".", serde_json::to_string(e).unwrap_or_default()),
    ]);
    Row {
        fields,
        labels: e.actor.attributes.clone(),
    }
}
