//! Applies CDI devices to an OCI `config.json` (as the engine builds it, a JSON value):
//! the spec-wide edits of each spec used once, then each device's edits, as the
//! reference implementation's `ContainerEdits.Apply` does.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::registry::{self, Found, Registry};
use crate::schema::{ContainerEdits, DeviceNode, Mount};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("CDI spec {file}: deviceNodes {path}: cannot stat host path {host}")]
    Stat {
        file: PathBuf,
        path: String,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CDI spec {file}: deviceNodes {path}: host path {host} is not a device node")]
    NotDevice {
        file: PathBuf,
        path: String,
        host: String,
    },
    /// `detail`: both sides and the files they come from.
    #[error("CDI devices conflict on {what} {path}: {detail}")]
    Conflict {
        what: &'static str,
        path: String,
        detail: String,
    },
}

/// Edits to apply with the file each came from (for messages).
struct Edits<'a> {
    file: &'a Path,
    edits: &'a ContainerEdits,
}

/// Applies the devices `names` found in `dirs` to `config`. Conflicting edits between
/// the devices (one device path with two different nodes, one mount point with two
/// different sources) fail, naming both files.
pub fn apply(config: &mut Value, names: &[String], dirs: &[PathBuf]) -> Result<(), Error> {
    if names.is_empty() {
        return Ok(());
    }
    let reg = Registry::load(dirs);
    let found = reg.resolve(names)?;
    let mut all: Vec<Edits<'_>> = Vec::new();
    let mut seen_specs: Vec<&Path> = Vec::new();
    for (_, f) in &found {
        let f: &Found = f;
        if !seen_specs.contains(&f.file.as_path()) {
            seen_specs.push(&f.file);
            all.push(Edits {
                file: &f.file,
                edits: &f.spec_edits,
            });
        }
        all.push(Edits {
            file: &f.file,
            edits: &f.device.container_edits,
        });
    }
    let nodes = resolve_nodes(&all)?;
    let mounts = unique_mounts(&all)?;
    for e in &all {
        apply_env(config, &e.edits.env);
        apply_gids(config, &e.edits.additional_gids);
        for h in &e.edits.hooks {
            let hook = json!({"path": h.path, "args": h.args, "env": h.env, "timeout": h.timeout});
            push(config, &["hooks", &h.hook_name], strip_nulls(hook));
        }
    }
    for n in nodes {
        apply_node(config, &n);
    }
    apply_mounts(config, mounts);
    Ok(())
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null() && x.as_array().is_none_or(|a| !a.is_empty()));
    }
    v
}

/// Appends `v` to the array at `path`, making objects and the array on the way.
fn push(config: &mut Value, path: &[&str], v: Value) {
    let mut cur = config;
    for k in path {
        if cur.get(*k).is_none_or(|x| x.is_null()) {
            cur[*k] = if Some(k) == path.last() {
                json!([])
            } else {
                json!({})
            };
        }
        cur = &mut cur[*k];
    }
    if let Some(a) = cur.as_array_mut() {
        a.push(v);
    }
}

/// SPEC.md: env entries replace a variable of the same name.
fn apply_env(config: &mut Value, env: &[String]) {
    for kv in env {
        let key = kv.split('=').next().unwrap_or_default();
        push(config, &["process", "env"], json!(null));
        if let Some(a) = config["process"]["env"].as_array_mut() {
            a.pop();
            a.retain(|x| x.as_str().and_then(|s| s.split('=').next()) != Some(key));
            a.push(json!(kv));
        }
    }
}

/// Gid 0 is skipped as the reference implementation does: root's group must not be
/// granted by a device spec.
fn apply_gids(config: &mut Value, gids: &[u32]) {
    for g in gids.iter().filter(|g| **g != 0) {
        let cur = &config["process"]["user"]["additionalGids"];
        if cur.as_array().is_some_and(|a| a.contains(&json!(g))) {
            continue;
        }
        push(config, &["process", "user", "additionalGids"], json!(g));
    }
}

/// A device node with everything filled in from the host node.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    path: String,
    kind: String,
    major: i64,
    minor: i64,
    mode: Option<u32>,
    perms: String,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn conflict(what: &'static str, path: &str, a: (String, &Path), b: (String, &Path)) -> Error {
    let detail = format!(
        "{} in {} and {} in {}",
        a.0,
        a.1.display(),
        b.0,
        b.1.display()
    );
    Error::Conflict {
        what,
        path: path.into(),
        detail,
    }
}

