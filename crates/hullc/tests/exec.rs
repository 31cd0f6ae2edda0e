//! `hullc exec`, terminals, pid files and preserved fds (issue 4), checked
//! from inside the container.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

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

#[test]
fn exec_joins_the_container_and_returns_its_status() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["hostname"] = json!("exec-box");
    let id = running(&h, &mut b, "exec");
    let o = h.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline; echo; echo pid=$$; exit 7",
    ]);
    assert_eq!(o.code(), Some(7), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "exec-box", "uts namespace joined");
    assert!(
        lines[1].starts_with("sleep"),
        "pid 1 is the container's init: {lines:?}"
    );
    assert_ne!(lines[2], "pid=1", "exec'd process is not init");
    // Its pid is small: it lives in the container's pid namespace.
    let pid: u32 = lines[2].trim_start_matches("pid=").parse().expect("pid");
    assert!(pid < 100, "pid {pid} looks like a host pid");
}

#[test]
fn exec_applies_user_env_cwd_and_caps() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execuser");
    let o = h
        .cmd(&[
            "exec",
            "-u",
            "1000:1001",
            "-g",
            "44",
            "-e",
            "FOO=bar",
            "--cwd",
            "/proc",
            &id,
            "sh",
            "-c",
            "id -u; id -g; id -G; echo $FOO; pwd; grep CapEff /proc/self/status",
        ])
        .ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        &lines[..5],
        &["1000", "1001", "1001 44", "bar", "/proc"],
        "{o:?}"
    );
    // runc's rule: the config's capability sets apply whatever the uid
    // (default spec: AUDIT_WRITE, KILL, NET_BIND_SERVICE = bits 29, 5, 10).
    assert!(
        lines[5].ends_with("0000000020000420"),
        "effective caps as configured: {}",
        lines[5]
    );
    let o = h
        .cmd(&[
            "exec",
            "--cap",
            "CAP_SYS_ADMIN",
            &id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok();
    let eff =
        u64::from_str_radix(o.stdout.split_whitespace().nth(1).expect("hex"), 16).expect("hex");
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN (21) added: {eff:#x}");
}

#[test]
fn exec_with_process_json() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execjson");
    let p = h.scratch().join("process.json");
    let proc_json = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo $A; exit 4"],
        "env": ["A=from-json", "PATH=/bin"],
        "cwd": "/",
        "noNewPrivileges": true
    });
    std::fs::write(&p, proc_json.to_string()).expect("write process.json");
    let o = h.cmd(&["exec", "--process", p.to_str().expect("utf-8"), &id]);
    assert_eq!(o.code(), Some(4), "{o:?}");
    assert_eq!(o.stdout.trim(), "from-json");
    // No "user": uid 0, as runc reads it.
    let no_user = json!({"terminal": false, "args": ["id", "-u"], "cwd": "/"});
    std::fs::write(&p, no_user.to_string()).expect("write process.json");
    let o = h.cmd(&["exec", "--process", p.to_str().expect("utf-8"), &id]);
    assert_eq!(o.ok().stdout.trim(), "0");
    std::fs::write(&p, r#"{"user":{"uid":"root"}}"#).expect("write");
    h.cmd(&["exec", "--process", p.to_str().expect("utf-8"), &id])
        .fails_with(&["user.uid"]);
}

#[test]
fn exec_errors_are_clear() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execerr");
    h.cmd(&["exec", &id, "no-such-program"])
        .fails_with(&["no-such-program", "not found"]);
    h.cmd(&["exec", "nosuchcontainer", "true"])
        .fails_with(&["does not exist"]);
    h.cmd(&["kill", &id, "KILL"]).ok();
    h.wait_status(&id, "stopped");
    h.cmd(&["exec", &id, "true"])
        .fails_with(&["stopped", "not running"]);
}

