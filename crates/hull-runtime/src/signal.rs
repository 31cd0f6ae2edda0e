//! Signals: names as runc accepts them, and race-free delivery through
//! pidfds (a pid can be reused between our check and our kill; a pidfd
//! cannot).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("unknown signal {0:?}")]
    Unknown(String),
}

/// Parses `KILL`, `SIGKILL`, `kill`, `9`, `SIGRTMIN+3`, `RTMAX-1`.
pub fn parse(s: &str) -> Result<i32, SignalError> {
    let unknown = || SignalError::Unknown(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        // 0 is kill(2)'s "may I signal it" probe; runc passes any number on, and its
        // kill.bats sends 0 to every process of a container.
        return if (0..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    for (base, rt) in [("RTMIN", libc::SIGRTMIN()), ("RTMAX", libc::SIGRTMAX())] {
        if let Some(rest) = name.strip_prefix(base) {
            let off: i32 = if rest.is_empty() {
                0
            } else {
                rest.parse().map_err(|_| unknown())?
            };
            let n = rt + off;
            return if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
                Ok(n)
            } else {
                Err(unknown())
            };
        }
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| unknown())
}

/// Opens a pidfd for `pid` (not necessarily our child).
pub(crate) fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub(crate) fn kill_pidfd(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the process behind `fd` has exited (up to `timeout_ms`);
/// works for any process, child or not: a pidfd becomes readable on exit.
pub(crate) fn wait_exit(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return rc > 0;
        }
    }
}

/// Reaps our child behind `fd` and describes how it ended; `None` if it is
/// not our child (or was reaped already).
pub(crate) fn reap(fd: &OwnedFd) -> Option<String> {
    exit_status(fd).map(|(code, sig)| match sig {
        Some(s) => format!("killed by signal {s}"),
        None => format!("exit status {code}"),
    })
}

/// Waits for our child behind `fd`: `(shell-style status, signal)`, where a
/// signal death gives 128+signal as runc does.
pub(crate) fn exit_status(fd: &OwnedFd) -> Option<(i32, Option<i32>)> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is valid and waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a valid pidfd and a live siginfo_t.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if rc == 0 {
            // SAFETY: waitid succeeded, so si_status is filled in.
            let status = unsafe { info.si_status() };
            return Some(match info.si_code {
                libc::CLD_EXITED => (status, None),
                _ => (128 + status, Some(status)),
            });
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse("KILL").ok(), Some(9));
        assert_eq!(parse("SIGTERM").ok(), Some(15));
        assert_eq!(parse("hup").ok(), Some(1));
        assert_eq!(parse("9").ok(), Some(9));
        assert_eq!(parse("RTMIN+1").ok(), Some(libc::SIGRTMIN() + 1));
        assert!(parse("NOPE").is_err());
        assert_eq!(parse("0").ok(), Some(0));
        assert!(parse("-1").is_err());
        assert!(parse("99").is_err());
    }
}
