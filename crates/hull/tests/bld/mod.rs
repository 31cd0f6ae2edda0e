//! Shared parts of the `hull build` tests: a busybox base image as a docker-archive,
//! podman with its own vfs storage, image archives flattened into comparable trees.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::Digest as _;

use crate::ctr::{text, Env};

pub const BASE: &str = "hull.test/bbase:1";

/// A docker-archive of a busybox image with history (podman wants one entry per layer).
pub fn base_archive(dir: &Path) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str,
                   data: &[u8],
                   mode: u32,
                   kind: tar::EntryType,
                   link: Option<&str>,
                   owner: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
    for d in ["bin", "etc", "proc", "sys", "dev", "srv", "home"] {
        add(d, b"", 0o755, D, None, 0);
    }
    add("tmp", b"", 0o1777, D, None, 0);
    add("home/web", b"", 0o700, D, None, 1000);
    let bb = std::fs::read("/bin/busybox").expect("busybox-static");
    add("bin/busybox", &bb, 0o755, F, None, 0);
    for a in [
        "sh", "echo", "cat", "ls", "true", "false", "mkdir", "touch", "chmod", "chown", "ln", "rm",
        "mknod", "mkfifo", "stat", "find", "sort", "env", "id",
    ] {
        add(&format!("bin/{a}"), b"", 0o777, L, Some("busybox"), 0);
    }
    add(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n",
        0o644,
        F,
        None,
        0,
    );
    add(
        "etc/group",
        b"root:x:0:\nweb:x:1000:\nstaff:x:50:web\n",
        0o644,
        F,
        None,
        0,
    );
    add("srv/old", b"to be deleted\n", 0o644, F, None, 0);
    add("srv/keep", b"kept\n", 0o600, F, None, 0);
    let layer = b.into_inner().unwrap();
    let diff = format!("sha256:{:x}", sha2::Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin", "BASE_ENV=b"], "Cmd": ["sh"], "Labels": {"base": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
        "history": [{"created_by": "test base layer"}],
    });
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": [BASE], "Layers": ["layer.tar"]}]);
    let out = dir.join("base.tar");
    let mut a = tar::Builder::new(std::fs::File::create(&out).unwrap());
    for (name, data) in [
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
        ("config.json", serde_json::to_vec(&config).unwrap()),
        ("layer.tar", layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        a.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    a.finish().unwrap();
    out
}

/// podman with its own storage (vfs) in a temp dir.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("hull-build-podman")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\",\"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n",
        )
        .unwrap();
        Podman { dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("timeout")
            .arg("300")
            .arg("podman")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--storage-driver",
                "vfs",
            ])
            .args(args)
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "podman {args:?}: {out}{err}");
        out
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["system", "reset", "--force"]);
    }
}

/// One path of a flattened image.
#[derive(Debug, PartialEq, Clone)]
pub struct Node {
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Symlink target, hardlink target, or content digest.
    pub data: String,
}

/// The file tree of an image archive (docker-archive or OCI), layers applied in order.
pub fn flatten(archive: &Path) -> (BTreeMap<String, Node>, serde_json::Value) {
    let x = tempfile::tempdir().unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(x.path())
        .arg("-xf")
        .arg(archive)
        .status()
        .unwrap();
    assert!(st.success());
    let read = |p: &str| std::fs::read(x.path().join(p)).unwrap();
    let (config_path, layers): (String, Vec<String>) = if x.path().join("index.json").exists() {
        let idx: serde_json::Value = serde_json::from_slice(&read("index.json")).unwrap();
        let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let m: serde_json::Value = serde_json::from_slice(&read(&blob(
            idx["manifests"][0]["digest"].as_str().unwrap(),
        )))
        .unwrap();
        (
            blob(m["config"]["digest"].as_str().unwrap()),
            m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| blob(l["digest"].as_str().unwrap()))
                .collect(),
        )
    } else {
        let m: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
        (
            m[0]["Config"].as_str().unwrap().to_string(),
            m[0]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect(),
        )
    };
    let config: serde_json::Value = serde_json::from_slice(&read(&config_path)).unwrap();
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for l in layers {
        let raw = read(&l);
        let data: Vec<u8> = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut v)
                .unwrap();
            v
        } else {
            raw
        };
        let mut a = tar::Archive::new(data.as_slice());
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if path.is_empty() || path == "." {
                continue;
            }
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", &path));
            if name == ".wh..wh..opq" {
                let pre = format!("{dir}/");
                tree.retain(|k, _| !k.starts_with(&pre));
                continue;
            }
            if let Some(gone) = name.strip_prefix(".wh.") {
                let p = if dir.is_empty() {
                    gone.to_string()
                } else {
                    format!("{dir}/{gone}")
                };
                let pre = format!("{p}/");
                tree.retain(|k, _| *k != p && !k.starts_with(&pre));
                continue;
            }
            let h = e.header().clone();
            let kind = format!("{:?}", h.entry_type());
            let data = match h.entry_type() {
                tar::EntryType::Symlink => e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                tar::EntryType::Link => {
                    format!(
                        "link:{}",
                        e.link_name()
                            .unwrap()
                            .unwrap()
                            .to_string_lossy()
                            .trim_start_matches("./")
                    )
                }
                tar::EntryType::Regular => {
                    let mut v = Vec::new();
                    e.read_to_end(&mut v).unwrap();
                    format!("{:x}", sha2::Sha256::digest(&v))
                }
                _ => String::new(),
            };
            tree.insert(
                path,
                Node {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    data,
                },
            );
        }
    }
    (tree, config)
}

/// Hardlinks as groups: a link entry takes its target's content and lists the partner.
pub fn normalise(tree: &BTreeMap<String, Node>) -> BTreeMap<String, Node> {
    let mut out = tree.clone();
    for (k, n) in tree {
        if let Some(t) = n.data.strip_prefix("link:") {
            let target = tree.get(t).cloned().unwrap();
            let mut m = target.clone();
            m.data = format!("{} (hardlink of {t})", target.data);
            out.insert(k.clone(), m);
            let mut tt = target;
            tt.data = format!("{} (hardlink of {t})", tt.data);
            out.insert(t.to_string(), tt);
        }
    }
    out
}

pub fn hull_build(e: &Env, ctx: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--network", "none"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    e.hull(&args)
}
