//! `hullc exec`: a new process in a running container.
//!
//! ```text
//!   hullc exec (parent)                              exec child
//!        | open /proc/<init>/ns/* that differ from ours   |
//!        | setns(pid), setns(time)  (they apply to children)
//!        |-- clone3([CLONE_INTO_CGROUP]) ---------------->|  waits
//!        |   join the container's cgroups                 |
//!        |------------------ Proceed -------------------->|  setns(user, ipc, uts, net, mnt, cgroup)
//!        |                                                |  pty, rlimits, user, caps, cwd
//!        |<---------- Error{..} (setup failed) -----------|
//!        |                                                |  execveat(trampoline) -> execve(args)
//!        |<---------- EOF: execve closed the channel -----|
//!        |<---------- or the trampoline's errno report ---|
//!   pid file; wait (forwarding signals) unless --detach
//! ```
//! The channel is close-on-exec, so a successful execve is seen as EOF
//! and any failure before it arrives as a typed error. Through the exec
//! trampoline (CVE-2019-5736, trampoline.rs) the channel is inherited by
//! the trampoline, which makes it close-on-exec again before the program's
//! execve, or sends a 5-byte errno report if that fails; the parent turns
//! the report into the error the child would have sent.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroup::Cgroups;
use crate::console::{self, ConsoleError};
use crate::container::{self, ContainerError};
use crate::exec_cgroup::{self, ExecCgroupError};
use crate::exeseal;
use crate::parent::{clone3, CreateError};
use crate::process::{self, ProcessError};
use crate::protocol::{self, Msg, ProtocolError};
use crate::seccomp_setup;
use crate::state::{ContainerDir, Saved, Status};
use crate::trampoline::Trampoline;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error("exec: {op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Init(#[from] crate::init::InitError),
    #[error("{0}")]
    Usage(&'static str),
    #[error(transparent)]
    ExeSeal(#[from] exeseal::ExeSealError),
    /// runc's words (cgroups.bats matches them).
    #[error("container {0} is paused: cannot exec in a paused container (use --ignore-paused to override)")]
    Paused(String),
    #[error(transparent)]
    SubCgroup(#[from] ExecCgroupError),
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let op = op.into();
    move |source| ExecError::Sys { op, source }
}

/// `hullc exec` options.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Exec in a paused container too (the process starts on resume).
    pub ignore_paused: bool,
    /// `--cgroup` arguments: `[CTRL[,CTRL]:]PATH` (exec_cgroup.rs).
    pub sub_cgroups: Vec<String>,
}

/// The container's own `process`, the base that `exec` flags override.
pub fn container_process(root: &Path, id: &str) -> Result<Process, ExecError> {
    let dir = ContainerDir::open(root, id).map_err(ContainerError::from)?;
    let spec = container::saved_spec(&dir).ok_or(ExecError::Usage(
        "the container's saved config is unreadable",
    ))?;
    spec.process()
        .clone()
        .ok_or(ExecError::Usage("the container's config has no process"))
}

/// Namespaces in the order they are joined: user first (it owns the rest),
/// mnt after the others so their /proc lookups still see the host.
const ORDER: &[(&str, LinuxNamespaceType)] = &[
    ("user", LinuxNamespaceType::User),
    ("ipc", LinuxNamespaceType::Ipc),
    ("uts", LinuxNamespaceType::Uts),
    ("net", LinuxNamespaceType::Network),
    ("mnt", LinuxNamespaceType::Mount),
    ("cgroup", LinuxNamespaceType::Cgroup),
];

/// Opens init's namespaces that differ from ours (setns into our own user
/// namespace is EINVAL, and joining the same one is pointless anyway).
fn open_namespaces(
    pid: i32,
    names: &[(&'static str, LinuxNamespaceType)],
) -> Result<Vec<(LinuxNamespaceType, File)>, ExecError> {
    let mut out = Vec::new();
    for (name, t) in names {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ino = |p: &str| std::fs::metadata(p).map(|m| m.ino());
        if ino(&theirs).map_err(sys(format!("reading {theirs}")))?
            == ino(&format!("/proc/self/ns/{name}")).unwrap_or(0)
        {
            continue;
        }
        out.push((
            *t,
            File::open(&theirs).map_err(sys(format!("opening {theirs}")))?,
        ));
    }
    Ok(out)
}

/// An unprivileged caller has no CAP_SYS_ADMIN over the container's pid
/// namespace until it is in the container's user namespace, which owns it:
/// join that first, here (the exec child inherits it). Root joins it in the
/// child, as before. Returns whether we joined it.
fn join_user_first(nss: &mut Vec<(LinuxNamespaceType, File)>) -> Result<bool, ExecError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(false);
    }
    let Some(i) = nss.iter().position(|(t, _)| *t == LinuxNamespaceType::User) else {
        return Ok(false);
    };
    let (t, f) = nss.remove(i);
    setns(&f, t).map_err(sys("joining the container's user namespace"))?;
    Ok(true)
}

fn setns(f: &File, t: LinuxNamespaceType) -> std::io::Result<()> {
    // SAFETY: setns with a namespace fd we own and its CLONE_NEW* type.
    if unsafe { libc::setns(f.as_raw_fd(), t as i32) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `o.process` in the container; returns its exit status, or 0 with
/// `detach`.
pub fn exec(root: &Path, o: &ExecOptions) -> Result<i32, ExecError> {
    crate::lsm::validate(Some(&o.process), crate::lsm::selinux_enabled())
        .map_err(CreateError::from)?;
    let (saved, cg) = running(root, &o.id, o.ignore_paused)?;
    // Checked before anything starts; the sub-cgroup itself must exist
    // when the process joins it.
    let sub_dirs = match exec_cgroup::parse(&o.sub_cgroups)? {
        Some(s) => Some(exec_cgroup::dirs(cg.as_ref(), &s)?),
        None => None,
    };
    let terminal = o.process.terminal().unwrap_or(false);
    if o.detach && terminal && o.console_socket.is_none() {
        return Err(ExecError::Usage(
            "exec --detach with a terminal needs --console-socket",
        ));
    }
    if !terminal && o.console_socket.is_some() {
        return Err(ExecError::Usage(
            "--console-socket needs a terminal (-t or process.terminal)",
        ));
    }
    // The container's own seccomp profile applies to exec'd processes too.
    let spec =
        container::saved_spec(&ContainerDir::open(root, &o.id).map_err(ContainerError::from)?);
    // CVE-2019-5736 (exeseal.rs): may re-exec hullc and not return, so
    // before anything a restart would repeat (namespaces, signal mask).
    let seccomp = spec.as_ref().and_then(exeseal::seccomp_of);
    let trampoline = exeseal::protect(root, Some(&o.process), seccomp)?;
    let (set, old) =
        crate::run::block_forwarded().map_err(|e| sys("blocking signals")(e.into()))?;
    let target = Target {
        saved: &saved,
        cg: cg.as_ref(),
        sub_dirs: sub_dirs.as_deref(),
        spec: spec.as_ref(),
        terminal,
        trampoline: trampoline.as_ref(),
    };
    let r = exec_blocked(o, &target, &set);
    let _ = old.thread_set_mask();
    r
}

/// The container, as `exec` found it, and how the process will start.
struct Target<'a> {
    saved: &'a Saved,
    cg: Option<&'a Cgroups>,
    /// `--cgroup`: the directories to join instead of `cg`'s.
    sub_dirs: Option<&'a [PathBuf]>,
    /// The config saved at create time.
    spec: Option<&'a Spec>,
    terminal: bool,
    trampoline: Option<&'a Trampoline>,
}

fn running(
    root: &Path,
    id: &str,
    ignore_paused: bool,
) -> Result<(Saved, Option<Cgroups>), ExecError> {
    let st = container::state(root, id)?;
    if st.status == Status::Paused && !ignore_paused {
        return Err(ExecError::Paused(id.into()));
    }
    if !matches!(
        st.status,
        Status::Running | Status::Created | Status::Paused
    ) {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            status: st.status,
            what: "cannot exec in a container that is not running",
        }
        .into());
    }
    let dir = ContainerDir::open(root, id).map_err(ContainerError::from)?;
    let saved = dir
        .load()
        .map_err(ContainerError::from)?
        .ok_or(ExecError::Usage("container is still being created"))?;
    let cg = Cgroups::from_json(saved.cgroup.as_ref());
    Ok((saved, cg))
}

fn exec_blocked(
    o: &ExecOptions,
    target: &Target,
    set: &nix::sys::signal::SigSet,
) -> Result<i32, ExecError> {
    let (saved, cg, terminal) = (target.saved, target.cg, target.terminal);
    let mut nss = open_namespaces(saved.pid, ORDER)?;
    let joined_user = join_user_first(&mut nss)?;
    for (t, f) in open_namespaces(
        saved.pid,
        &[
            ("pid", LinuxNamespaceType::Pid),
            ("time", LinuxNamespaceType::Time),
        ],
    )? {
        setns(&f, t).map_err(sys(format!("joining the container's {t} namespace")))?;
    }
    let (console_ours, console_theirs) = match (&o.console_socket, terminal) {
        (Some(p), _) => (None, Some(console::connect(p)?)),
        (None, true) => {
            let (a, b) = UnixStream::pair().map_err(sys("socketpair"))?;
            (Some(a), Some(b))
        }
        (None, false) => (None, None),
    };
    let seccomp = match target.spec {
        Some(s) => seccomp_setup::prepare(s).map_err(CreateError::from)?,
        None => None,
    };
    let state = target
        .spec
        .map(|s| crate::hooks::state_json(s, &o.id, "running", saved.pid, &saved.bundle))
        .unwrap_or_default();
    // "deny" when the container's user namespace was made unprivileged.
    let setgroups_allowed = std::fs::read_to_string(format!("/proc/{}/setgroups", saved.pid))
        .map_or(true, |s| s.trim() != "deny");
    let (parent, child) = protocol::channel()?;
    // CLONE_INTO_CGROUP (pure v2) only into the container's own cgroup; a
    // sub-cgroup is joined after clone, as on v1.
    let cg_fd = cg
        .filter(|_| target.sub_dirs.is_none())
        .and_then(|c| c.clone_fd());
    let (clone, cg_fd) = clone_into(cg_fd, cg, saved.pid);
    let (pid, pidfd) = match clone? {
        None => {
            // No host directory fd may reach the container (CVE-2024-21626).
            drop((parent, cg_fd));
            let err = child_main(&ChildArgs {
                chan: &child,
                nss: &nss,
                process: &o.process,
                console: console_theirs.as_ref(),
                preserve_fds: o.preserve_fds,
                seccomp: seccomp.as_ref(),
                state: &state,
                setgroups_allowed,
                become_root: joined_user || nss.iter().any(|(t, _)| *t == LinuxNamespaceType::User),
                trampoline: target.trampoline,
            });
            let (context, cause) = crate::init::split_error(&err);
            let _ = child.send(&Msg::Error { context, cause });
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(127) }
        }
        Some(c) => c,
    };
    drop((child, console_theirs, nss, seccomp));
    let setup = (|| {
        match (target.sub_dirs, cg, &cg_fd) {
            (Some(dirs), _, _) => exec_cgroup::enter(dirs, pid)?,
            // Born in its cgroup (CLONE_INTO_CGROUP): nothing to write, and the
            // container's own cgroup may refuse a write (EBUSY) if it fell back.
            (None, Some(_), Some(_)) => {}
            (None, Some(cg), None) => cg.enter(pid).map_err(CreateError::from)?,
            (None, None, _) => {}
        }
        parent.send(&Msg::Proceed)?;
        match parent.expect(Msg::Ready, "exec") {
            Err(ProtocolError::Closed { .. }) => Ok(()),
            Err(ProtocolError::ExecFailed { errno }) => Err(trampoline_failure(o, errno)),
            Err(e) => Err(ExecError::from(e)),
            Ok(()) => Err(ExecError::Usage("exec child sent an unexpected message")),
        }
    })();
    if let Err(e) = setup {
        let _ = crate::signal::kill_pidfd(&pidfd, libc::SIGKILL);
        crate::signal::reap(&pidfd);
        return Err(e);
    }
    if let Some(p) = &o.pid_file {
        crate::parent::write_pid_file(p, pid)?;
    }
    finish(o, pidfd, console_ours, set)
}

