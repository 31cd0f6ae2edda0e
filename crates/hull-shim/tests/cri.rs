//! hull's shim under Kubernetes' CRI (issue 23): containerd 1.6's CRI plugin with the runtime
//! handler `hull` (`io.containerd.hull.v2`), driven with crictl 1.26 as a kubelet would drive it.
//! The same scenario runs against runc's handler (containerd's Go shim and Debian's runc), the
//! reference: every assertion holds for both.
//!
//! Needs root, containerd, docker-registry, skopeo, containernetworking-plugins, gcc, jq and
//! crictl (cri-tools v1.26.1, see tests/common/cri.rs); skips loudly without them (see tests/common/cri.rs).

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/cri.rs"]
mod cri_env;

use cri_env::Cri;
use serde_json::{json, Value};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hull-v2");
const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn container(name: &str, cmd: &[&str], extra: Value) -> Value {
    let mut c = json!({
        "metadata": {"name": name},
        "image": {"image": BUSYBOX},
        "command": cmd,
        "log_path": format!("{name}.log"),
        "linux": {},
    });
    if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

fn state(cri: &Cri, id: &str) -> (String, i64) {
    let v = cri.json(&["inspect", "-o", "json", id]);
    let s = &v["status"];
    (
        s["state"].as_str().unwrap_or("").to_string(),
        s["exitCode"].as_i64().unwrap_or(-1),
    )
}

/// A pod of three containers through the whole CRI lifecycle; `shim` names the handler's shim
/// binary (one process per pod for both).
fn pod_lifecycle(handler: &str, shim: &str) {
    let Some(crictl) = cri_env::usable() else {
        return;
    };
    let bins = common::hullc_dir(SHIM);
    let cri = Cri::up(&bins, crictl);
    let logs = cri.dir.join("logs");

    // Pull through the local mirror.
    cri.ok(&["pull", BUSYBOX]);
    let images = cri.ok(&["images"]);
    assert!(images.contains("docker.io/library/busybox"), "{images}");

    let pod = cri.file(
        "pod",
        &json!({
            "metadata": {"name": "web", "namespace": "hulltest", "uid": format!("{handler}-1")},
            "log_directory": logs.display().to_string(),
            "linux": {"cgroup_parent": cri.cgroup_parent},
        }),
    );
    let pod_id = cri
        .ok(&["runp", "--runtime", handler, &pod])
        .trim()
        .to_string();
    let pods = cri.json(&["pods", "-o", "json", "--id", &pod_id]);
    assert_eq!(pods["items"][0]["state"], "SANDBOX_READY", "{pods}");
    assert_eq!(pods["items"][0]["runtimeHandler"], handler, "{pods}");

    // a: a web server with limits; b: a client in the same pod; c: exits 7.
    let a = cri.file(
        "a",
        &container(
            "a",
            &[
                "sh",
                "-c",
                "echo hello-from-a >/var/www/index.html; echo started; echo on-stderr >&2; \
                 trap 'exit 42' TERM; httpd -f -p 8080 -h /var/www & wait",
            ],
            json!({"linux": {"resources": {
                "memory_limit_in_bytes": 64 << 20, "cpu_shares": 512,
                "cpu_period": 100000, "cpu_quota": 50000}}}),
        ),
    );
    let b = cri.file(
        "b",
        &container(
            "b",
            &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
            json!({}),
        ),
    );
    let c = cri.file(
        "c",
        &container("c", &["sh", "-c", "echo bye; exit 7"], json!({})),
    );
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|f| cri.ok(&["create", &pod_id, f, &pod]).trim().to_string())
        .collect();
    let (a_id, b_id, c_id) = (&ids[0], &ids[1], &ids[2]);
    for id in &ids {
        assert_eq!(state(&cri, id).0, "CONTAINER_CREATED");
        cri.ok(&["start", id]);
    }
    let ps = cri.json(&["ps", "-a", "-o", "json", "-p", &pod_id]);
    assert_eq!(ps["containers"].as_array().unwrap().len(), 3, "{ps}");

    // Exit codes: c ends by itself and CRI records its code (the defect: never).
    cri.wait_until("c to exit", || state(&cri, c_id).0 == "CONTAINER_EXITED");
    assert_eq!(state(&cri, c_id).1, 7);
    assert_eq!(cri.ok(&["logs", c_id]), "bye\n");

    // Logs: both streams in CRI's log file.
    cri.wait_until("a's output", || cri.ok(&["logs", a_id]).contains("started"));
    let o = cri.crictl(&["logs", a_id]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "started\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "on-stderr\n");

    // Two containers share the pod's network: b reaches a on localhost; same netns, pod IP.
    cri.wait_until("a's server", || {
        let o = cri.crictl(&["exec", "-s", b_id, "wget", "-qO-", "http://127.0.0.1:8080/"]);
        String::from_utf8_lossy(&o.stdout).trim() == "hello-from-a"
    });
    let ns_a = cri.ok(&["exec", "-s", a_id, "readlink", "/proc/self/ns/net"]);
    let ns_b = cri.ok(&["exec", "-s", b_id, "readlink", "/proc/self/ns/net"]);
    assert_eq!(ns_a.trim(), ns_b.trim());
    let ip = cri.json(&["inspectp", "-o", "json", &pod_id])["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.237.0."), "pod ip {ip}");
    let addrs = cri.ok(&["exec", "-s", b_id, "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains(&format!("{ip}/")), "{addrs}");

    // exec: streaming and sync, with exit codes (crictl itself exits 1 and names the code).
    let o = cri.crictl(&["exec", b_id, "sh", "-c", "echo streamed; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "streamed\n", "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("command terminated with exit code 3"), "{o:?}");
    let o = cri.crictl(&["exec", "-s", b_id, "sh", "-c", "exit 4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("exited with 4"), "{o:?}");

    // Limits, seen inside a's cgroup (exec -s prints a newline after each stream).
    let mem = cri.ok(&[
        "exec",
        "-s",
        a_id,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    let quota = cri.ok(&[
        "exec",
        "-s",
        a_id,
        "cat",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    ]);
    assert_eq!(quota.trim(), "50000");
    let shares = cri.ok(&["exec", "-s", a_id, "cat", "/sys/fs/cgroup/cpu/cpu.shares"]);
    assert_eq!(shares.trim(), "512");

    // Stats of containers and of the pod.
    let stats = cri.json(&["stats", "-o", "json", "-p", &pod_id]);
    let a_stats = stats["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["attributes"]["id"] == a_id.as_str())
        .unwrap_or_else(|| panic!("no stats for a: {stats}"));
    let ws: u64 = a_stats["memory"]["workingSetBytes"]["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(ws > 0, "a's working set: {a_stats}");
    let statsp = cri.json(&["statsp", "-o", "json", "--id", &pod_id]);
    assert_eq!(
        statsp["stats"][0]["attributes"]["id"],
        pod_id.as_str(),
        "{statsp}"
    );

    // One shim serves the whole pod: sandbox and three containers.
    let shims = cri.shims(shim);
    assert_eq!(shims.len(), 1, "{shim} processes for one pod: {shims:?}");

    // stop: SIGTERM first (a's shell traps it and exits 42), SIGKILL when the grace period
    // ends (b's shell ignores SIGTERM).
    cri.ok(&["stop", "--timeout", "10", a_id]);
    assert_eq!(state(&cri, a_id), ("CONTAINER_EXITED".into(), 42));
    cri.ok(&["stop", "--timeout", "1", b_id]);
    assert_eq!(state(&cri, b_id), ("CONTAINER_EXITED".into(), 128 + 9));
    for id in &ids {
        cri.ok(&["rm", id]);
    }
    cri.ok(&["stopp", &pod_id]);
    cri.ok(&["rmp", &pod_id]);
    let pods = cri.json(&["pods", "-o", "json"]);
    assert_eq!(pods["items"].as_array().map_or(0, Vec::len), 0, "{pods}");

    // Nothing left: shims, rootfs and shm mounts, the pinned netns, veths, cgroups.
    cri.wait_until("the shim to exit", || cri.shims(shim).is_empty());
    let state_dir = cri.dir.join("state").display().to_string();
    let mounts = cri.mounts_under(&state_dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(cri.pinned_netns().is_empty(), "{:?}", cri.pinned_netns());
    cri.wait_until("the veth to go", || cri.bridge_ports().is_empty());
    let cg = cri.cgroups_left();
    assert!(cg.is_empty(), "cgroups left: {cg:?}");
}

#[test]
fn cri_pod_lifecycle_hull() {
    pod_lifecycle("hull", "containerd-shim-hull-v2");
}

/// The reference: runc's handler passes the same scenario, so its expectations are CRI's.
#[test]
fn cri_pod_lifecycle_runc_reference() {
    pod_lifecycle("runc", "containerd-shim-runc-v2");
}
