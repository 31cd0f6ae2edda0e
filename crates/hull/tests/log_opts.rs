//! `--log-opt max-size=/max-file=`: the shim rotates the json-file log as docker does, and
//! `hull logs` (also `-f`) reads the rotated files in order. Bad options exit 125.
//! `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::process::Stdio;

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/logopts:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

/// The numbers of `lineN` lines, checked consecutive.
fn numbers(out: &str) -> Vec<u32> {
    let n: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line").unwrap().parse().unwrap())
        .collect();
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "gap or disorder: {n:?}"
    );
    n
}

#[test]
fn rotates_and_logs_reads_in_order() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "big",
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=3",
        IMG,
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo line$i; done",
    ]);
    assert_eq!(e.ok(&["wait", "big"]).trim(), "0");
    let dir = e.root.path().join("ctr").join(id.trim());
    let log = dir.join("container.log");
    for f in [
        log.clone(),
        dir.join("container.log.1"),
        dir.join("container.log.2"),
    ] {
        let len = std::fs::metadata(&f).unwrap().len();
        // At most one line (some 90 bytes here) past max-size, as docker's.
        assert!(len <= 10 * 1024 + 200, "{f:?}: {len} bytes");
    }
    assert!(!dir.join("container.log.3").exists());
    let all = numbers(&e.ok(&["logs", "big"]));
    assert_eq!(all.last(), Some(&3000));
    assert!(all[0] > 1, "nothing rotated away");
    assert!(all.len() > 200, "{} lines kept", all.len());
    assert_eq!(
        numbers(&e.ok(&["logs", "--tail", "3", "big"])),
        [2998, 2999, 3000]
    );
    // inspect names the log options like docker.
    let insp: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "big"])).unwrap();
    assert_eq!(
        insp[0]["HostConfig"]["LogConfig"]["Config"]["max-size"],
        "10k"
    );
}

#[test]
fn follow_goes_across_rotations() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "slow",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=3",
        IMG,
        "sh",
        "-c",
        "sleep 1; i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo line$i; \
         [ $((i % 5)) = 0 ] && sleep 0.05; done",
    ]);
    // Following from (nearly) the start; the container rotates its log some 20 times.
    let o = e
        .cmd(&["logs", "-f", "slow"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    let n = numbers(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(n.last(), Some(&400));
    assert_eq!(n.first(), Some(&1), "follow started after the first line");
}

#[test]
fn bad_log_opts_exit_125() {
    let e = env();
    for (opt, names) in [
        ("max-size=abc", "max-size=abc"),
        ("max-file=0", "max-file=0"),
        ("colour=red", "colour"),
        ("max-size=0", "max-size=0"),
    ] {
        let o = e.hull(&["run", "--network", "none", "--log-opt", opt, IMG, "true"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{opt}: {err}");
        assert!(err.contains(names), "{opt}: {err}");
    }
    let o = e.hull(&[
        "create",
        "--network",
        "none",
        "--log-opt",
        "max-file=2",
        IMG,
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("max-size"), "{:?}", text(&o));
    // Nothing was made.
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
}
