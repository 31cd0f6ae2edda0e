//! CVE-2019-5736: the container must never reach hullc's binary for writing.
//!
//! hullc clones init (and the exec child) without re-exec, so until their
//! `execve` they run hullc's image, and the kernel resolves `/proc/self/exe`
//! of such a process to the binary hullc was started from. A container
//! program that *is* `/proc/self/exe` (a `#!/proc/self/exe` script, or a
//! symlink to it) makes that `execve` run hullc's binary again, now inside
//! the container and dumpable; another process there keeps an fd of its
//! `/proc/<pid>/exe` and, once that process exits (no more ETXTBSY), reopens
//! it for writing: the host's runtime is overwritten.
//!
//! Only the exe of the process making the *final* execve matters, so
//! `protect` (called by `create`, `run` and `exec` once the config is
//! parsed) picks one of two defences:
//!
//! * **the exec trampoline** (`trampoline.rs`, the default): that process
//!   execs a tiny sealed memfd ELF which execs the program, so
//!   `/proc/self/exe` there is the memfd. No copy, no re-exec of hullc.
//! * **re-exec from a protected copy** ([`protect_self`]) when the
//!   trampoline cannot be used safely (`trampoline_usable`: not x86_64, an
//!   LSM exec label, a seccomp filter that could refuse its syscalls, or
//!   memfds that may not be executed): hullc restarts itself from a copy
//!   that cannot be written, whatever the container does with it:
//!
//! 1. a private overlayfs made with the new mount API (`fsopen`/`fsmount`):
//!    the binary's directory plus a second, empty-enough lower layer and no
//!    upper layer, so the *superblock* is read-only. A read-only bind mount is
//!    not enough: a container with CAP_SYS_ADMIN can clear a mount's
//!    MS_RDONLY, but there is no upper layer to make writable here (runc
//!    dropped its bind-mount variant for that reason, runc PR 4448). The mount
//!    is detached (never in any mount table) and vanishes with its last user.
//!    Zero copy; costs a few syscalls and one extra `execve`.
//! 2. otherwise (no overlayfs, or an unprivileged caller: overlayfs needs
//!    CAP_SYS_ADMIN in the initial user namespace here), a sealed memfd copy
//!    (F_SEAL_WRITE|SHRINK|GROW|SEAL): costs a copy of the binary per start.
//!
//! The re-exec'd process knows it is protected from what `/proc/self/exe`
//! *is* (never from an environment variable a caller could set to skip the
//! protection): a read-only overlayfs file on a mount absent from our mount
//! table, or a memfd carrying the seals.

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Act, Process, Spec};

use crate::trampoline::Trampoline;

#[derive(Debug, thiserror::Error)]
pub enum ExeSealError {
    #[error("protecting the hullc binary (CVE-2019-5736): {op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("protecting the hullc binary (CVE-2019-5736): neither a private overlayfs ({overlay}) nor a sealed memfd copy could be made")]
    NoCopy {
        overlay: String,
        #[source]
        memfd: Box<ExeSealError>,
    },
    #[error("protecting the hullc binary (CVE-2019-5736): an argument or environment variable contains a NUL byte")]
    Nul,
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExeSealError {
    let op = op.into();
    move |source| ExeSealError::Sys { op, source }
}

fn last(op: &str) -> ExeSealError {
    sys(op)(std::io::Error::last_os_error())
}

// <linux/mount.h>; the libc crate has the syscall numbers only.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

/// The seals a memfd copy must carry to count as protected.
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// How this process' binary is protected, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    Overlay,
    Memfd,
}

