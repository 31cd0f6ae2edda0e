//! The container process' identity and limits: rlimits, oom_score_adj,
//! session keyring, user and groups, capabilities, no_new_privs, umask, and
//! finally execve. Each kernel operation is its own function; init.rs calls
//! them in the order the kernel needs (rlimits and keyring while still
//! privileged, bounding set before setuid, the other sets after it).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability as Cap};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process};

use crate::trampoline::Trampoline;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process.rlimits: setting {0}")]
    Rlimit(String, #[source] std::io::Error),
    #[error("process.oomScoreAdj: writing /proc/self/oom_score_adj")]
    OomScoreAdj(#[source] std::io::Error),
    #[error("joining a new session keyring")]
    Keyring(#[source] std::io::Error),
    #[error("process.user: {op}")]
    User {
        op: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("process.capabilities: setting the {set} set")]
    Caps {
        set: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
    #[error("process.noNewPrivileges: prctl")]
    NoNewPrivs(#[source] nix::Error),
    #[error("process.cwd: chdir to {0}")]
    Cwd(PathBuf, #[source] GoErrno),
    #[error("process.cwd: {0} leads outside the container's root")]
    CwdOutside(PathBuf),
    #[error("process.args: exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    #[error("process.args: exec: {0:?}")]
    NotExecutable(String, #[source] LookupError),
    #[error("process.args: exec {0:?}")]
    Exec(String, #[source] GoErrno),
    #[error("process.args or env contains a NUL byte")]
    Nul,
    #[error("process.args: must name a program")]
    NoArgs,
    #[error("marking inherited fds close-on-exec")]
    CloseRange(#[source] std::io::Error),
}

/// An errno in the words of Go's syscall package, which runc prints: the C
/// library's text with a lower-case first letter, without Rust's
/// "(os error N)". Engines read runc's error text to choose an exit status:
/// docker gives 127 for "no such file or directory" and "executable file not
/// found", 126 for "permission denied" (case-sensitive), else 125; podman
/// matches the same phrases. The exec-failure paths speak this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoErrno(pub i32);

impl std::fmt::Display for GoErrno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The C library's text (Go's table is glibc's, lower-cased); nix's
        // own table words some differently (ELOOP).
        let full = std::io::Error::from_raw_os_error(self.0).to_string();
        let text = full.split(" (os error").next().unwrap_or(&full);
        let mut chars = text.chars();
        match chars.next() {
            Some(c) => write!(f, "{}{}", c.to_lowercase(), chars.as_str()),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for GoErrno {}

impl From<nix::Error> for GoErrno {
    fn from(e: nix::Error) -> Self {
        GoErrno(e as i32)
    }
}

/// Why a program named by path cannot run, as runc (Go's exec.LookPath)
/// says it.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The path cannot be stat'ed (missing, a symlink loop).
    #[error("stat {0}: {1}")]
    Stat(String, GoErrno),
    /// Not executable by us: no x bit, a noexec mount, or a directory
    /// (LookPath says "permission denied" for a directory too).
    #[error("{0}")]
    Access(GoErrno),
}

fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType as T;
    match t {
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitStack => libc::RLIMIT_STACK,
    }
}

pub(crate) fn set_rlimits(p: &Process) -> Result<(), ProcessError> {
    for r in p.rlimits().iter().flatten() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads a plain struct we own.
        if unsafe { libc::setrlimit(resource(r.typ()), &lim) } != 0 {
            let e = std::io::Error::last_os_error();
            // The config's own spelling (RLIMIT_NOFILE), not the Rust name.
            let name = serde_json::to_value(r.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(ProcessError::Rlimit(name, e));
        }
    }
    Ok(())
}

pub(crate) fn set_oom_score_adj(p: &Process) -> Result<(), ProcessError> {
    match p.oom_score_adj() {
        Some(v) => std::fs::write("/proc/self/oom_score_adj", v.to_string())
            .map_err(ProcessError::OomScoreAdj),
        None => Ok(()),
    }
}

/// A fresh session keyring per container, so containers do not share the
/// caller's keys (runc does this unless `--no-new-keyring`).
pub(crate) fn join_session_keyring(id: &str) -> Result<(), ProcessError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = CString::new(format!("_ses.{id}")).map_err(|_| ProcessError::Nul)?;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads a NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keys, or seccomp'd callers: not the container's problem.
        if e.raw_os_error() != Some(libc::ENOSYS) {
            return Err(ProcessError::Keyring(e));
        }
    }
    Ok(())
}

/// Maps the spec's names to the caps crate's, dropping those the running
/// kernel does not know (runtime-spec: unknown capabilities are ignored).
fn to_caps(set: &Option<Capabilities>, supported: &HashSet<Cap>) -> HashSet<Cap> {
    set.iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<Cap>().ok())
        .filter(|c| supported.contains(c))
        .collect()
}

/// The capabilities this kernel knows: those up to cap_last_cap. One read
/// instead of probing each capability with prctl (41 syscalls, twice).
fn supported() -> &'static HashSet<Cap> {
    static SUPPORTED: std::sync::OnceLock<HashSet<Cap>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| {
        match std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
        {
            Some(last) => caps::all()
                .into_iter()
                .filter(|c| c.index() <= last)
                .collect(),
            None => caps::runtime::thread_all_supported(),
        }
    })
}

/// Drops from the bounding set what the config does not keep. Must run
/// while we still hold CAP_SETPCAP, i.e. before the user switch.
pub(crate) fn drop_bounding(c: &LinuxCapabilities) -> Result<(), ProcessError> {
    let all = supported();
    let keep = to_caps(c.bounding(), all);
    for cap in all.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(|source| ProcessError::Caps {
            set: "bounding",
            source,
        })?;
    }
    Ok(())
}

/// Effective before permitted (capset requires effective ⊆ permitted at
/// every step), then inheritable, then ambient (which needs both).
pub(crate) fn set_caps(c: &LinuxCapabilities) -> Result<(), ProcessError> {
    let all = supported();
    let sets = [
        ("effective", CapSet::Effective, to_caps(c.effective(), all)),
        ("permitted", CapSet::Permitted, to_caps(c.permitted(), all)),
        (
            "inheritable",
            CapSet::Inheritable,
            to_caps(c.inheritable(), all),
        ),
    ];
    for (set, which, caps) in &sets {
        caps::set(None, *which, caps).map_err(|source| ProcessError::Caps { set, source })?;
    }
    for cap in to_caps(c.ambient(), all) {
        // The kernel raises an ambient capability only if it is permitted
        // and inheritable (EPERM otherwise). runc's default spec lists
        // ambient capabilities that are not inheritable and runc ignores the
        // failure silently (its capability library drops the prctl error),
        // so a warning here would print on every run of that spec.
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            tracing::debug!("process.capabilities.ambient: cannot raise {cap}: {e}");
        }
    }
    Ok(())
}

