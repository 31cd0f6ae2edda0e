//! containerd 1.6 (Debian package) end to end: a private containerd (root,
//! state and sockets in a temp dir, CRI off) with `containerd-shim-hull-v2`
//! and `hullc` on its PATH, driven with `ctr`.
//!
//! Needs root, `containerd` (gives ctr and the Go runc shim) and
//! `busybox-static`. hullc is looked up next to the shim binary; when it is
//! missing the test builds it (`cargo build -p hullc`) into the same target
//! dir and profile. Skips (with a message) when root or containerd is missing.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "docker.io/library/hullbox:latest";
const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hull-v2");

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// An OCI image archive with busybox-static as its single layer.
fn busybox_archive(dir: &Path) -> PathBuf {
    let w = dir.join("img");
    let rootfs = w.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(w.join("blobs/sha256")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "sleep", "cat", "ls", "true", "kill", "ps", "tty", "stty",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let blob = |data: &[u8]| -> (String, usize) {
        let tmp = w.join("blob.tmp");
        std::fs::write(&tmp, data).unwrap();
        let hex = sh(&format!("sha256sum {}", tmp.display()))[..64].to_string();
        std::fs::rename(&tmp, w.join("blobs/sha256").join(&hex)).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    sh(&format!(
        "tar --numeric-owner --owner=0 --group=0 -C {} -cf {}/layer.tar .",
        rootfs.display(),
        w.display()
    ));
    let (layer, layer_len) = blob(&std::fs::read(w.join("layer.tar")).unwrap());
    std::fs::remove_file(w.join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (cfg, cfg_len) = blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
    });
    let (man, man_len) = blob(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": man, "size": man_len,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(w.join("index.json"), index.to_string()).unwrap();
    std::fs::write(w.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::remove_dir_all(&rootfs).unwrap();
    let tar = dir.join("busybox.tar");
    sh(&format!(
        "tar -C {} -cf {} index.json oci-layout blobs",
        w.display(),
        tar.display()
    ));
    tar
}

/// Processes whose command line holds all of `needles` (our own shims are
/// recognised by our unique namespace).
fn pids_matching(needles: &[&str]) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into())
            .collect();
        if needles.iter().all(|n| args.iter().any(|a| a == n)) {
            out.push(pid);
        }
    }
    out
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) of a pid we started or identified.
    unsafe { libc::kill(pid, sig) };
}

struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    sock: String,
    ns: String,
}

impl Containerd {
    fn start(bin_dir: &Path) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("hull-shim-ctd")
            .tempdir()
            .unwrap();
        let d = dir.path().display().to_string();
        let sock = format!("{d}/c.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let child = Self::spawn(dir.path(), bin_dir);
        let ns = format!("hulltest{}", std::process::id());
        let c = Containerd {
            dir,
            child,
            sock,
            ns,
        };
        c.wait_ready();
        c
    }

