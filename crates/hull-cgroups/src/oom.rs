//! Where a process's memory cgroup counts its OOM kills, for callers that
//! watch a container from outside (the shim's OOM poll, hull's record of an
//! exit): the `oom_kill N` line of `memory.oom_control` on v1 or
//! `memory.events` on v2.

use std::path::{Path, PathBuf};

/// The counter file of `pid`'s memory cgroup, from `/proc/PID/cgroup`, so it
/// must be asked while the process lives. `None` when the process is gone or
/// no memory controller is mounted where a distribution mounts it.
pub fn oom_counter_file(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "memory") {
            return Some(
                Path::new("/sys/fs/cgroup/memory")
                    .join(path)
                    .join("memory.oom_control"),
            );
        }
        if ctrls.is_empty() {
            unified = Some(Path::new("/sys/fs/cgroup").join(path).join("memory.events"));
        }
    }
    // On a hybrid host the v2 tree may lack the memory controller.
    unified.filter(|p| p.exists())
}

/// The `oom_kill` count of an [`oom_counter_file`] (0 when it is gone or has none).
pub fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n").unwrap();
        assert_eq!(oom_kills(&f), 4);
        assert_eq!(oom_kills(&d.path().join("none")), 0);
    }

    #[test]
    fn own_cgroup_file() {
        // Whatever the host layout, our own memory cgroup resolves somewhere
        // under /sys/fs/cgroup.
        if let Some(p) = oom_counter_file(std::process::id()) {
            assert!(p.starts_with("/sys/fs/cgroup"));
        }
    }
}