fn resolve_nodes(all: &[Edits<'_>]) -> Result<Vec<Node>, Error> {
    let mut by_path: BTreeMap<String, (Node, &Path)> = BTreeMap::new();
    let mut order = Vec::new();
    for e in all {
        for d in &e.edits.device_nodes {
            let n = fill(e.file, d)?;
            if let Some((prev, pf)) = by_path.get(&n.path) {
                if (prev.kind.as_str(), prev.major, prev.minor)
                    != (n.kind.as_str(), n.major, n.minor)
                {
                    let show = |n: &Node| format!("{} {}:{}", n.kind, n.major, n.minor);
                    return Err(conflict(
                        "device node",
                        &n.path,
                        (show(prev), pf),
                        (show(&n), e.file),
                    ));
                }
                continue;
            }
            order.push(n.path.clone());
            by_path.insert(n.path.clone(), (n, e.file));
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|p| by_path.remove(&p).map(|(n, _)| n))
        .collect())
}

/// SPEC.md: type, major and minor may be left out; they come from the host's node
/// (`hostPath`, else `path`).
fn fill(file: &Path, d: &DeviceNode) -> Result<Node, Error> {
    let host = d.host_path.clone().unwrap_or_else(|| d.path.clone());
    let mut node = Node {
        path: d.path.clone(),
        kind: d.kind.clone().unwrap_or_default(),
        major: d.major.unwrap_or(0),
        minor: d.minor.unwrap_or(0),
        mode: d.file_mode,
        perms: d.permissions.clone().unwrap_or_else(|| "rwm".into()),
        uid: d.uid,
        gid: d.gid,
    };
    // A fifo has no numbers; a node with its numbers given needs no host node.
    if node.kind == "p" || (d.major.is_some() && !node.kind.is_empty()) {
        return Ok(node);
    }
    let md = std::fs::metadata(&host).map_err(|source| Error::Stat {
        file: file.into(),
        path: d.path.clone(),
        host: host.clone(),
        source,
    })?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(Error::NotDevice {
            file: file.into(),
            path: d.path.clone(),
            host,
        });
    };
    if node.kind.is_empty() || node.kind == "u" {
        node.kind = kind.into();
    }
    node.major = libc::major(md.rdev()) as i64;
    node.minor = libc::minor(md.rdev()) as i64;
    node.mode.get_or_insert(md.mode() & 0o7777);
    Ok(node)
}

fn apply_node(config: &mut Value, n: &Node) {
    let mut node = json!({"path": n.path, "type": n.kind, "major": n.major, "minor": n.minor,
        "fileMode": n.mode, "uid": n.uid.unwrap_or(0), "gid": n.gid.unwrap_or(0)});
    node = strip_nulls(node);
    // A node at the same path (from a plain `--device`) is replaced.
    if let Some(a) = config["linux"]["devices"].as_array_mut() {
        a.retain(|x| x["path"] != json!(n.path));
    }
    push(config, &["linux", "devices"], node);
    let rule = json!({"allow": true, "type": n.kind, "major": n.major, "minor": n.minor, "access": n.perms});
    push(config, &["linux", "resources", "devices"], rule);
}

fn unique_mounts<'a>(all: &'a [Edits<'a>]) -> Result<Vec<&'a Mount>, Error> {
    let mut by_path: BTreeMap<&str, (&Mount, &Path)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in all {
        for m in &e.edits.mounts {
            if let Some((prev, pf)) = by_path.get(m.container_path.as_str()) {
                if (&prev.host_path, &prev.options) != (&m.host_path, &m.options) {
                    let show = |m: &Mount| format!("{} [{}]", m.host_path, m.options.join(","));
                    let (a, b) = ((show(prev), *pf), (show(m), e.file));
                    return Err(conflict("mount", &m.container_path, a, b));
                }
                continue;
            }
            by_path.insert(&m.container_path, (m, e.file));
            out.push(m);
        }
    }
    Ok(out)
}

/// Mounts go after the engine's, parents before children (the reference implementation
/// sorts CDI mounts by path depth so a mount is not hidden by one on its parent).
fn apply_mounts(config: &mut Value, mut mounts: Vec<&Mount>) {
    mounts.sort_by_key(|m| {
        m.container_path
            .split('/')
            .filter(|s| !s.is_empty())
            .count()
    });
    for m in mounts {
        let mut opts = m.options.clone();
        let kind = m.kind.clone().unwrap_or_else(|| "bind".into());
        if kind == "bind" && !opts.iter().any(|o| o == "bind" || o == "rbind") {
            opts.push("bind".into());
        }
        let v = json!({"destination": m.container_path, "type": kind, "source": m.host_path, "options": opts});
        push(config, &["mounts"], v);
    }
}

#[cfg(test)]
mod tests;
