//! Real-kernel tests: a forked child sets no_new_privs, installs the filter
//! and reports through its exit status.
//!
//! The test harness is multi-threaded, so the child only makes raw syscalls
//! (no allocation, no locks) before `_exit`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use serde_json::json;

use super::build;
use crate::seccomp::{install, ArchId, Filter};

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

/// Whether this kernel has seccomp filters (some sandboxes do not).
fn available() -> bool {
    // SAFETY: PR_GET_SECCOMP reads no pointer.
    let ok = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
    if !ok {
        eprintln!("seccomp not available on this kernel: test skipped");
    }
    ok
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `syscall(nr, a0)`: -errno on failure.
fn sys1(nr: libc::c_long, a0: u64) -> i64 {
    // SAFETY: the syscalls used here take integers, or (mkdirat) a valid
    // C string passed by the caller.
    let r = unsafe { libc::syscall(nr, a0) };
    if r < 0 {
        -i64::from(errno())
    } else {
        r
    }
}

/// Forks a child that installs `f` with no_new_privs, runs `body` with the
/// listener (if any) and exits with what `body` returns.
fn in_child(f: &Filter, body: impl FnOnce(Option<OwnedFd>) -> i32) -> Exit {
    // SAFETY: the child makes only raw syscalls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain values; no core dump for the SIGSYS test.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(200);
            }
        }
        let code = match install(f) {
            Ok(fd) => body(fd),
            Err(_) => 201,
        };
        // SAFETY: leaves the forked copy without running the harness' code.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing to a local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        assert_eq!(errno(), libc::EINTR, "waitpid");
    }
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

#[test]
fn errno_rule_fails_mkdir_with_eperm() {
    if !available() {
        return;
    }
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x");
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    let got = in_child(&f, |_| {
        // SAFETY: `c` is a valid C string.
        let r = unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c.as_ptr(), 0o755) };
        if r == 0 {
            0
        } else {
            errno()
        }
    });
    assert_eq!(got, Exit::Code(libc::EPERM));
    assert!(!path.exists());
}

#[test]
fn kill_process_dies_of_sigsys() {
    if !available() {
        return;
    }
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}));
    let got = in_child(&f, |_| {
        sys1(libc::SYS_getppid, 0);
        0
    });
    assert_eq!(got, Exit::Signal(libc::SIGSYS));
}

#[test]
fn allow_list_with_log_and_default_errno() {
    if !available() {
        return;
    }
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 55,
        "syscalls": [
            {"names": ["exit_group", "exit", "getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"}]}),
    );
    let got = in_child(&f, |_| {
        if sys1(libc::SYS_getppid, 0) <= 0 {
            return 1;
        }
        if sys1(libc::SYS_getpid, 0) <= 0 {
            return 2;
        }
        if sys1(libc::SYS_getuid, 0) != -55 {
            return 3;
        }
        0
    });
    assert_eq!(got, Exit::Code(0));
}

#[test]
fn argument_rules_match_only_their_values() {
    if !available() {
        return;
    }
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33,
         "args": [{"index": 0, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 34,
         "args": [{"index": 0, "value": 0xff00, "valueTwo": 0x4200, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
    let got = in_child(&f, |_| {
        if sys1(libc::SYS_getpgid, 0) < 0 {
            return 1;
        }
        // Same low word as 0: only a 64-bit comparison tells them apart.
        if sys1(libc::SYS_getpgid, 0x1_0000_0000) != -33 {
            return 2;
        }
        if sys1(libc::SYS_getpgid, 0x4277) != -34 {
            return 3;
        }
        // No such pid, and no rule: the kernel's own answer.
        if sys1(libc::SYS_getpgid, 0x3fff_fff0) != -i64::from(libc::ESRCH) {
            return 4;
        }
        0
    });
    assert_eq!(got, Exit::Code(0));
}

/// Sends `fd` over the socket with SCM_RIGHTS, without allocating.
fn send_fd(sock: RawFd, fd: RawFd) -> bool {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4]; // 32 bytes, aligned, >= CMSG_SPACE(4)
                              // SAFETY: msghdr is plain data; every pointer set below stays valid for
                              // the sendmsg call, and the cmsg header lies inside `cbuf`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        libc::CMSG_DATA(c).cast::<i32>().write_unaligned(fd);
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

fn recv_fd(sock: RawFd) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::empty()).expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS installed this fd in our table for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd received");
}

/// NOTIFY: the child gets a listener, hands it over; the parent receives the
/// notification of the child's getppid and answers 42 in its place.
#[test]
fn notify_listener_receives_and_answers() {
    if !available() {
        return;
    }
    let f = build(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/unused",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}),
    );
    assert!(f.has_listener());
    let (ours, theirs) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let agent = std::thread::spawn(move || {
        let listener = recv_fd(ours.as_raw_fd());
        answer(&listener)
    });
    let got = in_child(&f, |fd| {
        let Some(fd) = fd else { return 1 };
        if !send_fd(theirs.as_raw_fd(), fd.as_raw_fd()) {
            return 2;
        }
        match sys1(libc::SYS_getppid, 0) {
            42 => 0,
            _ => 3,
        }
    });
    // Unblocks the agent's recvmsg if the child never sent the listener.
    drop(theirs);
    let (nr, arch) = agent.join().expect("agent thread");
    assert_eq!(nr, libc::SYS_getppid as i32);
    assert_eq!(arch, ArchId::native().expect("native").audit());
    assert_eq!(got, Exit::Code(0));
}

/// The agent: waits (bounded) for one notification, answers 42.
fn answer(listener: &OwnedFd) -> (i32, u32) {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = Duration::from_secs(10).as_millis() as i32;
    // SAFETY: one pollfd, ours.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, ms) }, 1, "no notification");
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV fills `req`, which outlives the call.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    // SAFETY: plain data.
    let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = req.id;
    resp.val = 42;
    // SAFETY: SEND reads `resp`, which outlives the call.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    };
    assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
    (req.data.nr, req.data.arch)
}

/// The kernel runs runc's -ENOSYS stub: close_range, newer than every
/// syscall this profile names, fails with ENOSYS (so a C library falls
/// back), getuid, older than exit_group, with the default EPERM.
#[test]
fn newer_syscalls_fail_with_enosys() {
    if !available() {
        return;
    }
    let f = build(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["exit_group", "exit", "getppid"], "action": "SCMP_ACT_ALLOW"}]}));
    let got = in_child(&f, |_| {
        if sys1(libc::SYS_close_range, 1000) != -i64::from(libc::ENOSYS) {
            return 1;
        }
        if sys1(libc::SYS_getuid, 0) != -i64::from(libc::EPERM) {
            return 2;
        }
        0
    });
    assert_eq!(got, Exit::Code(0));
}
