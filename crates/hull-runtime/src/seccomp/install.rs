//! Loading a compiled filter into the calling thread with seccomp(2).

use std::os::fd::{FromRawFd, OwnedFd};

use super::{Filter, SeccompError, FLAG_NEW_LISTENER};

/// Installs `f` on the calling thread (inherited by its children and kept
/// across execve). Returns the user-notification listener when the profile
/// uses `SCMP_ACT_NOTIFY`; the kernel opens it close-on-exec, so it must be
/// passed on (to `linux.seccomp.listenerPath`) before execve.
///
/// The kernel accepts a filter only from a task that has no_new_privs set
/// (`process.noNewPrivileges`, prctl(PR_SET_NO_NEW_PRIVS)) or CAP_SYS_ADMIN
/// in its user namespace; otherwise this fails with
/// [`SeccompError::NeedsNoNewPrivs`]. Without no_new_privs, install while
/// still privileged, before the capabilities are dropped (as runc does).
///
/// Every syscall after this point is filtered, including the caller's own:
/// with NOTIFY rules, a notified syscall made before the agent has the
/// listener blocks, so keep the syscalls between here and execve few.
pub(crate) fn install(f: &Filter) -> Result<Option<OwnedFd>, SeccompError> {
    let len = u16::try_from(f.prog.len()).map_err(|_| SeccompError::TooLarge(f.prog.len()))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel copies the program in and never writes through it.
        filter: f.prog.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SECCOMP_SET_MODE_FILTER) reads `prog` and the `len`
    // instructions it points to, both alive for the call; it changes no
    // memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(f.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        let source = std::io::Error::last_os_error();
        return Err(if source.raw_os_error() == Some(libc::EACCES) {
            SeccompError::NeedsNoNewPrivs(source)
        } else {
            SeccompError::Install {
                flags: f.flags,
                source,
            }
        });
    }
    if f.flags & FLAG_NEW_LISTENER == 0 {
        return Ok(None);
    }
    let fd = i32::try_from(ret).map_err(|_| SeccompError::Internal("listener fd out of range"))?;
    // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER, a successful seccomp(2)
    // returns a new fd that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}
