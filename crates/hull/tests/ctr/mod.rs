//! Shared harness of the container tests: a busybox image built into an OCI
//! archive here and loaded with `hull load`, a temp `--root`, and checks
//! that nothing (mounts, shims, cgroups, state) is left afterwards.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub const HULL: &str = env!("CARGO_BIN_EXE_hull");

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// hullc and the shim next to hull, built on demand into the same target
/// dir and profile (cargo only builds this package's binaries for tests).
pub fn ensure_binaries() {
    let dir = Path::new(HULL).parent().unwrap();
    if dir.join("hullc").exists() && dir.join("containerd-shim-hull-v2").exists() {
        return;
    }
    let target = dir.parent().unwrap();
    let mut c = Command::new(env!("CARGO"));
    c.args(["build", "-p", "hullc", "-p", "hull-shim"])
        .env("CARGO_TARGET_DIR", target);
    if dir.file_name().unwrap() == "release" {
        c.arg("--release");
    }
    assert!(
        c.status().unwrap().success(),
        "cargo build -p hullc -p hull-shim"
    );
}

fn tar_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32, kind: tar::EntryType, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "home", "home/web", "data", "srv",
    ] {
        add(d, b"", 0o755, tar::EntryType::Directory, None);
    }
    let bb = std::fs::read("/bin/busybox").expect("busybox-static: apt-get install busybox-static");
    add("bin/busybox", &bb, 0o755, tar::EntryType::Regular, None);
    for a in [
        "sh", "echo", "sleep", "cat", "ls", "true", "id", "pwd", "env", "touch", "hostname", "ps",
        "kill", "grep", "mount", "stat", "seq", "sync",
    ] {
        add(
            &format!("bin/{a}"),
            b"",
            0o777,
            tar::EntryType::Symlink,
            Some("busybox"),
        );
    }
    add(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n",
        0o644,
        tar::EntryType::Regular,
        None,
    );
    add(
        "etc/group",
        b"root:x:0:\nweb:x:1000:\nstaff:x:50:web\n",
        0o644,
        tar::EntryType::Regular,
        None,
    );
    add(
        "srv/from-image",
        b"image data\n",
        0o644,
        tar::EntryType::Regular,
        None,
    );
    b.into_inner().unwrap()
}

/// An OCI archive of a one-layer busybox image named `name` with `config`
/// as its execution config.
pub fn archive(dir: &Path, name: &str, config: serde_json::Value) -> PathBuf {
    let l = dir.join(format!("layout-{}", sha(name.as_bytes())));
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |data: &[u8]| {
        let h = sha(data);
        std::fs::write(l.join("blobs/sha256").join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len())
    };
    let layer = tar_layer();
    let (ld, ls) = blob(&layer);
    let cfg = serde_json::json!({
        "architecture": hull_arch(), "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [ld]},
    });
    let (cd, cs) = blob(&serde_json::to_vec(&cfg).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
    });
    let (md, ms) = blob(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
    }]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let out = dir.join(format!("{}.tar", sha(name.as_bytes())));
    let mut b = tar::Builder::new(std::fs::File::create(&out).unwrap());
    b.append_dir_all(".", &l).unwrap();
    b.into_inner().unwrap().flush().unwrap();
    out
}

fn hull_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// A relative cgroup parent of this test's own (HULL_CGROUP_PARENT),
    /// removed when the test ends.
    pub cgroup_parent: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        fn walk(d: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
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
        walk(
            Path::new("/sys/fs/cgroup"),
            &self.cgroup_parent,
            4,
            &mut dirs,
        );
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Env {
    pub fn new() -> Env {
        ensure_binaries();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Env {
            root: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
            cgroup_parent: format!("hull-test-{}-{n}", std::process::id()),
        }
    }

    pub fn load(&self, name: &str, config: serde_json::Value) {
        let a = archive(self.work.path(), name, config);
        ok(&self.hull(&["load", "-i", a.to_str().unwrap()]));
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HULL);
        c.arg("--root").arg(self.root.path()).args(args);
        c.env("HULL_CGROUP_PARENT", &self.cgroup_parent);
        c
    }

    pub fn hull(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Asserts success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(&self.hull(args))
    }

    /// Every container removed: no state, no rootfs, no mounts, shims or cgroups left.
    pub fn assert_clean(&self) {
        let root = self.root.path();
        let left: Vec<_> = std::fs::read_dir(root.join("ctr"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .filter(|n| n != ".lock")
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "container dirs left: {left:?}");
        let rootfs: Vec<_> = std::fs::read_dir(root.join("containers"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(rootfs.is_empty(), "rootfs dirs left: {rootfs:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let r = root.to_string_lossy();
        assert!(!mounts.contains(&*r), "mounts left under {r}");
        let procs = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let procs = String::from_utf8_lossy(&procs.stdout);
        assert!(
            !procs
                .lines()
                .any(|l| l.contains("containerd-shim-hull-v2") && l.contains(&*r)),
            "shims left"
        );
        let hullc_state = root.join("hullc/hull");
        let states: Vec<_> = std::fs::read_dir(&hullc_state)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "hullc state left: {states:?}");
    }
}

pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hull failed ({:?}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
