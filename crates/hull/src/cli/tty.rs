//! Our side of an attached container: raw terminal mode, window size, and
//! signals forwarded to the container's init.

use std::os::fd::AsRawFd;

use anyhow::Result;
use hull_engine::shim::Shim;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::Signals;

/// Puts our stdin terminal into raw mode until dropped.
pub(crate) struct RawMode(libc::termios);

impl RawMode {
    /// `None` when stdin is not a terminal (then there is nothing to do).
    pub(crate) fn enter() -> Option<RawMode> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is our stdin; t is a valid termios to fill.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return None;
        }
        let saved = t;
        // SAFETY: t is a valid termios obtained above.
        unsafe {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in enter() on our own stdin.
        unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.0) };
    }
}

/// Passes our terminal's size to the container's terminal.
pub(crate) fn resize(shim: &Shim) {
    // SAFETY: winsize is plain data that TIOCGWINSZ fills.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into ws.
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        let _ = shim.resize("", u32::from(ws.ws_col), u32::from(ws.ws_row));
    }
}

/// Forwards the signals a user sends to `hull run` (Ctrl-C, kill) to the
/// container's init, and window changes to its terminal.
pub(crate) fn forward_signals(shim: Shim, tty: bool) -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH])?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGWINCH {
                if tty {
                    resize(&shim);
                }
                continue;
            }
            let _ = shim.kill("", sig as u32, false);
        }
    });
    Ok(())
}