/// Protects the binary for a process about to be started in a container
/// with `process` under `seccomp`: returns the trampoline its final execve
/// goes through, or `None` once this process runs from a protected copy
/// (re-executing it first if needed: then this call does not return, and
/// the new image parses its arguments and the config again).
///
/// The re-exec'd image comes to the same decision from the same config, and
/// [`protect_self`] returns at once there, so it execs the program directly:
/// one defence is enough, and the trampoline would only add an execve. (A
/// config rewritten in between may make it pick the trampoline: as safe.)
pub(crate) fn protect(
    state_root: &Path,
    process: Option<&Process>,
    seccomp: Option<&LinuxSeccomp>,
) -> Result<Option<Trampoline>, ExeSealError> {
    match trampoline_usable(process, seccomp) {
        Ok(()) => match Trampoline::new() {
            Ok(t) => return Ok(Some(t)),
            Err(e) => tracing::debug!("exeseal: no exec trampoline ({e}); re-exec"),
        },
        Err(why) => tracing::debug!("exeseal: no exec trampoline ({why}); re-exec"),
    }
    protect_self(state_root)?;
    Ok(None)
}

/// `linux.seccomp` of a config.
pub(crate) fn seccomp_of(spec: &Spec) -> Option<&LinuxSeccomp> {
    spec.linux().as_ref().and_then(|l| l.seccomp().as_ref())
}

/// The syscalls the trampoline makes, under the container's filter:
/// refused or conditional, the program might not start (`execveat`), the
/// trampoline might stay dumpable (`prctl`), the caller would wait for an
/// EOF that never comes (`fcntl` F_SETFD), or a failure would go
/// unreported (`rt_sigprocmask`, `write`, `exit_group`). Its `execve` is
/// the one the program's start makes anyway.
const TRAMPOLINE_SYSCALLS: &[&str] = &[
    "execveat",
    "prctl",
    "fcntl",
    "rt_sigprocmask",
    "write",
    "exit_group",
];

/// Whether the trampoline can replace the re-exec for this process; `Err`
/// says why not. Pure: decided from the config alone.
pub(crate) fn trampoline_usable(
    process: Option<&Process>,
    seccomp: Option<&LinuxSeccomp>,
) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the trampoline is built for x86_64 only".into());
    }
    // An exec label applies at the *next* execve, the trampoline's, and
    // SELinux policies may refuse to execute a memfd (why runc dropped
    // runc-dmz); the label must land on the program itself.
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if process.is_some_and(|p| set(p.apparmor_profile()) || set(p.selinux_label())) {
        return Err("process.apparmorProfile or process.selinuxLabel is set".into());
    }
    if process.is_some_and(gains_caps_at_exec) {
        return Err(
            "the program gains capabilities at exec (root without noNewPrivileges, bounding \
             or inheritable beyond permitted): through the trampoline it would stay dumpable"
                .into(),
        );
    }
    if process.is_some_and(loses_exec_caps) {
        return Err(
            "the program's exec needs CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH, which a \
             non-root user keeps through the trampoline's exec only when ambient"
                .into(),
        );
    }
    if let Some(s) = seccomp {
        if let Some(name) = TRAMPOLINE_SYSCALLS
            .iter()
            .find(|n| !seccomp_allows_always(s, n))
        {
            return Err(format!("linux.seccomp may refuse {name}"));
        }
    }
    Ok(())
}

/// Whether a direct execve would raise the permitted set. For root without
/// no_new_privs the kernel computes P' = P(inh) | bset; when that exceeds P,
/// commit_creds makes the program non-dumpable. Through the trampoline the
/// gain would happen at the trampoline's exec, and the program's own exec
/// (nothing more to gain) would leave it dumpable. Without a capabilities
/// object the sets are cleared and the bounding set kept: a gain.
fn gains_caps_at_exec(p: &Process) -> bool {
    if p.user().uid() != 0 || p.no_new_privileges() == Some(true) {
        return false;
    }
    let Some(c) = p.capabilities() else {
        return true;
    };
    let set = |s: &Option<oci_spec::runtime::Capabilities>| s.clone().unwrap_or_default();
    let permitted = set(c.permitted());
    set(c.bounding())
        .union(&set(c.inheritable()))
        .any(|cap| !permitted.contains(cap))
}

