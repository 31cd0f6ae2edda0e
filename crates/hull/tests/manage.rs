//! `rename`, `update`, `container prune`, `ps --filter/--format`, `version`, `info` end to
//! end as root. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::path::PathBuf;

use ctr::{text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/manage:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

fn fails(e: &Env, args: &[&str], names: &str) {
    let o = e.hull(args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
    assert!(err.contains(names), "{args:?}: {err}");
}

fn run(e: &Env, name: &str, extra: &[&str], cmd: &[&str]) -> String {
    let mut a = vec!["run", "-d", "--network", "none", "--name", name];
    a.extend_from_slice(extra);
    a.push(IMG);
    a.extend_from_slice(cmd);
    e.ok(&a).trim().to_string()
}

/// The file `file` of controller `ctrl` in the cgroup of process `pid`.
fn cgroup_file(pid: u64, ctrl: &str, v1: &str, v2: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let f: Vec<&str> = l.splitn(3, ':').collect();
        if f[1].split(',').any(|c| c == ctrl) {
            return PathBuf::from(format!("/sys/fs/cgroup/{}{}/{v1}", f[1], f[2]));
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    PathBuf::from(format!("/sys/fs/cgroup{path}/{v2}"))
}

fn read(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

#[test]
fn rename_update_and_prune() {
    let e = env();
    // Not a hex string: `inspect` also takes container and image id prefixes.
    run(
        &e,
        "first",
        &["--memory", "64m", "--pids-limit", "40"],
        &["sleep", "1000"],
    );
    // rename: the new name finds it, the old one no longer; a taken or bad name is refused.
    e.ok(&["rename", "first", "b"]);
    assert_eq!(e.ok(&["ps", "--format", "{{.Names}}"]), "b\n");
    fails(&e, &["inspect", "first"], "first");
    run(&e, "c", &[], &["sleep", "1000"]);
    fails(&e, &["rename", "b", "c"], "c");
    fails(&e, &["rename", "b", "bad/name"], "bad/name");

    // update: live in the cgroup and in inspect.
    let insp: Value = serde_json::from_str(&e.ok(&["inspect", "b"])).unwrap();
    let pid = insp[0]["State"]["Pid"].as_u64().unwrap();
    let mem = cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max");
    let pids = cgroup_file(pid, "pids", "pids.max", "pids.max");
    assert_eq!(read(&mem), (64u64 << 20).to_string());
    e.ok(&["update", "--memory", "96m", "--pids-limit", "77", "b"]);
    assert_eq!(read(&mem), (96u64 << 20).to_string());
    assert_eq!(read(&pids), "77");
    let insp: Value = serde_json::from_str(&e.ok(&["inspect", "b"])).unwrap();
    assert_eq!(insp[0]["HostConfig"]["Memory"].as_i64(), Some(96 << 20));
    assert_eq!(insp[0]["HostConfig"]["PidsLimit"].as_i64(), Some(77));
    // Below the usage: refused, nothing changed. A container holding ~20 MiB in tmpfs.
    run(
        &e,
        "big",
        &["--memory", "64m"],
        &[
            "sh",
            "-c",
            "busybox dd if=/dev/zero of=/dev/shm/x bs=1M count=20 && sleep 1000",
        ],
    );
    let insp: Value = serde_json::from_str(&e.ok(&["inspect", "big"])).unwrap();
    let big = insp[0]["State"]["Pid"].as_u64().unwrap();
    let big_mem = cgroup_file(big, "memory", "memory.limit_in_bytes", "memory.max");
    let usage = cgroup_file(big, "memory", "memory.usage_in_bytes", "memory.current");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while read(&usage).parse::<u64>().unwrap() < 20 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "dd did not fill the tmpfs"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    fails(&e, &["update", "--memory", "10m", "big"], "--memory");
    assert_eq!(read(&big_mem), (64u64 << 20).to_string());
    assert!(e
        .ok(&["ps", "--format", "{{.Names}} {{.State}}"])
        .contains("big running"));
    // Bad values name the flag.
    fails(&e, &["update", "--memory", "lots", "b"], "--memory");
    fails(&e, &["update", "--memory", "64m", "nosuch"], "nosuch");

    // prune: only what does not run.
    e.ok(&["create", "--network", "none", "--name", "made", IMG, "true"]);
    run(&e, "done", &[], &["true"]);
    e.ok(&["wait", "done"]);
    let out = e.ok(&["container", "prune", "-f"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 2, "{out}");
    let mut left: Vec<String> = e
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(String::from)
        .collect();
    left.sort();
    assert_eq!(left, ["b", "big", "c"]);
    e.ok(&["rm", "-f", "b", "big", "c"]);
    e.assert_clean();
}

#[test]
fn ps_filters_and_templates() {
    let e = env();
    e.load(
        "hull.test/other:2",
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
    );
    run(
        &e,
        "web-1",
        &["--label", "app=web", "--label", "tier=front"],
        &["sleep", "1000"],
    );
    run(&e, "web-2", &["--label", "app=web"], &["true"]);
    e.ok(&["wait", "web-2"]);
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "db",
        "--label",
        "app=db",
        "hull.test/other:2",
        "sleep",
        "1000",
    ]);
    let names = |f: &[&str]| {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        for x in f {
            a.extend_from_slice(&["--filter", x]);
        }
        let mut v: Vec<String> = e.ok(&a).lines().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["db", "web-1"]);
    assert_eq!(names(&["name=web"]), ["web-1"]);
    // status lists stopped ones without -a; the same key twice is either.
    assert_eq!(names(&["status=exited"]), ["web-2"]);
    assert_eq!(
        names(&["status=exited", "status=running"]),
        ["db", "web-1", "web-2"]
    );
    assert_eq!(names(&["label=app=web", "status=running"]), ["web-1"]);
    assert_eq!(names(&["label=tier"]), ["web-1"]);
    assert_eq!(names(&["ancestor=hull.test/other"]), ["db"]);
    assert_eq!(names(&["ancestor=hull.test/other:2"]), ["db"]);
    assert_eq!(
        names(&["ancestor=hull.test/manage:1", "status=exited"]),
        ["web-2"]
    );
    fails(&e, &["ps", "--filter", "colour=red"], "colour");
    fails(&e, &["ps", "--filter", "status=sleepy"], "sleepy");

    // Templates: fields, labels, json, table header and alignment.
    let id = e.ok(&["ps", "-q", "--filter", "name=db"]);
    let out = e.ok(&[
        "ps",
        "--filter",
        "name=db",
        "--format",
        "{{.ID}}|{{.Image}}|{{.Status}}|{{.Label \"app\"}}|{{json .Names}}",
    ]);
    let f: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(f[0], id.trim());
    assert_eq!(f[1], "hull.test/other:2");
    assert!(f[2].starts_with("Up "), "{out}");
    assert_eq!(&f[3..], ["db", "\"db\""]);
    let t = e.ok(&[
        "ps",
        "-a",
        "--filter",
        "name=web",
        "--format",
        "table {{.Names}}\\t{{.Status}}\\t{{.Ports}}",
    ]);
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("NAMES     STATUS"), "{t}");
    assert_eq!(lines.len(), 3, "{t}");
    let col = lines[0].find("STATUS").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with("Up ") || l[col..].starts_with("Exited (0)")),
        "{t}"
    );
    fails(&e, &["ps", "--format", "{{range .Names}}x{{end}}"], "range");
    fails(&e, &["ps", "--format", "{{.Nope}}"], "Nope");
    e.ok(&["rm", "-f", "web-1", "web-2", "db"]);
    e.assert_clean();
}

