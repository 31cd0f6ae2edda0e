//! Shared harness of the container tests: a busybox image built into an OCI
//! archive here and loaded with `hull load`, a temp `--root`, and checks
//! that nothing (mounts, shims, cgroups, state) is left afterwards.
//!
//! Networking: every test gets a slot N (0..250, claimed with a lock file, so
//! that parallel test processes never share one) and with it its own link
//! prefix `hnNNN`, nft table `hulltestN`, default subnet 10.199.N.0/24 and
//! user-network pool 10.198.N.0/24 (`HULL_NET_*`), never touching a real
//! `hull0`, and its own host-wide network state (`HULL_NET_STATE`, in its work
//! dir; a second `--root` run with the same `envs` shares it, as two roots on
//! one host share `/var/lib/hull/networks` and `/run/hull/net`). Dropping the
//! `Env` runs `hull system reset -f` and then removes any link or table of its
//! slot that is still there.
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

/// An entry a test adds to (or replaces in) the busybox layer.
pub enum Entry {
    File(&'static str, Vec<u8>, u32),
    Symlink(&'static str, String),
    CharDev(&'static str, u32, u32, u32),
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File(p, ..) | Entry::Symlink(p, _) | Entry::CharDev(p, ..) => p,
        }
    }
}

fn tar_layer(extra: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32, kind: tar::EntryType, link: Option<&str>| {
        if extra.iter().any(|e| e.path() == path) {
            return;
        }
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
    for e in extra {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        let data: &[u8] = match e {
            Entry::File(_, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                data
            }
            Entry::Symlink(_, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_link_name(target).unwrap();
                b""
            }
            Entry::CharDev(_, major, minor, mode) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(*mode);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b""
            }
        };
        b.append_data(&mut h, e.path(), data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI archive of a one-layer busybox image named `name` with `config`
/// as its execution config.
pub fn archive(dir: &Path, name: &str, config: serde_json::Value) -> PathBuf {
    archive_with(dir, name, config, &[])
}

/// [`archive`] with `extra` entries in the layer.
pub fn archive_with(dir: &Path, name: &str, config: serde_json::Value, extra: &[Entry]) -> PathBuf {
    let l = dir.join(format!("layout-{}", sha(name.as_bytes())));
    std::fs::create_dir_all(l.join("blobs/sha256")).unwrap();
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let blob = |data: &[u8]| {
        let h = sha(data);
        std::fs::write(l.join("blobs/sha256").join(&h), data).unwrap();
        (format!("sha256:{h}"), data.len())
    };
    let layer = tar_layer(extra);
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

/// A network slot of this test process: held (flock) for the test's lifetime.
pub struct NetSlot {
    pub n: u8,
    lock: std::fs::File,
    path: PathBuf,
}

impl Drop for NetSlot {
    fn drop(&mut self) {
        // Unlinked while still locked: a claimer that opened the old file finds its inode
        // gone from the path and tries again (see `claim`).
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.lock;
    }
}

impl NetSlot {
    fn claim() -> NetSlot {
        use std::os::fd::AsRawFd;
        let start = std::process::id() % 250;
        for i in 0..250 {
            let n = ((start + i) % 250) as u8;
            let path = PathBuf::from(format!("/run/lock/hull-test-net-{n}.lock"));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap();
            // SAFETY: flock on a descriptor we own; the kernel drops it when we exit.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            // The holder before us may have unlinked it after we opened it.
            use std::os::unix::fs::MetadataExt;
            let same =
                std::fs::metadata(&path).is_ok_and(|m| m.ino() == f.metadata().unwrap().ino());
            if same {
                let slot = NetSlot { n, lock: f, path };
                slot.sweep();
                return slot;
            }
        }
        panic!("no free network slot");
    }
    /// Removes what a test killed in this slot (a timeout: no Drop ran) left: nobody else
    /// uses the slot's names while we hold its lock.
    fn sweep(&self) {
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let prefix = self.prefix();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = l.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with(&prefix) {
                let _ = Command::new("ip").args(["link", "del", name]).output();
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table()])
            .output();
    }

    pub fn prefix(&self) -> String {
        format!("hn{:03}", self.n)
    }
    pub fn table(&self) -> String {
        format!("hulltest{}", self.n)
    }
    /// 10.<a>.N.0/24: 199 = the default network, 198 = the pool, others for --subnet.
    pub fn subnet(&self, a: u8) -> String {
        format!("10.{a}.{}.0/24", self.n)
    }
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub work: tempfile::TempDir,
    /// A relative cgroup parent of this test's own (HULL_CGROUP_PARENT),
    /// removed when the test ends.
    pub cgroup_parent: String,
    pub net: NetSlot,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Containers, leases, links and the table, even when the test failed half-way.
        let _ = self.cmd(&["system", "reset", "--force"]).output();
        for l in self.links() {
            let _ = Command::new("ip").args(["link", "del", &l]).output();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.net.table()])
            .output();
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
            net: NetSlot::claim(),
        }
    }

    /// The environment every hull of this test runs with.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HULL_CGROUP_PARENT", self.cgroup_parent.clone()),
            ("HULL_NET_PREFIX", self.net.prefix()),
            ("HULL_NET_TABLE", self.net.table()),
            ("HULL_NET_SUBNET", self.net.subnet(199)),
            ("HULL_NET_POOL", self.net.subnet(198)),
            ("HULL_NET_STATE", self.net_state().display().to_string()),
        ]
    }

    /// This test's host-wide network state: definitions in `networks`, leases in `run`.
    pub fn net_state(&self) -> PathBuf {
        self.work.path().join("netstate")
    }

    /// Host links of this test's slot.
    pub fn links(&self) -> Vec<String> {
        let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
        let prefix = self.net.prefix();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// This slot's links for which `keep` holds, once they are gone or 5 s
    /// have passed: a veth whose peer's netns was dying is left to the kernel
    /// (hull-net `release_veth`), whose netns cleanup runs later from a
    /// workqueue, so its removal can trail `rm`.
    pub fn links_settled(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let now = || {
            self.links()
                .into_iter()
                .filter(|l| keep(l))
                .collect::<Vec<_>>()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !now().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        now()
    }

    pub fn table_exists(&self) -> bool {
        Command::new("nft")
            .args(["list", "table", "inet", &self.net.table()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Comments of this slot's container port rules (`c:<hash>`).
    pub fn port_rules(&self) -> Vec<String> {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.net.table()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("comment \"").nth(1))
            .filter(|c| c.starts_with("c:"))
            .map(|c| c.trim_end_matches('"').to_string())
            .collect()
    }

    /// Leases recorded in the network state (of every root sharing it).
    pub fn leases(&self) -> Vec<String> {
        let dir = self.net_state().join("run");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                if let Some(m) = v["leases"].as_object() {
                    out.extend(m.keys().cloned());
                }
            }
        }
        out
    }

    pub fn load(&self, name: &str, config: serde_json::Value) {
        self.load_with(name, config, &[]);
    }

    /// [`Env::load`] of an image whose layer has `extra` entries too.
    pub fn load_with(&self, name: &str, config: serde_json::Value, extra: &[Entry]) {
        let a = archive_with(self.work.path(), name, config, extra);
        ok(&self.hull(&["load", "-i", a.to_str().unwrap()]));
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HULL);
        c.arg("--root").arg(self.root.path()).args(args);
        c.envs(self.envs());
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
        let shims = shims_under(root);
        assert!(shims.is_empty(), "shims left: {shims:?}");
        let hullc_state = root.join("hullc/hull");
        let states: Vec<_> = std::fs::read_dir(&hullc_state)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "hullc state left: {states:?}");
        // The bridge and its table stay (like docker0) until `system reset`; no
        // container's veth, port rule or lease may.
        let veths =
            self.links_settled(|l| !l.ends_with(|c: char| c.is_ascii_digit()) || l.len() > 7);
        assert!(veths.is_empty(), "veths left: {veths:?}");
        let leases = self.leases();
        assert!(leases.is_empty(), "leases left: {leases:?}");
        let rules = self.port_rules();
        assert!(rules.is_empty(), "port rules left: {rules:?}");
    }
}

