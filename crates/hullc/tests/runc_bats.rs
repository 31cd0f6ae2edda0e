//! What runc's own integration suite (tests/integration of runc v1.1.15,
//! issue 17) found hullc doing differently, each case as the suite checks
//! it: the pty's group (tty.bats), `exec -p` from a pipe (tty.bats),
//! exec's exit status 255, paused containers and `--cgroup` (exec.bats,
//! cgroups.bats), unified keys on a v1 host (cgroups.bats), seccomp agent
//! errors (seccomp-notify.bats) and CAP_DAC_OVERRIDE at exec
//! (start_hello.bats). `scripts/runc-bats.sh` runs the suite itself.

mod common;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use common::{Bundle, Hullc};
use serde_json::json;

/// A running container (`sleep`), detached.
fn running(h: &Hullc, b: &mut Bundle, name: &str) -> String {
    b.args(&["sleep", "1000"]);
    let id = h.id(name);
    h.run(b, &id, &["--detach"]).ok();
    h.wait_status(&id, "running");
    id
}

fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The default config mounts devpts with `gid=5`: the pty's group is the
/// tty group, for `run` and `exec -t` alike, whatever the process' gid
/// (only the owner becomes the process' user, as runc).
#[test]
fn the_pty_keeps_the_group_devpts_gives_it() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 100});
    b.args(&["sh", "-c", "stat -c %u:%g $(tty)"]);
    let id = h.id("ttygid");
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout.trim(), "1000:5", "{o:?}");

    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "ttygidexec");
    let o = h
        .cmd(&["exec", "-t", &id, "sh", "-c", "stat -c %u:%g $(tty)"])
        .ok();
    assert_eq!(o.stdout.trim(), "0:5", "{o:?}");
}

/// `exec -p <(echo ...)`: the process comes from a pipe (`/dev/fd/63`).
/// A process without a capabilities object makes hullc re-exec itself from a
/// protected copy (CVE-2019-5736, the fallback), which parses its arguments
/// again: it must read the same process, not the drained pipe.
#[test]
fn exec_process_from_a_pipe_survives_the_reexec() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execpipe");
    let process = json!({
        "args": ["sh", "-c", "echo from-the-pipe"],
        "cwd": "/",
        "env": ["PATH=/bin", format!("HULL_TEST_TAG={}", h.tag)],
    });
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // The whole process fits the pipe's buffer; the write end closes here.
    fs::File::from(w)
        .write_all(process.to_string().as_bytes())
        .expect("write the process");
    let rfd = r.as_raw_fd();
    let o = h.cmd_with(&["--debug", "exec", "-p", "/dev/fd/63", &id], |c| {
        // SAFETY: dup2 in the forked child before exec; async-signal-safe.
        // dup2 leaves fd 63 inheritable, as bash's process substitution.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(rfd, 63) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    drop(r);
    let o = o.ok();
    assert!(
        o.stderr.contains("re-exec"),
        "the fallback (a re-exec) ran: {}",
        o.stderr
    );
    assert_eq!(o.stdout.trim(), "from-the-pipe", "{o:?}");
}

/// runc's `exec` exits 255 when the process could not be run, so that a
/// caller tells it from the process' own status (exec.bats "exit codes").
#[test]
fn exec_failures_exit_255() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "exec255");
    assert_eq!(h.cmd(&["exec", &id, "false"]).code(), Some(1));
    assert_eq!(
        h.cmd(&["exec", &id, "sh", "-c", "exit 42"]).code(),
        Some(42)
    );
    h.cmd(&["exec", "--pid-file", "/non-existent/dir", &id, "true"])
        .fails_with(&["--pid-file"]);
    h.cmd(&["exec", &id, "no-such-binary"])
        .fails_with(&["no-such-binary"]);
    h.cmd(&["exec", "no-such-container", "true"])
        .fails_with(&["does not exist"]);
}

/// A paused container: exec is refused in runc's words (it would hang in
/// the frozen cgroup), unless `--ignore-paused`, whose process starts on
/// resume (cgroups.bats 15 and 16).
#[test]
fn exec_in_a_paused_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execpaused");
    h.cmd(&["pause", &id]).ok();
    h.cmd(&["exec", &id, "echo", "ok"])
        .fails_with(&["cannot exec in a paused container", "--ignore-paused"]);
    let waiting = h.spawn(&["exec", "--ignore-paused", &id, "echo", "ok"]);
    std::thread::sleep(Duration::from_millis(500));
    h.cmd(&["resume", &id]).ok();
    let o = waiting.wait().ok();
    assert_eq!(o.stdout, "ok\n");
}