/// Whether the trampoline's own execve would take away capabilities that
/// the program's execve is checked with. The kernel checks execute and
/// search permission with the caller's effective set; a non-root user keeps
/// only its ambient set across an execve, so through the trampoline a file
/// or directory reachable only with CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH
/// (runc's start_hello.bats: uid 1000 running a 0744 `/bin/echo`) would be
/// refused, where a direct execve runs it.
fn loses_exec_caps(p: &Process) -> bool {
    use oci_spec::runtime::Capability as C;
    if p.user().uid() == 0 {
        return false;
    }
    let Some(c) = p.capabilities() else {
        return false;
    };
    let set = |s: &Option<oci_spec::runtime::Capabilities>| s.clone().unwrap_or_default();
    let (effective, ambient) = (set(c.effective()), set(c.ambient()));
    [C::DacOverride, C::DacReadSearch]
        .iter()
        .any(|cap| effective.contains(cap) && !ambient.contains(cap))
}

/// Whether the filter lets `name` through whatever its arguments, read the
/// way seccomp/mod.rs compiles it: a rule whose action repeats the default
/// is dropped (libseccomp refuses it), the remaining rules of a syscall are
/// tried in profile order, the first match wins, and the default applies
/// when none matches. A rule with conditions and an allowing action only
/// passes some calls on; a conditional refusal might catch ours. A profile
/// the compiler rejects is not ours to judge (create fails on it anyway).
fn seccomp_allows_always(s: &LinuxSeccomp, name: &str) -> bool {
    let allows = |a: Act| matches!(a, Act::ScmpActAllow | Act::ScmpActLog);
    let compiled = |a, errno| crate::seccomp::action(a, errno, "linux.seccomp").ok();
    let default = compiled(s.default_action(), s.default_errno_ret());
    let rules = s.syscalls().iter().flatten();
    let kept = rules.filter(|r| compiled(r.action(), r.errno_ret()) != default);
    for r in kept.filter(|r| r.names().iter().any(|n| n == name)) {
        let conditional = r.args().as_ref().is_some_and(|a| !a.is_empty());
        match (conditional, allows(r.action())) {
            (false, verdict) => return verdict,
            (true, true) => continue,
            (true, false) => return false,
        }
    }
    allows(s.default_action())
}

/// Makes sure this process runs from a protected copy of its binary:
/// returns if it already does, else re-execs itself from one (same argv,
/// environment, fds and pid) and never returns. `state_root` is hullc's
/// `--root`, used (created if needed) as the overlay's second lower layer.
pub fn protect_self(state_root: &Path) -> Result<(), ExeSealError> {
    if let Some(p) = current()? {
        tracing::debug!(?p, "exeseal: running from a protected copy");
        return Ok(());
    }
    let exe = match overlay_copy(state_root) {
        Ok(fd) => fd,
        Err(overlay) => {
            tracing::debug!("exeseal: no private overlayfs ({overlay}); making a memfd copy");
            memfd_copy().map_err(|m| ExeSealError::NoCopy {
                overlay: overlay_reason(&overlay),
                memfd: Box::new(m),
            })?
        }
    };
    Err(reexec(&exe))
}

fn overlay_reason(e: &ExeSealError) -> String {
    match e {
        ExeSealError::Sys { op, source } => format!("{op}: {source}"),
        e => e.to_string(),
    }
}

