//! Stage 2: the container's init, running in the child of `clone3`, inside
//! the new namespaces. It builds the container, reports `Ready`, waits at the
//! start barrier and execs the user's program. It never returns: success is
//! `execve`, failure is an `Error` message to the parent and `_exit`.
//!
//! The child is a copy of a single-threaded process (hullc starts no threads
//! before clone), so allocation and the standard library are safe to use here.

use std::cell::Cell;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroup::HostViews;
use crate::console::{self, ConsoleError};
use crate::hooks::{self, HookError};
use crate::namespaces::{self, NamespaceError, Plan};
use crate::process::{self, ProcessError};
use crate::protocol::{Channel, Msg, ProtocolError};
use crate::rootfs::{self, RootfsError, RootfsOpts};
use crate::seccomp_setup;
use crate::trampoline::Trampoline;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Seccomp(#[from] seccomp_setup::SeccompSetupError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let op = op.into();
    move |source| InitError::Sys { op, source }
}

/// Everything init needs, prepared by the parent before clone.
pub(crate) struct InitArgs<'a> {
    pub(crate) id: &'a str,
    pub(crate) spec: &'a Spec,
    pub(crate) rootfs: &'a PathBuf,
    pub(crate) plan: &'a Plan,
    pub(crate) chan: Channel,
    pub(crate) listener: UnixListener,
    /// Where the pty master goes when process.terminal is set.
    pub(crate) console: Option<UnixStream>,
    /// The compiled seccomp profile (and its agent's connection).
    pub(crate) seccomp: Option<seccomp_setup::Prepared>,
    pub(crate) bundle: &'a std::path::Path,
    pub(crate) no_pivot: bool,
    pub(crate) no_new_keyring: bool,
    pub(crate) preserve_fds: u32,
    /// setgroups(2) is denied in user namespaces made by unprivileged callers.
    pub(crate) setgroups_allowed: bool,
    /// The exec trampoline (CVE-2019-5736), unless hullc was re-exec'd from
    /// a protected copy instead (exeseal.rs).
    pub(crate) trampoline: Option<&'a Trampoline>,
    /// Where init's cgroup will be, for the cgroup mount; empty: read
    /// /proc/self/cgroup once init is in it.
    pub(crate) cgroup_dirs: &'a [PathBuf],
    /// The parent's /proc views, for the cgroup mount to parse.
    pub(crate) host_views: &'a HostViews,
    /// The parent's cgroup messages read so far: 1 `Created`, 2 `Joined`.
    pub(crate) cgroup_seen: Cell<u8>,
    /// Where the parent sends bind sources it opened (bindsrc.rs).
    pub(crate) bind_fds: Option<UnixStream>,
}

impl InitArgs<'_> {
    /// Waits until the parent has made init's cgroup (`Created`) or also
    /// moved init into it (`joined`). Each message is read once, in order;
    /// `Joined` is due before hooks run and before Ready: nothing else init
    /// does depends on its cgroup (protocol.rs).
    fn await_cgroup(&self, joined: bool) -> Result<(), ProtocolError> {
        let need = if joined { 2 } else { 1 };
        while self.cgroup_seen.get() < need {
            match self.cgroup_seen.get() {
                0 => self.chan.expect(Msg::Created, "created")?,
                _ => self.chan.expect(Msg::Joined, "joined")?,
            }
            self.cgroup_seen.set(self.cgroup_seen.get() + 1);
        }
        Ok(())
    }
}

/// Entry point of the child. Never returns.
pub(crate) fn run(a: InitArgs) -> ! {
    let err = match build(&a) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let (context, cause) = split_error(&err);
    // If the parent is gone there is nobody to tell; exit either way.
    let _ = a.chan.send(&Msg::Error { context, cause });
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to
    // the parent's copy of this address space.
    unsafe { libc::_exit(1) }
}