#[test]
fn exec_detached_writes_pid_file() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let id = running(&h, &mut b, "execdet");
    let pidfile = h.scratch().join("exec.pid");
    h.cmd(&[
        "exec",
        "-d",
        "--pid-file",
        pidfile.to_str().expect("utf-8"),
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("process exists");
    assert!(cmdline.starts_with("sleep"), "{cmdline:?}");
    let o = h.cmd(&["ps", "--format", "json", &id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&o.stdout).expect("json pids");
    assert!(
        pids.contains(&pid),
        "exec'd process is in the container's cgroup: {pids:?}"
    );
}

#[test]
fn create_pid_file_is_written_relative_to_cwd() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let id = h.id("pidfile");
    b.save();
    h.track(&id);
    let scratch = h.scratch().to_path_buf();
    let bundle = b.path().to_str().expect("utf-8").to_string();
    h.cmd_with(
        &["create", "--bundle", &bundle, "--pid-file", "rel.pid", &id],
        |c| {
            c.current_dir(&scratch);
        },
    )
    .ok();
    let pid: i32 = std::fs::read_to_string(scratch.join("rel.pid"))
        .expect("relative pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(h.state(&id)["pid"], json!(pid));
}

#[test]
fn preserve_fds_passes_exactly_n_fds() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "cat <&3; ls /proc/self/fd"]);
    let id = h.id("fds");
    let f3 = h.scratch().join("fd3");
    std::fs::write(&f3, "through fd 3\n").expect("write");
    let a = std::fs::File::open(&f3).expect("open");
    let extra = std::fs::File::open(&f3).expect("open");
    let (a_fd, extra_fd) = (a.as_raw_fd(), extra.as_raw_fd());
    let o = h.run_with(&b, &id, &["--preserve-fds", "1"], move |c| {
        // SAFETY: dup2 in the forked child before exec; async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                // dup2 onto itself keeps FD_CLOEXEC, so clear it explicitly.
                if libc::dup2(a_fd, 3) < 0
                    || libc::dup2(extra_fd, 4) < 0
                    || libc::fcntl(3, libc::F_SETFD, 0) < 0
                    || libc::fcntl(4, libc::F_SETFD, 0) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let o = o.ok();
    let mut lines = o.stdout.lines();
    assert_eq!(lines.next(), Some("through fd 3"));
    let fds: Vec<&str> = lines.collect();
    // 0,1,2, the preserved 3, and the fd `ls` opens on the directory; 4 is gone.
    assert!(fds.contains(&"3") && !fds.contains(&"5"), "{fds:?}");
    drop((a, extra));
}

#[test]
fn terminal_run_in_foreground_gets_a_pty_of_the_configured_size() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 33, "width": 77});
    b.args(&["sh", "-c", "tty; stty size; exit 5"]);
    let id = h.id("tty");
    let o = h.run(&b, &id, &[]);
    assert_eq!(o.code(), Some(5), "{o:?}");
    let out = o.stdout.replace('\r', "");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{lines:?}");
    assert_eq!(lines[1], "33 77");
}

#[test]
fn terminal_create_without_console_socket_fails_cleanly() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["terminal"] = json!(true);
    let id = h.id("nosock");
    h.create(&b, &id, &[]).fails_with(&["console-socket"]);
    assert!(!h.root().join(&id).exists(), "no state left");
}

/// Receives the pty master the way conmon and containerd do.
#[test]
fn console_socket_receives_the_pty_master() {
    use std::io::Read;
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["terminal"] = json!(true);
    b.args(&["sh", "-c", "echo over-the-pty; sleep 1000"]);
    let id = h.id("consock");
    let sock = h.scratch().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        std::fs::File::from(common::recv_fd(&conn).1)
    });
    h.create(
        &b,
        &id,
        &["--console-socket", sock.to_str().expect("utf-8")],
    )
    .ok();
    let mut master = receiver.join().expect("receiver");
    h.cmd(&["start", &id]).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("over-the-pty") {
        let n = master.read(&mut buf).expect("read the pty");
        assert!(n > 0, "pty closed early");
        got.extend_from_slice(&buf[..n]);
    }
}

/// systemd socket activation: with LISTEN_FDS=N in hullc's environment the
/// fds 3..3+N reach the program, which is told so (runc's behaviour).
#[test]
fn listen_fds_are_passed_through() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo $LISTEN_FDS $LISTEN_PID; cat <&3"]);
    let id = h.id("listen");
    let f3 = h.scratch().join("sock3");
    std::fs::write(&f3, "activated\n").expect("write");
    let f = std::fs::File::open(&f3).expect("open");
    let fd = f.as_raw_fd();
    let o = h
        .run_with(&b, &id, &[], move |c| {
            c.env("LISTEN_FDS", "1");
            // SAFETY: dup2/fcntl in the forked child before exec.
            unsafe {
                c.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
        .ok();
    assert_eq!(o.stdout, "1 1\nactivated\n");
    drop(f);
}

/// Signals the caller ignores (a shim or conmon often ignores SIGINT) must
/// not stay ignored in the container: a shell there could not even trap
/// them. The program starts with every disposition at its default.
#[test]
fn container_starts_with_default_signal_dispositions() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["grep", "SigIgn", "/proc/self/status"]);
    let id = h.id("sigdfl");
    let o = h
        .run_with(&b, &id, &[], |c| {
            // SAFETY: signal() in the forked child before exec.
            unsafe {
                c.pre_exec(|| {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                    Ok(())
                });
            }
        })
        .ok();
    assert_eq!(
        o.stdout.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{}",
        o.stdout
    );
}