/// Which protection `/proc/self/exe` has (None: it is the file on disk).
pub fn current() -> Result<Option<Protection>, ExeSealError> {
    let exe = open_self_exe(libc::O_PATH)?;
    // SAFETY: fstatfs fills the zeroed struct we pass for a valid fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `exe` is a live fd and `st` a writable statfs.
    if unsafe { libc::fstatfs(exe.as_raw_fd(), &mut st) } != 0 {
        return Err(last("fstatfs /proc/self/exe"));
    }
    // SAFETY: fstatvfs fills the zeroed struct we pass for a valid fd.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `exe` is a live fd and `vfs` a writable statvfs.
    if unsafe { libc::fstatvfs(exe.as_raw_fd(), &mut vfs) } != 0 {
        return Err(last("fstatvfs /proc/self/exe"));
    }
    let rdonly = vfs.f_flag & libc::ST_RDONLY != 0;
    if st.f_type == libc::OVERLAYFS_SUPER_MAGIC && rdonly && !attached(&exe)? {
        return Ok(Some(Protection::Overlay));
    }
    if st.f_type == libc::TMPFS_MAGIC && sealed_memfd() {
        return Ok(Some(Protection::Memfd));
    }
    Ok(None)
}

fn open_self_exe(flags: libc::c_int) -> Result<OwnedFd, ExeSealError> {
    // SAFETY: a NUL-terminated literal path; open returns a fresh fd or -1.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last("opening /proc/self/exe"));
    }
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the mount holding `fd` is in our mount table. Our own overlay
/// never is (detached, and dissolved when its fd closed at execve); an
/// overlayfs the binary merely lives on (a container image's rootfs) is.
fn attached(fd: &OwnedFd) -> Result<bool, ExeSealError> {
    // SAFETY: statx fills the zeroed struct for a valid fd and empty path.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is live, the path is an empty C string with AT_EMPTY_PATH.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 || stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(last("statx(STATX_MNT_ID) /proc/self/exe"));
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(sys("reading /proc/self/mountinfo"))?;
    Ok(mountinfo_has(&mi, stx.stx_mnt_id))
}

fn mountinfo_has(mountinfo: &str, id: u64) -> bool {
    mountinfo
        .lines()
        .any(|l| l.split(' ').next().and_then(|f| f.parse::<u64>().ok()) == Some(id))
}

fn sealed_memfd() -> bool {
    let Ok(exe) = open_self_exe(libc::O_RDONLY) else {
        return false;
    };
    // SAFETY: fcntl(F_GET_SEALS) only reads the file's seal set.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// The binary's real path, split into (directory, file name).
fn self_path() -> Result<(CString, CString), ExeSealError> {
    let p = std::fs::read_link("/proc/self/exe").map_err(sys("reading /proc/self/exe"))?;
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(sys(format!("binary path {}", p.display()))(
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ));
    };
    Ok((
        CString::new(escape_lowerdir(dir.as_os_str().as_bytes())).map_err(|_| ExeSealError::Nul)?,
        CString::new(name.as_bytes()).map_err(|_| ExeSealError::Nul)?,
    ))
}

/// overlayfs splits `lowerdir` at ':' and unescapes '\'.
fn escape_lowerdir(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &b in p {
        if b == b'\\' || b == b':' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The binary through a private, lower-layers-only overlayfs: an O_PATH fd.
fn overlay_copy(state_root: &Path) -> Result<OwnedFd, ExeSealError> {
    let (dir, name) = self_path()?;
    // overlayfs without an upper layer needs two lower ones, which must not
    // nest. The state root is hullc's own directory, never the binary's.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o711)
        .create(state_root)
        .map_err(sys(format!("creating {}", state_root.display())))?;
    let root = escape_lowerdir(state_root.as_os_str().as_bytes());
    let mut lower = dir.into_bytes();
    lower.push(b':');
    lower.extend_from_slice(&root);
    let lower = CString::new(lower).map_err(|_| ExeSealError::Nul)?;
    let ctx = fs_syscall(
        // SAFETY: fsopen reads a NUL-terminated fs name; returns a new fd or -1.
        unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen(overlay)",
    )?;
    set_string(&ctx, c"lowerdir", &lower)?;
    // Only to keep dmesg quiet when the layers are on different filesystems.
    let _ = set_string(&ctx, c"xino", c"off");
    // SAFETY: FSCONFIG_CMD_CREATE on our fs context fd takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            0usize,
            0usize,
            0,
        )
    };
    if rc != 0 {
        return Err(last("fsconfig(create) overlay"));
    }
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    let mnt = fs_syscall(
        // SAFETY: fsmount on our configured context fd; returns a new fd or -1.
        unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) },
        "fsmount(overlay)",
    )?;
    // SAFETY: openat relative to our mount fd with a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            mnt.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    let copy = fs_syscall(fd as libc::c_long, "opening the binary in the overlay")?;
    same_file_as_self(&copy)?;
    Ok(copy)
}

