//! Rootless hull: a real unprivileged user (made here with useradd, subordinate ids added
//! with usermod, all removed at the end even on failure) runs the hull binary through
//! `runuser`, with its own HOME and XDG_RUNTIME_DIR. Must run as root (to make the users);
//! needs uidmap (newuidmap/newgidmap), passt (pasta), docker-registry and skopeo.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, push, Comp, Layout, Registry};

const HULL: &str = env!("CARGO_BIN_EXE_hull");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// An ordinary user for one test: its home, its run dir and (optionally) 65536 subordinate
/// uids and gids. Drop ends its processes, unmounts what it left, deletes it.
struct User {
    name: String,
    uid: u32,
    home: PathBuf,
    run: PathBuf,
    range: Option<String>,
}

fn sh(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn must(cmd: &mut Command) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl User {
    fn new(subids: bool) -> User {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("hrl{}x{n}", pid % 1_000_000);
        // useradd would pick ranges itself (SUB_UID_COUNT): none, ours are added below.
        must(Command::new("useradd").args([
            "-m",
            "-s",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            &name,
        ]));
        let uid: u32 = String::from_utf8_lossy(&sh(Command::new("id").args(["-u", &name])).stdout)
            .trim()
            .parse()
            .unwrap();
        let home = PathBuf::from(format!("/home/{name}"));
        let run = PathBuf::from(format!("/tmp/{name}-run"));
        let mut u = User {
            name,
            uid,
            home,
            run,
            range: None,
        };
        // A range of its own per test process and user (2^32 ids leave room).
        let start = 1_000_000u64 + (u64::from(pid % 20_000) * 4 + u64::from(n % 4)) * 65_536;
        if subids {
            let r = format!("{start}-{}", start + 65_535);
            must(Command::new("usermod").args(["--add-subuids", &r, "--add-subgids", &r, &u.name]));
            u.range = Some(r);
        }
        std::fs::create_dir(&u.run).unwrap();
        std::os::unix::fs::chown(&u.run, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&u.run, std::fs::Permissions::from_mode(0o700)).unwrap();
        u
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.run.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(HULL)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn hull(&self, args: &[&str]) -> Output {
        sh(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.hull(args);
        assert!(
            o.status.success(),
            "hull {args:?} as {}: {}{}",
            self.name,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.hull(args);
        assert_eq!(
            o.status.code(),
            Some(125),
            "hull {args:?} should fail: {o:?}"
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn data(&self) -> PathBuf {
        self.home.join(".local/share/hull")
    }

    /// The user's processes (pids), by real uid.
    fn processes(&self) -> Vec<(i32, String)> {
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string));
            if uid.as_deref() == Some(&self.uid.to_string()) {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                v.push((pid, comm.trim().to_string()));
            }
        }
        v
    }
}

impl User {
    /// The user's processes once those that are ending have ended (a killed process is
    /// reaped by init a moment later; a shim exits after its last reply).
    fn processes_after_exit(&self) -> Vec<(i32, String)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // Whatever the test left running (pause process, shims, containers, pasta) is the
        // user's: end it by pid, then the mounts it made in its namespace are gone with it.
        for (pid, _) in self.processes() {
            // SAFETY: kill touches no memory; the pid belongs to this test's user.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
        if let Some(r) = &self.range {
            let _ = sh(Command::new("usermod").args([
                "--del-subuids",
                r,
                "--del-subgids",
                r,
                &self.name,
            ]));
        }
        let _ = sh(Command::new("userdel").args(["-r", "-f", &self.name]));
        let _ = std::fs::remove_dir_all(&self.run);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tar header owned by `uid:gid`.
fn hdr(kind: tar::EntryType, mode: u32, size: u64, uid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(uid);
    h.set_gid(uid);
    h
}

/// The test image: busybox, directories of uid 1000 and 65534, a device node, an opaque
/// directory and a whiteout in the second layer.
fn layers() -> Vec<(Comp, Vec<u8>)> {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind, mode, data: &[u8], uid| {
        let mut h = hdr(kind, mode, data.len() as u64, uid);
        b.append_data(&mut h, path, data).unwrap();
    };
    use tar::EntryType::{Directory as D, Regular as F};
    add("bin/", D, 0o755, b"", 0);
    add("bin/busybox", F, 0o755, &bb, 0);
    add("home/", D, 0o755, b"", 0);
    add("home/u/", D, 0o750, b"", 1000);
    add("home/u/notes", F, 0o640, b"mine\n", 1000);
    add("nob/", D, 0o755, b"", 65534);
    add("keep/", D, 0o755, b"", 0);
    add("keep/a", F, 0o644, b"a\n", 0);
    add("keep/b", F, 0o644, b"b\n", 0);
    add("gone", F, 0o644, b"x\n", 0);
    add("www/", D, 0o755, b"", 0);
    add(
        "www/index.html",
        F,
        0o644,
        b"hello from a rootless container\n",
        0,
    );
    for applet in [
        "sh", "ls", "stat", "id", "wc", "touch", "chown", "sleep", "true", "cat",
    ] {
        let mut h = hdr(tar::EntryType::Symlink, 0o777, 0, 0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let mut h = hdr(tar::EntryType::Char, 0o600, 0, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev-null-copy", [].as_slice())
        .unwrap();
    let first = b.into_inner().unwrap();

    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind, data: &[u8]| {
        let mut h = hdr(kind, 0o644, data.len() as u64, 0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("keep/", D, b"");
    add("keep/.wh..wh..opq", F, b"");
    add("keep/c", F, b"c\n");
    add(".wh.gone", F, b"");
    let second = b.into_inner().unwrap();
    vec![(Comp::Gzip, first), (Comp::Gzip, second)]
}

/// Pushes the test image to a fresh registry; returns it and the reference.
fn registry_image() -> (Registry, String, tempfile::TempDir) {
    let reg = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut l = Layout::new(dir.path());
    let img = l.image(layers(), "amd64");
    l.finish(vec![img], "v1").unwrap();
    let reference = format!("{}/rootless/test:v1", reg.host());
    push(dir.path(), "v1", &reference, false, None).unwrap();
    (reg, reference, dir)
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: the rootless tests make users and must run as root");
        return true;
    }
    false
}

#[test]
fn ordinary_user_pulls_runs_and_resets() {
    if skip_unless_root() {
        return;
    }
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    let pull = u.hull(&["pull", &img]);
    assert!(pull.status.success(), "{pull:?}");
    let warn = String::from_utf8_lossy(&pull.stderr);
    assert!(warn.contains("device nodes"), "no device warning: {warn}");

    // Output and exit codes.
    let o = u.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err\n"));

    // Owners from the image, through the subordinate range; root inside is the user.
    let script = "stat -c '%u:%g %n' /home/u /home/u/notes /nob /keep/c; id -u; \
                  ls /keep; ls /gone /dev-null-copy 2>&1 | wc -l";
    let out = u.ok(&["run", "--rm", "--network", "none", &img, "sh", "-c", script]);
    let want =
        "1000:1000 /home/u\n1000:1000 /home/u/notes\n65534:65534 /nob\n0:0 /keep/c\n0\nc\n2\n";
    assert_eq!(out, want);
    // On the host the snapshot's files belong to the range, the user's own root to it.
    let range_start: u32 = u
        .range
        .as_ref()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let owners: Vec<u32> = walk_uids(&u.data().join("snapshots"));
    assert!(
        owners.contains(&(range_start + 999)),
        "uid 1000 maps to start+999: {owners:?}"
    );
    assert!(owners.contains(&(range_start + 65533)), "{owners:?}");
    assert!(owners.contains(&u.uid));

    // Detached, exec, logs, ps, stop, rm; a volume written by uid 1000 inside.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "none",
        "-v",
        "vol:/data",
        &img,
        "sh",
        "-c",
        "echo started; touch /data/by-root; sleep 1000",
    ]);
    let o = u.hull(&[
        "exec",
        "-u",
        "1000",
        "c1",
        "sh",
        "-c",
        "touch /data/x 2>&1; id -u; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    u.ok(&["exec", "c1", "sh", "-c", "chown 1000:1000 /data"]);
    u.ok(&["exec", "-u", "1000:1000", "c1", "touch", "/data/mine"]);
    let st = u.ok(&[
        "exec",
        "c1",
        "stat",
        "-c",
        "%u:%g %n",
        "/data/mine",
        "/data/by-root",
    ]);
    assert_eq!(st, "1000:1000 /data/mine\n0:0 /data/by-root\n");
    assert!(u.ok(&["logs", "c1"]).contains("started"));
    assert!(u.ok(&["ps"]).contains("c1"));
    assert!(u.ok(&["inspect", "c1"]).contains("\"Running\": true"));
    u.ok(&["stop", "-t", "1", "c1"]);
    u.ok(&["rm", "c1"]);
    assert!(!u.ok(&["ps", "-a"]).contains("c1"));
    // commit: the container's opaque directory (user.overlay.opaque in its upper dir)
    // becomes an OCI opaque whiteout; the old entries stay hidden in the new image.
    let script = "rm -rf /keep; mkdir /keep; echo n > /keep/n";
    u.ok(&[
        "run",
        "--name",
        "cm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        script,
    ]);
    u.ok(&["commit", "cm", "committed:1"]);
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "committed:1",
        "ls",
        "/keep",
    ]);
    assert_eq!(out, "n\n");
    u.ok(&["rm", "cm"]);

    // run -d --rm: the watcher hull (started inside the namespace) removes it.
    u.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "--network",
        "none",
        &img,
        "true",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while u.ok(&["ps", "-a"]).contains("gone") {
        assert!(
            Instant::now() < deadline,
            "run -d --rm container not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Everything under the user's own dirs, nothing of root's.
    let info = u.ok(&["info"]);
    assert!(
        info.contains("Rootless:") && info.contains("no: rootless without"),
        "{info}"
    );
    assert!(info.contains(&u.data().display().to_string()), "{info}");

    u.ok(&["system", "reset", "-f"]);
    assert!(!u.data().exists(), "storage left after reset");
    assert!(!u.run.join("hull").exists(), "run dir left after reset");
    let left = u.processes_after_exit();
    assert!(left.is_empty(), "processes left after reset: {left:?}");
}

/// `u`'s hull on another's store either fails or shows nothing of `needle`.
fn cannot_see(u: &User, root: &str, args: &[&str], needle: &str) {
    let mut all = vec!["--root", root];
    all.extend_from_slice(args);
    let o = u.hull(&all);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains(needle),
        "{} sees {needle} in {root}: {out}",
        u.name
    );
}

fn walk_uids(dir: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            v.push(m.uid());
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Holds the network tests' lock and makes /dev/net/tun usable by everyone, as
/// distributions ship it (udev makes it 0666; this machine has no udev): pasta opens it.
struct Tun {
    _lock: std::fs::File,
    mode: u32,
}

impl Tun {
    fn open() -> Tun {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/hull-net-tests.lock")
            .unwrap();
        // SAFETY: flock on a descriptor we own; released when it closes.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        let mode = std::fs::metadata("/dev/net/tun").unwrap().mode() & 0o7777;
        std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o666)).unwrap();
        Tun { _lock: f, mode }
    }
}

impl Drop for Tun {
    fn drop(&mut self) {
        let _ =
            std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(self.mode));
    }
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn published_port_reaches_a_rootless_container() {
    if skip_unless_root() {
        return;
    }
    let _tun = Tun::open();
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);
    let port = free_port();
    let p = format!("{port}:80");
    u.ok(&[
        "run", "-d", "--name", "web", "-p", &p, &img, "busybox", "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(port) {
            Ok(b) if b.contains("200") => break b,
            r if Instant::now() > deadline => panic!("no answer on {port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.contains("hello from a rootless container"), "{body}");
    assert!(u.ok(&["ps"]).contains(&format!("0.0.0.0:{port}->80/tcp")));
    // The container reaches out through pasta too: the registry on the host's loopback is
    // not the container's, but pasta gives it the host's address and routes.
    u.ok(&["stop", "-t", "1", "web"]);
    assert!(http_get(port).is_err(), "port {port} still open after stop");
    assert!(
        !u.processes().iter().any(|(_, c)| c.starts_with("pasta")),
        "pasta left after stop"
    );
    u.ok(&["rm", "web"]);

    // What cannot work without privileges says so, naming the flag.
    let e = u.fails(&["run", "--rm", "-p", "80:80", &img, "true"]);
    assert!(
        e.contains("-p 80:80") && e.contains("ip_unprivileged_port_start"),
        "{e}"
    );
    let e = u.fails(&["run", "--rm", "--network", "mynet", &img, "true"]);
    assert!(
        e.contains("--network mynet") && e.contains("need root"),
        "{e}"
    );
    let e = u.fails(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--network",
        "none",
        &img,
        "true",
    ]);
    assert!(e.contains("--memory") && e.contains("delegat"), "{e}");
    assert!(u.fails(&["network", "create", "n1"]).contains("need root"));
    // --network host: the host's interfaces (sysfs of the host's netns is bound read-only).
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "ls",
        "/sys/class/net",
    ]);
    assert!(out.contains("lo"), "{out}");
    u.ok(&["system", "reset", "-f"]);
}

#[test]
fn user_without_subordinate_ids_gets_a_single_id_map() {
    if skip_unless_root() {
        return;
    }
    let u = User::new(false);
    let (_reg, img, _layout) = registry_image();
    let o = u.hull(&["pull", &img]);
    assert!(o.status.success(), "{o:?}");
    let warn = String::from_utf8_lossy(&o.stderr);
    assert!(
        warn.contains("no subordinate ids") && warn.contains("usermod --add-subuids"),
        "{warn}"
    );
    // Files of other owners are the user's (root inside); the rest works.
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "stat",
        "-c",
        "%u %n",
        "/home/u",
        "/nob",
    ]);
    assert_eq!(out, "0 /home/u\n0 /nob\n");

    // The pause process killed under a running container: the next command starts a new
    // one (a killed, unreaped pause is not taken for alive) and still stops and removes it.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        "--network",
        "none",
        &img,
        "sleep",
        "1000",
    ]);
    let pid: i32 = std::fs::read_to_string(u.run.join("hull/pause.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill touches no memory; the pid is this test user's pause process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(u.ok(&["ps"]).contains(" k\n"));
    u.ok(&["stop", "-t", "1", "k"]);
    u.ok(&["rm", "k"]);
    u.ok(&["system", "reset", "-f"]);
    assert_eq!(u.processes_after_exit(), vec![]);
}

#[test]
fn users_cannot_reach_each_others_or_roots_state() {
    if skip_unless_root() {
        return;
    }
    let a = User::new(true);
    let b = User::new(true);
    let (_reg, img, _layout) = registry_image();
    a.ok(&["pull", &img]);
    a.ok(&["volume", "create", "secret"]);
    let a_root = a.data();
    let a_root = a_root.to_str().unwrap();
    // b's hull, as root of b's own namespace, is still b on the host.
    b.fails(&["--root", a_root, "images"]);
    cannot_see(&b, a_root, &["volume", "ls"], "secret");

    // The Docker API service listens in the user's run dir by default.
    let mut svc = a.cmd(&["system", "service", "-t", "2"]).spawn().unwrap();
    let sock = a.run.join("hull/docker.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", sock.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
    let mut pong = String::new();
    s.read_to_string(&mut pong).unwrap();
    assert!(pong.ends_with("OK"), "{pong}");
    assert!(svc.wait().unwrap().success());

    // Root's store: made 0700 by hull, under a directory everyone may enter.
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_store = top.path().join("hull");
    let o = sh(Command::new(HULL)
        .arg("--root")
        .arg(&root_store)
        .args(["volume", "create", "rootvol"]));
    assert!(o.status.success(), "{o:?}");
    let store = root_store.to_str().unwrap();
    cannot_see(&b, store, &["volume", "ls"], "rootvol");
    b.fails(&["--root", store, "images"]);
    assert_eq!(
        std::fs::metadata(&root_store).unwrap().mode() & 0o777,
        0o700,
        "root's store must be private"
    );
    // The user's own store is private too.
    assert_eq!(std::fs::metadata(a.data()).unwrap().mode() & 0o777, 0o700);
    a.ok(&["system", "reset", "-f"]);
    b.ok(&["system", "reset", "-f"]);
}
