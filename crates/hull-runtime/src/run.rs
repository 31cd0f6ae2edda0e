//! `hullc run`: create + start, then (in the foreground) forward signals to
//! the container and return its exit status, 128+signal when it was killed.
//!
//! Signals are blocked before clone so none is lost between start and the
//! wait loop (init unblocks them before execve); one `poll` on a signalfd and
//! the init pidfd drives the loop, so hullc needs no thread and no handler.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use std::os::unix::net::UnixStream;

use crate::console;
use crate::container::{self, ContainerError};
use crate::parent::{self, CreateError, CreateOptions};
use crate::signal;
use crate::trampoline::Trampoline;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("{0}")]
    Sys(&'static str, #[source] nix::Error),
}

/// Signals forwarded to the container (runc's set minus SIGCHLD/SIGWINCH,
/// which concern hullc itself).
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCONT,
];

pub fn run(root: &Path, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32, RunError> {
    let bundle = crate::config::load_bundle(&o.bundle).map_err(CreateError::from)?;
    // Before the signals are blocked: a re-exec would inherit the mask.
    let trampoline = parent::protect(root, &bundle.spec)?;
    let (set, old) = block_forwarded().map_err(|e| RunError::Sys("blocking signals", e))?;
    let how = How {
        detach,
        keep,
        trampoline: trampoline.as_ref(),
    };
    let r = run_blocked(root, o, bundle, &how, &set);
    let _ = old.thread_set_mask();
    r
}

/// `run`'s flags and the CVE-2019-5736 trampoline.
struct How<'a> {
    detach: bool,
    keep: bool,
    trampoline: Option<&'a Trampoline>,
}

fn run_blocked(
    root: &Path,
    o: &CreateOptions,
    bundle: crate::config::Bundle,
    how: &How,
    set: &SigSet,
) -> Result<i32, RunError> {
    let (detach, keep) = (how.detach, how.keep);
    // A foreground terminal without a console socket: hullc holds the pty.
    if parent::terminal(&bundle.spec) && o.console_socket.is_none() && !detach {
        return run_with_tty(root, o, bundle, how, set);
    }
    let created = parent::create_bundle(root, o, bundle, how.trampoline)?;
    if let Err(e) = container::start(root, &o.id) {
        let _ = container::delete(root, &o.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(&created.pidfd, set).map_err(|e| RunError::Sys("signalfd", e))?;
    if !keep {
        container::delete(root, &o.id, true)?;
    }
    Ok(code)
}

/// The pty passes the program's `\n` through as it is, as runc's foreground
/// terminal does (tty.go, `ClearONLCR`): output compared line by line (runc's
/// own suite does) must not gain a `\r`. Before `start`, so that no output
/// is translated yet.
fn clear_onlcr(master: &std::os::fd::OwnedFd) {
    use nix::sys::termios::{tcgetattr, tcsetattr, OutputFlags, SetArg};
    if let Ok(mut t) = tcgetattr(master.as_fd()) {
        t.output_flags.remove(OutputFlags::ONLCR);
        let _ = tcsetattr(master.as_fd(), SetArg::TCSANOW, &t);
    }
}

/// `run` in the foreground with a terminal: the pty master comes back over
/// a socketpair instead of a console socket, and hullc proxies it.
fn run_with_tty(
    root: &Path,
    o: &CreateOptions,
    bundle: crate::config::Bundle,
    how: &How,
    set: &SigSet,
) -> Result<i32, RunError> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| {
        RunError::Sys(
            "socketpair",
            nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let created = parent::create_with(root, o, bundle, Some(theirs), how.trampoline)?;
    let started = console::recv_fd(ours.as_fd())
        .map_err(|e| RunError::Create(e.into()))
        .and_then(|m| {
            clear_onlcr(&m);
            container::start(root, &o.id)
                .map(|_| m)
                .map_err(RunError::from)
        });
    let master = match started {
        Ok(m) => m,
        Err(e) => {
            let _ = container::delete(root, &o.id, true);
            return Err(e);
        }
    };
    let code = crate::tty_proxy::proxy(&master, &created.pidfd, set);
    if !how.keep {
        container::delete(root, &o.id, true)?;
    }
    Ok(code)
}

/// Waits for the process behind `pidfd` to exit, forwarding the signals in
/// `set` (which the caller has blocked) to it; returns its exit status.
pub(crate) fn wait_forwarding(pidfd: &OwnedFd, set: &SigSet) -> Result<i32, nix::Error> {
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)?;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds in a live array.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            break;
        }
        if let Ok(Some(info)) = sfd.read_signal() {
            let _ = signal::kill_pidfd(pidfd, info.ssi_signo as i32);
        }
    }
    Ok(signal::exit_status(pidfd).map(|(c, _)| c).unwrap_or(255))
}

/// The signal set `run` and `exec` forward, blocked for the caller's thread.
pub(crate) fn block_forwarded() -> Result<(SigSet, SigSet), nix::Error> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    let old = set.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)?;
    Ok((set, old))
}
