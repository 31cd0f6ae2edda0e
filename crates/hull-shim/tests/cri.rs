//! hull's shim under Kubernetes' CRI (issue 23): containerd 1.6's CRI plugin with the runtime
//! handler `hull` (`io.containerd.hull.v2`), driven over the CRI gRPC API as a kubelet drives it
//! (tests/common/cri_client.rs; crictl's steps: pull, runp, create, start, ps, logs, exec -s and
//! streaming exec, stats, statsp, stop, rm, stopp, rmp). The same scenario runs against runc's
//! handler (containerd's Go shim and Debian's runc), the reference: every assertion holds for both.
//!
//! Needs root, containerd, docker-registry, skopeo, containernetworking-plugins, gcc and jq;
//! skips loudly without them (see tests/common/cri.rs).

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/cri_client.rs"]
mod cri_client;
#[path = "common/cri.rs"]
mod cri_env;

use cri_client::{container, LinuxContainerResources, LinuxPodSandboxConfig, PodSandboxConfig};
use cri_env::Cri;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hull-v2");
const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A pod of three containers through the whole CRI lifecycle; `shim` names the handler's shim
/// binary (one process per pod for both).
fn pod_lifecycle(handler: &str, shim: &str) {
    if !cri_env::usable() {
        return;
    }
    let bins = common::hullc_dir(SHIM);
    let cri = Cri::up(&bins);
    let c = cri.c();
    let logs = cri.dir.join("logs");

    // Pull through the local mirror.
    assert!(c.pull(BUSYBOX).starts_with("sha256:"));
    let tags = c.image_tags();
    assert!(
        tags.iter()
            .any(|t| t.starts_with("docker.io/library/busybox")),
        "{tags:?}"
    );

    let pod = PodSandboxConfig {
        metadata: Some(cri_client::PodSandboxMetadata {
            name: "web".into(),
            namespace: "hulltest".into(),
            uid: format!("{handler}-1"),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cri.cgroup_parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod_id = c.run_pod(&pod, handler).unwrap();
    let status = c.pod_status(&pod_id);
    assert_eq!(status.state, 0, "SANDBOX_READY: {status:?}");
    assert_eq!(status.runtime_handler, handler);

    // a: a web server with limits; b: a client in the same pod; c: exits 7.
    let mut a = container(
        "a",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo hello-from-a >/var/www/index.html; echo started; echo on-stderr >&2; \
             trap 'exit 42' TERM; httpd -f -p 8080 -h /var/www & wait",
        ],
    );
    a.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_shares: 512,
        cpu_period: 100000,
        cpu_quota: 50000,
        ..Default::default()
    });
    let b = container(
        "b",
        BUSYBOX,
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    );
    let cc = container("c", BUSYBOX, &["sh", "-c", "echo bye; exit 7"]);
    let ids: Vec<String> = [&a, &b, &cc]
        .iter()
        .map(|cfg| c.create(&pod_id, cfg, &pod).unwrap())
        .collect();
    let (a_id, b_id, c_id) = (&ids[0], &ids[1], &ids[2]);
    for id in &ids {
        assert_eq!(c.state(id).0, "CONTAINER_CREATED");
        c.start(id).unwrap();
    }
    assert_eq!(c.containers(&pod_id).len(), 3);

    // Exit codes: c ends by itself and CRI records its code (the defect: never).
    cri.wait_until("c to exit", || c.state(c_id).0 == "CONTAINER_EXITED");
    assert_eq!(c.state(c_id).1, 7);
    let log_of = |id: &str| cri_client::read_logs(&c.status(id).log_path.into());
    assert_eq!(log_of(c_id).0, "bye\n");

    // Logs: both streams in CRI's log file.
    cri.wait_until("a's output", || log_of(a_id).0.contains("started"));
    cri.wait_until("a's stderr", || log_of(a_id).1.contains("on-stderr"));
    assert_eq!(log_of(a_id), ("started\n".into(), "on-stderr\n".into()));

    // Two containers share the pod's network: b reaches a on localhost; same netns, pod IP.
    cri.wait_until("a's server", || {
        let (out, _, _) = c.exec_sync(b_id, &["wget", "-qO-", "http://127.0.0.1:8080/"]);
        out.trim() == "hello-from-a"
    });
    let ns_a = c.exec_sync(a_id, &["readlink", "/proc/self/ns/net"]).0;
    let ns_b = c.exec_sync(b_id, &["readlink", "/proc/self/ns/net"]).0;
    assert_eq!(ns_a.trim(), ns_b.trim());
    let ip = c.pod_status(&pod_id).network.unwrap().ip;
    assert!(ip.starts_with("10.237.0."), "pod ip {ip}");
    let addrs = c.exec_sync(b_id, &["ip", "-o", "-4", "addr"]).0;
    assert!(addrs.contains(&format!("{ip}/")), "{addrs}");

    // exec: streaming (the websocket kubectl exec uses) and sync, with exit codes.
    let (out, err, code) = c.exec_stream(b_id, &["sh", "-c", "echo streamed; echo e >&2; exit 3"]);
    assert_eq!((out.as_str(), err.as_str(), code), ("streamed\n", "e\n", 3));
    assert_eq!(c.exec_stream(b_id, &["true"]).2, 0);
    assert_eq!(c.exec_sync(b_id, &["sh", "-c", "exit 4"]).2, 4);

    // Limits, seen inside a's cgroup.
    let cat = |f: &str| c.exec_sync(a_id, &["cat", f]).0.trim().to_string();
    assert_eq!(
        cat("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "50000");
    assert_eq!(cat("/sys/fs/cgroup/cpu/cpu.shares"), "512");

    // Stats of containers and of the pod.
    let stats = c.container_stats(&pod_id);
    let a_stats = stats
        .iter()
        .find(|s| s.attributes.as_ref().is_some_and(|at| &at.id == a_id))
        .unwrap_or_else(|| panic!("no stats for a: {stats:?}"));
    let ws = a_stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref());
    assert!(
        ws.is_some_and(|v| v.value > 0),
        "a's working set: {a_stats:?}"
    );
    let statsp = c.pod_stats(&pod_id);
    assert_eq!(statsp.attributes.unwrap().id, pod_id);

    // One shim serves the whole pod: sandbox and three containers.
    let shims = cri.shims(shim);
    assert_eq!(shims.len(), 1, "{shim} processes for one pod: {shims:?}");

    // stop: SIGTERM first (a's shell traps it and exits 42), SIGKILL when the grace period
    // ends (b's shell ignores SIGTERM).
    c.stop(a_id, 10).unwrap();
    assert_eq!(c.state(a_id), ("CONTAINER_EXITED".into(), 42));
    c.stop(b_id, 1).unwrap();
    assert_eq!(c.state(b_id), ("CONTAINER_EXITED".into(), 128 + 9));
    for id in &ids {
        c.remove(id).unwrap();
    }
    c.stop_pod(&pod_id).unwrap();
    c.remove_pod(&pod_id).unwrap();
    assert!(c.pods().is_empty());

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