/// The name in the merged view is the file we run only if nothing changed
/// since our start: a binary replaced by an upgrade, or deleted while a file
/// of that name sits in the state root (the second lower layer), would be
/// found instead. Then the memfd copy, which reads `/proc/self/exe` itself,
/// is the right fallback. overlayfs reports a lower file's own inode number,
/// size and times.
fn same_file_as_self(copy: &OwnedFd) -> Result<(), ExeSealError> {
    let exe = open_self_exe(libc::O_PATH)?;
    let (a, b) = (fstat(copy)?, fstat(&exe)?);
    let key = |s: &libc::stat| (s.st_ino, s.st_size, s.st_mtime, s.st_mtime_nsec);
    if key(&a) != key(&b) {
        return Err(sys("the binary in the overlay is not the one running")(
            std::io::Error::from_raw_os_error(libc::ESTALE),
        ));
    }
    Ok(())
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, ExeSealError> {
    // SAFETY: fstat fills the zeroed struct we pass for a valid fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a live fd (O_PATH fds are allowed) and `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(last("fstat"));
    }
    Ok(st)
}

fn set_string(ctx: &OwnedFd, key: &CStr, value: &CStr) -> Result<(), ExeSealError> {
    // SAFETY: FSCONFIG_SET_STRING reads two NUL-terminated strings we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if rc != 0 {
        return Err(last(&format!("fsconfig overlay {}", key.to_string_lossy())));
    }
    Ok(())
}

/// Wraps a syscall's fd result.
fn fs_syscall(rc: libc::c_long, op: &str) -> Result<OwnedFd, ExeSealError> {
    if rc < 0 {
        return Err(last(op));
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

/// A sealed memfd copy of the binary (runc's fallback too).
fn memfd_copy() -> Result<OwnedFd, ExeSealError> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) says so explicitly where vm.memfd_noexec asks.
    // SAFETY: memfd_create reads a NUL-terminated name; returns a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(c"hullc".as_ptr(), flags | libc::MFD_EXEC) };
    if fd < 0 {
        // SAFETY: as above, without the flag older kernels reject.
        fd = unsafe { libc::memfd_create(c"hullc".as_ptr(), flags) };
    }
    let memfd = fs_syscall(fd as libc::c_long, "memfd_create")?;
    let src = open_self_exe(libc::O_RDONLY)?;
    let mut from = std::fs::File::from(src);
    let mut to = std::fs::File::from(memfd);
    std::io::copy(&mut from, &mut to).map_err(sys("copying the binary into a memfd"))?;
    let memfd = OwnedFd::from(to);
    // SAFETY: fchmod and fcntl(F_ADD_SEALS) on our own memfd.
    unsafe {
        libc::fchmod(memfd.as_raw_fd(), 0o511);
        // F_SEAL_EXEC (6.3): the mode can no longer change; optional.
        libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_EXEC);
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(last("sealing the memfd copy"));
    }
    Ok(memfd)
}

