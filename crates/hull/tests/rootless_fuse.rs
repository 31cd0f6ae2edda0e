//! Rootless hull through fuse-overlayfs (`--storage-opt mount_program=...`, the fallback where
//! the kernel refuses overlayfs in a user namespace): a real unprivileged user (as in
//! rootless.rs) runs the two-layer test image, with a whiteout and an opaque directory, on a
//! FUSE rootfs. Must run as root (to make the user and open /dev/fuse to it); skipped when
//! fuse-overlayfs is not installed (Debian package `fuse-overlayfs`).
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

#[allow(dead_code)]
mod rootless_env;

use std::path::Path;
use std::time::{Duration, Instant};

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use rootless_env::{registry_image, skip_unless_root, User};

const FUSE_OVERLAYFS: &str = "/usr/bin/fuse-overlayfs";

/// The fuse-overlayfs mounts in the user's namespace (the pause process's mount table).
fn fuse_mounts(u: &User) -> Vec<String> {
    let Ok(pid) = std::fs::read_to_string(u.run.join("hull/pause.pid")) else {
        return Vec::new();
    };
    let info =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.trim())).unwrap_or_default();
    info.lines()
        .filter(|l| l.contains(" - fuse.fuse-overlayfs "))
        .map(str::to_string)
        .collect()
}

fn fuse_daemons(u: &User) -> Vec<i32> {
    u.processes()
        .into_iter()
        .filter(|(_, comm)| comm == "fuse-overlayfs")
        .map(|(pid, _)| pid)
        .collect()
}

/// Waits until the user has no fuse-overlayfs process and no such mount (a daemon exits a
/// moment after its unmount).
fn assert_no_fuse_left(u: &User, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (d, m) = (fuse_daemons(u), fuse_mounts(u));
        if d.is_empty() && m.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {when}: fuse-overlayfs processes {d:?}, mounts {m:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes /dev/fuse usable by everyone while held, as distributions ship it (udev makes it
/// 0666; this machine has no udev): fuse-overlayfs opens it. Tests that change it take a lock,
/// so one does not restore it under another.
struct DevFuse {
    _lock: std::fs::File,
    mode: u32,
}

impl DevFuse {
    fn open() -> DevFuse {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/hull-dev-fuse-tests.lock")
            .unwrap();
        // SAFETY: flock on a descriptor we own; released when it closes.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
        let mode = std::fs::metadata("/dev/fuse").unwrap().mode() & 0o7777;
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
        DevFuse { _lock: f, mode }
    }
}

impl Drop for DevFuse {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.mode));
    }
}

