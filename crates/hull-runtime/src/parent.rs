//! Stage 1: `hullc create` itself. It claims the id, clones init into the
//! new namespaces, does what only the outside can do (id mappings, cgroup
//! placement and limits), waits for init to report `Ready`, records the
//! state and returns. Any failure tears down everything made so far.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::cgroup::{self, CgroupError, Cgroups};
use crate::config::{self, Bundle, ConfigError};
use crate::console::{self, ConsoleError};
use crate::exeseal;
use crate::hooks::{self, HookError};
use crate::init::{self, InitArgs};
use crate::namespaces::{self, NamespaceError};
use crate::protocol::{self, Msg, ProtocolError};
use crate::seccomp_setup;
use crate::state::{self, ContainerDir, Saved, StateError, CONFIG_FILE, START_SOCK};
use crate::trampoline::Trampoline;
use crate::userns::{self, UsernsError};

use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error("{op}")]
    Sys {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container init exited during create ({0})")]
    InitDied(String),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp_setup::SeccompSetupError),
    #[error(transparent)]
    ConsoleIo(#[from] ConsoleError),
    #[error("{0}")]
    Console(&'static str),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error(transparent)]
    ExeSeal(#[from] exeseal::ExeSealError),
}

fn sys(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> CreateError {
    let op = op.into();
    move |source| CreateError::Sys { op, source }
}

/// `hullc create` options (runc's flags).
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Rootless cgroup handling (`--rootless`, see rootless.rs).
    pub rootless_cgroups: bool,
    /// `--systemd-cgroup`: the cgroup is a systemd scope (cgroup/systemd.rs).
    pub systemd_cgroup: bool,
}

/// A created container, still a child of this process.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    pub pidfd: OwnedFd,
}

/// What to undo when create fails; every step runs even if one fails.
#[derive(Default)]
struct Teardown {
    pidfd: Option<OwnedFd>,
    cgroups: Option<Cgroups>,
}

impl Teardown {
    fn run(self, dir: ContainerDir) -> Vec<String> {
        let mut errs = Vec::new();
        if let Some(fd) = &self.pidfd {
            crate::signal::kill_pidfd(fd, libc::SIGKILL).ok();
            crate::signal::reap(fd);
        }
        if let Some(cg) = &self.cgroups {
            if let Err(e) = cg.destroy() {
                errs.push(e.to_string());
            }
        }
        if let Err(e) = dir.remove() {
            errs.push(e.to_string());
        }
        errs
    }
}

pub fn create(root: &Path, o: &CreateOptions) -> Result<Created, CreateError> {
    let bundle = config::load_bundle(&o.bundle)?;
    let trampoline = protect(root, &bundle.spec)?;
    create_bundle(root, o, bundle, trampoline.as_ref())
}

/// CVE-2019-5736 (exeseal.rs): the exec trampoline for init, or `None`
/// once hullc runs from a protected copy — in which case this may have
/// re-executed hullc and not returned. So it comes right after the config
/// is parsed, before anything that a restart would repeat or see twice
/// (the state dir, the console socket's connection).
pub(crate) fn protect(root: &Path, spec: &Spec) -> Result<Option<Trampoline>, CreateError> {
    let process = spec.process().as_ref();
    Ok(exeseal::protect(root, process, exeseal::seccomp_of(spec))?)
}

/// `create` of an already loaded bundle (so `run` parses the config once).
pub(crate) fn create_bundle(
    root: &Path,
    o: &CreateOptions,
    bundle: Bundle,
    trampoline: Option<&Trampoline>,
) -> Result<Created, CreateError> {
    let console = match (terminal(&bundle.spec), &o.console_socket) {
        (true, Some(path)) => Some(console::connect(path)?),
        (true, None) => {
            return Err(CreateError::Console(
                "process.terminal is true but no --console-socket was given to receive the pty",
            ))
        }
        (false, Some(_)) => {
            return Err(CreateError::Console(
                "--console-socket needs process.terminal: true",
            ))
        }
        (false, None) => None,
    };
    create_with(root, o, bundle, console, trampoline)
}

pub(crate) fn terminal(spec: &oci_spec::runtime::Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

/// Creates the container from a loaded bundle; `console` receives the pty
/// master when the process has a terminal.
pub(crate) fn create_with(
    root: &Path,
    o: &CreateOptions,
    mut bundle: Bundle,
    console: Option<UnixStream>,
    trampoline: Option<&Trampoline>,
) -> Result<Created, CreateError> {
    config::validate_id(&o.id)?;
    crate::lsm::validate(
        bundle.spec.process().as_ref(),
        crate::lsm::selinux_enabled(),
    )?;
    if o.systemd_cgroup {
        cgroup::check_systemd(o.rootless_cgroups)?;
    }
    let mut o = o.clone();
    pass_listen_fds(&mut o, &mut bundle.spec);
    let dir = ContainerDir::claim(root, &o.id)?;
    let mut td = Teardown::default();
    match build(&dir, &bundle, &o, console, trampoline, &mut td) {
        Ok(c) => Ok(c),
        Err(e) => {
            for t in td.run(dir) {
                tracing::warn!("cleanup after failed create: {t}");
            }
            Err(e)
        }
    }
}

fn build(
    dir: &ContainerDir,
    b: &Bundle,
    o: &CreateOptions,
    console: Option<UnixStream>,
    trampoline: Option<&Trampoline>,
    td: &mut Teardown,
) -> Result<Created, CreateError> {
    dir.write_atomic(CONFIG_FILE, &b.raw)?;
    let plan = namespaces::plan(&b.spec);
    let host_views = cgroup::HostViews::read()?;
    let cgroups = cgroup::prepare(
        &b.spec,
        &o.id,
        o.rootless_cgroups,
        &host_views,
        o.systemd_cgroup,
    )?;
    td.cgroups = cgroups.clone();
    // Recorded before anything runs in it, so that `delete --force` after a
    // crash of this process finds the cgroup (pid 0 reads as "creating").
    let mut saved = initial_state(b, o, cgroups.as_ref());
    dir.save(&saved)?;
    let sock = dir_entry(dir, START_SOCK);
    let listener = UnixListener::bind(&sock)
        .map_err(sys(format!("binding {}", dir.file(START_SOCK).display())))?;
    let seccomp = seccomp_setup::prepare(&b.spec)?;
    let (parent, child) = protocol::channel()?;
    if let Some(p) = &plan.join_pid {
        namespaces::join(oci_spec::runtime::LinuxNamespaceType::Pid, p)?;
    }
    if plan.new_time_ns {
        userns::enter_time_ns(&b.spec)?;
    }
    let cg_fd = cgroups.as_ref().and_then(|c| c.clone_fd());
    let cgroup_dirs = cgroups
        .as_ref()
        .map(Cgroups::dirs_for_init)
        .unwrap_or_default();
    // Decided here, not in the child: after clone3(CLONE_NEWUSER) and
    // before the parent writes uid_map, the child's euid reads as the
    // overflow uid and it would wrongly think setgroups is denied.
    let setgroups_allowed = userns::setgroups_allowed(&b.spec, &plan);
    let bind_srcs = crate::bindsrc::wanted(&b.spec);
    let (bind_tx, bind_rx) = match bind_srcs.is_empty() {
        true => (None, None),
        false => {
            let (t, r) = crate::bindsrc::pair().map_err(sys("socketpair for bind sources"))?;
            (Some(t), Some(r))
        }
    };
    let (pid, pidfd) = match clone3(plan.clone_flags, cg_fd.as_ref().map(|f| f.as_raw_fd()))? {
        None => {
            // A host directory fd left open in the container is an escape
            // hatch (CVE-2024-21626: process.cwd "/proc/self/fd/N").
            drop((parent, cg_fd, bind_tx));
            // The flock on the state dir belongs to its open file description,
            // which this copy shares: holding it would block every later
            // command on the container for init's whole life.
            // SAFETY: the fd is valid here; init::run never returns, so the
            // `File` owning it in this copy of the process is never dropped.
            unsafe { libc::close(dir.fd().as_raw_fd()) };
            init::run(InitArgs {
                id: &o.id,
                spec: &b.spec,
                rootfs: &b.rootfs,
                plan: &plan,
                chan: child,
                listener,
                console,
                seccomp,
                bundle: &b.dir,
                no_pivot: o.no_pivot,
                no_new_keyring: o.no_new_keyring,
                preserve_fds: o.preserve_fds,
                setgroups_allowed,
                trampoline,
                cgroup_dirs: &cgroup_dirs,
                host_views: &host_views,
                cgroup_seen: std::cell::Cell::new(0),
                bind_fds: bind_rx,
            })
        }
        Some(c) => c,
    };
    drop((child, listener, console, seccomp, bind_rx));
    td.pidfd = Some(pidfd.try_clone().map_err(sys("dup pidfd"))?);
    if plan.new_user_ns {
        userns::write_mappings(&b.spec, pid)?;
    }
    if let Some(tx) = bind_tx {
        // Before Proceed: init reads them before its first mount.
        crate::bindsrc::send(tx, pid, &bind_srcs);
    }
    let early = !plan.new_cgroup_ns || cg_fd.is_some();
    let cgroups = cgroup_and_proceed(&parent, &b.spec, early, cgroups, pid)
        .map_err(|e| init_error_first(e, &parent))?;
    if cgroups.is_none() && saved.cgroup.is_some() {
        // Rootless and not allowed to join it: the container has none.
        saved.cgroup = None;
        td.cgroups = None;
    }
    let state_json = |status| hooks::state_json(&b.spec, &o.id, status, pid, &b.dir);
    let ready = [Msg::Ready, Msg::CreateRuntime];
    if parent
        .expect_any(&ready, "ready")
        .map_err(|e| init_failure(e, &pidfd))?
        == Msg::CreateRuntime
    {
        let state = state_json("creating");
        hooks::run(&b.spec, hooks::Kind::Prestart, &state)?;
        hooks::run(&b.spec, hooks::Kind::CreateRuntime, &state)?;
        parent.send(&Msg::HooksDone { state })?;
        parent
            .expect(Msg::Ready, "ready")
            .map_err(|e| init_failure(e, &pidfd))?;
    }
    let (start_time, _) =
        state::proc_stat(pid).ok_or_else(|| CreateError::InitDied("vanished".into()))?;
    saved.pid = pid;
    saved.start_time = start_time;
    dir.save(&saved)?;
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    parent.send(&Msg::Commit {
        state: state_json("created"),
    })?;
    parent
        .expect(Msg::Committed, "committed")
        .map_err(|e| init_failure(e, &pidfd))?;
    td.pidfd = None;
    td.cgroups = None;
    Ok(Created { pid, pidfd })
}

/// The state as recorded before init exists (pid 0 reads as "creating").
fn initial_state(b: &Bundle, o: &CreateOptions, cgroups: Option<&Cgroups>) -> Saved {
    Saved {
        id: o.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: b.dir.clone(),
        rootfs: b.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: b.spec.annotations().clone().unwrap_or_default(),
        cgroup: cgroups.map(|c| c.to_json()),
        late_hooks: hooks::any(&b.spec, &[hooks::Kind::Poststart, hooks::Kind::Poststop]),
    }
}

/// systemd socket activation (LISTEN_FDS in our environment): the sockets
/// at fds 3.. go to the container too, and the program is told so with
/// LISTEN_FDS and LISTEN_PID=1, as runc does.
fn pass_listen_fds(o: &mut CreateOptions, spec: &mut oci_spec::runtime::Spec) {
    let Some(n) = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n > 0)
    else {
        return;
    };
    o.preserve_fds += n;
    if let Some(p) = spec.process_mut() {
        let mut env = p.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={n}"));
        env.push("LISTEN_PID=1".into());
        p.set_env(Some(env));
    }
}

/// Proceed, then the cgroup made, its resources set and init moved in while
/// init builds (protocol.rs); all of it before Proceed when not `early` (a
/// cgroup namespace on v1). Returns the cgroup the container really has
/// (rootless may end up with none).
fn cgroup_and_proceed(
    chan: &protocol::Channel,
    spec: &oci_spec::runtime::Spec,
    early: bool,
    cg: Option<Cgroups>,
    pid: i32,
) -> Result<Option<Cgroups>, CreateError> {
    if early {
        chan.send(&Msg::Proceed)?;
    }
    let cg = match cg {
        Some(cg) => {
            cg.start_unit(spec, pid)?;
            cg.create(spec)?
        }
        None => None,
    };
    if early {
        chan.send(&Msg::Created)?;
    }
    let cg = match cg {
        Some(cg) => cg.join(spec, pid)?,
        None => None,
    };
    if cg.is_none() && cgroup::has_limits(spec) {
        // Only a rootless create gets here without a cgroup.
        return Err(CgroupError::RootlessLimits.into());
    }
    if !early {
        chan.send(&Msg::Proceed)?;
        chan.send(&Msg::Created)?;
    }
    chan.send(&Msg::Joined)?;
    Ok(cg)
}

/// A cgroup step failed while init was building the container. If init
/// failed first (and its pid was gone by the time we wrote it), its error
/// is the one the user needs.
fn init_error_first(e: CreateError, chan: &protocol::Channel) -> CreateError {
    match chan.try_recv() {
        Some(Msg::Error { context, cause }) => ProtocolError::Child { context, cause }.into(),
        _ => e,
    }
}

/// When init stops talking, say how it ended if it died without a message.
fn init_failure(e: ProtocolError, pidfd: &OwnedFd) -> CreateError {
    if let ProtocolError::Closed { .. } = e {
        return CreateError::InitDied(
            crate::signal::reap(pidfd).unwrap_or_else(|| "unknown status".into()),
        );
    }
    CreateError::Protocol(e)
}

/// `dir/name` spelled through the dir's fd, so that deep state roots never
/// hit the 108-byte limit of a unix socket path.
pub(crate) fn dir_entry(dir: &ContainerDir, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.fd().as_raw_fd()))
}