/// The outermost message names the stage; the innermost cause says why.
pub(crate) fn split_error(e: &(dyn std::error::Error + 'static)) -> (String, String) {
    let mut chain = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        chain.push(s.to_string());
        cur = s.source();
    }
    let cause = if chain.len() > 1 {
        chain.pop().unwrap_or_default()
    } else {
        String::new()
    };
    (chain.join(": "), cause)
}

fn build(a: &InitArgs) -> Result<Infallible, InitError> {
    // Die with the parent until it commits the state (see protocol.rs).
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| sys("set parent-death signal")(e.into()))?;
    // A parent that died before the prctl above is seen here instead: its
    // end of the channel is closed and this read fails.
    a.chan.expect(Msg::Proceed, "proceed")?;
    // Until execve, this process is a copy of hullc: non-dumpable, its
    // /proc/<pid> entries (exe, mem, fd) are closed to the container's other
    // processes (CVE-2019-5736 class); execve restores it. After Proceed,
    // because the parent writes our uid_map through /proc first.
    set_non_dumpable()?;
    enter_namespaces(a)?;
    let process = a
        .spec
        .process()
        .as_ref()
        .expect("validated: process is present");
    // Our pid as the host sees it, read while the host's /proc is still ours.
    let host_pid = host_pid()?;
    process::set_oom_score_adj(process)?;
    build_rootfs(a)?;
    set_names(a.spec)?;
    if !a.no_new_keyring {
        process::join_session_keyring(a.id)?;
    }
    if let Some(sock) = &a.console {
        setup_terminal(sock, process)?;
    }
    // Without noNewPrivileges the filter goes in here, before the
    // capability drop (loading it then needs CAP_SYS_ADMIN), so what comes
    // after runs under it: only the syscalls runc makes there too (set-id,
    // capset, prctl, stat, access, the socket to the parent). Whatever needs
    // a newer or rarer syscall (close_range, a file read) comes first.
    let env = process::environment(process);
    process::before_filter(3 + a.preserve_fds)?;
    let seccomp_state = || hooks::state_json(a.spec, a.id, "creating", host_pid, a.bundle);
    if let Some(sc) = a.seccomp.as_ref().filter(|_| seccomp_setup::early(process)) {
        seccomp_setup::install(sc, host_pid, &seccomp_state())?;
    }
    let exe = process::become_process(process, a.setgroups_allowed)?;
    crate::lsm::apply_exec_labels(process)?;
    // With noNewPrivileges the filter goes in as late as it can while init
    // can still report a failure to `create`: before Ready, as runc does
    // (before it closes its init pipe). startContainer hooks thus run under
    // it, as in runc (seccomp.bats "startContainer hook").
    if let Some(sc) = a
        .seccomp
        .as_ref()
        .filter(|_| !seccomp_setup::early(process))
    {
        seccomp_setup::install(sc, host_pid, &seccomp_state())?;
    }
    let args = process.args().clone().unwrap_or_default();
    let state = report_ready(a)?;
    let mut conn = match wait_for_start(&a.listener) {
        Ok(c) => c,
        Err(e) => lost_before_start(&e),
    };
    // startContainer hooks run in the container, after `start`, before the
    // program; a failure is reported to `start` like an exec failure.
    if let Err(e) = hooks::run(a.spec, hooks::Kind::StartContainer, &state) {
        let _ = writeln!(conn, "{e}");
        // SAFETY: see run().
        unsafe { libc::_exit(1) }
    }
    reset_signals();
    // Through the trampoline, `conn` is also where it reports a failed
    // execve (`hullc start` decodes that into the same text as below).
    let via = a.trampoline.map(|t| (t, conn.as_fd()));
    let e = process::exec(&exe, &args, &env, via);
    // Tell `hullc start` why the program did not run, then die.
    let _ = writeln!(conn, "{}", process::failure_text(&e));
    // SAFETY: see run(); nothing of the parent's state needs flushing.
    unsafe { libc::_exit(127) }
}

