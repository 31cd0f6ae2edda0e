//! A private containerd 1.6 with its CRI plugin for the CRI tests (issue 23), driven through
//! [`super::cri_client`] (the kubelet's gRPC API, so CI needs no crictl).
//!
//! `scripts/cri-env.sh` builds the stack (local registry as the mirror, locally built busybox and
//! pause images, CNI bridge, containerd in a private mount namespace); this side holds
//! `/tmp/hull-net-tests.lock` while it exists and tears it down on drop (every pod stopped and
//! removed through the CRI first, as kubelet would), also after a failed assertion.
#![allow(clippy::unwrap_used, dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cri_client::Client;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cri-env.sh");

pub struct Cri {
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub client: Option<Client>,
    pub cgroup_parent: String,
    bin_dir: PathBuf,
    _lock: std::fs::File,
}

/// Root, containerd (with ctr), the CNI plugins, the registry, skopeo, gcc and jq; else false
/// and a loud reason.
pub fn usable() -> bool {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: the CRI tests need root");
        return false;
    }
    for (bin, pkg) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("gcc", "gcc"),
        ("jq", "jq"),
        ("unshare", "util-linux"),
    ] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: CRI tests need {bin} (apt-get install {pkg})");
            return false;
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!(
            "SKIPPED: CRI tests need /usr/lib/cni (apt-get install containernetworking-plugins)"
        );
        return false;
    }
    true
}

fn lock() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/hull-net-tests.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own; the kernel drops it when we exit.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock /tmp/hull-net-tests.lock");
    f
}

impl Cri {
    pub fn up(bin_dir: &Path) -> Cri {
        let lock = lock();
        let tmp = tempfile::Builder::new()
            .prefix("hull-cri")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("env");
        let cgroup_parent = format!("/hull-cri-test-{}", std::process::id());
        let mut cri = Cri {
            dir: dir.clone(),
            _tmp: tmp,
            client: None,
            cgroup_parent,
            bin_dir: bin_dir.to_path_buf(),
            _lock: lock,
        };
        let o = cri.script("up");
        assert!(
            o.status.success(),
            "cri-env.sh up: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            cri.containerd_log_tail()
        );
        cri.client = Some(Client::connect(&dir.join("c.sock")));
        cri
    }

    pub fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn script(&self, action: &str) -> Output {
        Command::new("bash")
            .arg(SCRIPT)
            .arg(action)
            .arg(&self.dir)
            // No crictl: pods are removed through our client before `down`.
            .env("CRICTL", "/nonexistent/crictl")
            .env("CRI_CGROUP_PARENT", &self.cgroup_parent)
            .env("HULL_BIN_DIR", &self.bin_dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn containerd_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// containerd's private mount namespace (`readlink /proc/PID/ns/mnt`).
    fn mntns(&self) -> String {
        std::fs::read_to_string(self.dir.join("mntns"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn containerd_pid(&self) -> i32 {
        std::fs::read_to_string(self.dir.join("containerd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Shim processes (by binary name) in containerd's mount namespace.
    pub fn shims(&self, name: &str) -> Vec<i32> {
        let ns = self.mntns();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let same_ns = std::fs::read_link(e.path().join("ns/mnt"))
                .is_ok_and(|l| l.to_string_lossy() == ns);
            let comm = std::fs::read_to_string(e.path().join("cmdline")).unwrap_or_default();
            let arg0 = comm.split('\0').next().unwrap_or("");
            if same_ns && arg0.ends_with(name) {
                out.push(pid);
            }
        }
        out
    }

    /// Mount points in containerd's namespace below `under`.
    pub fn mounts_under(&self, under: &str) -> Vec<String> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.containerd_pid()))
            .unwrap_or_default();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|t| t.starts_with(under))
            .map(str::to_string)
            .collect()
    }

    /// Entries of /run/netns in containerd's namespace (CRI's pinned pod netns).
    pub fn pinned_netns(&self) -> Vec<String> {
        let d = format!("/proc/{}/root/run/netns", self.containerd_pid());
        std::fs::read_dir(d)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Interfaces enslaved to the test bridge (the pods' veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        let o = Command::new("ip")
            .args(["-o", "link", "show", "master", "hcri0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
            .collect()
    }

    /// Cgroup dirs below the pods' cgroup parent, in any hierarchy.
    pub fn cgroups_left(&self) -> Vec<String> {
        let mut out = Vec::new();
        let rel = self.cgroup_parent.trim_start_matches('/');
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let d = h.path().join(rel);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.push(e.path().display().to_string());
                    }
                }
            }
        }
        out
    }

    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\ncontainerd log tail:\n{}",
                self.containerd_log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            c.remove_all_pods();
        }
        let o = self.script("down");
        if !o.status.success() {
            eprintln!("cri-env.sh down: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}
