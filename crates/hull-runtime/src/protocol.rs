//! The typed protocol between `hullc create` (the parent) and the container's
//! init process, spoken over a `SOCK_SEQPACKET` socketpair so that every
//! message keeps its boundary and needs no framing of its own.
//!
//! ```text
//!   hullc create (parent, host namespaces)            init (child, new namespaces)
//!        |                                                  |
//!        |-- clone3(CLONE_NEW*, [CLONE_INTO_CGROUP]) ------>|  pdeathsig=SIGKILL, waits
//!        |   write uid_map/gid_map                          |
//!        |------------------ Proceed ---------------------->|
//!        |   mkdir the cgroup                               |  setns(paths), mounts
//!        |------------------ Created ---------------------->|  awaited before a cgroup mount
//!        |   set resources, move init in                    |  (it binds those dirs), devices
//!        |------------------ Joined ----------------------->|  awaited before CreateRuntime/Ready
//!        |<----------------- CreateRuntime -----------------|  (only when hooks exist)
//!        |   prestart + createRuntime hooks                 |
//!        |------------------ HooksDone{state} ------------->|  createContainer hooks
//!        |                                                  |  pivot_root, masked/readonly paths,
//!        |                                                  |  sysctl, hostname, pty (sent to the
//!        |                                                  |  console socket), rlimits, user, caps
//!        |<----------------- Ready -------------------------|  (or Error{context, cause})
//!        |   write state.json                               |
//!        |------------------ Commit{state} ---------------->|  clears pdeathsig
//!        |<----------------- Committed ---------------------|
//!      exit 0                                               |  accept() on start.sock (the barrier)
//!                                                           |
//!   hullc start ----------- connect(start.sock) ----------->|  startContainer hooks,
//!        |                                                  |  execveat(trampoline) -> execve(args)
//!        |<-------- EOF (exec succeeded: CLOEXEC) ----------|
//!        |<-------- or the error as text -------------------|
//!        |<-------- or the trampoline's report: 0xff errno -|
//!        |   unlink start.sock, poststart hooks             |
//! ```
//!
//! The cgroup work overlaps init's: directories, resources and the move of
//! init are the parent's, mounts are init's, on two CPUs when there are two.
//! Init gets its cgroup dirs from the parent (resolved before clone3) and so
//! needs only `Created` for a cgroup mount; rootless, where the cgroup may
//! come to nothing, it waits for `Joined` and reads /proc/self/cgroup.
//! Nothing else init does before `Joined` depends on its cgroup: it forks
//! nothing, and the device rules are complete before init is moved under
//! them (cgroup.rs, `join`). One exception: init that unshares a cgroup
//! namespace on v1 waits for all of it (before Proceed), the namespace's
//! root being the cgroup init is in when it unshares.
//!
//!
//! The trampoline (CVE-2019-5736, trampoline.rs) inherits the accepted
//! connection, makes it close-on-exec again and execs the program; if that
//! fails it writes 5 bytes (0xff, errno as u32 LE) that `start` turns into
//! the text init sends for a failed direct execve. Without it (the re-exec
//! fallback, exeseal.rs) init calls execve itself. The exec child's channel
//! carries the same report in one packet, not JSON ([`ProtocolError::ExecFailed`]).
//!
//! If the parent dies before `Commit`, the kernel kills init through its
//! parent-death signal, so a killed `hullc create` never leaves a half-built
//! container process behind. Errors in init travel back as [`Msg::Error`] with
//! the stage that failed; the parent turns them into its own error.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// Upper bound of one message; errors carry a short text only.
const MAX_MSG: usize = 64 * 1024;

