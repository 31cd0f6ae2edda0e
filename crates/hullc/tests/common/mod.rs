//! Shared harness for the hullc integration tests.
//!
//! - [`Bundle`]: a busybox-static rootfs plus a config.json made by
//!   `hullc spec` and edited as JSON by the test.
//! - [`Hullc`]: runs the binary with a per-test `--root`, captures its
//!   stdout/stderr (through files, never pipes: a detached container keeps
//!   its stdio open long after hullc exits) and, on drop, force-deletes every
//!   container it created and reaps what is left.
//! - [`assert_clean`]: nothing left behind (state dir, mounts, processes,
//!   cgroups).
//!
//! The test process makes itself a child subreaper, so a container init
//! orphaned by `hullc create` becomes our child; we reap those zombies.
#![allow(dead_code)] // each test binary uses a different subset

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;

mod bundle;
mod clean;
#[allow(unused_imports)] // not every test binary uses each item
pub use bundle::Bundle;
#[allow(unused_imports)]
pub use clean::*;

pub const HULLC: &str = env!("CARGO_BIN_EXE_hullc");
pub const BUSYBOX: &str = "/bin/busybox";

/// Every hullc command must finish within this; a hang is a test failure,
/// not a stuck CI job.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

static SETUP: Once = Once::new();

/// Pids of helper processes the test spawned itself (and will wait for):
/// the zombie reaper must leave them to their `Child`. Held across each spawn
/// and push ([`spawn_own`]), each reap and the zombie check of
/// [`assert_clean`]: the tests of one binary run as threads of one process
/// (`cargo test`), so another test's reaper would otherwise reap a hullc that
/// exited before it was pushed (its `wait` then fails with ECHILD), or count
/// it as an unreaped child of this test.
static OWN_CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn own_children() -> std::sync::MutexGuard<'static, Vec<i32>> {
    OWN_CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `c` as a child the zombie reaper leaves to its `Child`.
fn spawn_own(c: &mut Command) -> std::io::Result<std::process::Child> {
    let mut own = own_children();
    let child = c.spawn()?;
    own.push(child.id() as i32);
    Ok(child)
}

/// Hands a waited-for child back to the reaper's watch.
fn disown(pid: i32) {
    own_children().retain(|p| *p != pid);
}

fn setup() {
    SETUP.call_once(|| {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "the hullc integration tests must run as root"
        );
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: apt-get install busybox-static"
        );
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// A unique suffix for ids, tags and file names: several test processes
/// (and other engineers' suites) share the host's cgroup tree.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reaps our zombie children (orphaned container inits), except helpers
/// that a `Child` owns.
pub fn reap_zombies() {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let own = own_children();
    for (pid, ppid, state) in processes() {
        if ppid == me && state == 'Z' && !own.contains(&pid) {
            let mut st = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        }
    }
}

/// (pid, ppid, state) of every process.
pub fn processes() -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut f = stat[close + 2..].split(' ');
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state));
    }
    out
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    processes()
        .iter()
        .any(|(p, _, s)| *p == pid && *s != 'Z' && *s != 'X')
}

/// Polls `f` every 10 ms until it is true; panics with `what` after `t`.
pub fn wait_until(what: &str, t: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + t;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One hullc invocation's result.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
    /// The file that received hullc's stdout: a container started by
    /// `create` keeps writing there after hullc has exited.
    pub stdout_path: PathBuf,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "hullc {:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a clean failure: exit status 1 (255 for `exec`, as runc),
    /// an error on stderr that contains every one of `needles`, and no panic.
    #[track_caller]
    pub fn fails_with(self, needles: &[&str]) -> Self {
        let want = if self.args.iter().any(|a| a == "exec") {
            255
        } else {
            1
        };
        assert_eq!(
            self.code(),
            Some(want),
            "hullc {:?} should fail with status {want} ({}):\nstdout: {}\nstderr: {}",
            self.args,
            self.status,
            self.stdout,
            self.stderr
        );
        self.assert_no_panic();
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "hullc {:?}: stderr should mention {n:?}:\n{}",
                self.args,
                self.stderr
            );
        }
        self
    }

    #[track_caller]
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && self.code() != Some(101),
            "hullc {:?} panicked:\n{}",
            self.args,
            self.stderr
        );
    }
}

