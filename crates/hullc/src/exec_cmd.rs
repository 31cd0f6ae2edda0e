//! `hullc exec`: builds the process from `--process` or from the
//! container's own process with the flags on top (runc's rules).

use std::path::Path;

use anyhow::{bail, Context};
use oci_spec::runtime::{Capability, Process};

use crate::cli::ExecArgs;

fn parse_process(path: &Path) -> anyhow::Result<Process> {
    // Read so that hullc's re-exec from a protected copy (exeseal) reads the
    // same bytes again, even from a pipe (`-p <(...)`).
    let raw = hull_runtime::read_stable("--process", path)?;
    let mut v: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| anyhow::anyhow!("--process {}: {e}", path.display()))?;
    // runc reads a process without "user" as uid 0, gid 0 (Go's zero value), and its own
    // tests (tty.bats) write such files; oci-spec requires the field.
    if let Some(o) = v.as_object_mut() {
        o.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    serde_path_to_error::deserialize(v)
        .map_err(|e| anyhow::anyhow!("--process {}: {}: {}", path.display(), e.path(), e.inner()))
}

fn parse_user(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be a number"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: gid must be a number"))
        })
        .transpose()?;
    Ok((uid, gid))
}

fn add_caps(p: &mut Process, names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut c = p.capabilities().clone().unwrap_or_default();
    for n in names {
        let bare = n.to_ascii_uppercase();
        let bare = bare.strip_prefix("CAP_").unwrap_or(&bare).to_string();
        let cap: Capability = bare
            .parse()
            .map_err(|_| anyhow::anyhow!("--cap {n:?}: unknown capability"))?;
        for set in [
            c.bounding().clone(),
            c.effective().clone(),
            c.permitted().clone(),
        ]
        .iter_mut()
        .enumerate()
        {
            let mut s = set.1.clone().unwrap_or_default();
            s.insert(cap);
            match set.0 {
                0 => c.set_bounding(Some(s)),
                1 => c.set_effective(Some(s)),
                _ => c.set_permitted(Some(s)),
            };
        }
    }
    p.set_capabilities(Some(c));
    Ok(())
}

/// The process to exec.
pub fn process(root: &Path, a: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        return parse_process(path);
    }
    if a.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let mut p = hull_runtime::container_process(root, &a.id)?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &a.env {
        if !e.contains('=') {
            bail!("--env {e:?}: expected KEY=value");
        }
        // A later KEY= replaces an earlier one, as in docker.
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u)?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    add_caps(&mut p, &a.cap)?;
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}
