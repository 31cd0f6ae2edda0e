//! `hullc run`: create + start, then (in the foreground) forward signals to
//! the container and return its exit status, 128+signal when it was killed.
//!
//! Signals are blocked before clone so none is lost between start and the
//! wait loop (init unblocks them before execve); one `poll` on a signalfd and
//! the init pidfd drives the loop, so hullc needs no thread and no handler.

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::container::{self, ContainerError};
use crate::parent::{self, CreateError, CreateOptions};
use crate::signal;

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
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    let old = set
        .thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK)
        .map_err(|e| RunError::Sys("blocking signals", e))?;
    let r = run_blocked(root, o, detach, keep, &set);
    let _ = old.thread_set_mask();
    r
}

fn run_blocked(
    root: &Path,
    o: &CreateOptions,
    detach: bool,
    keep: bool,
    set: &SigSet,
) -> Result<i32, RunError> {
    let created = parent::create(root, o)?;
    if let Err(e) = container::start(root, &o.id) {
        let _ = container::delete(root, &o.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RunError::Sys("signalfd", e))?;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: created.pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds in a live array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0 {
            break;
        }
        if let Ok(Some(info)) = sfd.read_signal() {
            let _ = signal::kill_pidfd(&created.pidfd, info.ssi_signo as i32);
        }
    }
    let code = signal::exit_status(&created.pidfd)
        .map(|(c, _)| c)
        .unwrap_or(255);
    if !keep {
        container::delete(root, &o.id, true)?;
    }
    Ok(code)
}
