//! Terminals: the pty of a `process.terminal: true` container, handed to the
//! caller over a console socket (runc's protocol: the runtime connects to the
//! unix socket and sends the pty master with SCM_RIGHTS; conmon and
//! containerd's shim wait for it), or proxied by hullc itself for a
//! foreground `run`/`exec` without a socket.
//!
//! The pty is opened by init *inside* the container, from the container's own
//! devpts, so the slave's path and permissions are the container's.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("--console-socket {path}: connecting")]
    Connect {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("console: {op}")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("console: the container sent no pty master")]
    NoMaster,
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> ConsoleError {
    move |e| ConsoleError::Sys {
        op,
        source: e.into(),
    }
}

/// Connects to the caller's console socket (done by the parent, in the
/// host's mount namespace, before clone).
pub(crate) fn connect(path: &Path) -> Result<UnixStream, ConsoleError> {
    UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

/// Sends `fd` over `sock` with SCM_RIGHTS; the payload is the pty's name, as
/// runc sends it.
pub(crate) fn send_fd(sock: BorrowedFd, fd: RawFd, name: &str) -> Result<(), ConsoleError> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(sys("sending the pty master"))?;
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS.
pub(crate) fn recv_fd(sock: BorrowedFd) -> Result<OwnedFd, ConsoleError> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("receiving the pty master"))?;
    for c in msg.cmsgs().map_err(sys("reading control messages"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel installed this fd in our table for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(ConsoleError::NoMaster)
}

/// A pty opened in the container: master (to hand out) and slave (to become
/// the process' stdio and controlling terminal).
pub(crate) struct Pty {
    pub(crate) master: OwnedFd,
    pub(crate) slave: OwnedFd,
    pub(crate) name: String,
}

/// Opens a pty from the container's /dev/ptmx. TIOCGPTPEER opens the slave
/// through the master itself, so no path lookup can be redirected.
pub(crate) fn open_pty() -> Result<Pty, ConsoleError> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("opening /dev/ptmx"))?;
    nix::pty::unlockpt(&master).map_err(sys("unlocking the pty"))?;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint through the pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(sys("TIOCGPTN")(nix::Error::last()));
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(sys("opening the pty slave")(nix::Error::last()));
    }
    // SAFETY: into_raw_fd gives up PtyMaster's ownership of the fd to us.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    // SAFETY: a fresh fd nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok(Pty {
        master,
        slave,
        name: format!("/dev/pts/{n}"),
    })
}

/// Sets the terminal's size (`process.consoleSize`, or the caller's).
pub(crate) fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> Result<(), ConsoleError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(sys("setting the window size")(nix::Error::last()));
    }
    Ok(())
}

/// Makes the slave this process' controlling terminal and stdio (in init,
/// just before the user switch). Only the owner becomes the process' user:
/// the group is the one the container's devpts gave the pty at open
/// (`gid=5`, the tty group, in the default config), as runc leaves it
/// (fixStdioPermissions), so that tty-group tools (write, wall) work.
pub(crate) fn become_terminal(slave: &OwnedFd, uid: u32) -> Result<(), ConsoleError> {
    nix::unistd::fchown(slave, Some(uid.into()), None).map_err(sys("chown of the pty slave"))?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // SAFETY: TIOCSCTTY with arg 0 on a valid tty fd.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(sys("making the pty the controlling terminal")(
            nix::Error::last(),
        ));
    }
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard fds; `slave` stays valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(sys("dup2 of the pty slave")(nix::Error::last()));
        }
    }
    Ok(())
}
