//! linux.namespaces (new, shared, joined by path), hostname, domainname and
//! sysctl, each observed from inside the container.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;

/// `/proc/self/ns/*` names as seen in /proc (kind → link) from a container
/// running `b`.
fn container_ns(h: &Hullc, b: &mut Bundle, kinds: &[&str]) -> HashMap<String, String> {
    let script: String = kinds
        .iter()
        .map(|k| format!("echo {k}=$(readlink /proc/self/ns/{k});"))
        .collect();
    h.sh(b, &script)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

const ALL: &[&str] = &["pid", "mnt", "uts", "ipc", "net", "cgroup"];

#[test]
fn configured_namespaces_are_new() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // spec's default has pid, network, ipc, uts, mount, cgroup.
    let inside = container_ns(&h, &mut b, ALL);
    for k in ALL {
        let host = ns_of("self", k);
        assert_ne!(inside[*k], host, "{k} namespace is the host's");
        assert!(inside[*k].starts_with(&format!("{k}:[")), "{inside:?}");
    }
}

#[test]
fn omitted_namespaces_are_the_hosts() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    for t in ["network", "ipc", "uts", "cgroup"] {
        b.remove_namespace(t);
    }
    b.config.as_object_mut().unwrap().remove("hostname");
    let inside = container_ns(&h, &mut b, ALL);
    for k in ["net", "ipc", "uts", "cgroup"] {
        assert_eq!(inside[k], ns_of("self", k), "{k}");
    }
    for k in ["pid", "mnt"] {
        assert_ne!(inside[k], ns_of("self", k), "{k}");
    }
}

#[test]
fn time_namespace_is_new() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.set_namespace("time", None);
    let inside = container_ns(&h, &mut b, &["time"]);
    assert_ne!(inside["time"], ns_of("self", "time"));
}

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    assert_eq!(h.sh(&mut b, "echo $$"), "1\n");
}

#[test]
fn new_network_namespace_has_only_loopback() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(&mut b, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert_eq!(out, "lo\n");
}

#[test]
fn joins_the_network_namespace_of_a_process() {
    let h = Hullc::new();
    // A helper that holds a fresh netns: unshare execs sleep inside it.
    let mut c = Command::new("unshare");
    c.args(["--net", "sleep", "1000"]);
    let helper = Helper::spawn(c);
    let host_net = ns_of("self", "net");
    let pid = helper.pid().to_string();
    wait_until("helper's netns", Duration::from_secs(10), || {
        fs::read_link(format!("/proc/{pid}/ns/net"))
            .map(|l| l.to_string_lossy() != host_net)
            .unwrap_or(false)
    });
    let mut b = Bundle::new(&h);
    b.set_namespace("network", Some(&format!("/proc/{pid}/ns/net")));
    let inside = container_ns(&h, &mut b, &["net"]);
    assert_eq!(inside["net"], ns_of(&pid, "net"));
}

#[test]
fn joins_a_bind_mounted_network_namespace() {
    let h = Hullc::new();
    let file = h.scratch().join("netns");
    fs::write(&file, "").unwrap();
    let _guard = MountGuard(file.clone());
    let st = Command::new("unshare")
        .arg(format!("--net={}", file.display()))
        .arg("true")
        .status()
        .unwrap();
    assert!(st.success(), "unshare --net=FILE");
    let ino = fs::metadata(&file).unwrap().ino();
    let mut b = Bundle::new(&h);
    b.set_namespace("network", Some(file.to_str().unwrap()));
    let inside = container_ns(&h, &mut b, &["net"]);
    assert_eq!(inside["net"], format!("net:[{ino}]"));
}

#[test]
fn joins_the_uts_namespace_of_a_process() {
    let h = Hullc::new();
    let mut c = Command::new("unshare");
    c.args(["--uts", "sh", "-c", "hostname joined-uts; exec sleep 1000"]);
    let helper = Helper::spawn(c);
    let pid = helper.pid().to_string();
    let host_uts = ns_of("self", "uts");
    wait_until("helper's uts ns", Duration::from_secs(10), || {
        fs::read_link(format!("/proc/{pid}/ns/uts"))
            .map(|l| l.to_string_lossy() != host_uts)
            .unwrap_or(false)
            && fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00"
    });
    let mut b = Bundle::new(&h);
    b.set_namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    b.config.as_object_mut().unwrap().remove("hostname");
    assert_eq!(h.sh(&mut b, "hostname"), "joined-uts\n");
}

#[test]
fn hostname_is_applied() {
    let h = Hullc::new();
    let before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut b = Bundle::new(&h);
    b.config["hostname"] = json!("hull-test-host");
    assert_eq!(h.sh(&mut b, "hostname"), "hull-test-host\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        before
    );
}

#[test]
fn domainname_is_applied() {
    let h = Hullc::new();
    let before = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let mut b = Bundle::new(&h);
    b.config["domainname"] = json!("example.test");
    assert_eq!(
        h.sh(&mut b, "cat /proc/sys/kernel/domainname"),
        "example.test\n"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        before
    );
}

#[test]
fn sysctl_in_a_new_network_namespace() {
    let h = Hullc::new();
    let before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want = if before.trim() == "1" { "0" } else { "1" };
    let mut b = Bundle::new(&h);
    // The spec's default readonlyPaths (/proc/sys) stay: sysctls are
    // written before they take effect.
    b.config["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": want });
    assert_eq!(
        h.sh(&mut b, "cat /proc/sys/net/ipv4/ip_forward"),
        format!("{want}\n")
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before,
        "the host's value changed"
    );
}

#[test]
fn sysctl_in_a_new_ipc_namespace() {
    let h = Hullc::new();
    let before = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let mut b = Bundle::new(&h);
    b.config["linux"]["sysctl"] = json!({ "kernel.shmmax": "123456789" });
    assert_eq!(h.sh(&mut b, "cat /proc/sys/kernel/shmmax"), "123456789\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        before
    );
}

/// The same as the two tests above without /proc/sys in readonlyPaths: the
/// sysctl writing itself works, only its order against readonlyPaths is off.
#[test]
fn sysctls_apply_when_proc_sys_is_writable() {
    let h = Hullc::new();
    let before = fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let before_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let want_fwd = if before_fwd.trim() == "1" { "0" } else { "1" };
    let mut b = Bundle::new(&h);
    b.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p != "/proc/sys");
    b.config["linux"]["sysctl"] = json!({
        "kernel.shmmax": "123456789",
        "net.ipv4.ip_forward": want_fwd,
    });
    assert_eq!(
        h.sh(
            &mut b,
            "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward"
        ),
        format!("123456789\n{want_fwd}\n")
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        before
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before_fwd
    );
}

#[test]
fn cgroup_namespace_is_rooted_at_the_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // Every hierarchy's path is "/" inside a cgroup namespace made after
    // the container joined its own cgroup.
    let out = h.sh(&mut b, "cat /proc/self/cgroup");
    assert!(!out.is_empty());
    for l in out.lines() {
        assert!(l.ends_with(":/"), "{l:?} in\n{out}");
    }
}

#[test]
fn without_cgroup_namespace_the_container_sees_its_cgroup_path() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.remove_namespace("cgroup");
    let id = h.id("cgpath");
    b.args(&["cat", "/proc/self/cgroup"]);
    let out = h.run(&b, &id, &[]).ok().stdout;
    // The container's cgroup is named after its id by default.
    assert!(out.lines().any(|l| l.ends_with(&format!("/{id}"))), "{out}");
}