/// setgroups, setresgid, setresuid, keeping capabilities across the switch
/// so that `set_caps` can grant what the config asks for.
pub(crate) fn set_user(p: &Process, setgroups_allowed: bool) -> Result<(), ProcessError> {
    use nix::unistd::{Gid, Uid};
    let user = p.user();
    let err = |op| move |source| ProcessError::User { op, source };
    nix::sys::prctl::set_keepcaps(true).map_err(err("keep capabilities"))?;
    let extra = user
        .additional_gids()
        .as_ref()
        .is_some_and(|g| !g.is_empty());
    if !setgroups_allowed && extra {
        // Silently running without the groups the config asks for would
        // hand the program other permissions than intended.
        return Err(ProcessError::User {
            op: "setgroups(additionalGids): denied in this user namespace (unprivileged mapping)",
            source: nix::Error::EPERM,
        });
    }
    if setgroups_allowed {
        let gids: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).map_err(err("setgroups(additionalGids)"))?;
    }
    let g = Gid::from_raw(user.gid());
    nix::unistd::setresgid(g, g, g).map_err(err("setgid(gid)"))?;
    let u = Uid::from_raw(user.uid());
    nix::unistd::setresuid(u, u, u).map_err(err("setuid(uid)"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(err("clear keep capabilities"))?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub(crate) fn set_no_new_privs(p: &Process) -> Result<(), ProcessError> {
    if p.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(ProcessError::NoNewPrivs)?;
    }
    Ok(())
}

/// runc's order (its PR 2086): the cwd is tried first with the runtime's privileges, so a
/// directory only root may enter works for a container user (`exec --user 0` into a cwd that
/// belongs to the container's user, mode 0700, works without CAP_DAC_OVERRIDE); on EACCES or
/// EPERM it is tried again as the user, for a cwd only that user can reach. Whether it is done.
fn chdir_while_privileged(p: &Process) -> Result<bool, ProcessError> {
    match chdir(p) {
        Ok(()) => Ok(true),
        Err(ProcessError::Cwd(_, GoErrno(libc::EACCES | libc::EPERM))) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn chdir(p: &Process) -> Result<(), ProcessError> {
    nix::unistd::chdir(p.cwd()).map_err(|e| ProcessError::Cwd(p.cwd().clone(), e.into()))?;
    // A cwd reached through a leaked fd (CVE-2024-21626) lies outside our
    // root; the kernel then reports it as unreachable (getcwd fails or says
    // "(unreachable)"). Refuse to run there.
    match std::env::current_dir() {
        Ok(d) if d.is_absolute() => Ok(()),
        _ => Err(ProcessError::CwdOutside(p.cwd().clone())),
    }
}

/// The environment for execve: process.env, plus HOME from the container's
/// /etc/passwd when the config does not set it (runc and docker do this).
pub(crate) fn environment(p: &Process) -> Vec<String> {
    let mut env = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(p.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Finds args[0] the way execvp does, with the container's PATH. stat(2)
/// (newfstatat), not statx: it may run under the container's seccomp
/// filter, and profiles older than statx refuse it.
pub(crate) fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if arg0.contains('/') {
        // A named path gets the reason it cannot run (missing, a symlink
        // loop, a directory, no x bit) rather than a $PATH message.
        let p = PathBuf::from(arg0);
        return executable(&p)
            .map(|()| p)
            .map_err(|e| ProcessError::NotExecutable(arg0.into(), e));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(arg0))
        .find(|p| executable(p).is_ok())
        .ok_or_else(|| ProcessError::NotFound(arg0.into()))
}

fn executable(p: &Path) -> Result<(), LookupError> {
    let st = nix::sys::stat::stat(p)
        .map_err(|e| LookupError::Stat(p.display().to_string(), e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(LookupError::Access(GoErrno(libc::EACCES)));
    }
    may_execute(p).map_err(|e| LookupError::Access(e.into()))
}

/// Whether execve would let us run `p`. access(2) judges with the real
/// uid and, for a non-root one, ignores every capability, so a user with
/// CAP_DAC_OVERRIDE (runc's start_hello.bats) would be refused a file only
/// its owner may execute. Where access(2) refuses, faccessat2 with
/// AT_EACCESS (the effective ids and capabilities: what execve uses, and
/// Go's LookPath in runc) decides; it is asked only then, so the usual path
/// makes no syscall an old seccomp profile lacks. Where faccessat2 is missing
/// (before 5.8: ENOSYS) or refused (a profile older than it: EPERM), the
/// refusal stands.
fn may_execute(p: &Path) -> nix::Result<()> {
    let refused = match nix::unistd::access(p, nix::unistd::AccessFlags::X_OK) {
        Err(e @ nix::Error::EACCES) => e,
        other => return other,
    };
    let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) else {
        return Err(refused);
    };
    // SAFETY: faccessat2 reads the NUL-terminated path; no memory is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    match (rc, nix::Error::last()) {
        (0, _) => Ok(()),
        (_, nix::Error::ENOSYS | nix::Error::EPERM) => Err(refused),
        (_, e) => Err(e),
    }
}

/// Replaces this process with the container's program, through the exec
/// trampoline when there is one (CVE-2019-5736, trampoline.rs; `errfd` is
/// the caller's close-on-exec channel, which receives the trampoline's
/// report). Returns only on error.
pub(crate) fn exec(
    path: &Path,
    args: &[String],
    env: &[String],
    via: Option<(&Trampoline, BorrowedFd)>,
) -> ProcessError {
    let c = |s: &str| CString::new(s).map_err(|_| ProcessError::Nul);
    let build = || -> Result<(CString, Vec<CString>, Vec<CString>), ProcessError> {
        Ok((
            c(&path.to_string_lossy())?,
            args.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
            env.iter().map(|e| c(e)).collect::<Result<_, _>>()?,
        ))
    };
    let (p, a, e) = match build() {
        Ok(b) => b,
        Err(e) => return e,
    };
    let err = match via {
        Some((t, errfd)) => t.exec(errfd, &p, &a, &e),
        None => match nix::unistd::execve(&p, &a, &e) {
            Err(err) => err,
            Ok(never) => match never {},
        },
    };
    exec_failure(args.first().map_or("", String::as_str), err)
}

/// The error of a failed exec of `arg0`, whether the execve ran here or in
/// the trampoline (which reports the errno): the same message either way.
pub(crate) fn exec_failure(arg0: &str, errno: nix::Error) -> ProcessError {
    ProcessError::Exec(arg0.to_string(), errno.into())
}

/// The text init sends to `hullc start` when the program cannot run.
pub(crate) fn failure_text(e: &ProcessError) -> String {
    let cause = std::error::Error::source(e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    format!("{e}{cause}")
}

/// rlimits and the bounding set while privileged, then the user switch,
/// then the capability sets and no_new_privs; returns the program to exec.
/// Shared by init and `exec`.
pub(crate) fn become_process(
    p: &Process,
    setgroups_allowed: bool,
) -> Result<PathBuf, ProcessError> {
    set_rlimits(p)?;
    if let Some(c) = p.capabilities() {
        drop_bounding(c)?;
    }
    let in_cwd = chdir_while_privileged(p)?;
    set_user(p, setgroups_allowed)?;
    if let Some(c) = p.capabilities() {
        set_caps(c)?;
    } else {
        // No capabilities object: the process gets none (runtime-spec).
        for (set, which) in [
            ("effective", CapSet::Effective),
            ("permitted", CapSet::Permitted),
            ("inheritable", CapSet::Inheritable),
        ] {
            caps::clear(None, which).map_err(|source| ProcessError::Caps { set, source })?;
        }
    }
    set_no_new_privs(p)?;
    if !in_cwd {
        chdir(p)?;
    }
    // PATH comes from process.env alone (HOME, which environment() adds
    // from /etc/passwd, plays no part in the lookup).
    let env = p.env().as_deref().unwrap_or_default();
    let arg0 = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .ok_or(ProcessError::NoArgs)?;
    find_executable(arg0, env)
}

/// What init and `exec` do before the container's seccomp filter goes in
/// (it goes in before the capability drop when noNewPrivileges is false):
/// everything that needs a syscall an older or stricter profile may refuse.
/// Inherited fds are marked close-on-exec (close_range, 5.9+, is missing
/// from profiles written before it), and the kernel's capability list is
/// read (a file read: statx, which profiles before 4.11 lack).
pub(crate) fn before_filter(fd_from: u32) -> Result<(), ProcessError> {
    supported();
    mark_fds_cloexec(fd_from)
}

/// Every inherited fd from `from` up must not reach the user's program:
/// close_range marks them close-on-exec in one call (Linux 5.11+). Where it
/// is missing (older kernel: ENOSYS or EINVAL for the flag) or refused (a
/// seccomp filter hullc itself runs under: EPERM), walk /proc/self/fd as
/// runc does.
pub(crate) fn mark_fds_cloexec(from: u32) -> Result<(), ProcessError> {
    // SAFETY: close_range only changes fd flags; fds below `from` are untouched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EINVAL | libc::EPERM) => {
            cloexec_by_walk(from).map_err(ProcessError::CloseRange)
        }
        _ => Err(ProcessError::CloseRange(e)),
    }
}

/// The fds listed in /proc/self/fd from `from` up get FD_CLOEXEC. The
/// directory's own fd is gone by the time the flags are set (EBADF,
/// skipped), and it was close-on-exec anyway.
fn cloexec_by_walk(from: u32) -> std::io::Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| u32::try_from(*fd).is_ok_and(|fd| fd >= from))
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a plain fd number only sets its flags (the
        // only fd flag is FD_CLOEXEC); no memory is involved.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EBADF) {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_uses_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let p = find_executable("sh", &env).expect("sh on PATH");
        assert!(p.ends_with("sh"));
        assert!(matches!(
            find_executable("no-such-prog-hull", &env),
            Err(ProcessError::NotFound(_))
        ));
        assert!(find_executable("/bin/sh", &[]).is_ok());
    }
}
