//! Issue 25 (and 24's exit codes): what hull prints and how it exits, as scripts see it.
//! A closed pipe ends every printing command quietly; usage errors exit 125; `--memory`
//! out of range is refused by name; `inspect` has docker's `State.OOMKilled` and `Mounts`;
//! `ps` columns split on runs of spaces.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ctr::{text, Env, HULL};
use serde_json::{json, Value};

const IMG: &str = "hull.test/bb:1";

/// Runs `c` with a stdout whose reader is already gone: the first write gets EPIPE.
fn with_closed_stdout(mut c: Command) -> std::process::Output {
    let (r, w) = nix_pipe();
    drop(r);
    c.stdout(Stdio::from(w)).stderr(Stdio::piped());
    c.output().unwrap()
}

fn nix_pipe() -> (OwnedFd, OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Ended quietly: no panic, nothing on stderr, killed by SIGPIPE like docker (or done).
fn assert_quiet(what: &str, o: &std::process::Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.is_empty(), "{what}: stderr {err:?}");
    assert!(
        o.status.signal() == Some(libc::SIGPIPE) || o.status.success(),
        "{what}: {:?}",
        o.status
    );
}

#[test]
fn closed_pipe_ends_quietly() {
    let e = Env::new();
    // Enough of everything to overflow a pipe (64 KiB).
    let env: Vec<String> = (0..1500)
        .map(|i| format!("V{i}={}", "x".repeat(60)))
        .collect();
    e.load(IMG, json!({"Env": env, "Cmd": ["sh"]}));
    let id = e
        .ok(&[
            "run",
            "-d",
            "--name",
            "talker",
            IMG,
            "sh",
            "-c",
            "seq 1 50000; sleep 1000",
        ])
        .trim()
        .to_string();
    e.ok(&["volume", "create", "vol1"]);
    e.ok(&["network", "create", "net1"]);
    // Wait for the whole output to be in the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !e.ok(&["logs", &id]).contains("\n50000\n") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let cmds: &[&[&str]] = &[
        &["images"],
        &["images", "--format", "json"],
        &["image", "inspect", IMG],
        &["inspect", "talker"],
        &["ps"],
        &["ps", "-a", "--no-trunc"],
        &["ps", "--format", "json"],
        &["logs", "talker"],
        &["logs", "-f", "talker"],
        &["top", "talker"],
        &["network", "ls"],
        &["network", "inspect", "bridge", "net1"],
        &["volume", "ls"],
        &["--help"],
        &["run", "--help"],
        &["--version"],
    ];
    for args in cmds {
        let o = with_closed_stdout(e.cmd(args));
        assert_quiet(&args.join(" "), &o);
    }
    // The way people meet it: a pipe into head.
    for cmd in [
        "image inspect hull.test/bb:1",
        "inspect talker",
        "logs talker",
    ] {
        let script = format!(
            "{HULL} --root {} {cmd} 2>{}/err | head -1 >/dev/null",
            e.root.path().display(),
            e.work.path().display()
        );
        let st = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .envs(e.envs())
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
        let err = std::fs::read_to_string(e.work.path().join("err")).unwrap();
        assert!(err.is_empty(), "{cmd} | head -1: {err:?}");
    }
    e.ok(&["rm", "-f", &id]);
    e.ok(&["network", "rm", "net1"]);
    e.ok(&["volume", "rm", "vol1"]);
    e.assert_clean();
}

#[test]
fn usage_errors_exit_125() {
    let root = tempfile::tempdir().unwrap();
    let hull = |args: &[&str]| {
        Command::new(HULL)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["--no-such-flag"][..],
        &["no-such-command"],
        &[],
        &["run"],
        &["ps", "--format", "xml"],
        &["ps", "extra-arg"],
        &["network"],
        &["logs", "--tail"],
    ] {
        let o = hull(args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {out}{err}");
        assert!(!err.is_empty(), "{args:?}: no message");
    }
    for args in [&["--help"][..], &["--version"], &["ps", "--help"]] {
        let o = hull(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(!o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn memory_limits_in_range() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["true"]}));
    for (v, says) in [
        ("999999999999g", "largest"),
        ("9223372036854775807k", "largest"),
        ("1k", "minimum"),
        ("6291455", "minimum"),
        ("-1m", "expected"),
    ] {
        let flag = format!("--memory={v}");
        let o = e.hull(&["run", "--rm", "--network", "none", &flag, IMG]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{v}: {out}{err}");
        assert!(
            err.contains("--memory") && err.contains(v) && err.contains(says),
            "{v}: {err}"
        );
    }
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--memory",
            "6m",
            IMG,
            "echo",
            "ok"
        ]),
        "ok\n"
    );
    e.assert_clean();
}