/// `exec --cgroup`: the process joins a sub-cgroup the container made in
/// its (writable) cgroupfs; paths may not leave the container's cgroup, and
/// the sub-cgroup must exist (exec.bats 14 on v1, 15 on v2).
#[test]
fn exec_into_a_sub_cgroup() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    for m in b.config["mounts"].as_array_mut().expect("mounts") {
        if m["type"] == "cgroup" {
            let opts = m["options"].as_array_mut().expect("options");
            opts.retain(|o| o != "ro");
        }
    }
    let id = running(&h, &mut b, "execcg");
    h.cmd(&["exec", "--cgroup", "..", &id, "true"])
        .fails_with(&[" .. is not a sub cgroup path"]);
    h.cmd(&["exec", "--cgroup", "nonexistent", &id, "true"])
        .fails_with(&["adding pid ", "/nonexistent/cgroup.procs: no such file "]);
    h.cmd(&["exec", "--cgroup", "whaaat:/", &id, "true"])
        .fails_with(&["unknown controller "]);
    let (mkdir, arg, want) = if pure_v2() {
        ("mkdir /sys/fs/cgroup/sub", "sub", "0::/sub")
    } else {
        (
            "mkdir /sys/fs/cgroup/memory/sub",
            "memory:sub",
            ":memory:/sub",
        )
    };
    h.cmd(&["exec", &id, "sh", "-c", mkdir]).ok();
    let o = h
        .cmd(&["exec", "--cgroup", arg, &id, "cat", "/proc/self/cgroup"])
        .ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with(want)), "{lines:?}");
    // Every other hierarchy keeps the container's cgroup (the namespace's root).
    let others = lines.iter().filter(|l| !l.ends_with(want));
    assert!(others.clone().all(|l| l.ends_with(":/")), "{lines:?}");
    // `/` is the container's cgroup itself.
    let o = h
        .cmd(&["exec", "--cgroup", "/", &id, "cat", "/proc/self/cgroup"])
        .ok();
    assert!(o.stdout.lines().all(|l| l.ends_with(":/")), "{o:?}");
}

/// `linux.resources.unified` on a v1 or hybrid host, for a file the
/// unified hierarchy lacks: runc's `invalid configuration` (cgroups.bats 7).
#[test]
fn unified_keys_on_a_v1_host_are_an_invalid_configuration() {
    if pure_v2() {
        eprintln!("skipped: this host is pure cgroup v2");
        return;
    }
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["linux"]["resources"]["unified"] = json!({"memory.min": "131072"});
    let id = h.id("unifiedv1");
    h.run(&b, &id, &["--detach"])
        .fails_with(&["invalid configuration", "memory.min"]);
    common::assert_clean(&h, &b, &[&id]);
}

/// SCMP_ACT_NOTIFY errors in runc's words (seccomp-notify.bats 12, 14).
#[test]
fn seccomp_notify_errors_read_like_runc() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let sock = h.scratch().join("no-agent.sock");
    let profile = |names: &[&str]| {
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [{"names": names, "action": "SCMP_ACT_NOTIFY"}],
        })
    };
    b.config["linux"]["seccomp"] = profile(&["mkdir"]);
    let id = h.id("noagent");
    h.run(&b, &id, &[])
        .fails_with(&["failed to connect with seccomp agent"]);
    b.config["linux"]["seccomp"] = profile(&["mkdir", "write"]);
    h.run(&b, &id, &[])
        .fails_with(&["SCMP_ACT_NOTIFY cannot be used for the write syscall"]);
    common::assert_clean(&h, &b, &[&id]);
}

/// uid 1000 with CAP_DAC_OVERRIDE may run a program only its owner (root)
/// may execute; without the capability it may not (start_hello.bats 3).
#[test]
fn cap_dac_override_runs_an_owner_only_program() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let busybox = b.rootfs().join("bin/busybox");
    fs::set_permissions(&busybox, fs::Permissions::from_mode(0o744)).expect("chmod");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 100});
    b.args(&["/bin/echo", "ran"]);
    let id = h.id("dac");
    h.run(&b, &id, &[]).fails_with(&["permission denied"]);
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .expect("a capability set")
            .push(json!("CAP_DAC_OVERRIDE"));
    }
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout, "ran\n");
}
