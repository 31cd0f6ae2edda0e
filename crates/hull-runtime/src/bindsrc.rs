//! Bind sources opened outside the container's user namespace (runc's
//! mount fds, `_LIBCONTAINER_MOUNT_FDS`).
//!
//! Init runs as root of its user namespace, which on the host is the mapped
//! uid: a bind source under a directory only the host's root may enter
//! (mode 0700) is EACCES to it. So the parent, still the host's root, opens
//! each bind source with O_PATH and hands the fd to init, which mounts
//! `/proc/self/fd/N`. The open must happen in init's mount namespace: the
//! kernel binds only from a mount of the caller's own namespace (EINVAL
//! otherwise), and a mount of the host's namespace opened elsewhere (an
//! `open_tree` clone) would come without the locks the kernel puts on
//! mounts copied into a less privileged namespace. A forked helper therefore
//! joins init's mount namespace (the parent itself keeps its own), opens the
//! sources there and sends the fds over a socketpair; init reads them before
//! its mounts. Anything that fails here leaves init to open the path itself,
//! as before, and report the error it gets.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use oci_spec::runtime::Spec;

use crate::mounts;

/// The bind mounts worth opening outside: `(index, absolute source)`.
/// Only for a user namespace (new or joined): without one, init is the
/// host's root and opens them itself.
pub(crate) fn wanted(spec: &Spec) -> Vec<(usize, PathBuf)> {
    let userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| {
            n.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User)
        });
    if !userns {
        return Vec::new();
    }
    spec.mounts()
        .iter()
        .flatten()
        .enumerate()
        .filter(|(i, m)| {
            !matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"))
                && mounts::parse_options(*i, m).is_ok_and(|o| o.bind)
        })
        .filter_map(|(i, m)| {
            // Relative sources are relative to our cwd, which joining a
            // mount namespace resets: make them absolute first.
            let src = std::path::absolute(m.source().as_ref()?).ok()?;
            Some((i, src))
        })
        .collect()
}

/// The socketpair the fds travel on (SOCK_SEQPACKET: one message per fd).
pub(crate) fn pair() -> std::io::Result<(UnixStream, UnixStream)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((UnixStream::from(a), UnixStream::from(b)))
}

/// Parent side, after clone: opens `srcs` in `pid`'s mount namespace and
/// sends them on `sock`, then closes it (init reads until EOF).
pub(crate) fn send(sock: UnixStream, pid: i32, srcs: &[(usize, PathBuf)]) {
    let ns = match std::fs::File::open(format!("/proc/{pid}/ns/mnt")) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("bind sources: opening init's mount namespace: {e}");
            return;
        }
    };
    let paths: Vec<(u32, std::ffi::CString)> = srcs
        .iter()
        .filter_map(|(i, p)| {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
            Some((u32::try_from(*i).ok()?, c))
        })
        .collect();
    // SAFETY: hullc is single-threaded here (it starts no threads on the
    // create path), so the child may run any code; it leaves by _exit.
    match unsafe { libc::fork() } {
        -1 => tracing::debug!("bind sources: fork: {}", std::io::Error::last_os_error()),
        0 => {
            helper(&sock, &ns, &paths);
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the child we just forked.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
    }
}

/// In the forked helper: join init's mount namespace, open, send.
fn helper(sock: &UnixStream, ns: &std::fs::File, paths: &[(u32, std::ffi::CString)]) {
    // SAFETY: setns on a namespace fd we own; this process has no threads.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return;
    }
    for (index, p) in paths {
        // SAFETY: a NUL-terminated path; the result is a new fd or -1.
        let fd = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            continue;
        }
        let bytes = index.to_le_bytes();
        let iov = [IoSlice::new(&bytes)];
        let fds = [fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let _ = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None);
    }
}

/// Init side: the fds the parent sent, by mount index (empty if none).
pub(crate) fn receive(sock: Option<&UnixStream>) -> HashMap<usize, OwnedFd> {
    let mut out = HashMap::new();
    let Some(sock) = sock else {
        return out;
    };
    loop {
        let mut buf = [0u8; 4];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let Ok(msg) = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return out;
        };
        if msg.bytes == 0 {
            return out;
        }
        let mut fd = None;
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel installed these fds in our table.
                    fd.get_or_insert(unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
        }
        if let Some(fd) = fd {
            out.insert(u32::from_le_bytes(buf) as usize, fd);
        }
    }
}