#[test]
fn inspect_oom_killed_and_mounts() {
    let e = Env::new();
    e.load(
        IMG,
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh"], "Volumes": {"/data": {}}}),
    );
    // The shell holds 64 MiB of output in a variable: far over its 8 MiB.
    let o = e.hull(&[
        "run",
        "--name",
        "hog",
        "--network",
        "none",
        "--memory",
        "8m",
        IMG,
        "sh",
        "-c",
        "x=$(busybox head -c 67108864 /dev/zero | busybox tr '\\0' a); echo survived",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(137), "{out}{err}");
    let v: Value = serde_json::from_str(&e.ok(&["inspect", "hog"])).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], json!(true), "{}", v[0]["State"]);
    assert_eq!(v[0]["State"]["ExitCode"], json!(137));
    e.ok(&["run", "--name", "fine", "--network", "none", IMG, "true"]);
    let v: Value = serde_json::from_str(&e.ok(&["inspect", "fine"])).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], json!(false));

    let host = e.work.path().to_str().unwrap().to_string();
    e.ok(&[
        "create",
        "--name",
        "m",
        "--network",
        "none",
        "-v",
        &format!("{host}:/b:ro"),
        "-v",
        "named:/n",
        "--mount",
        "type=tmpfs,target=/t",
        IMG,
    ]);
    let v: Value = serde_json::from_str(&e.ok(&["inspect", "m"])).unwrap();
    let mounts = v[0]["Mounts"].as_array().unwrap();
    let by_dest = |d: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == d)
            .unwrap_or_else(|| panic!("no mount on {d}: {mounts:?}"))
    };
    let keys = ["Type", "Source", "Destination", "Mode", "RW", "Propagation"];
    for m in mounts {
        for k in keys {
            assert!(m.get(k).is_some(), "{k} missing in {m}");
        }
    }
    let b = by_dest("/b");
    assert_eq!(
        (&b["Type"], &b["Source"], &b["RW"]),
        (&json!("bind"), &json!(host), &json!(false))
    );
    let n = by_dest("/n");
    assert_eq!(
        (&n["Type"], &n["Name"], &n["Driver"]),
        (&json!("volume"), &json!("named"), &json!("local"))
    );
    assert!(n["Source"]
        .as_str()
        .unwrap()
        .ends_with("/volumes/named/_data"));
    assert_eq!(by_dest("/t")["Type"], json!("tmpfs"));
    let anon = by_dest("/data");
    assert_eq!(
        (&anon["Type"], &anon["RW"]),
        (&json!("volume"), &json!(true))
    );
    assert_eq!(mounts.len(), 4, "{mounts:?}");
    e.ok(&["rm", "-v", "hog", "fine", "m"]);
    e.ok(&["volume", "rm", "named"]);
    e.assert_clean();
}

/// Splits a row as scripts do: on runs of two or more spaces.
fn fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("  ") {
        out.push(&rest[..i]);
        rest = rest[i..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[test]
fn ps_columns_split_on_spaces() {
    let e = Env::new();
    let long = "hull.test/a-rather-long-repository-name/debian:12";
    e.load(long, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    let port = |i: u16| format!("127.0.0.1:{}:80", 30000 + u16::from(e.net.n) * 4 + i);
    let up = e
        .ok(&["run", "-d", "-p", &port(0), long, "sleep", "1000"])
        .trim()
        .to_string();
    let chatty = e
        .ok(&[
            "run",
            "-d",
            "-p",
            &port(1),
            long,
            "sh",
            "-c",
            "while true; do sleep 1; done # a long command line",
        ])
        .trim()
        .to_string();
    // One that exits on its own, unseen by hull until `ps` asks: its record still lists the
    // ports it held.
    let gone = e
        .ok(&[
            "run",
            "-d",
            "--name",
            "gone",
            "-p",
            &port(2),
            long,
            "sh",
            "-c",
            "while [ ! -e /srv/go ]; do sleep 1; done",
        ])
        .trim()
        .to_string();
    let v: Value = serde_json::from_str(&e.ok(&["inspect", "gone"])).unwrap();
    let pid = v[0]["State"]["Pid"].as_u64().unwrap();
    assert!(pid > 0, "{v}");
    let merged = e.root.path().join("containers").join(&gone).join("merged");
    std::fs::write(merged.join("srv/go"), "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "container did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let table = e.ok(&["ps", "-a"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let header = fields(lines[0]);
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{table}"
    );
    let ports_at = lines[0].find("PORTS").unwrap();
    for l in &lines[1..] {
        let f = fields(l);
        assert_eq!(f[1], long, "{table}");
        if l.contains("gone") {
            // Exited: its ports are released and not shown, the column is blank.
            assert_eq!(f.len(), 6, "{table}");
            assert!(f[4].starts_with("Exited (0)"), "{table}");
            assert!(l[ports_at..].trim_start().starts_with("gone"), "{table}");
        } else {
            assert_eq!(f.len(), 7, "{table}");
            assert!(f[4].starts_with("Up"), "{table}");
            assert!(f[5].contains("->80/tcp"), "{table}");
            assert!(f[2].starts_with('"') && f[2].ends_with('"'), "{table}");
            assert!(f[2].chars().count() <= 22, "{table}");
        }
    }
    e.ok(&["rm", "-f", &up, &chatty, "gone"]);
    e.assert_clean();
}