/// clone3's result: the child's pid and pidfd in the parent, `None` in the child.
type Cloned = Option<(i32, OwnedFd)>;

/// clone3 for an exec, born in the container's cgroup on pure v2. When the kernel
/// refuses that cgroup (EBUSY: the container enabled a domain controller in it after
/// moving its init below), the process is born in init's current cgroup instead, as
/// runc's exec joins `/proc/<init>/cgroup` then. Returns the cgroup fd actually used.
fn clone_into(
    cg_fd: Option<File>,
    cg: Option<&Cgroups>,
    init: i32,
) -> (Result<Cloned, CreateError>, Option<File>) {
    let first = clone3(0, cg_fd.as_ref().map(|f| f.as_raw_fd()));
    let busy = matches!(&first, Err(CreateError::Sys { source, .. })
        if source.raw_os_error() == Some(libc::EBUSY));
    let fallback = cg
        .filter(|_| busy && cg_fd.is_some())
        .and_then(|c| c.cgroup().v2_dir_of(init));
    match fallback {
        Some(fd) => (clone3(0, Some(fd.as_raw_fd())), Some(fd)),
        None => (first, cg_fd),
    }
}

/// The trampoline's report of a failed execve, as the error the child
/// itself sends when its own execve fails (the same text).
fn trampoline_failure(o: &ExecOptions, errno: i32) -> ExecError {
    let arg0 = o.process.args().iter().flatten().next().map_or("", |a| a);
    let e = ExecError::from(process::exec_failure(arg0, nix::Error::from_raw(errno)));
    let (context, cause) = crate::init::split_error(&e);
    ProtocolError::Child { context, cause }.into()
}