/// Writes the pid file atomically; relative paths are the caller's (runc).
pub(crate) fn write_pid_file(p: &Path, pid: i32) -> Result<(), CreateError> {
    let p = std::path::absolute(p).map_err(sys(format!("--pid-file {}", p.display())))?;
    let tmp = p.with_file_name(format!(
        ".{}.hullc-tmp",
        p.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .map_err(sys(format!("--pid-file: writing {}", tmp.display())))?;
    std::fs::rename(&tmp, &p).map_err(sys(format!("--pid-file: renaming to {}", p.display())))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 without a new stack: fork semantics plus namespace flags, a pidfd
/// for race-free signalling and, on cgroup v2, CLONE_INTO_CGROUP so the
/// child is born in its cgroup. Returns `None` in the child.
pub(crate) fn clone3(
    ns_flags: u64,
    cgroup_fd: Option<i32>,
) -> Result<Option<(i32, OwnedFd)>, CreateError> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup_fd {
        // libc's constant is an overflowing c_int; the kernel's value is 1 << 33.
        args.flags |= 1u64 << 33;
        args.cgroup = fd as u64;
    }
    // SAFETY: clone3 with stack=0 behaves like fork: the child continues on a
    // copy of our stack. hullc has no other threads, so no lock can be held
    // by a thread that does not exist in the child. `args` and `pidfd` live
    // across the call and the size passed is the struct's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 => Err(sys(format!("clone3 (flags {:#x})", args.flags))(
            std::io::Error::last_os_error(),
        )),
        0 => Ok(None),
        pid => {
            // SAFETY: CLONE_PIDFD stored a fresh fd owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Some((pid as i32, fd)))
        }
    }
}
