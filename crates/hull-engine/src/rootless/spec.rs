//! What a container's `config.json` needs when hull runs rootless (inside the user's
//! namespace, where hull is root of that namespace only):
//!
//! - `cgroupsPath`: for a container with limits, in a delegated cgroup v2 subtree
//!   (`cgroup.rs`), `<delegated>/hull/<id>`, which hullc creates (a rootless hullc with a cgroupsPath fails rather than skip it) and
//!   the limits go there; a limit whose controller the subtree lacks is refused, naming the
//!   flag and the controller. Without limits none (readying the subtree moves the user's
//!   processes: only limits justify that). Without delegation (cgroup v1 or hybrid, or a cgroup not the
//!   user's) none, and hullc leaves the container without a cgroup (runc's rule for a
//!   rootless spec without one); limits are then refused, naming the flag: podman warns
//!   and drops them there, but a limit that silently does nothing is worse than an error
//!   for a container someone meant to contain (docs/rootless.md);
//! - `/sys`: sysfs may only be mounted by the owner of the network namespace, so with
//!   `--network host` (the host's, owned by the initial user namespace) it is the host's
//!   /sys bound read-only, as podman and runc do;
//! - with the single-id fallback, devpts without `gid=5` (group tty is not mapped).

use serde_json::{json, Value};

use super::cgroup::{self, Delegated, Why};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{0}: resource limits need a cgroup the user may manage, and {1}: drop the flag \
         (docs/rootless.md)"
    )]
    Limits(&'static str, Why),
    #[error(
        "{flag}: your delegated cgroup {path} lacks the {controller} controller (it has: \
         {have}): ask the administrator to delegate it (docs/rootless.md), or drop the flag"
    )]
    Controller {
        flag: &'static str,
        controller: &'static str,
        path: String,
        have: String,
    },
    #[error("{0}: readying your delegated cgroup for the container's limits")]
    Prepare(&'static str, #[source] cgroup::Error),
    #[error(
        "{0}: container {1} was made without a cgroup (rootless containers get one only \
         when made with limits in a delegated cgroup): make it again with a limit \
         (docs/rootless.md)"
    )]
    Uncontained(&'static str, String),
}

/// The flags behind each limit of `linux.resources`, and the controller each needs.
const LIMITS: &[(&str, &str, &str)] = &[
    ("memory", "--memory", "memory"),
    ("cpu", "--cpus", "cpu"),
    ("pids", "--pids-limit", "pids"),
    ("blockIO", "--blkio-weight", "io"),
    ("hugepageLimits", "--hugepages", "hugetlb"),
];

/// `hull update` of a rootless container (`flag`: the first limit given): limits need the
/// cgroup it was given at create (`linux.cgroupsPath` of its `config`).
pub(crate) fn check_update(config: &Value, flag: &'static str, name: &str) -> Result<(), Error> {
    check_update_with(config, flag, name, cgroup::status)
}

fn check_update_with(
    config: &Value,
    flag: &'static str,
    name: &str,
    status: impl FnOnce() -> Result<Delegated, Why>,
) -> Result<(), Error> {
    if config["linux"]
        .get("cgroupsPath")
        .is_some_and(|p| p.as_str().is_some_and(|p| !p.is_empty()))
    {
        return Ok(());
    }
    match status() {
        Ok(_) => Err(Error::Uncontained(flag, name.into())),
        Err(why) => Err(Error::Limits(flag, why)),
    }
}

/// Rewrites a built config for rootless operation (see the module docs); `id` names the
/// container's cgroup.
pub(crate) fn adapt(spec: &mut Value, id: &str) -> Result<(), Error> {
    adapt_with(spec, id, cgroup::status, Delegated::prepare)
}