/// A hullc process the test has not waited for yet.
pub struct Spawned {
    child: std::process::Child,
    out_path: PathBuf,
    err_path: PathBuf,
    args: Vec<String>,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The file receiving the process' stdout while it runs.
    pub fn stdout_path(&self) -> &Path {
        &self.out_path
    }

    /// Waits (at most [`CMD_TIMEOUT`]) and collects the output.
    pub fn wait(mut self) -> Out {
        let end = Instant::now() + CMD_TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait hullc") {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("hullc {:?} did not finish in {CMD_TIMEOUT:?}", self.args);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        disown(self.pid());
        reap_zombies();
        Out {
            status,
            stdout: fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err_path).unwrap_or_default(),
            args: std::mem::take(&mut self.args),
            stdout_path: self.out_path.clone(),
        }
    }
}

impl Drop for Spawned {
    /// A test that panicked before `wait` must not leave hullc running.
    fn drop(&mut self) {
        // Both are no-ops on a child that was already waited for.
        let _ = self.child.kill();
        let _ = self.child.wait();
        disown(self.pid());
    }
}

/// Runs hullc with a private `--root`; forgets nothing it created.
pub struct Hullc {
    tmp: tempfile::TempDir,
    root: PathBuf,
    /// Tag put in every hullc's (and so every init's) environment, to find
    /// our processes on the host.
    pub tag: String,
    ids: RefCell<Vec<String>>,
    n: std::cell::Cell<u32>,
}

impl Default for Hullc {
    fn default() -> Self {
        Self::new()
    }
}

impl Hullc {
    pub fn new() -> Self {
        setup();
        let tmp = tempfile::Builder::new()
            .prefix("hullc-test-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("root");
        Hullc {
            tmp,
            root,
            tag: unique("tag"),
            ids: RefCell::new(Vec::new()),
            n: std::cell::Cell::new(0),
        }
    }

    /// The state root passed as `--root` (created by hullc on first use).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory owned by this harness (removed at drop).
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// A per-test unique container id.
    pub fn id(&self, name: &str) -> String {
        unique(name)
    }

    /// Remember `id` for force-deletion at drop.
    pub fn track(&self, id: &str) {
        let mut ids = self.ids.borrow_mut();
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_string());
        }
    }

    /// `hullc --root ROOT ARGS...`.
    pub fn cmd(&self, args: &[&str]) -> Out {
        self.cmd_with(args, |_| {})
    }

    /// As [`Hullc::cmd`], with a hook to adjust the command (stdin, env).
    pub fn cmd_with(&self, args: &[&str], f: impl FnOnce(&mut Command)) -> Out {
        let mut c = Command::new(HULLC);
        c.arg("--root").arg(&self.root).args(args);
        self.exec(c, args, f)
    }

    /// Runs hullc without `--root` injected (for global-flag tests).
    pub fn raw(&self, args: &[&str]) -> Out {
        let mut c = Command::new(HULLC);
        c.args(args);
        self.exec(c, args, |_| {})
    }

    fn exec(&self, c: Command, args: &[&str], f: impl FnOnce(&mut Command)) -> Out {
        self.spawn_cmd(c, args, f).wait()
    }

    /// Starts `hullc --root ROOT ARGS...` without waiting (e.g. a foreground
    /// `run` that the test signals).
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let mut c = Command::new(HULLC);
        c.arg("--root").arg(&self.root).args(args);
        self.spawn_cmd(c, args, |_| {})
    }

    fn spawn_cmd(&self, mut c: Command, args: &[&str], f: impl FnOnce(&mut Command)) -> Spawned {
        let n = self.n.get();
        self.n.set(n + 1);
        let out_path = self.tmp.path().join(format!("cmd{n}.out"));
        let err_path = self.tmp.path().join(format!("cmd{n}.err"));
        c.env("HULL_TEST_TAG", &self.tag)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("stdout file"))
            .stderr(fs::File::create(&err_path).expect("stderr file"));
        f(&mut c);
        let child = spawn_own(&mut c).expect("spawn hullc");
        Spawned {
            child,
            out_path,
            err_path,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `hullc create -b BUNDLE [extra...] ID` (config saved first).
    pub fn create(&self, b: &Bundle, id: &str, extra: &[&str]) -> Out {
        b.save();
        self.track(id);
        let bundle = b.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["create", "--bundle", bundle];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd(&args)
    }

    /// `hullc run -b BUNDLE [extra...] ID` (config saved first).
    pub fn run(&self, b: &Bundle, id: &str, extra: &[&str]) -> Out {
        self.run_with(b, id, extra, |_| {})
    }

    pub fn run_with(
        &self,
        b: &Bundle,
        id: &str,
        extra: &[&str],
        f: impl FnOnce(&mut Command),
    ) -> Out {
        b.save();
        self.track(id);
        let bundle = b.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["run", "--bundle", bundle];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd_with(&args, f)
    }

    /// Runs `script` with `sh -c` in a fresh container of `b` and returns its
    /// stdout; asserts exit 0.
    #[track_caller]
    pub fn sh(&self, b: &mut Bundle, script: &str) -> String {
        b.args(&["sh", "-c", script]);
        let id = self.id("sh");
        self.run(b, &id, &[]).ok().stdout
    }

    /// `hullc state ID` as JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let o = self.cmd(&["state", id]).ok();
        serde_json::from_str(&o.stdout).expect("state prints JSON")
    }

    /// The `status` field of `hullc state ID`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("status is a string")
            .to_string()
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        wait_until(
            &format!("{id} to be {want}"),
            Duration::from_secs(20),
            || self.status(id) == want,
        );
    }
}