#[test]
fn version_and_info() {
    let e = env();
    let v = e.ok(&["version"]);
    assert!(
        v.contains("Client:") && v.contains(env!("CARGO_PKG_VERSION")) && v.contains("hullc"),
        "{v}"
    );
    let j: Value = serde_json::from_str(&e.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(j["Client"]["Version"], env!("CARGO_PKG_VERSION"));
    run(&e, "i", &[], &["sleep", "1000"]);
    e.ok(&["create", "--network", "none", IMG, "true"]);
    let j: Value = serde_json::from_str(&e.ok(&["info", "--format", "json"])).unwrap();
    assert_eq!(
        (
            j["Containers"].as_u64(),
            j["Running"].as_u64(),
            j["Stopped"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(j["Images"].as_u64(), Some(1));
    assert!(
        ["1", "2"]
            .iter()
            .any(|v| j["Cgroup Version"].as_str().unwrap().starts_with(v)),
        "{j}"
    );
    let t = e.ok(&["info"]);
    assert!(
        t.contains("Running:") && t.contains("Kernel Version:"),
        "{t}"
    );
    e.ok(&["rm", "-f", "i"]);
    let all = e.ok(&["ps", "-aq"]);
    for id in all.lines() {
        e.ok(&["rm", id]);
    }
    e.assert_clean();
}

/// `update` replaces the bundle's config.json and the record by renaming a complete new file
/// over them (a reader, the shim at the next start, never sees a half-written one), and
/// leaves no temp file behind.
#[test]
fn update_replaces_config_and_record_atomically() {
    use std::os::unix::fs::MetadataExt;
    let e = env();
    e.ok(&["create", "--network", "none", "--name", "u", IMG, "true"]);
    let v: Value = serde_json::from_str(&e.ok(&["inspect", "u"])).unwrap();
    let dir = e.root.path().join("ctr").join(v[0]["Id"].as_str().unwrap());
    let names = || {
        let mut n: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let ino = |f: &str| std::fs::metadata(dir.join(f)).unwrap().ino();
    let before = names();
    let (config, record) = (ino("config.json"), ino("container.json"));
    e.ok(&["update", "--memory", "64m", "u"]);
    assert_ne!(ino("config.json"), config, "config.json rewritten in place");
    assert_ne!(ino("container.json"), record, "record rewritten in place");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(names(), before, "temp files left in {}", dir.display());
    e.ok(&["rm", "u"]);
}