/// [`adapt`] with the delegation's status and its preparation given (tests).
fn adapt_with(
    spec: &mut Value,
    id: &str,
    status: impl FnOnce() -> Result<Delegated, Why>,
    prepare: impl FnOnce(&Delegated) -> Result<String, cgroup::Error>,
) -> Result<(), Error> {
    let linux = &mut spec["linux"];
    let asked: Vec<(&'static str, &'static str)> = linux
        .get("resources")
        .and_then(Value::as_object)
        .map(|res| {
            LIMITS
                .iter()
                .filter(|(key, ..)| res.get(*key).is_some_and(|v| !v.is_null()))
                .map(|&(_, flag, ctrl)| (flag, ctrl))
                .collect()
        })
        .unwrap_or_default();
    // Without limits no cgroup (and no status, no prepare): readying the delegated cgroup
    // moves the user's processes and fixes its controllers, which only limits justify.
    // Without limits no cgroup (no status, no prepare): readying the delegated cgroup moves
    // the user's processes and fixes its controllers, which only limits justify.
    let path = match asked.first() {
        None => None,
        Some(&(first, _)) => {
            let d = status().map_err(|why| Error::Limits(first, why))?;
            if let Some(&(flag, controller)) = asked
                .iter()
                .find(|(_, c)| !d.controllers.iter().any(|h| h == c))
            {
                return Err(Error::Controller {
                    flag,
                    controller,
                    path: d.path.clone(),
                    have: d.controllers.join(" "),
                });
            }
            let parent = prepare(&d).map_err(|e| Error::Prepare(first, e))?;
            Some(format!("{parent}/{id}"))
        }
    };
    if let Some(l) = linux.as_object_mut() {
        match path {
            Some(p) => l.insert("cgroupsPath".into(), p.into()),
            None => l.remove("cgroupsPath"),
        };
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

    fn hybrid() -> Result<Delegated, Why> {
        Err(Why::NotV2)
    }

    fn delegated() -> Result<Delegated, Why> {
        Ok(Delegated {
            dir: "/sys/fs/cgroup/u/app".into(),
            path: "/u/app".into(),
            controllers: vec!["memory".into(), "pids".into()],
        })
    }

    fn ready(d: &Delegated) -> Result<String, cgroup::Error> {
        Ok(format!("{}/hull", d.path))
    }

    fn unprepared(_: &Delegated) -> Result<String, cgroup::Error> {
        panic!("prepared without delegation or with a refused limit")
    }

    #[test]
    fn limits_refused_naming_the_flag() {
        let mut s = json!({"linux": {"resources": {"devices": [], "memory": {"limit": 1}}}});
        let e = adapt_with(&mut s, "c", hybrid, unprepared)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--memory: "), "{e}");
        assert!(e.contains("cgroup v1 or hybrid"), "{e}");
        let why = || Err(Why::NotDelegated("/user.slice/session-1.scope".into()));
        let e = adapt_with(&mut s, "c", why, unprepared)
            .unwrap_err()
            .to_string();
        assert!(e.contains("session-1.scope is not delegated to you"), "{e}");
    }

    #[test]
    fn delegated_cgroup_takes_the_container_and_its_limits() {
        let mut s = json!({"linux": {"resources": {"devices": [], "memory": {"limit": 1},
                                                   "pids": {"limit": 5}},
                                     "cgroupsPath": "/hull/c1"}});
        adapt_with(&mut s, "c1", delegated, ready).unwrap();
        assert_eq!(s["linux"]["cgroupsPath"], "/u/app/hull/c1");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 1);
    }

    #[test]
    fn without_limits_the_delegated_cgroup_is_left_alone() {
        let mut s = json!({"linux": {"resources": {"devices": []}, "cgroupsPath": "/hull/c2"}});
        let untouched = || -> Result<Delegated, Why> { panic!("status read without limits") };
        adapt_with(&mut s, "c2", untouched, unprepared).unwrap();
        assert!(s["linux"].get("cgroupsPath").is_none());
    }

    #[test]
    fn a_controller_the_subtree_lacks_is_refused_by_name() {
        let mut s = json!({"linux": {"resources": {"cpu": {"quota": 50000, "period": 100000}}}});
        let e = adapt_with(&mut s, "c", delegated, unprepared)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--cpus: "), "{e}");
        assert!(
            e.contains("lacks the cpu controller (it has: memory pids)"),
            "{e}"
        );
    }

    #[test]
    fn update_needs_the_cgroup_made_at_create() {
        let with = json!({"linux": {"cgroupsPath": "/u/app/hull/c1"}});
        check_update_with(&with, "--memory", "c1", hybrid).unwrap();
        let without = json!({"linux": {}});
        let e = check_update_with(&without, "--memory", "c1", hybrid).unwrap_err();
        assert!(e.to_string().contains("cgroup v1 or hybrid"), "{e}");
        let e = check_update_with(&without, "--cpus", "c1", delegated).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("--cpus: container c1 was made without a cgroup"));
    }

    #[test]
    fn failed_preparation_fails_the_limits() {
        let busy = |_: &Delegated| {
            Err(cgroup::Error::Busy {
                path: "/sys/fs/cgroup/u/app".into(),
                pids: vec![7],
            })
        };
        let mut s = json!({"linux": {"resources": {"pids": {"limit": 5}}, "cgroupsPath": "/h/c"}});
        let e = adapt_with(&mut s, "c", delegated, busy).unwrap_err();
        assert!(e.to_string().starts_with("--pids-limit: "), "{e}");
    }

    #[test]
    fn host_network_binds_sys_and_drops_cgroup_path() {
        let mut s = json!({
            "linux": {"resources": {"devices": []}, "cgroupsPath": "/hull/x",
                      "namespaces": [{"type": "pid"}]},
            "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs"}],
        });
        adapt_with(&mut s, "x", hybrid, unprepared).unwrap();
        assert!(s["linux"].get("cgroupsPath").is_none());
        assert_eq!(s["mounts"][0]["type"], "bind");
        assert_eq!(s["mounts"][0]["source"], "/sys");
    }
}
