//! User and time namespaces: what the parent writes for the child.
//!
//! Mappings must be written from outside the new user namespace (by a
//! process with CAP_SETUID/CAP_SETGID over it), before init does anything
//! that depends on its ids; init waits for `Proceed` meanwhile.

use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::namespaces::Plan;

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("linux.{field}: writing {path}")]
    Write {
        field: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("entering a new time namespace")]
    Time(#[source] std::io::Error),
    #[error("linux.timeOffsets: unknown clock {0:?} (monotonic or boottime)")]
    Clock(String),
    #[error("linux.{field}: running {tool} (multi-range mappings of an unprivileged user need it: Debian package uidmap, and ranges in /etc/sub{kind}id)")]
    Helper {
        field: &'static str,
        tool: &'static str,
        kind: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// How an id map gets written.
#[derive(Debug, PartialEq, Eq)]
enum Writer {
    /// By us: root, or an unprivileged user mapping only its own id (the
    /// kernel allows exactly that; for gids only after setgroups "deny").
    Direct,
    /// By the setuid helper newuidmap/newgidmap, which checks the ranges
    /// against /etc/subuid and /etc/subgid (runc does the same).
    Helper,
}

fn writer(m: &[LinuxIdMapping], own: u32, root: bool) -> Writer {
    match m {
        _ if root => Writer::Direct,
        [one] if one.host_id() == own && one.size() == 1 => Writer::Direct,
        _ => Writer::Helper,
    }
}

fn gid_maps(spec: &Spec) -> &[LinuxIdMapping] {
    spec.linux()
        .as_ref()
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or_default()
}

/// Whether init may call setgroups: the kernel denies it in a user
/// namespace whose gid_map was written by an unprivileged process after
/// "deny"; newgidmap allows it when it maps subordinate gids.
pub(crate) fn setgroups_allowed(spec: &Spec, plan: &Plan) -> bool {
    if !plan.new_user_ns {
        // The user namespace we run in may itself deny it (a rootless engine's namespace
        // with a single-id map, written after "deny", as podman's without subordinate gids).
        return std::fs::read_to_string("/proc/self/setgroups")
            .map_or(true, |s| s.trim() != "deny");
    }
    let egid = nix::unistd::getegid().as_raw();
    let root = nix::unistd::geteuid().is_root();
    root || writer(gid_maps(spec), egid, root) == Writer::Helper
}

pub(crate) fn write_mappings(spec: &Spec, pid: i32) -> Result<(), UsernsError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let root = nix::unistd::geteuid().is_root();
    let write = |field, file: &str, data: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data).map_err(|source| UsernsError::Write {
            field,
            path,
            source,
        })
    };
    if let Some(m) = linux.uid_mappings() {
        match writer(m, nix::unistd::geteuid().as_raw(), root) {
            Writer::Direct => write("uidMappings", "uid_map", map_text(m))?,
            Writer::Helper => helper("uidMappings", "newuidmap", pid, m)?,
        }
    }
    if let Some(m) = linux.gid_mappings() {
        match writer(m, nix::unistd::getegid().as_raw(), root) {
            Writer::Direct if !root => {
                write("gidMappings", "setgroups", "deny".into())?;
                write("gidMappings", "gid_map", map_text(m))?;
            }
            Writer::Direct => write("gidMappings", "gid_map", map_text(m))?,
            Writer::Helper => helper("gidMappings", "newgidmap", pid, m)?,
        }
    }
    Ok(())
}

/// `newuidmap PID  ID HOSTID SIZE ...` (or newgidmap).
fn helper(
    field: &'static str,
    tool: &'static str,
    pid: i32,
    m: &[LinuxIdMapping],
) -> Result<(), UsernsError> {
    let kind = if tool == "newuidmap" { "u" } else { "g" };
    let err = |source| UsernsError::Helper {
        field,
        tool,
        kind,
        source,
    };
    let out = std::process::Command::new(tool)
        .args(helper_args(pid, m))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(err)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(err(std::io::Error::other(format!("{}: {msg}", out.status))));
    }
    Ok(())
}

fn helper_args(pid: i32, m: &[LinuxIdMapping]) -> Vec<String> {
    let mut args = vec![pid.to_string()];
    for m in m {
        args.extend([m.container_id(), m.host_id(), m.size()].map(|n| n.to_string()));
    }
    args
}

/// unshare(CLONE_NEWTIME) puts our *children* in a new time namespace whose
/// offsets can be set until its first process enters it: write them now,
/// before clone.
pub(crate) fn enter_time_ns(spec: &Spec) -> Result<(), UsernsError> {
    // SAFETY: unshare takes only flags.
    if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
        return Err(UsernsError::Time(std::io::Error::last_os_error()));
    }
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in &offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(UsernsError::Clock(clock.clone()));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text).map_err(|source| UsernsError::Write {
            field: "timeOffsets",
            path: "/proc/self/timens_offsets".into(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn map(c: u32, h: u32, n: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(n)
            .build()
            .expect("mapping")
    }

    #[test]
    fn own_id_alone_is_written_directly_else_by_the_helper() {
        assert_eq!(writer(&[map(0, 1000, 1)], 1000, false), Writer::Direct);
        assert_eq!(writer(&[map(0, 1001, 1)], 1000, false), Writer::Helper);
        assert_eq!(writer(&[map(0, 1000, 2)], 1000, false), Writer::Helper);
        let two = [map(0, 1000, 1), map(1, 100000, 65536)];
        assert_eq!(writer(&two, 1000, false), Writer::Helper);
        assert_eq!(writer(&two, 0, true), Writer::Direct);
        assert_eq!(
            helper_args(42, &two),
            ["42", "0", "1000", "1", "1", "100000", "65536"]
        );
    }
}
