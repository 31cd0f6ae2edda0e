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

/// Our terminal's size (rows, columns); `None` when stdout is no terminal.
pub(crate) fn size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data that TIOCGWINSZ fills.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into ws.
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Passes our terminal's size to the container's terminal.
pub(crate) fn resize(shim: &Shim) {
    resize_exec(shim, "");
}

fn resize_exec(shim: &Shim, exec_id: &str) {
    if let Some((rows, cols)) = size() {
        let _ = shim.resize(exec_id, u32::from(cols), u32::from(rows));
    }
}

/// Window changes → the exec's terminal. `signals` is registered before the
/// exec starts, so no change is lost; one resize now catches a change made
/// between reading the size for the exec's spec and now.
pub(crate) fn follow_resizes(mut signals: Signals, shim: &Shim, exec_id: &str) {
    let (shim, exec_id) = (shim.clone(), exec_id.to_string());
    resize_exec(&shim, &exec_id);
    std::thread::spawn(move || {
        for _ in signals.forever() {
            resize_exec(&shim, &exec_id);
        }
    });
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