#[test]
fn forced_fuse_overlayfs_runs_a_layered_image_and_leaves_nothing() {
    if skip_unless_root() {
        return;
    }
    if !Path::new(FUSE_OVERLAYFS).exists() {
        eprintln!("skipped: {FUSE_OVERLAYFS} is not installed (apt-get install fuse-overlayfs)");
        return;
    }
    let _fuse = DevFuse::open();
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);
    let opt = format!("mount_program={FUSE_OVERLAYFS}");
    let with = |args: &[&str]| -> Vec<String> {
        ["--storage-opt", opt.as_str()]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let ok = |args: &[&str]| {
        let a = with(args);
        u.ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // run --rm: the rootfs is fuse-overlayfs's; the first layer's /gone is whited out, its
    // /keep/a and /keep/b hidden by the second layer's opaque /keep; owners through the range.
    let script = "busybox awk '$2 == \"/\" {print $3}' /proc/mounts; ls /keep; \
                  ls /gone 2>&1 | wc -l; stat -c '%u:%g' /home/u/notes";
    let out = ok(&["run", "--rm", "--network", "none", &img, "sh", "-c", script]);
    assert_eq!(out, "fuse.fuse-overlayfs\nc\n1\n1000:1000\n");
    assert_no_fuse_left(&u, "run --rm");

    // Detached: writes in the rootfs, exec as root and as uid 1000 (allow_other), deletes.
    ok(&[
        "run",
        "-d",
        "--name",
        "f1",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo w > /keep/written; sleep 1000",
    ]);
    assert_eq!(fuse_daemons(&u).len(), 1, "{:?}", u.processes());
    assert_eq!(fuse_mounts(&u).len(), 1);
    // The daemon outlives the hull that started it: it must not keep the store's database or
    // lock open (a held lock would block every later hull).
    for pid in fuse_daemons(&u) {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let file = std::fs::metadata(fd.path()).is_ok_and(|m| m.is_file());
            assert!(
                !(file && target.parent() == Some(u.data().as_path())),
                "fuse-overlayfs {pid} holds {}",
                target.display()
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while u.hull(&["exec", "f1", "cat", "/keep/written"]).stdout != b"w\n" {
        assert!(Instant::now() < deadline, "f1 never wrote /keep/written");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(u.ok(&["exec", "f1", "ls", "/keep"]), "c\nwritten\n");
    assert_eq!(
        u.ok(&["exec", "-u", "1000", "f1", "cat", "/home/u/notes"]),
        "mine\n"
    );
    // A whiteout and an opaque directory made through fuse-overlayfs, in the upper dir.
    u.ok(&[
        "exec",
        "f1",
        "sh",
        "-c",
        "rm /home/u/notes && rm -rf /keep && mkdir /keep && echo n > /keep/n",
    ]);
    assert_eq!(
        u.ok(&["exec", "f1", "ls", "/keep", "/home/u"]),
        "/home/u:\n\n/keep:\nn\n"
    );
    let diff = u.ok(&["diff", "f1"]);
    assert!(
        diff.contains("D /home/u/notes") && diff.contains("A /keep/n") && !diff.contains(".wh."),
        "{diff}"
    );
    u.ok(&["stop", "-t", "1", "f1"]);
    // commit reads fuse-overlayfs's markers: the new image (run natively) hides the same.
    u.ok(&["commit", "f1", "fused:1"]);
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "fused:1",
        "ls",
        "-a",
        "/keep",
        "/home/u",
    ]);
    assert_eq!(out, "/home/u:\n.\n..\n\n/keep:\n.\n..\nn\n");
    u.ok(&["rm", "f1"]);
    assert_no_fuse_left(&u, "stop and rm");

    // A mount program that does not run: an error naming it, nothing left behind.
    let bad = u.hull(&[
        "--storage-opt",
        "mount_program=/nonexistent/fuse-overlayfs",
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "true",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(125), "{bad:?}");
    assert!(err.contains("/nonexistent/fuse-overlayfs"), "{err}");
    assert_eq!(u.ok(&["ps", "-aq"]), "");
    let e = u.fails(&["--storage-opt", "mount_prog=x", "ps"]);
    assert!(e.contains("unknown option mount_prog"), "{e}");

    // A container left running: system reset unmounts it and ends its daemon.
    ok(&[
        "run",
        "-d",
        "--name",
        "f2",
        "--network",
        "none",
        &img,
        "sleep",
        "1000",
    ]);
    assert_eq!(fuse_daemons(&u).len(), 1);
    u.ok(&["system", "reset", "-f"]);
    assert!(!u.data().exists(), "storage left after reset");
    let left = u.processes_after_exit();
    assert!(left.is_empty(), "processes left after reset: {left:?}");
}

/// The `containers` dir of the user's store on an overlayfs (made by root before the user's
/// first hull; the snapshots stay on the disk, as overlayfs refuses to create whiteouts through
/// it): overlayfs does not take an overlayfs as its upper dir's filesystem, so the kernel
/// refuses the container's overlay in the user namespace with EINVAL ("filesystem on ... not
/// supported as upperdir"): the refusal hull must fall back from, on a kernel that otherwise
/// allows overlayfs there.
struct OverlayStore {
    at: std::path::PathBuf,
    tmp: tempfile::TempDir,
}

impl OverlayStore {
    fn new(u: &User) -> OverlayStore {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        for d in ["lo", "up", "wk"] {
            std::fs::create_dir(t.join(d)).unwrap();
        }
        std::os::unix::fs::chown(t.join("up"), Some(u.uid), Some(u.uid)).unwrap();
        std::fs::set_permissions(t.join("up"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut d = u.home.clone();
        for (name, mode) in [
            (".local", 0o755),
            ("share", 0o755),
            ("hull", 0o700),
            ("containers", 0o700),
        ] {
            d.push(name);
            std::fs::create_dir(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(u.uid), Some(u.uid)).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            t.join("lo").display(),
            t.join("up").display(),
            t.join("wk").display()
        );
        rootless_env::must(
            std::process::Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&d),
        );
        OverlayStore { at: d, tmp }
    }
}

impl Drop for OverlayStore {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.at.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; detaching what this guard mounted.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir_all(self.tmp.path());
    }
}

#[test]
fn refused_kernel_overlay_falls_back_to_fuse_overlayfs() {
    if skip_unless_root() {
        return;
    }
    if !Path::new(FUSE_OVERLAYFS).exists() {
        eprintln!("skipped: {FUSE_OVERLAYFS} is not installed (apt-get install fuse-overlayfs)");
        return;
    }
    let _fuse = DevFuse::open();
    let u = User::new(true);
    let store = OverlayStore::new(&u);
    let (_reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);
    // No option: the kernel's refusal (of the volatile mount for --rm, then of the durable
    // one) makes hull mount fuse-overlayfs itself. A whiteout made in the container hides a
    // file of the image.
    let script = "busybox awk '$2 == \"/\" {print $3}' /proc/mounts; ls /gone 2>&1 | wc -l; \
                  rm /keep/c && ls /keep | wc -l; echo x > /new && cat /new";
    let out = u.ok(&["run", "--rm", "--network", "none", &img, "sh", "-c", script]);
    assert_eq!(out, "fuse.fuse-overlayfs\n1\n0\nx\n");
    assert_no_fuse_left(&u, "run --rm");
    u.ok(&[
        "run",
        "-d",
        "--name",
        "a1",
        "--network",
        "none",
        &img,
        "sleep",
        "1000",
    ]);
    assert_eq!(fuse_daemons(&u).len(), 1, "{:?}", u.processes());
    assert_eq!(
        u.ok(&["exec", "-u", "1000", "a1", "cat", "/home/u/notes"]),
        "mine\n"
    );
    u.ok(&["rm", "-f", "a1"]);
    assert_no_fuse_left(&u, "rm -f");
    drop(store);
}