/// Pids of the shims whose working directory (their bundle) lies under `root`: their
/// command line names the container id and a socket outside the root, not the root.
pub fn shims_under(root: &Path) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|p| {
            let pid: i32 = p.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(p.path().join("comm")).ok()?;
            // comm is cut at 15 bytes: "containerd-shim".
            if !comm.starts_with("containerd-shim") {
                return None;
            }
            let cwd = std::fs::read_link(p.path().join("cwd")).ok()?;
            cwd.starts_with(root).then_some(pid)
        })
        .collect()
}

/// The socket of the shim of container `id` under `root`: `/run/hull/s/<sha256 of the
/// canonical container directory>.sock` (hull-engine's `shim::socket_path`).
pub fn shim_socket(root: &Path, id: &str) -> PathBuf {
    let dir = std::fs::canonicalize(root.join("ctr").join(id)).unwrap();
    PathBuf::from(format!(
        "/run/hull/s/{}.sock",
        sha(dir.as_os_str().as_encoded_bytes())
    ))
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

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`, retrying while the server starts.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::Read as _;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let addr = (std::net::Ipv4Addr::LOCALHOST, port).into();
        let got = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
            .and_then(|mut s| {
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            });
        match got {
            Ok(body) if body.contains("200 OK") => return body,
            other => assert!(
                std::time::Instant::now() < deadline,
                "GET {path}: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
