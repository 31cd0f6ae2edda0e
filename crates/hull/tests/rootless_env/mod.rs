//! The rootless tests' fixtures: a real unprivileged user per test (useradd, subordinate
//! ids through usermod; all removed on drop, also on failure), the test image with files of
//! several owners, the /dev/net/tun guard for pasta.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{push, Comp, Layout, Registry};

pub(crate) const HULL: &str = env!("CARGO_BIN_EXE_hull");

pub(crate) static SEQ: AtomicU32 = AtomicU32::new(0);

/// An ordinary user for one test: its home, its run dir and (optionally) 65536 subordinate
/// uids and gids. Drop ends its processes, unmounts what it left, deletes it.
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) home: PathBuf,
    pub(crate) run: PathBuf,
    pub(crate) range: Option<String>,
}

pub(crate) fn sh(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub(crate) fn must(cmd: &mut Command) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl User {
    pub(crate) fn new(subids: bool) -> User {
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
        // A range of its own per test process and user, below 2^31 (ids are 32-bit, and the
        // last ones are special): at most 1e6 + 32,000 x 65,536 = 2,098,152,000.
        let start = 1_000_000u64 + (u64::from(pid % 8_000) * 4 + u64::from(n % 4)) * 65_536;
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

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
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

    pub(crate) fn hull(&self, args: &[&str]) -> Output {
        sh(&mut self.cmd(args))
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
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

    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let o = self.hull(args);
        assert_eq!(
            o.status.code(),
            Some(125),
            "hull {args:?} should fail: {o:?}"
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.home.join(".local/share/hull")
    }

    /// The user's processes (pids), by real uid.
    pub(crate) fn processes(&self) -> Vec<(i32, String)> {
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
    pub(crate) fn processes_after_exit(&self) -> Vec<(i32, String)> {
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

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tar header owned by `uid:gid`.
pub(crate) fn hdr(kind: tar::EntryType, mode: u32, size: u64, uid: u64) -> tar::Header {
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
pub(crate) fn layers() -> Vec<(Comp, Vec<u8>)> {
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
pub(crate) fn registry_image() -> (Registry, String, tempfile::TempDir) {
    let reg = Registry::start(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut l = Layout::new(dir.path());
    let img = l.image(layers(), "amd64");
    l.finish(vec![img], "v1").unwrap();
    let reference = format!("{}/rootless/test:v1", reg.host());
    push(dir.path(), "v1", &reference, false, None).unwrap();
    (reg, reference, dir)
}

pub(crate) fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: the rootless tests make users and must run as root");
        return true;
    }
    false
}

/// `u`'s hull on another's store either fails or shows nothing of `needle`.
pub(crate) fn cannot_see(u: &User, root: &str, args: &[&str], needle: &str) {
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

pub(crate) fn walk_uids(dir: &Path) -> Vec<u32> {
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
pub(crate) struct Tun {
    _lock: std::fs::File,
    mode: u32,
}

impl Tun {
    pub(crate) fn open() -> Tun {
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

pub(crate) fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