/// After the program runs: detach, proxy its terminal, or wait for it.
fn finish(
    o: &ExecOptions,
    pidfd: OwnedFd,
    console: Option<UnixStream>,
    set: &nix::sys::signal::SigSet,
) -> Result<i32, ExecError> {
    if o.detach {
        return Ok(0);
    }
    if let Some(sock) = console {
        let master = console::recv_fd(sock.as_fd())?;
        return Ok(crate::tty_proxy::proxy(&master, &pidfd, set));
    }
    crate::run::wait_forwarding(&pidfd, set).map_err(|e| sys("waiting")(e.into()))
}

/// What the exec child works from (all prepared before clone).
struct ChildArgs<'a> {
    chan: &'a protocol::Channel,
    nss: &'a [(LinuxNamespaceType, File)],
    process: &'a Process,
    console: Option<&'a UnixStream>,
    preserve_fds: u32,
    seccomp: Option<&'a seccomp_setup::Prepared>,
    /// The container's state JSON, for a seccomp agent.
    state: &'a str,
    /// Whether the container's user namespace allows setgroups(2).
    setgroups_allowed: bool,
    /// In the container's user namespace: become its root first.
    become_root: bool,
    /// The exec trampoline (CVE-2019-5736), if hullc was not re-exec'd.
    trampoline: Option<&'a Trampoline>,
}

