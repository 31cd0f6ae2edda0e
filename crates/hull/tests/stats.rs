//! `hull stats` end to end as root: the figures against the container's cgroup files
//! (memory limit, pids), CPU % of a busy container above an idle one, a stopped
//! container's zero row, the table, and an unknown name. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::path::PathBuf;

use ctr::{text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/stats:1";

/// The directory of `controller` for process `pid` (v1 hierarchy, else the v2 one).
fn cgroup_dir(pid: u64, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrls.split(',').any(|c| c == controller) {
            let p = PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}"));
            if p.exists() {
                return p;
            }
            // cpu,cpuacct style co-mounts.
            return PathBuf::from(format!("/sys/fs/cgroup/{ctrls}{path}"));
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let unified = if std::path::Path::new("/sys/fs/cgroup/unified").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    PathBuf::from(format!("{unified}{path}"))
}

fn read_u64(p: PathBuf) -> u64 {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn stats(e: &Env, names: &[&str]) -> Vec<Value> {
    let mut args = vec!["stats", "--no-stream", "--format", "json"];
    args.extend_from_slice(names);
    e.ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn stats_match_the_cgroup_files() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "idle",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        IMG,
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & wait",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "busy",
        IMG,
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let insp: Value = serde_json::from_str(&e.ok(&["inspect", "idle"])).unwrap();
    let pid = insp[0]["State"]["Pid"].as_u64().unwrap();
    // Wait until both sleeps run (pids.current counts them).
    let pids_dir = cgroup_dir(pid, "pids");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read_u64(pids_dir.join("pids.current")) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let rows = stats(&e, &["idle", "busy"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let idle = &rows[0];
    assert_eq!(idle["Name"], "idle");
    assert_eq!(
        idle["Raw"]["PIDs"].as_u64(),
        Some(read_u64(pids_dir.join("pids.current")))
    );
    assert_eq!(idle["PIDs"], "3");
    let mem = cgroup_dir(pid, "memory");
    let limit_file = if mem.join("memory.limit_in_bytes").exists() {
        mem.join("memory.limit_in_bytes")
    } else {
        mem.join("memory.max")
    };
    assert_eq!(read_u64(limit_file), 64 << 20);
    assert_eq!(idle["Raw"]["MemLimit"].as_u64(), Some(64 << 20));
    let usage_file = if mem.join("memory.usage_in_bytes").exists() {
        mem.join("memory.usage_in_bytes")
    } else {
        mem.join("memory.current")
    };
    let used = idle["Raw"]["MemUsage"].as_u64().unwrap();
    assert!(
        used > 0 && used <= read_u64(usage_file) + (1 << 20),
        "{idle}"
    );
    assert!(
        idle["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"),
        "{idle}"
    );
    // No network: only loopback, which docker leaves out.
    assert_eq!(idle["NetIO"], "0B / 0B");
    let cpu = |v: &Value| v["Raw"]["CPUPercent"].as_f64().unwrap();
    assert!(cpu(&rows[1]) > 0.5 && cpu(&rows[1]) > cpu(idle), "{rows:?}");

    // The table: docker's columns.
    let table = e.ok(&["stats", "--no-stream", "idle"]);
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    for col in [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
    ] {
        assert!(head.contains(col), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(row.contains("idle") && row.contains("64MiB"), "{table}");
    // Without names: the running containers.
    assert_eq!(stats(&e, &[]).len(), 2);

    // Stopped: a zero row; unknown: exit 125 naming it.
    e.ok(&["kill", "busy"]);
    e.ok(&["wait", "busy"]);
    let rows = stats(&e, &["busy"]);
    assert_eq!(rows[0]["PIDs"], "0", "{rows:?}");
    assert_eq!(stats(&e, &[]).len(), 1);
    let o = e.hull(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("nosuch"), "{}", text(&o).1);
    e.ok(&["rm", "-f", "idle", "busy"]);
    e.assert_clean();
}
