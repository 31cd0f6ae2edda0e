//! What engines parse out of runc, compared with runc (Debian's package) on
//! the same bundles (issue 17): the error text of a program that cannot
//! run (docker picks exit status 127/126 from its wording), the `time`
//! field of `--log-format json` lines (containerd parses it as RFC 3339),
//! `kill --all` of a stopped container (containerd's shim sends it at every
//! task exit), and the `--version` lines dockerd reads for `docker info`.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Bundle, Hullc, HULLC};
use serde_json::{json, Value};

/// `RUNTIME --root R --log L --log-format json run` of the bundle:
/// (exit code, stderr, the log's lines as JSON).
fn run_logged(
    runtime: &str,
    root: &Path,
    b: &Bundle,
    id: &str,
) -> (Option<i32>, String, Vec<Value>) {
    b.save();
    let log = root.with_extension(format!("{id}.log"));
    let o = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(b.path())
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{runtime}: {e}"));
    let _ = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(["delete", "--force", id])
        .output();
    let lines = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{runtime} log line {l:?}: {e}"))
        })
        .collect();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into(),
        lines,
    )
}

/// The exit status docker gives a container whose start failed with
/// `msg` (moby's translateContainerdStartErr: case-sensitive matches).
fn docker_status(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        126
    } else {
        125
    }
}

/// An RFC 3339 time as logrus writes it: `2006-01-02T15:04:05Z07:00`.
fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (t.ends_with('Z') || t[19..].contains(['+', '-']))
}

/// The last error line of a runtime's JSON log, checked for runc's shape.
fn logged_error(runtime: &str, lines: &[Value]) -> String {
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("{runtime} logged nothing"));
    assert_eq!(last["level"], "error", "{runtime}: {last}");
    let time = last["time"].as_str().unwrap_or_default();
    assert!(is_rfc3339(time), "{runtime}: time {time:?} is not RFC 3339");
    last["msg"].as_str().unwrap().to_string()
}

/// A program that cannot run fails hullc with runc's words for it: the
/// text after `exec: ` that docker and podman match, in the stderr and in
/// the JSON log (whose time containerd can parse), and so the same exit
/// status under docker.
#[test]
fn exec_failures_read_like_runc() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::write(b.rootfs().join("bin/noexec"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        b.rootfs().join("bin/noexec"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::create_dir(b.rootfs().join("adir")).unwrap();
    let cases = [
        ("missing on $PATH", "no-such-program"),
        ("missing path", "/bin/no-such-program"),
        ("not executable", "/bin/noexec"),
        ("a directory", "/adir"),
        ("a directory on $PATH", "adir"),
    ];
    for (what, arg0) in cases {
        b.args(&[arg0]);
        let id = h.id("msg");
        h.track(&id);
        let (rc, runc_err, runc_log) = run_logged("runc", &h.scratch().join("runc"), &b, &id);
        assert_ne!(rc, Some(0), "{what}: runc ran it");
        let (hc, hullc_err, hullc_log) = run_logged(HULLC, h.root(), &b, &id);
        assert_eq!(hc, Some(1), "{what}: {hullc_err}");
        let runc_msg = logged_error("runc", &runc_log);
        let hullc_msg = logged_error("hullc", &hullc_log);
        let tail = runc_msg
            .split_once("exec: ")
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{what}: runc said {runc_msg:?}"));
        for (src, text) in [("stderr", &hullc_err), ("log", &hullc_msg)] {
            assert!(
                text.contains(tail),
                "{what}: hullc's {src} {text:?} lacks runc's {tail:?} ({runc_err})"
            );
        }
        assert_eq!(
            docker_status(&hullc_msg),
            docker_status(&runc_msg),
            "{what}"
        );
        assert_ne!(docker_status(&hullc_msg), 125, "{what}: {hullc_msg}");
    }
}

/// A cwd that is a file: both refuse it with Go's errno text.
#[test]
fn bad_cwd_reads_like_runc() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["cwd"] = json!("/etc/passwd");
    let id = h.id("cwd");
    h.track(&id);
    let (rc, _, runc_log) = run_logged("runc", &h.scratch().join("runc"), &b, &id);
    let (hc, hullc_err, hullc_log) = run_logged(HULLC, h.root(), &b, &id);
    assert_ne!(rc, Some(0));
    assert_eq!(hc, Some(1), "{hullc_err}");
    let runc_msg = logged_error("runc", &runc_log);
    let hullc_msg = logged_error("hullc", &hullc_log);
    assert!(runc_msg.contains("not a directory"), "{runc_msg}");
    assert!(
        hullc_msg.contains("process.cwd") && hullc_msg.contains("not a directory"),
        "{hullc_msg}"
    );
    assert_eq!(docker_status(&hullc_msg), docker_status(&runc_msg));
}

/// (exit code, stderr) of `RUNTIME --root R ARGS`.
fn cmd(runtime: &str, root: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(runtime)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into())
}

