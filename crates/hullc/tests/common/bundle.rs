//! [`Bundle`]: an OCI bundle for one test, a busybox-static rootfs and the config.json of
//! `hullc spec`, edited as JSON (split from mod.rs to keep it small).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use super::*;

/// Busybox applet names, computed once per test process.
fn applets() -> &'static [String] {
    static A: OnceLock<Vec<String>> = OnceLock::new();
    A.get_or_init(|| {
        // Under the reaper's lock: `output` waits for its child itself.
        let out = {
            let _own = own_children();
            Command::new(BUSYBOX).arg("--list").output()
        }
        .expect("busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|a| !a.is_empty() && a != "busybox")
            .collect()
    })
}

/// An OCI bundle: `rootfs/` from busybox-static and a config.json.
pub struct Bundle {
    dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// `hullc spec` in a fresh dir, with a busybox rootfs; the process is
    /// `sh -c true`, no terminal, and tagged with `h.tag` in its env.
    pub fn new(h: &Hullc) -> Bundle {
        setup();
        let dir = tempfile::Builder::new()
            .prefix("hullc-bundle-")
            .tempdir()
            .expect("bundle tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs dir");
        }
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for a in applets() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
        h.cmd(&["spec", "--bundle", dir.path().to_str().expect("utf-8")])
            .ok();
        let raw = fs::read(dir.path().join("config.json")).expect("spec wrote config.json");
        let mut config: Value = serde_json::from_slice(&raw).expect("spec is JSON");
        config["process"]["terminal"] = json!(false);
        // The tests are written for a container with its own cgroup namespace; `hullc spec`
        // (like runc's) asks for one only on pure cgroup v2 hosts.
        let ns = config["linux"]["namespaces"]
            .as_array_mut()
            .expect("spec has linux.namespaces");
        if !ns.iter().any(|n| n["type"] == "cgroup") {
            ns.push(json!({"type": "cgroup"}));
        }
        // ... and with the inheritable set hull's spec had before it followed runc's (which has
        // none since CVE-2022-29162): ambient capabilities can only be raised from it.
        let caps = &mut config["process"]["capabilities"];
        if caps.get("inheritable").is_none() {
            caps["inheritable"] = caps["ambient"].clone();
        }
        // Writable by default so that containers can leave marker files in
        // rootfs/tmp; tests of `root.readonly` set it back.
        config["root"]["readonly"] = json!(false);
        config["process"]["args"] = json!(["sh", "-c", "true"]);
        let env = config["process"]["env"]
            .as_array_mut()
            .expect("spec has process.env");
        env.push(json!(format!("HULL_TEST_TAG={}", h.tag)));
        Bundle { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Writes `config` to config.json.
    pub fn save(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("serialize config"),
        )
        .expect("write config.json");
    }

    /// `linux.namespaces` as a mutable array.
    pub fn namespaces(&mut self) -> &mut Vec<Value> {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces is an array")
    }

    /// Drops the namespace of `typ` from the config (share the host's).
    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        self.namespaces().retain(|n| n["type"] != typ);
        self
    }

    /// Adds (or replaces) the namespace of `typ`, joining `path` if given.
    pub fn set_namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(typ);
        let mut ns = json!({ "type": typ });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        self.namespaces().push(ns);
        self
    }

    pub fn add_mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"]
            .as_array_mut()
            .expect("mounts is an array")
            .push(m);
        self
    }
}
