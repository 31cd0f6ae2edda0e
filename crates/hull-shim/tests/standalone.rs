//! The shim without containerd, as `hull` runs it: `start` in the bundle dir
//! with no `TTRPC_ADDRESS` and the socket in a directory of our own, then the
//! Task API over ttrpc with containerd-shim-protos' client: create, start,
//! wait (exit status), delete, shutdown. Checks that nothing is left.
//!
//! Needs root and `busybox-static`; skips (with a message) without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::Options;
use containerd_shim::protos::shim::shim_ttrpc::TaskClient;
use containerd_shim::protos::ttrpc::context::Context;
use containerd_shim::protos::ttrpc::Client;
use containerd_shim::protos::{api, types::task::Status};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hull-v2");

/// The shim under test: `HULL_SHIM_BIN` (e.g. a release build, to measure
/// its memory) or the one cargo built for this test.
fn shim() -> PathBuf {
    std::env::var_os("HULL_SHIM_BIN").map_or_else(|| PathBuf::from(SHIM), PathBuf::from)
}

/// The shim's memory, printed (`--nocapture`) while its container runs.
fn print_rss(pid: i32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let keep = ["VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"];
    let lines: Vec<_> = status
        .lines()
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    eprintln!(
        "standalone shim {pid} with a running container: {}",
        lines.join(", ")
    );
    // Rss per mapped file (binary, libc, ld.so) and anonymous.
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut per: std::collections::BTreeMap<String, u64> = Default::default();
    let mut name = String::new();
    for l in smaps.lines() {
        let f: Vec<_> = l.split_whitespace().collect();
        if f.first().is_some_and(|a| a.contains('-')) && f.len() >= 5 {
            name = f.get(5).map_or("[anon]".into(), |n| n.to_string());
        } else if f.first() == Some(&"Rss:") {
            *per.entry(name.clone()).or_default() += f[1].parse::<u64>().unwrap_or(0);
        }
    }
    for (n, kib) in per.iter().filter(|(_, k)| **k > 0) {
        eprintln!("  {kib:>6} kB  {n}");
    }
}

fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return true;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: needs busybox-static (/bin/busybox)");
        return true;
    }
    false
}

fn bundle(dir: &Path, hullc: &Path, args: &[&str]) -> PathBuf {
    let b = dir.join("bundle");
    let rootfs = b.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in ["sh", "echo", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let st = Command::new(hullc)
        .arg("spec")
        .arg("--bundle")
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success(), "hullc spec");
    let p = b.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["terminal"] = serde_json::json!(false);
    spec["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    std::fs::write(&p, spec.to_string()).unwrap();
    b
}

fn proc_cmdline_has(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn standalone_shim_runs_a_task_over_ttrpc() {
    if skip() {
        return;
    }
    let hullc = common::hullc_dir(SHIM).join("hullc");
    let tmp = tempfile::Builder::new()
        .prefix("hull-shim-sa")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let id = format!("sa{}", std::process::id());
    let ns = "hulltest";
    let b = bundle(
        dir,
        &hullc,
        &["sh", "-c", "echo hello from $0; sleep 3; exit 3"],
    );
    let sockdir = dir.join("s");
    let state_root = dir.join("state");
    let stdout = dir.join("stdout");
    std::fs::write(&stdout, b"").unwrap();
    // Logs: the shim writes to `log` in the bundle when it can open it.
    std::fs::write(b.join("log"), b"").unwrap();

    // `start`: cwd = bundle; prints the address once the shim serves.
    let out = Command::new(shim())
        .args(["-namespace", ns, "-id", &id, "-address", "", "start"])
        .current_dir(&b)
        .env_remove("TTRPC_ADDRESS")
        .env("HULL_SHIM_SOCKET_DIR", &sockdir)
        .env("HULLC", &hullc)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let address = String::from_utf8(out.stdout).unwrap();
    assert!(
        address.starts_with(&format!("unix://{}/", sockdir.display())),
        "{address}"
    );
    let shim_pids = proc_cmdline_has(&format!("{}/", sockdir.display()));
    assert_eq!(shim_pids.len(), 1, "one serving shim: {shim_pids:?}");

    let client = TaskClient::new(Client::connect(&address).unwrap());
    let ctx = || Context::default();

    let opts = Options {
        binary_name: hullc.display().to_string(),
        root: state_root.display().to_string(),
        ..Default::default()
    };
    let options = Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: opts.write_to_bytes().unwrap(),
        ..Default::default()
    };
    let created = client
        .create(
            ctx(),
            &api::CreateTaskRequest {
                id: id.clone(),
                bundle: b.display().to_string(),
                stdout: stdout.display().to_string(),
                options: MessageField::some(options),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(created.pid > 0);
    let st = client
        .state(
            ctx(),
            &api::StateRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(st.status(), Status::CREATED);

    let started = client
        .start(
            ctx(),
            &api::StartRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(started.pid, created.pid);
    // Idle for a moment (the shim trims its file pages at its first idle
    // tick, within a second).
    std::thread::sleep(Duration::from_millis(1600));
    print_rss(shim_pids[0]);

    let waited = client
        .wait(
            ctx(),
            &api::WaitRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(waited.exit_status, 3);

    let deleted = client
        .delete(
            ctx(),
            &api::DeleteRequest {
                id: id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(deleted.exit_status, 3);
    // The output copier has finished by the time Delete answers.
    assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "hello from sh\n");

    client
        .shutdown(ctx(), &api::ShutdownRequest::default())
        .unwrap_or_default();
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proc_cmdline_has(&format!("{}/", sockdir.display())).is_empty() {
        assert!(Instant::now() < deadline, "shim did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing left: no socket, no hullc state, no mount on the rootfs.
    let left: Vec<_> = std::fs::read_dir(&sockdir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sockets left: {left:?}");
    let state_left: Vec<_> = std::fs::read_dir(state_root.join(ns))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(state_left.is_empty(), "hullc state left: {state_left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "mounts left under {}",
        dir.display()
    );
}
