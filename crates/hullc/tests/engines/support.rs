//! What the engine tests share: the runtime under test and its reference
//! (Debian's runc), an image archive, a scenario runner that keeps going
//! after a failure (so one run lists every broken scenario), a private
//! containerd, and the host-side clean-up and leak checks.

#![allow(dead_code)] // podman.rs uses a subset

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const HULLC: &str = env!("CARGO_BIN_EXE_hullc");
pub const IMAGE_TAG: &str = "hullbox:latest";

/// The runtime an engine drives: runc is the reference each scenario must
/// pass with; hullc is the binary under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Runc,
    Hullc,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Hullc => "hullc",
        }
    }

    pub fn path(self) -> String {
        match self {
            Runtime::Runc => which("runc").unwrap_or_else(|| "runc".into()),
            Runtime::Hullc => HULLC.into(),
        }
    }
}

pub fn which(bin: &str) -> Option<String> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !p.is_empty()).then_some(p)
}

/// Root, busybox-static, runc and every tool in `tools` (paths or names on
/// PATH); prints why not when something is missing.
pub fn usable(tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: needs /bin/busybox (apt-get install busybox-static)");
        return false;
    }
    for t in tools.iter().chain(&["runc"]) {
        let found = if t.starts_with('/') {
            Path::new(t).exists()
        } else {
            which(t).is_some()
        };
        if !found {
            eprintln!("skipped: needs {t} (scripts/deps.sh installs it)");
            return false;
        }
    }
    true
}