/// The whole filesystem view: mounts, createRuntime/createContainer hooks,
/// pivot_root, sysctls (before /proc/sys turns read-only), finishing touches.
fn build_rootfs(a: &InitArgs) -> Result<(), InitError> {
    // config.rs guarantees a mount namespace (new or joined).
    let o = RootfsOpts {
        spec: a.spec,
        rootfs: a.rootfs,
        no_pivot: a.no_pivot,
        // Device nodes are bound from the host in a user namespace, new or inherited (a
        // rootless engine's, as podman's pause namespace): mknod is refused in both (runc:
        // `RunningInUserNS() || NEWUSER`).
        userns: a.plan.new_user_ns || crate::rootless::running_in_userns(),
        cgroupns: a.plan.new_cgroup_ns,
        cgroup_dirs: a.cgroup_dirs,
        // Still true in init when its mount namespace is a copy of the
        // parent's and the parent manages its cgroup (else: read afresh).
        host_views: (a.plan.new_mount_ns && !a.cgroup_dirs.is_empty()).then_some(a.host_views),
        await_cgroup: &|joined| a.await_cgroup(joined),
        bind_fds: &crate::bindsrc::receive(a.bind_fds.as_ref()),
    };
    rootfs::prepare(&o)?;
    create_hooks(a)?;
    rootfs::switch_root(o.rootfs, o.no_pivot)?;
    set_sysctls(a.spec)?;
    rootfs::finish(a.spec)?;
    Ok(())
}

/// Ready → Commit → Committed; returns the state JSON for the last hooks.
fn report_ready(a: &InitArgs) -> Result<String, InitError> {
    a.await_cgroup(true)?;
    a.chan.send(&Msg::Ready)?;
    let Msg::Commit { state } = a.chan.expect_any(
        &[Msg::Commit {
            state: String::new(),
        }],
        "commit",
    )?
    else {
        unreachable!("expect_any returns only the kinds asked for")
    };
    nix::sys::prctl::set_pdeathsig(None).map_err(|e| sys("clear parent-death signal")(e.into()))?;
    a.chan.send(&Msg::Committed)?;
    Ok(state)
}