/// One message of the parent/init protocol (see the module diagram).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Parent → init: the id maps are written; build the container.
    Proceed,
    /// Parent → init: init's cgroup directories exist (a cgroup mount
    /// binds them).
    Created,
    /// Parent → init: init is in its cgroup (or has none), so
    /// /proc/self/cgroup is final and processes it forks stay inside.
    Joined,
    /// Init → parent: the container is built and waits for `start`.
    Ready,
    /// Init → parent: mounts are made, pivot_root is next: run the
    /// prestart and createRuntime hooks now.
    CreateRuntime,
    /// Parent → init: those hooks succeeded; `state` is the JSON for ours.
    HooksDone { state: String },
    /// Parent → init: the state is on disk; stop watching the parent.
    /// `state` is the JSON for the startContainer hooks.
    Commit { state: String },
    /// Init → parent: acknowledged `Commit`.
    Committed,
    /// Init → parent: a stage failed.
    Error {
        /// What init was doing, e.g. `mount /proc`.
        context: String,
        /// The cause, usually an errno description.
        cause: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("creating the sync socketpair")]
    Socketpair(#[source] nix::Error),
    #[error("sending {what} to the other process")]
    Send {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("receiving from the other process")]
    Recv(#[source] nix::Error),
    #[error("the other process exited before answering (expected {expected})")]
    Closed { expected: &'static str },
    #[error("malformed message from the other process")]
    Decode(#[source] serde_json::Error),
    #[error("unexpected message {got:?} (expected {expected})")]
    Unexpected { got: String, expected: &'static str },
    #[error("{context}{sep}{cause}", sep = if cause.is_empty() { "" } else { ": " })]
    Child { context: String, cause: String },
    /// The exec trampoline's report: the program's execve failed.
    #[error("the program could not be executed (errno {errno})")]
    ExecFailed { errno: i32 },
}

/// One end of the sync channel.
pub(crate) struct Channel {
    fd: OwnedFd,
}

/// Creates the two ends: `(parent, child)`. Both are close-on-exec so that
/// neither survives into the container's user process.
pub(crate) fn channel() -> Result<(Channel, Channel), ProtocolError> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ProtocolError::Socketpair)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// The socket, lent to the exec trampoline as its report fd.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn send(&self, msg: &Msg) -> Result<(), ProtocolError> {
        let what = match msg {
            Msg::Proceed => "proceed",
            Msg::Created => "created",
            Msg::Joined => "joined",
            Msg::Ready => "ready",
            Msg::CreateRuntime => "create-runtime",
            Msg::HooksDone { .. } => "hooks-done",
            Msg::Commit { .. } => "commit",
            Msg::Committed => "committed",
            Msg::Error { .. } => "error",
        };
        let buf = serde_json::to_vec(msg).expect("protocol messages always serialize");
        socket::send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)
            .map_err(|source| ProtocolError::Send { what, source })?;
        Ok(())
    }

    fn recv(&self, expected: &'static str) -> Result<Msg, ProtocolError> {
        let mut buf = vec![0u8; MAX_MSG];
        let n = self
            .recv_raw(&mut buf, MsgFlags::empty())
            .map_err(ProtocolError::Recv)?;
        if n == 0 {
            return Err(ProtocolError::Closed { expected });
        }
        // Not JSON: the exec trampoline writes raw bytes (trampoline.rs).
        if let Some(errno) = crate::trampoline::parse_report(&buf[..n]) {
            return Err(ProtocolError::ExecFailed { errno });
        }
        serde_json::from_slice(&buf[..n]).map_err(ProtocolError::Decode)
    }

    /// A message that has already arrived, if any; never waits.
    pub(crate) fn try_recv(&self) -> Option<Msg> {
        let mut buf = vec![0u8; MAX_MSG];
        let n = self.recv_raw(&mut buf, MsgFlags::MSG_DONTWAIT).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    }

    /// recv(2) of one message. A peer that exited with messages of ours
    /// still unread leaves ECONNRESET pending on this socket, which the
    /// kernel reports once (sock_error clears it) and ahead of what the peer
    /// had sent: init that fails while the parent sends Created/Joined. So
    /// look once more for its last words; then the queue ends in EOF.
    fn recv_raw(&self, buf: &mut [u8], flags: MsgFlags) -> nix::Result<usize> {
        let mut reset = false;
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::ECONNRESET) if !reset => reset = true,
                other => return other,
            }
        }
    }

    /// Waits for `want`; an [`Msg::Error`] from the child becomes [`ProtocolError::Child`].
    pub(crate) fn expect(&self, want: Msg, expected: &'static str) -> Result<(), ProtocolError> {
        self.expect_any(&[want], expected).map(|_| ())
    }

    /// Waits for a message of one of the kinds in `want` (compared by
    /// variant, ignoring payloads) and returns it.
    pub(crate) fn expect_any(
        &self,
        want: &[Msg],
        expected: &'static str,
    ) -> Result<Msg, ProtocolError> {
        match self.recv(expected)? {
            Msg::Error { context, cause } => Err(ProtocolError::Child { context, cause }),
            m if want
                .iter()
                .any(|w| std::mem::discriminant(w) == std::mem::discriminant(&m)) =>
            {
                Ok(m)
            }
            other => Err(ProtocolError::Unexpected {
                got: format!("{other:?}"),
                expected,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_errors_surface() {
        let (p, c) = channel().expect("socketpair");
        c.send(&Msg::Ready).expect("send");
        p.expect(Msg::Ready, "ready").expect("ready arrives");
        c.send(&Msg::Error {
            context: "mount /proc".into(),
            cause: "EPERM".into(),
        })
        .expect("send");
        let err = p.expect(Msg::Ready, "ready").expect_err("child error");
        assert_eq!(err.to_string(), "mount /proc: EPERM");
        drop(c);
        assert!(matches!(
            p.expect(Msg::Ready, "ready"),
            Err(ProtocolError::Closed { .. })
        ));
    }

    /// Init fails and exits while messages from the parent wait unread in
    /// its queue: the kernel then reports ECONNRESET to the parent ahead of
    /// the Error init had sent. The error must still come through.
    #[test]
    fn an_error_survives_the_reset_of_a_closed_peer() {
        // The parent's end, after init got `unread`, answered an error and exited.
        let closed_after_error = |unread: Msg| {
            let (p, c) = channel().expect("socketpair");
            p.send(&unread).expect("send");
            c.send(&Msg::Error {
                context: "process.cwd".into(),
                cause: "ENOENT".into(),
            })
            .expect("send");
            drop(c);
            p
        };
        let p = closed_after_error(Msg::Joined);
        let err = p.expect(Msg::Ready, "ready").expect_err("child error");
        assert_eq!(err.to_string(), "process.cwd: ENOENT");
        assert!(matches!(
            p.expect(Msg::Ready, "ready"),
            Err(ProtocolError::Closed { .. })
        ));
        // The same for a look without waiting.
        let p = closed_after_error(Msg::Created);
        assert!(matches!(p.try_recv(), Some(Msg::Error { .. })));
    }
}
