//! What a container's `config.json` needs when hull runs rootless (inside the user's
//! namespace, where hull is root of that namespace only):
//!
//! - no `cgroupsPath`: the user may not make cgroups on a v1/hybrid host (no delegation),
//!   and hullc leaves a rootless container without one only when the spec names none (runc's
//!   rule). Limits are then refused, naming the flag: podman on cgroup v1 warns and drops
//!   them, but a limit that silently does nothing is worse than an error for a container
//!   someone meant to contain (docs/rootless.md);
//! - `/sys`: sysfs may only be mounted by the owner of the network namespace, so with
//!   `--network host` (the host's, owned by the initial user namespace) it is the host's
//!   /sys bound read-only, as podman and runc do;
//! - with the single-id fallback, devpts without `gid=5` (group tty is not mapped).

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{0}: resource limits need a cgroup the user may manage, and this host delegates \
         none to users (rootless on cgroup v1 or hybrid): drop the flag (docs/rootless.md)"
    )]
    Limits(&'static str),
}

/// The flags behind each limit of `linux.resources`.
const LIMITS: &[(&str, &str)] = &[
    ("memory", "--memory"),
    ("cpu", "--cpus"),
    ("pids", "--pids-limit"),
    ("blockIO", "--blkio-weight"),
    ("hugepageLimits", "--hugepages"),
];

/// Rewrites a built config for rootless operation (see the module docs).
pub(crate) fn adapt(spec: &mut Value) -> Result<(), Error> {
    let linux = &mut spec["linux"];
    if let Some(res) = linux.get("resources").and_then(Value::as_object) {
        for (key, flag) in LIMITS {
            if res.get(*key).is_some_and(|v| !v.is_null()) {
                return Err(Error::Limits(flag));
            }
        }
    }
    if let Some(l) = linux.as_object_mut() {
        l.remove("cgroupsPath");
    }
    let host_net = !linux["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "network"));
    let single = super::single_id_map();
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return Ok(());
    };
    for m in mounts.iter_mut() {
        if host_net && m["type"] == "sysfs" {
            *m = json!({"destination": m["destination"], "type": "bind", "source": "/sys",
                        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
        if single && m["type"] == "devpts" {
            if let Some(o) = m["options"].as_array_mut() {
                o.retain(|v| v != "gid=5");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_refused_naming_the_flag() {
        let mut s = json!({"linux": {"resources": {"devices": [], "memory": {"limit": 1}}}});
        let e = adapt(&mut s).unwrap_err().to_string();
        assert!(e.starts_with("--memory: "), "{e}");
    }

    #[test]
    fn host_network_binds_sys_and_drops_cgroup_path() {
        let mut s = json!({
            "linux": {"resources": {"devices": []}, "cgroupsPath": "/hull/x",
                      "namespaces": [{"type": "pid"}]},
            "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs"}],
        });
        adapt(&mut s).unwrap();
        assert!(s["linux"].get("cgroupsPath").is_none());
        assert_eq!(s["mounts"][0]["type"], "bind");
        assert_eq!(s["mounts"][0]["source"], "/sys");
    }
}