pub fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o` succeeded, or an error with what the engine said.
pub fn success(what: &str, o: Output) -> Result<String> {
    if !o.status.success() {
        bail!(
            "{what}: {:?}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
    }
    Ok(stdout(&o))
}

/// Polls `f` every 100 ms until it holds or `t` has passed.
pub fn wait_for(what: &str, t: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + t;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A Docker-format image archive (`docker save` layout: manifest.json,
/// config, one layer) with busybox-static as `hullbox:latest`. Both
/// `docker load` (20.10 reads only this format) and `ctr images import`
/// take it. `/bin/noexec` is a script without the execute bit.
pub fn image_archive(dir: &Path) -> PathBuf {
    let w = dir.join("img");
    let rootfs = w.join("rootfs");
    let out = w.join("out");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "sleep", "cat", "ls", "true", "dd", "grep", "test", "kill", "ps",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::write(rootfs.join("bin/noexec"), "#!/bin/sh\necho ran\n").unwrap();
    sh(&format!(
        "chmod 0644 {0}/bin/noexec && tar --numeric-owner --owner=0 --group=0 -C {0} -cf {1}/layer.tar .",
        rootfs.display(),
        out.display()
    ));
    let layer = sh(&format!("sha256sum {}/layer.tar", out.display()))[..64].to_string();
    std::fs::create_dir(out.join(&layer)).unwrap();
    std::fs::rename(out.join("layer.tar"), out.join(&layer).join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]},
    })
    .to_string();
    std::fs::write(out.join("config.json"), &config).unwrap();
    let cfg = sh(&format!("sha256sum {}/config.json", out.display()))[..64].to_string();
    std::fs::rename(out.join("config.json"), out.join(format!("{cfg}.json"))).unwrap();
    let manifest = serde_json::json!([{
        "Config": format!("{cfg}.json"),
        "RepoTags": [IMAGE_TAG],
        "Layers": [format!("{layer}/layer.tar")],
    }]);
    std::fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();
    let tar = dir.join("hullbox.tar");
    sh(&format!("tar -C {} -cf {} .", out.display(), tar.display()));
    std::fs::remove_dir_all(&w).unwrap();
    tar
}

/// An "old" seccomp profile: containers-common's (the file podman applies
/// by default) without `close_range` and with the old default errno
/// (EPERM, not ENOSYS), as profiles written before Linux 5.9 look. A
/// runtime that needs close_range after loading the filter breaks on it;
/// runc does not. None when the file is not installed.
pub fn old_seccomp_profile(dir: &Path) -> Option<PathBuf> {
    let src = std::fs::read_to_string("/usr/share/containers/seccomp.json").ok()?;
    let mut p: serde_json::Value = serde_json::from_str(&src).ok()?;
    let obj = p.as_object_mut()?;
    obj.remove("defaultErrnoRet");
    for rule in obj.get_mut("syscalls")?.as_array_mut()? {
        if let Some(names) = rule.get_mut("names").and_then(|n| n.as_array_mut()) {
            names.retain(|n| n != "close_range");
        }
    }
    let path = dir.join("old-seccomp.json");
    std::fs::write(&path, p.to_string()).ok()?;
    Some(path)
}

/// Runs named scenarios one after another for one runtime, recording each
/// failure (error or panic) instead of stopping at the first, so a run
/// reports everything that is broken.
pub struct Scenarios {
    label: String,
    failures: Vec<String>,
}

impl Scenarios {
    pub fn new(label: &str) -> Scenarios {
        Scenarios {
            label: label.into(),
            failures: Vec::new(),
        }
    }

    pub fn run(&mut self, name: &str, f: impl FnOnce() -> Result<()>) {
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f));
        let secs = t.elapsed().as_secs_f32();
        let err = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        match err {
            None => eprintln!("[{}] {name}: ok ({secs:.1} s)", self.label),
            Some(e) => {
                eprintln!("[{}] {name}: FAILED ({secs:.1} s): {e}", self.label);
                self.failures.push(format!("{name}: {e}"));
            }
        }
    }

    /// Panics listing every failed scenario.
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "[{}] {} scenario(s) failed:\n{}",
            self.label,
            self.failures.len(),
            self.failures.join("\n---\n")
        );
    }
}

/// Pids whose command line has `needle` as one of its arguments.
pub fn pids_with_arg(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if pid != me && cmd.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) of a pid this test started or identified as its own.
    unsafe { libc::kill(pid, sig) };
}

/// SIGTERM, then SIGKILL after `grace`; reaps the child.
pub fn stop_child(child: &mut Child, grace: Duration) {
    kill(child.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(child.id() as i32, libc::SIGKILL);
    let _ = child.wait();
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| t.starts_with(&d))
        .map(String::from)
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.len()));
    v
}

pub fn umount_under(dir: &Path) {
    for t in mounts_under(dir) {
        let _ = Command::new("umount").args(["-l", &t]).status();
    }
}

/// Every `/sys/fs/cgroup/<hierarchy>/<name>` dir (v1 controllers and the
/// v2 mount of a hybrid host, or the v2 root itself).
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut v = vec![root.join(name)];
    if let Ok(rd) = std::fs::read_dir(root) {
        v.extend(rd.flatten().map(|e| e.path().join(name)));
    }
    v.retain(|p| p.is_dir());
    v
}

/// Sub-cgroups left under the trees called `name`: containers whose
/// runtime did not remove their cgroup on delete (the parent is the
/// engine's, and engines leave it).
pub fn cgroup_children(name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in cgroup_dirs(name) {
        let mut dirs = Vec::new();
        collect_dirs(&d, &mut dirs);
        v.extend(dirs.into_iter().skip(1));
    }
    v
}

/// Kills whatever still runs in the cgroup trees called `name` (this test's
/// own unique parent: only containers it made live there), thaws frozen
/// ones so the kill lands, and removes the dirs, children first.
pub fn remove_cgroup_trees(name: &str) {
    for d in cgroup_dirs(name) {
        let mut dirs = Vec::new();
        collect_dirs(&d, &mut dirs);
        for sub in &dirs {
            let procs = std::fs::read_to_string(sub.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                kill(pid, libc::SIGKILL);
            }
            let _ = std::fs::write(sub.join("freezer.state"), "THAWED");
        }
        for sub in dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(sub).is_err() && sub.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `d` and its subdirs, parents before children.
fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Names of the host's network links.
pub fn links() -> Vec<String> {
    let mut v: Vec<String> = sh("ip -o link show")
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

/// Leaks after teardown: mounts under `dir`, processes naming `dir` in
/// their arguments (daemons, shims), the cgroup trees `cgroup`, links
/// that were not there in `links_before`.
pub fn leaks(dir: &Path, cgroup: &str, links_before: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    let m = mounts_under(dir);
    if !m.is_empty() {
        v.push(format!("mounts left: {m:?}"));
    }
    let d = dir.display().to_string();
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (e.file_name().to_string_lossy().parse::<i32>().is_ok() && cmd.contains(&d))
                .then_some(cmd)
        })
        .collect();
    if !procs.is_empty() {
        v.push(format!("processes left: {procs:?}"));
    }
    let cg = cgroup_dirs(cgroup);
    if !cg.is_empty() {
        v.push(format!("cgroups left: {cg:?}"));
    }
    let new: Vec<String> = links()
        .into_iter()
        .filter(|l| !links_before.contains(l))
        .collect();
    if !new.is_empty() {
        v.push(format!("links left: {new:?}"));
    }
    v
}

/// A private containerd: config, root, state and sockets under `dir`, CRI
/// off. (containerd 1.6 still puts shim sockets in /run/containerd/s.)
pub struct Containerd {
    dir: PathBuf,
    child: Child,
    pub sock: String,
}

impl Containerd {
    pub fn start(dir: &Path) -> Result<Containerd> {
        std::fs::create_dir_all(dir)?;
        let d = dir.display().to_string();
        let sock = format!("{d}/c.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n"
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let c = Containerd {
            dir: dir.to_path_buf(),
            child,
            sock,
        };
        let ready = wait_for("containerd", Duration::from_secs(30), || {
            Command::new("ctr")
                .args(["-a", &c.sock, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        ready.with_context(|| format!("containerd log: {}", c.log_tail(30)))?;
        Ok(c)
    }

    /// The last `n` warnings and errors in containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warn"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(10));
        // Shims outlive containerd by design: ours name our socket.
        for pid in pids_with_arg(&self.sock) {
            kill(pid, libc::SIGKILL);
        }
        umount_under(&self.dir);
    }
}