/// execveat(fd, "", AT_EMPTY_PATH) with our argv and environment; returns
/// only the error.
fn reexec(exe: &OwnedFd) -> ExeSealError {
    let cstrings = |v: Vec<OsString>| -> Result<Vec<CString>, ExeSealError> {
        v.into_iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| ExeSealError::Nul))
            .collect()
    };
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    let (args, env) = match (cstrings(std::env::args_os().collect()), cstrings(env)) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let (argv, envp) = (ptrs(&args), ptrs(&env));
    // SAFETY: argv/envp are NULL-terminated arrays of pointers into CStrings
    // that outlive the call; on success the process image is replaced.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            exe.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    last("re-executing from the protected copy (execveat)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_escapes_colons_and_backslashes() {
        assert_eq!(escape_lowerdir(b"/a:b\\c"), b"/a\\:b\\\\c".to_vec());
        assert_eq!(escape_lowerdir(b"/usr/bin"), b"/usr/bin".to_vec());
    }

    #[test]
    fn mount_ids_are_matched_on_the_first_field() {
        let mi = "22 1 0:21 / / rw - ext4 /dev/vda rw\n123 22 0:5 / /x rw - tmpfs t rw\n";
        assert!(mountinfo_has(mi, 123));
        assert!(!mountinfo_has(mi, 22 + 1));
        assert!(!mountinfo_has(mi, 0));
    }

    fn seccomp(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("a valid linux.seccomp")
    }

    fn usable(s: serde_json::Value) -> Result<(), String> {
        trampoline_usable(None, Some(&seccomp(s)))
    }

    #[test]
    fn trampoline_is_used_when_the_filter_allows_its_syscalls_always() {
        assert_eq!(trampoline_usable(None, None), Ok(()));
        let allow = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
        assert_eq!(usable(allow), Ok(()));
        let log = serde_json::json!({"defaultAction": "SCMP_ACT_LOG", "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]});
        assert_eq!(usable(log), Ok(()));
        // docker's shape: deny by default, the trampoline's syscalls listed.
        let docker = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read", "write", "fcntl", "execve", "execveat", "exit_group", "prctl",
                       "rt_sigprocmask"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]});
        assert_eq!(usable(docker), Ok(()));
        // A conditional allow first, then an unconditional one.
        let both = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["execveat"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 4, "value": 4096, "op": "SCMP_CMP_EQ"}]},
            {"names": ["execveat", "fcntl", "write", "exit_group", "prctl", "rt_sigprocmask"],
             "action": "SCMP_ACT_ALLOW"}]});
        assert_eq!(usable(both), Ok(()));
    }

    #[test]
    fn trampoline_is_not_used_when_the_filter_may_refuse_it() {
        let denied = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]});
        assert!(usable(denied)
            .expect_err("execveat refused")
            .contains("execveat"));
        let conditional = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["fcntl"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]});
        assert!(usable(conditional).expect_err("fcntl").contains("fcntl"));
        let notified = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock", "syscalls": [
            {"names": ["execveat"], "action": "SCMP_ACT_NOTIFY"}]});
        assert!(usable(notified).is_err());
        // Deny by default without naming them.
        let unlisted = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["execve", "fcntl", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]});
        assert!(usable(unlisted)
            .expect_err("not listed")
            .contains("execveat"));
        // Only a conditional allow: other calls fall to the default.
        let only_some = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["execveat", "fcntl", "write", "exit_group"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_GE"}]}]});
        assert!(usable(only_some).is_err());
        let trace = serde_json::json!({"defaultAction": "SCMP_ACT_TRACE"});
        assert!(usable(trace).is_err());
        // A rule that repeats the default is dropped by the compiler (as
        // libseccomp refuses it), so the refusal after it is what applies.
        let shadowed = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["execveat"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]});
        assert!(usable(shadowed).expect_err("execveat").contains("execveat"));
        let shadowed_if = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_GE"}]}]});
        assert!(usable(shadowed_if).expect_err("write").contains("write"));
    }

    #[test]
    fn trampoline_is_not_used_when_the_program_gains_capabilities_at_exec() {
        let p = |caps: serde_json::Value, nnp: bool, uid: u32| -> Process {
            let mut v = serde_json::json!({"cwd": "/", "user": {"uid": uid, "gid": 0},
                "args": ["sh"], "noNewPrivileges": nnp});
            if !caps.is_null() {
                v["capabilities"] = caps;
            }
            serde_json::from_value(v).expect("a valid process")
        };
        let some = serde_json::json!(["CAP_KILL", "CAP_CHOWN"]);
        let kill = serde_json::json!(["CAP_KILL"]);
        let equal = serde_json::json!({"bounding": some, "permitted": some, "effective": some});
        assert_eq!(
            trampoline_usable(Some(&p(equal.clone(), false, 0)), None),
            Ok(())
        );
        let wider = serde_json::json!({"bounding": some, "permitted": kill, "effective": kill});
        assert!(trampoline_usable(Some(&p(wider.clone(), false, 0)), None).is_err());
        let inh = serde_json::json!({"bounding": kill, "inheritable": some, "permitted": kill});
        assert!(trampoline_usable(Some(&p(inh, false, 0)), None).is_err());
        // no_new_privs clamps P' to P, and non-root gains nothing (ambient
        // only): no gain, the trampoline is fine.
        assert_eq!(
            trampoline_usable(Some(&p(wider.clone(), true, 0)), None),
            Ok(())
        );
        assert_eq!(
            trampoline_usable(Some(&p(wider, false, 1000)), None),
            Ok(())
        );
        // No capabilities object: cleared sets, the bounding set kept.
        let none = serde_json::Value::Null;
        assert!(trampoline_usable(Some(&p(none.clone(), false, 0)), None).is_err());
        assert_eq!(trampoline_usable(Some(&p(none, true, 0)), None), Ok(()));
    }

    #[test]
    fn trampoline_is_not_used_when_its_exec_drops_dac_capabilities() {
        let p = |caps: serde_json::Value, uid: u32| -> Process {
            serde_json::from_value(serde_json::json!({"cwd": "/", "args": ["echo"],
                "user": {"uid": uid, "gid": 100}, "capabilities": caps}))
            .expect("a valid process")
        };
        let dac = serde_json::json!(["CAP_DAC_OVERRIDE", "CAP_KILL"]);
        let kill = serde_json::json!(["CAP_KILL"]);
        let eff = serde_json::json!({"bounding": dac, "permitted": dac, "effective": dac});
        assert!(trampoline_usable(Some(&p(eff.clone(), 1000)), None)
            .expect_err("uid 1000")
            .contains("CAP_DAC_OVERRIDE"));
        // root keeps its permitted set across the trampoline's exec.
        assert_eq!(trampoline_usable(Some(&p(eff, 0)), None), Ok(()));
        // ambient: kept across the trampoline's exec.
        let amb = serde_json::json!({"bounding": dac, "permitted": dac, "effective": dac,
            "inheritable": dac, "ambient": dac});
        assert_eq!(trampoline_usable(Some(&p(amb, 1000)), None), Ok(()));
        let other = serde_json::json!({"bounding": kill, "permitted": kill, "effective": kill});
        assert_eq!(trampoline_usable(Some(&p(other, 1000)), None), Ok(()));
    }

    #[test]
    fn trampoline_is_not_used_with_an_lsm_exec_label() {
        let p = |k: &str, v: &str| -> Process {
            serde_json::from_value(serde_json::json!({
                "cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                "noNewPrivileges": true, k: v}))
            .expect("a valid process")
        };
        assert!(trampoline_usable(Some(&p("apparmorProfile", "hull-test")), None).is_err());
        assert!(trampoline_usable(Some(&p("selinuxLabel", "system_u:r:t:s0")), None).is_err());
        // Empty labels are no-ops (lsm.rs), so no reason to fall back.
        assert_eq!(
            trampoline_usable(Some(&p("apparmorProfile", "")), None),
            Ok(())
        );
    }

    #[test]
    fn a_test_binary_on_disk_is_not_protected() {
        assert_eq!(current().expect("inspect /proc/self/exe"), None);
    }
}
