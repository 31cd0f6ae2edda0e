//! `run --init`, `--sysctl`, `--shm-size`, `--group-add`, `--oom-score-adj`, `--pid`, `--ipc`,
//! `--uts`, `--cgroupns`, `--dns*` end to end as root, looked at from inside the container;
//! bad values exit 125 naming the flag and leave nothing. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::time::{Duration, Instant};

use ctr::{text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/flags:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

/// `run --rm --network none FLAGS IMG sh -c SCRIPT`: its stdout.
fn inside(e: &Env, flags: &[&str], script: &str) -> String {
    let mut a = vec!["run", "--rm", "--network", "none"];
    a.extend_from_slice(flags);
    a.extend_from_slice(&[IMG, "sh", "-c", script]);
    e.ok(&a)
}

fn fails(e: &Env, flags: &[&str], names: &str) {
    let mut a = vec!["run", "--rm", "--network", "none"];
    a.extend_from_slice(flags);
    a.extend_from_slice(&[IMG, "true"]);
    let o = e.hull(&a);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{flags:?}: {err}");
    assert!(err.contains(names), "{flags:?}: {err}");
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn init_forwards_signals_and_reaps_zombies() {
    let e = env();
    // sleep as PID 1 ignores SIGTERM (no handler, init's protection): stop would wait the
    // whole -t. Under tini it dies at once and tini exits 128+15.
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--init",
        "--name",
        "i",
        IMG,
        "sh",
        "-c",
        "sh -c 'sleep 1 &'; exec sleep 1000",
    ]);
    assert!(e
        .ok(&["exec", "i", "cat", "/proc/1/cmdline"])
        .starts_with("/sbin/docker-init\0--\0"));
    // The orphaned `sleep 1` is reaped by PID 1 once it exits: no zombie.
    std::thread::sleep(Duration::from_secs(3));
    let states = e.ok(&["exec", "i", "sh", "-c", "cat /proc/[0-9]*/stat"]);
    assert!(!states.contains(") Z "), "zombie left:\n{states}");
    let t = Instant::now();
    e.ok(&["stop", "-t", "30", "i"]);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(e.ok(&["wait", "i"]).trim(), "143");
    e.ok(&["rm", "i"]);
    e.assert_clean();
}

#[test]
fn process_and_namespace_flags_seen_inside() {
    let e = env();
    let out = inside(&e, &["--sysctl", "kernel.shmmax=123456", "--shm-size", "128m", "--group-add", "50",
        "--group-add", "web", "--oom-score-adj", "500"],
        "cat /proc/sys/kernel/shmmax; grep ' /dev/shm ' /proc/mounts; id -G; cat /proc/self/oom_score_adj");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "123456");
    assert!(l[1].contains("size=131072k"), "{out}");
    assert_eq!(l[2], "0 50 1000");
    assert_eq!(l[3], "500");
    let dns = inside(
        &e,
        &[
            "--dns",
            "192.0.2.1",
            "--dns",
            "192.0.2.2",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
        ],
        "cat /etc/resolv.conf",
    );
    assert_eq!(
        dns,
        "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch example.org\noptions ndots:2\n"
    );

    // Host namespaces: the same as ours.
    let me = std::process::id().to_string();
    let host = inside(
        &e,
        &[
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "--cgroupns",
            "host",
        ],
        "for n in pid ipc uts cgroup; do busybox readlink /proc/self/ns/$n; done",
    );
    let want: String = ["pid", "ipc", "uts", "cgroup"]
        .iter()
        .map(|k| format!("{}\n", ns(&me, k)))
        .collect();
    assert_eq!(host, want);
    let private = inside(
        &e,
        &[],
        "busybox readlink /proc/self/ns/pid; busybox readlink /proc/self/ns/ipc",
    );
    assert!(
        !private.contains(&ns(&me, "pid")) && !private.contains(&ns(&me, "ipc")),
        "{private}"
    );

    // Another container's namespaces.
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "a",
        IMG,
        "sleep",
        "1000",
    ]);
    let insp: Value = serde_json::from_str(&e.ok(&["inspect", "a"])).unwrap();
    let a_pid = insp[0]["State"]["Pid"].as_u64().unwrap().to_string();
    let joined = inside(&e, &["--pid", "container:a", "--ipc", "container:a"],
        "busybox readlink /proc/self/ns/pid; busybox readlink /proc/self/ns/ipc; cat /proc/1/cmdline");
    assert_eq!(
        joined,
        format!(
            "{}\n{}\nsleep\u{0}1000\u{0}",
            ns(&a_pid, "pid"),
            ns(&a_pid, "ipc")
        )
    );

    // Bad values: 125 naming the flag, nothing made.
    fails(&e, &["--pid", "hostile"], "--pid");
    fails(&e, &["--ipc", "container:"], "--ipc");
    fails(&e, &["--uts", "container:a"], "--uts");
    fails(&e, &["--cgroupns", "shared"], "--cgroupns");
    fails(&e, &["--sysctl", "vm.swappiness=1"], "vm.swappiness");
    fails(&e, &["--shm-size", "lots"], "--shm-size");
    fails(&e, &["--oom-score-adj", "2000"], "--oom-score-adj");
    fails(&e, &["--group-add", "nogroup"], "nogroup");
    fails(&e, &["--pid", "container:nosuch"], "nosuch");
    fails(&e, &["--uts", "host", "--hostname", "x"], "--uts host");
    e.ok(&["rm", "-f", "a"]);
    e.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "stopped",
        IMG,
        "true",
    ]);
    fails(&e, &["--pid", "container:stopped"], "not running");
    e.ok(&["rm", "stopped"]);
    e.assert_clean();
}

#[test]
fn log_driver_none_keeps_nothing_and_log_opts_are_refused() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--log-driver",
        "none",
        "--name",
        "n",
        IMG,
        "sh",
        "-c",
        "echo hi; echo err >&2",
    ]);
    assert_eq!(e.ok(&["wait", "n"]).trim(), "0");
    let log = e
        .root
        .path()
        .join("ctr")
        .join(id.trim())
        .join("container.log");
    assert!(
        std::fs::metadata(&log).map_or(0, |m| m.len()) == 0,
        "log written"
    );
    let o = e.hull(&["logs", "n"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o).1.contains("does not support reading"),
        "{}",
        text(&o).1
    );
    // A terminal's output is drained too: a chatty -t container runs to its end.
    e.ok(&[
        "run",
        "-dt",
        "--network",
        "none",
        "--log-driver",
        "none",
        "--name",
        "chatty",
        IMG,
        "sh",
        "-c",
        "seq 1 200000",
    ]);
    let o = std::process::Command::new("timeout")
        .args(["60", ctr::HULL, "--root"])
        .arg(e.root.path())
        .args(["wait", "chatty"])
        .envs(e.envs())
        .output()
        .unwrap();
    assert_eq!(text(&o).0.trim(), "0", "{o:?}");
    fails(&e, &["--log-driver", "syslog"], "--log-driver");
    fails(&e, &["--log-opt", "max-size=1q"], "--log-opt");
    let o = e.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--log-driver",
        "none",
        IMG,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("needs -d"), "{}", text(&o).1);
    e.ok(&["rm", "n", "chatty"]);
    e.assert_clean();
}
