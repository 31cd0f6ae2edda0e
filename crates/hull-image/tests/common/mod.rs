//! Test fixtures: a throw-away `docker-registry` on a free loopback port,
//! OCI image building from Debian's busybox-static, and skopeo pushes.
//! Required tools (apt): docker-registry skopeo umoci busybox-static
//! apache2-utils. Missing tools make the tests fail loudly.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::Digest as _;

pub fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A docker-registry process, killed by PID on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; `auth` is an optional YAML `auth:` block body.
    pub fn start(auth: Option<&str>) -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let data = dir.path().join("data");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        if let Some(a) = auth {
            cfg.push_str("auth:\n");
            cfg.push_str(a);
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry (apt-get install docker-registry)")?;
        let reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Path of a blob's data file in the registry's filesystem storage.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds tar layers.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn hdr(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = hdr(tar::EntryType::Directory, 0o755, 0);
        self.b
            .append_data(&mut h, path, [].as_slice())
            .expect("dir");
        self
    }
    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_mode(path, data, 0o644)
    }
    pub fn file_mode(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = hdr(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).expect("file");
        self
    }
    pub fn file_xattr(mut self, path: &str, data: &[u8], name: &str, value: &[u8]) -> Self {
        let key = format!("SCHILY.xattr.{name}");
        self.b
            .append_pax_extensions([(key.as_str(), value)])
            .expect("pax");
        let mut h = hdr(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.b.append_data(&mut h, path, data).expect("file");
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).expect("symlink");
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = hdr(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).expect("hardlink");
        self
    }
    /// An entry with raw name bytes (for `..` that tar::Builder refuses).
    pub fn raw(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = hdr(tar::EntryType::Regular, 0o644, data.len() as u64);
        let gnu = h.as_gnu_mut().expect("gnu");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).expect("raw");
        self
    }
    pub fn busybox(self) -> Self {
        let bb =
            std::fs::read("/bin/busybox").expect("busybox-static: apt-get install busybox-static");
        self.dir("bin/")
            .file_mode("bin/busybox", &bb, 0o755)
            .symlink("bin/sh", "busybox")
            .symlink("bin/ls", "/bin/busybox")
            .symlink("bin/cat", "busybox")
    }
    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().expect("tar")
    }
}

#[derive(Clone, Copy)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A blob written into an OCI layout.
pub struct Blob {
    pub media_type: String,
    pub hex: String,
    pub size: usize,
}

/// An OCI image layout under construction.
pub struct Layout {
    pub dir: PathBuf,
    manifests: Vec<String>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    pub fn blob(&self, media_type: &str, data: &[u8]) -> Blob {
        let hex = sha256_hex(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).expect("blob");
        Blob {
            media_type: media_type.into(),
            hex,
            size: data.len(),
        }
    }

    /// Adds an image; returns the manifest descriptor JSON.
    pub fn image(&mut self, layers: Vec<(Comp, Vec<u8>)>, arch: &str) -> serde_json::Value {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (c, tar) in layers {
            diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
            let (mt, data) = match c {
                Comp::None => ("application/vnd.oci.image.layer.v1.tar", tar),
                Comp::Gzip => {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&tar).expect("gzip");
                    (
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        e.finish().expect("gzip"),
                    )
                }
                Comp::Zstd => (
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                    zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
                ),
            };
            let b = self.blob(mt, &data);
            descs.push(serde_json::json!({"mediaType": mt, "digest": format!("sha256:{}", b.hex), "size": b.size}));
        }
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let c = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).expect("json"),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": c.media_type, "digest": format!("sha256:{}", c.hex), "size": c.size},
            "layers": descs,
        });
        let m = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).expect("json"),
        );
        serde_json::json!({
            "mediaType": m.media_type, "digest": format!("sha256:{}", m.hex), "size": m.size,
            "platform": {"architecture": arch, "os": "linux"},
        })
    }

    /// Writes index.json: one image, or an index of several under one tag.
    pub fn finish(&self, images: Vec<serde_json::Value>, tag: &str) -> Result<()> {
        let top = if images.len() == 1 {
            let mut d = images[0].clone();
            d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
            d
        } else {
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": images});
            let b = self.blob(
                "application/vnd.oci.image.index.v1+json",
                &serde_json::to_vec(&idx)?,
            );
            serde_json::json!({"mediaType": b.media_type, "digest": format!("sha256:{}", b.hex), "size": b.size,
                "annotations": {"org.opencontainers.image.ref.name": tag}})
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&index)?)?;
        Ok(())
    }

    /// Tars the layout into an oci-archive file.
    pub fn archive(&self, out: &Path) -> Result<()> {
        let mut b = tar::Builder::new(std::fs::File::create(out)?);
        b.append_dir_all(".", &self.dir)?;
        b.finish()?;
        Ok(())
    }
}

pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pushes an OCI layout dir (tag `tag`) to `dest` (`host/name:tag`).
pub fn push(layout: &Path, tag: &str, dest: &str, all: bool, creds: Option<&str>) -> Result<()> {
    let mut c = Command::new("skopeo");
    c.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"]);
    if all {
        c.arg("--all");
    }
    if let Some(cr) = creds {
        c.args(["--dest-creds", cr]);
    }
    c.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"));
    run(&mut c).map(|_| ())
}

/// Reads an HTTP/1.1 request head from a stream.
pub fn read_head(s: &mut TcpStream) -> Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            bail!("eof in request head");
        }
        buf.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
