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
}

fn map_text(m: &[LinuxIdMapping]) -> String {
    m.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Whether init may call setgroups: the kernel denies it in a user
/// namespace whose gid_map was written by an unprivileged process.
pub(crate) fn setgroups_allowed(plan: &Plan) -> bool {
    !plan.new_user_ns || nix::unistd::geteuid().is_root()
}

pub(crate) fn write_mappings(spec: &Spec, pid: i32) -> Result<(), UsernsError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let write = |field, file: &str, data: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data).map_err(|source| UsernsError::Write {
            field,
            path,
            source,
        })
    };
    if !nix::unistd::geteuid().is_root() {
        write("gidMappings", "setgroups", "deny".into())?;
    }
    if let Some(m) = linux.uid_mappings() {
        write("uidMappings", "uid_map", map_text(m))?;
    }
    if let Some(m) = linux.gid_mappings() {
        write("gidMappings", "gid_map", map_text(m))?;
    }
    Ok(())
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
