//! `ps --filter KEY=VALUE` (name, status, label, ancestor, id; the same key given twice
//! matches either value, different keys must all match, as docker's) and `ps --format
//! TEMPLATE` rows.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use hull_engine::{Record, State};

use super::super::template::Row;

const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

#[derive(Default)]
pub(super) struct Filters {
    name: Vec<String>,
    status: Vec<String>,
    label: Vec<(String, Option<String>)>,
    ancestor: Vec<String>,
    id: Vec<String>,
}

impl Filters {
    pub(super) fn parse(given: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for g in given {
            let Some((k, v)) = g.split_once('=') else {
                bail!("invalid --filter {g:?}: expected KEY=VALUE (name, status, label, ancestor, id)");
            };
            match k {
                "name" => f.name.push(v.into()),
                "id" => f.id.push(v.into()),
                "ancestor" => f.ancestor.push(v.into()),
                "label" => f.label.push(match v.split_once('=') {
                    Some((k, v)) => (k.into(), Some(v.into())),
                    None => (v.into(), None),
                }),
                "status" if STATUSES.contains(&v) => f.status.push(v.into()),
                "status" => bail!(
                    "invalid --filter status={v:?}: one of {}",
                    STATUSES.join(", ")
                ),
                _ => {
                    bail!("invalid --filter key {k:?} in {g:?} (name, status, label, ancestor, id)")
                }
            }
        }
        Ok(f)
    }

    /// A status filter lists stopped containers without `-a` (docker's rule).
    pub(super) fn names_status(&self) -> bool {
        !self.status.is_empty()
    }

    pub(super) fn matches(&self, r: &Record, st: &State) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|v| f(v))
        };
        any(&self.name, &|v| r.name.contains(v.trim_start_matches('/')))
            && any(&self.id, &|v| r.id.starts_with(v))
            && any(&self.status, &|v| v == st.name())
            && any(&self.ancestor, &|v| ancestor(r, v))
            && self.label.iter().all(|(k, want)| {
                r.options
                    .labels
                    .iter()
                    .any(|(lk, lv)| lk == k && want.as_ref().is_none_or(|w| w == lv))
            })
    }
}

/// The container's image is `v`: by the name it was created from (with or without the
/// tag, `:latest` implied) or by image id (full, or a prefix with or without `sha256:`).
fn ancestor(r: &Record, v: &str) -> bool {
    let untagged = |n: &str| -> String {
        match n.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo.into(),
            _ => n.into(),
        }
    };
    let hex = r.image_id.trim_start_matches("sha256:");
    let vhex = v.trim_start_matches("sha256:");
    r.image == v
        || (!v.contains(':') && (untagged(&r.image) == v))
        || format!("{v}:latest") == r.image
        || (vhex.len() >= 3 && vhex.bytes().all(|b| b.is_ascii_hexdigit()) && hex.starts_with(vhex))
}

/// Fields of `ps --format`, docker's names.
pub(super) const FIELDS: &[&str] = &[
    "ID",
    "Names",
    "Image",
    "Command",
    "CreatedAt",
    "RunningFor",
    "Ports",
    "State",
    "Status",
    "Labels",
    "Networks",
    "Mounts",
];

/// docker's column titles for `table` templates.
pub(super) fn header(f: &str) -> String {
    match f {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        f => f.to_ascii_uppercase(),
    }
}

pub(super) struct RowInput {
    pub(super) id: String,
    pub(super) command: String,
    pub(super) created_at: String,
    pub(super) running_for: String,
    pub(super) ports: String,
    pub(super) status: String,
    pub(super) network: String,
    pub(super) mounts: String,
}

pub(super) fn row(r: &Record, st: &State, i: RowInput) -> Row {
    let labels: BTreeMap<String, String> = r.options.labels.iter().cloned().collect();
    let label_text = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let fields = [
        ("ID", i.id),
        ("Names", r.name.clone()),
        ("Image", r.image.clone()),
        ("Command", i.command),
        ("CreatedAt", i.created_at),
        ("RunningFor", i.running_for),
        ("Ports", i.ports),
        ("State", st.name().to_string()),
        ("Status", i.status),
        ("Labels", label_text),
        ("Networks", i.network),
        ("Mounts", i.mounts),
    ]
    .into();
    Row { fields, labels }
}