/// After the program exits: `kill --all` succeeds (containerd's shim sends
/// it at every task exit; with the host's pid namespace it reaches what is
/// left), plain `kill` is refused, as runc does.
#[test]
fn kill_of_a_stopped_container_is_runcs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    b.save();
    let bundle = b.path().to_str().unwrap();
    let runc_root = h.scratch().join("runc");
    let hullc_root = h.root().to_path_buf();
    for (rt, root) in [("runc", &runc_root), (HULLC, &hullc_root)] {
        let id = h.id("killst");
        h.track(&id);
        let (c, e) = cmd(rt, root, &["run", "--detach", "--bundle", bundle, &id]);
        assert_eq!(c, Some(0), "{rt}: {e}");
        common::wait_until(
            "the container to stop",
            std::time::Duration::from_secs(20),
            || {
                let o = Command::new(rt)
                    .arg("--root")
                    .arg(root)
                    .args(["state", &id])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).contains("\"stopped\"")
            },
        );
        for (args, want) in [(&["kill", "--all"][..], Some(0)), (&["kill"][..], Some(1))] {
            let mut a = args.to_vec();
            a.extend([id.as_str(), "KILL"]);
            let (c, e) = cmd(rt, root, &a);
            assert_eq!(c, want, "{rt} {a:?}: {e}");
        }
        let (c, e) = cmd(rt, root, &["delete", &id]);
        assert_eq!(c, Some(0), "{rt}: {e}");
    }
}

/// dockerd's parseRuntimeVersion (moby daemon/info_unix.go): a line with
/// "version" gives the runtime's name (before) and version (after the last
/// one), a `commit:` line the commit.
fn parse_runtime_version(v: &str) -> (String, String, String) {
    let (mut runtime, mut version, mut commit) = (String::new(), String::new(), String::new());
    for line in v.trim().lines() {
        if line.contains("version") {
            let s: Vec<&str> = line.split("version").collect();
            runtime = s[0].trim().to_string();
            version = s[s.len() - 1].trim().to_string();
        } else if let Some(c) = line.strip_prefix("commit:") {
            commit = c.trim().to_string();
        }
    }
    (runtime, version, commit)
}

/// `hullc --version` has runc's lines: dockerd reads the name, version and
/// commit from it, and `spec:` is the runtime-spec version `hullc spec`
/// writes.
#[test]
fn version_reads_like_runc() {
    let h = Hullc::new();
    let runc = Command::new("runc").arg("--version").output().unwrap();
    let runc = String::from_utf8_lossy(&runc.stdout).to_string();
    let keys = |v: &str| -> Vec<String> {
        v.lines()
            .map(|l| l.split([':', ' ']).next().unwrap_or_default().to_string())
            .collect()
    };
    for flag in ["--version", "-v"] {
        let out = h.raw(&[flag]).ok().stdout;
        let (runtime, version, commit) = parse_runtime_version(&out);
        assert_eq!(runtime, "hullc", "{out}");
        assert_eq!(version, env!("CARGO_PKG_VERSION"), "{out}");
        assert!(!commit.is_empty(), "{out}");
        // After the first line (`NAME version X`), the same keys as runc's.
        assert!(out.starts_with("hullc version "), "{out}");
        let runc_keys = keys(&runc);
        for k in keys(&out).into_iter().skip(1) {
            assert!(
                runc_keys.contains(&k),
                "{k:?} is not a line of runc's: {runc}"
            );
        }
        let spec_dir = tempfile::tempdir().unwrap();
        h.raw(&["spec", "--bundle", spec_dir.path().to_str().unwrap()])
            .ok();
        let config: Value =
            serde_json::from_slice(&fs::read(spec_dir.path().join("config.json")).unwrap())
                .unwrap();
        let spec_line = format!("spec: {}", config["ociVersion"].as_str().unwrap());
        assert!(out.lines().any(|l| l == spec_line), "{out}");
    }
}