    fn spawn(dir: &Path, bin_dir: &Path) -> Child {
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("containerd.log"))
            .unwrap();
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL containerd and start it again on the same root and state:
    /// what a crash and a supervisor's restart look like.
    fn kill_and_restart(&mut self, bin_dir: &Path) {
        kill(self.child.id() as i32, libc::SIGKILL);
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path(), bin_dir);
        self.wait_ready();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .args(["-a", &self.sock, "-n", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {:?}\nstdout: {}\nstderr: {}\ncontainerd log tail: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The STATUS column of `ctr task ls` for `id`.
    fn task_status(&self, id: &str) -> String {
        let out = self.ok(&["task", "ls"]);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.task_status(id) != want {
            assert!(Instant::now() < deadline, "{id} never became {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn shim_pids(&self) -> Vec<i32> {
        pids_matching(&["-namespace", &self.ns])
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        kill(self.child.id() as i32, libc::SIGTERM);
        let _ = self.child.wait();
        for pid in self.shim_pids() {
            kill(pid, libc::SIGKILL);
        }
        let d = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut targets: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(&d))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
        for t in targets {
            let _ = Command::new("umount").args(["-l", t]).status();
        }
        let _ = std::fs::remove_dir_all(format!("/run/containerd/hull/{}", self.ns));
        // containerd's default cgroupsPath is /<namespace>/<id>.
        remove_parent_cgroups(&self.ns);
    }
}

/// Removes the (empty) cgroup dirs named `name` that the engine under test
/// left as the parent of its containers' cgroups (hullc removes only the
/// container's own leaf, as runc does). Only empty dirs can go, so nothing
/// in use is touched.
fn remove_parent_cgroups(name: &str) {
    fn walk(d: &std::path::Path, name: &str, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mut dirs = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), name, 3, &mut dirs);
    for d in dirs {
        // Children first: the engine may have nested its own levels.
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}

fn usable() -> bool {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipping: needs root");
        return false;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: containerd not installed (apt-get install containerd)");
        return false;
    }
    true
}

fn vm_rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn containerd_with_hull_shim() {
    if !usable() {
        return;
    }
    let bins = common::hullc_dir(SHIM);
    let hullc = bins.join("hullc").display().to_string();
    let ctd = Containerd::start(&bins);
    let archive = busybox_archive(ctd.dir.path());
    ctd.ok(&["images", "import", archive.to_str().unwrap()]);
    let rt = ["--runtime", "io.containerd.hull.v2"];

    // Foreground run: output and exit status through the shim.
    let o = ctd.ctr(
        &[
            &["run", "--rm"],
            &rt[..],
            &[IMAGE, "fg", "sh", "-c", "echo hi; exit 3"],
        ]
        .concat(),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hi\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");

    // `ctr run -t`: the console socket path through the shim; ctr needs a terminal,
    // so script(1) gives it one. Inside: a pty as stdin and its size set by ctr.
    let line = format!(
        "ctr -a {} -n {} run -t --rm --runtime io.containerd.hull.v2 {IMAGE} tty1 \
         sh -c 'tty; stty size; exit 4'",
        ctd.sock, ctd.ns
    );
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "no pty inside: {out:?} {o:?}");
    assert_eq!(o.status.code(), Some(4), "{out:?}");

    // Detached container: exec, pause/resume, metrics, kill, rm.
    ctd.ok(&[&["run", "-d"], &rt[..], &[IMAGE, "bg", "sleep", "1000"]].concat());
    ctd.wait_status("bg", "RUNNING");
    let out = ctd.ok(&["task", "exec", "--exec-id", "x", "bg", "echo", "hi"]);
    assert_eq!(out, "hi\n");
    let o = ctd.ctr(&["task", "exec", "--exec-id", "y", "bg", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    ctd.ok(&["task", "pause", "bg"]);
    assert_eq!(ctd.task_status("bg"), "PAUSED");
    ctd.ok(&["task", "resume", "bg"]);
    assert_eq!(ctd.task_status("bg"), "RUNNING");
    let metrics = ctd.ok(&["task", "metrics", "bg"]);
    assert!(metrics.contains("memory"), "{metrics}");
    let ps = ctd.ok(&["task", "ps", "bg"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    // No CRIU: checkpoint says "not implemented", not that the task is missing.
    let o = ctd.ctr(&["task", "checkpoint", "bg"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not implemented") && err.contains("CRIU"),
        "{o:?}"
    );
    let shims = ctd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for bg: {shims:?}");
    let print_mem = |when: &str| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", shims[0])).unwrap();
        let l: Vec<String> = status
            .lines()
            .filter(|l| l.starts_with("Rss") || l.starts_with("Threads"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        eprintln!(
            "containerd-shim-hull-v2 with one running container, {when}: VmRSS {} KiB, {}",
            vm_rss_kib(shims[0]),
            l.join(", ")
        );
    };
    print_mem("right after the requests");
    // The shim drops its clean file pages at its first idle tick (1 s).
    std::thread::sleep(Duration::from_millis(1500));
    print_mem("idle");
    // Where the anonymous memory is (mappings with 64 KiB or more).
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", shims[0])).unwrap();
    let mut head = String::new();
    for l in smaps.lines() {
        let f: Vec<_> = l.split_whitespace().collect();
        if f.first().is_some_and(|t| !t.ends_with(':')) {
            head = l.to_string();
        } else if f.first() == Some(&"Anonymous:") {
            let kib: u64 = f[1].parse().unwrap_or(0);
            if kib >= 64 {
                eprintln!("  anon {kib:>5} kB in {head}");
            }
        }
    }
    ctd.ok(&["task", "kill", "-s", "SIGKILL", "bg"]);
    ctd.wait_status("bg", "STOPPED");
    ctd.ok(&["task", "rm", "bg"]);
    ctd.ok(&["container", "rm", "bg"]);

    // hullc under containerd's own Go runc shim.
    let o = ctd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        &hullc,
        IMAGE,
        "gorunc",
        "sh",
        "-c",
        "echo via-runc; exit 4",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "via-runc\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(4), "{o:?}");

    let left = ctd.ok(&["task", "ls", "-q"]);
    assert_eq!(left.trim(), "", "tasks left");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctd.shim_pids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "shims left: {:?}",
            ctd.shim_pids()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = ctd.dir.path().display().to_string();
    let root = format!("/run/containerd/hull/{}", ctd.ns);
    drop(ctd);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&d), "mounts left under {d}");
    assert!(!Path::new(&d).exists(), "{d} left");
    assert!(!Path::new(&root).exists(), "{root} left");
}

/// The reason a shim exists: containerd dies (SIGKILL) while a container
/// runs; the container keeps running under its shim, and a restarted
/// containerd finds the task again and can exec into, kill and remove it.
#[test]
fn containerd_restart_keeps_the_task() {
    if !usable() {
        return;
    }
    let bins = common::hullc_dir(SHIM);
    let mut ctd = Containerd::start(&bins);
    let archive = busybox_archive(ctd.dir.path());
    ctd.ok(&["images", "import", archive.to_str().unwrap()]);
    let rt = ["--runtime", "io.containerd.hull.v2"];
    ctd.ok(&[
        &["run", "-d"],
        &rt[..],
        &[IMAGE, "survivor", "sleep", "1000"],
    ]
    .concat());
    ctd.wait_status("survivor", "RUNNING");
    let shims = ctd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    ctd.kill_and_restart(&bins);
    assert!(
        shims
            .iter()
            .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
        "the shim outlived containerd"
    );
    ctd.wait_status("survivor", "RUNNING");
    let out = ctd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        "survivor",
        "echo",
        "still-here",
    ]);
    assert_eq!(out, "still-here\n");
    ctd.ok(&["task", "kill", "-s", "SIGKILL", "survivor"]);
    ctd.wait_status("survivor", "STOPPED");
    ctd.ok(&["task", "rm", "survivor"]);
    ctd.ok(&["container", "rm", "survivor"]);
}

/// containerd's exit handling (CRI's, `task delete --force`) kills with
/// all=true before deleting; the shim answers NotFound ("process already
/// finished") for an exited task, as runc's shim does, so the delete goes on.
#[test]
fn kill_all_of_an_exited_task_is_not_found_and_delete_works() {
    if !usable() {
        return;
    }
    let bins = common::hullc_dir(SHIM);
    let ctd = Containerd::start(&bins);
    let archive = busybox_archive(ctd.dir.path());
    ctd.ok(&["images", "import", archive.to_str().unwrap()]);
    let rt = ["--runtime", "io.containerd.hull.v2"];
    for (id, force) in [("gone1", false), ("gone2", true)] {
        ctd.ok(&[&["run", "-d"], &rt[..], &[IMAGE, id, "true"]].concat());
        ctd.wait_status(id, "STOPPED");
        let o = ctd.ctr(&["task", "kill", "--all", "-s", "9", id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("process already finished: not found"),
            "kill --all of an exited task: {o:?}"
        );
        let del: &[&str] = if force {
            &["task", "delete", "--force", id]
        } else {
            &["task", "delete", id]
        };
        ctd.ok(del);
        ctd.ok(&["container", "rm", id]);
    }
}