/// The exec child: join, set up, exec. Returns only the error that stopped it.
fn child_main(a: &ChildArgs) -> ExecError {
    let r = (|| -> Result<std::convert::Infallible, ExecError> {
        // As in init: no /proc/<pid>/exe of hullc for the container. First
        // thing: this child is already in the container's pid namespace, and
        // until the trampoline its exe is hullc's own file (init waits for
        // Proceed first because the parent may write its uid_map; nothing
        // is written through this child's /proc/<pid> here).
        crate::init::set_non_dumpable()?;
        a.chan.expect(Msg::Proceed, "proceed")?;
        let host_pid = crate::init::host_pid()?;
        for (t, f) in a.nss {
            setns(f, *t).map_err(sys(format!("joining the container's {t} namespace")))?;
        }
        if a.become_root {
            nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                .map_err(|e| sys("setgid(0) in user namespace")(e.into()))?;
            nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                .map_err(|e| sys("setuid(0) in user namespace")(e.into()))?;
        }
        if let Some(sock) = a.console {
            crate::init::setup_terminal(sock, a.process)?;
        }
        // As in init: what may need syscalls a profile refuses comes
        // before an early filter.
        let env = process::environment(a.process);
        process::before_filter(3 + a.preserve_fds)?;
        let early = seccomp_setup::early(a.process);
        if let Some(sc) = a.seccomp.filter(|_| early) {
            seccomp_setup::install(sc, host_pid, a.state).map_err(CreateError::from)?;
        }
        let exe = process::become_process(a.process, a.setgroups_allowed)?;
        crate::lsm::apply_exec_labels(a.process).map_err(crate::init::InitError::from)?;
        if let Some(sc) = a.seccomp.filter(|_| !early) {
            seccomp_setup::install(sc, host_pid, a.state).map_err(CreateError::from)?;
        }
        crate::init::reset_signals();
        // Through the trampoline, its report of a failed execve also comes
        // over the channel (see `trampoline_failure`).
        let via = a.trampoline.map(|t| (t, a.chan.as_fd()));
        Err(ExecError::from(process::exec(
            &exe,
            a.process.args().as_deref().unwrap_or_default(),
            &env,
            via,
        )))
    })();
    match r {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