pub(crate) fn set_non_dumpable() -> Result<(), InitError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(sys("prctl(PR_SET_DUMPABLE, 0)")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Our pid in the host's pid namespace: /proc (still the host's) names it.
pub(crate) fn host_pid() -> Result<i32, InitError> {
    let link = std::fs::read_link("/proc/self").map_err(sys("reading /proc/self"))?;
    link.to_string_lossy()
        .parse()
        .map_err(|_| sys("parsing /proc/self")(std::io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Hands the mount-ready container to the parent for prestart and
/// createRuntime hooks, then runs createContainer hooks here (in the
/// container's namespaces, before pivot_root, as the spec says).
fn create_hooks(a: &InitArgs) -> Result<(), InitError> {
    use hooks::Kind;
    if !hooks::any(
        a.spec,
        &[Kind::Prestart, Kind::CreateRuntime, Kind::CreateContainer],
    ) {
        return Ok(());
    }
    // The hooks run in the parent, and createContainer hooks are forked
    // from here: both with init in its cgroup.
    a.await_cgroup(true)?;
    a.chan.send(&Msg::CreateRuntime)?;
    let Msg::HooksDone { state } = a.chan.expect_any(
        &[Msg::HooksDone {
            state: String::new(),
        }],
        "hooks-done",
    )?
    else {
        unreachable!("expect_any returns only the kinds asked for")
    };
    // runc runs them in the rootfs (its cwd from here to pivot_root), and
    // hooks use relative paths (hooks.bats: `mount --bind ... ./lib/...`).
    nix::unistd::chdir(a.rootfs.as_path())
        .map_err(|e| sys(format!("chdir to {}", a.rootfs.display()))(e.into()))?;
    hooks::run(a.spec, Kind::CreateContainer, &state)?;
    Ok(())
}

/// Opens the pty in the container, sends its master to the console socket
/// and makes the slave our terminal and stdio.
pub(crate) fn setup_terminal(sock: &UnixStream, p: &Process) -> Result<(), InitError> {
    let pty = console::open_pty()?;
    if let Some(b) = p.console_size() {
        console::set_size(pty.master.as_fd(), b.height() as u16, b.width() as u16)?;
    }
    console::send_fd(sock.as_fd(), pty.master.as_raw_fd(), &pty.name)?;
    drop(pty.master);
    console::become_terminal(&pty.slave, p.user().uid())?;
    Ok(())
}

fn enter_namespaces(a: &InitArgs) -> Result<(), InitError> {
    for (t, path) in &a.plan.join_in_init {
        namespaces::join(*t, path)?;
    }
    if a.plan.new_user_ns {
        // The parent has written our mappings: become the namespace's root so
        // that the rest of the setup runs with its full capabilities.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .map_err(|e| sys("setgid(0) in user namespace")(e.into()))?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .map_err(|e| sys("setuid(0) in user namespace")(e.into()))?;
    }
    // Only now, placed in our cgroup by the parent, so that it is the root.
    if a.plan.new_cgroup_ns {
        namespaces::unshare(LinuxNamespaceType::Cgroup)?;
    }
    Ok(())
}

fn set_names(spec: &Spec) -> Result<(), InitError> {
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h)
            .map_err(|e| sys(format!("hostname: sethostname({h:?})"))(e.into()))?;
    }
    if let Some(d) = spec.domainname() {
        // SAFETY: the pointer and length describe a live byte slice.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(sys(format!("domainname: setdomainname({d:?})"))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn set_sysctls(spec: &Spec) -> Result<(), InitError> {
    let sysctls = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    for (k, v) in sysctls {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        // Through the procfs root, refusing overmounted files (CVE-2025-52881).
        crate::paths::write_procfs(std::path::Path::new(&path), v.as_bytes())
            .map_err(sys(format!("linux.sysctl.{k}: writing {path}")))?;
    }
    Ok(())
}

/// Blocks until `hullc start` connects. The accepted connection is
/// close-on-exec: a successful execve closes it, which `start` reads as EOF
/// (the trampoline inherits it and makes it close-on-exec again before the
/// program's execve).
/// After Ready nobody reads the channel (`create` has returned; `run` has moved on to
/// `start`), and `start` takes a closed connection for a program that runs: a failure
/// while waiting for `start` (an RLIMIT_NOFILE soft limit of 0 leaves accept() no
/// descriptor) would leave only exit status 1. The container's stderr is the one place left.
fn lost_before_start(e: &InitError) -> ! {
    let (context, cause) = split_error(e);
    let line = format!("hullc: {context}: {cause}\n");
    // SAFETY: write(2) of a live buffer to fd 2; a failure leaves nothing else to tell.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
    // SAFETY: as in `run`: no atexit handlers or stdio flushing of the parent's copy.
    unsafe { libc::_exit(1) }
}

fn wait_for_start(l: &UnixListener) -> Result<UnixStream, InitError> {
    loop {
        match l.accept() {
            Ok((mut s, _)) => {
                // `start` sends one byte; anything else is a stray connection.
                let mut b = [0u8; 1];
                if matches!(s.read(&mut b), Ok(1)) {
                    return Ok(s);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(sys("waiting for start")(e)),
        }
    }
}

/// The user's program starts with default signal handling. Ignored
/// signals survive execve: Rust's runtime ignores SIGPIPE, and a caller
/// (a shim, conmon, a shell in the background) may ignore SIGINT or SIGQUIT,
/// which a shell in the container then cannot even trap. Reset them all.
pub(crate) fn reset_signals() {
    /// The kernel's struct sigaction (glibc's wrapper refuses the signals it
    /// reserves for itself, 32 and 33, which a caller may still ignore).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one kernel sigaction (SIG_DFL, no
        // handler code) of the size passed; no old action is written.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}
