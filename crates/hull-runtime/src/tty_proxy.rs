//! The foreground terminal of `hullc run`/`exec` when no console socket is
//! given: hullc holds the pty master itself and copies between it and its
//! own stdio, with the caller's terminal in raw mode and SIGWINCH turned
//! into window-size updates. One poll loop, no threads.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};

use crate::signal;

/// Restores the caller's terminal on drop.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies the caller's window size to the pty.
fn sync_size(master: BorrowedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into our struct.
    if unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 {
        let _ = crate::console::set_size(master, ws.ws_row, ws.ws_col);
    }
}

fn copy(from: i32, to: i32) -> bool {
    let mut buf = [0u8; 8192];
    // SAFETY: reading into a live buffer of the given size.
    let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return false;
    }
    let mut off = 0usize;
    while off < n as usize {
        // SAFETY: writing a sub-slice of the live buffer.
        let w = unsafe { libc::write(to, buf[off..].as_ptr().cast(), n as usize - off) };
        if w <= 0 {
            return false;
        }
        off += w as usize;
    }
    true
}

/// Proxies until the process behind `pidfd` exits, forwarding `forward`
/// signals to it; returns its exit status.
pub(crate) fn proxy(master: &OwnedFd, pidfd: &OwnedFd, forward: &SigSet) -> i32 {
    let _raw = RawMode::enter();
    let mut set = *forward;
    set.add(Signal::SIGWINCH);
    let _ = set.thread_block();
    let Ok(sfd) = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC) else {
        return signal::exit_status(pidfd).map(|(c, _)| c).unwrap_or(255);
    };
    sync_size(master.as_fd());
    let mut stdin_open = true;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
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
        // SAFETY: a live array of valid pollfds (fd -1 entries are ignored).
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            continue;
        }
        if fds[0].revents != 0 && !copy(master.as_raw_fd(), 1) {
            break; // EIO: every slave fd is closed, the process is gone.
        }
        if fds[1].revents != 0 && !copy(0, master.as_raw_fd()) {
            stdin_open = false;
        }
        if fds[2].revents != 0 {
            if let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo == Signal::SIGWINCH as u32 {
                    sync_size(master.as_fd());
                } else {
                    let _ = signal::kill_pidfd(pidfd, info.ssi_signo as i32);
                }
            }
        }
        if fds[3].revents != 0 && fds[0].revents == 0 {
            break;
        }
    }
    signal::exit_status(pidfd).map(|(c, _)| c).unwrap_or(255)
}