impl Drop for Hullc {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let mut c = Command::new(HULLC);
            c.arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = spawn_own(&mut c) {
                let _ = child.wait();
                disown(child.id() as i32);
            }
        }
        // Anything still tagged (a container whose delete failed) dies now.
        for pid in tagged_pids(&self.tag) {
            // SAFETY: kill with a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let end = Instant::now() + Duration::from_secs(5);
        while !tagged_pids(&self.tag).is_empty() && Instant::now() < end {
            reap_zombies();
            std::thread::sleep(Duration::from_millis(10));
        }
        reap_zombies();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Live processes whose environment carries `HULL_TEST_TAG=tag`: hullc
/// itself and every container init it cloned (before and after exec, since
/// bundles built by [`Bundle::new`] carry the tag in process.env too).
pub fn tagged_pids(tag: &str) -> Vec<i32> {
    let needle = format!("HULL_TEST_TAG={tag}");
    processes()
        .into_iter()
        .filter(|(_, _, s)| *s != 'Z')
        .filter(|(pid, _, _)| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|e| e == needle.as_bytes()))
                .unwrap_or(false)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// A helper process the test owns (e.g. a namespace holder); killed and
/// waited for on drop.
pub struct Helper {
    child: std::process::Child,
}

impl Helper {
    pub fn spawn(mut c: Command) -> Helper {
        setup();
        c.stdin(Stdio::null()).stdout(Stdio::null());
        let child = spawn_own(&mut c).expect("spawn helper");
        Helper { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        disown(self.pid());
    }
}

/// Unmounts `path` (lazily) and removes it on drop: for namespace files
/// bind-mounted by a test.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.0.to_string_lossy().as_bytes()) {
            // SAFETY: NUL-terminated path; umount2 only takes flags besides.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = fs::remove_file(&self.0);
    }
}

/// The namespace link `/proc/PID/ns/KIND` (e.g. `net:[4026531840]`).
pub fn ns_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .expect("namespace link")
        .to_string_lossy()
        .into_owned()
}

/// The set of field-6 mount options and the fs type of the mount at `mp`
/// in a mountinfo text (the last such mount wins: it is the visible one).
pub fn mount_at(mountinfo: &str, mp: &str) -> Option<(HashSet<String>, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let lf: Vec<&str> = left.split(' ').collect();
            let rf: Vec<&str> = right.split(' ').collect();
            (lf.get(4) == Some(&mp)).then(|| {
                (
                    lf[5].split(',').map(str::to_string).collect(),
                    rf[0].to_string(),
                    rf.get(2).unwrap_or(&"").to_string(),
                )
            })
        })
        .next_back()
}

/// Receives one message and the fd sent with it (SCM_RIGHTS), as the
/// console-socket and seccomp-agent protocols send them.
pub fn recv_fd(conn: &std::os::unix::net::UnixStream) -> (String, std::os::fd::OwnedFd) {
    let mut buf = vec![0u8; 65536];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(conn),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    let n = msg.bytes;
    let fd = msg
        .cmsgs()
        .expect("cmsgs")
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(f) => f.first().copied(),
            _ => None,
        })
        .expect("an fd");
    // SAFETY: the kernel installed this fd for us.
    (String::from_utf8_lossy(&buf[..n]).to_string(), unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
    })
}
