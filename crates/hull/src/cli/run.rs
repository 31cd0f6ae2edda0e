//! `hull run`, `hull create`, `hull start`: docker's flags → container
//! options, and the foreground attach (output, stdin, signals, terminal).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use hull_engine::opts::{self, ContainerOptions};
use hull_engine::{logs, Engine, Record};

use super::tty;

#[derive(Args, Clone)]
pub(crate) struct CreateArgs {
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass ours).
    #[arg(short, long = "env", value_name = "ENV")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long, value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Bind mount a host path or a named volume: SRC:DST[:ro].
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Attach a mount: type=bind|volume|tmpfs,source=..,target=..[,readonly].
    #[arg(long)]
    mount: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User[:group] (names or ids) to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Memory limit (e.g. 512m).
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Add Linux capabilities.
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long)]
    cap_drop: Vec<String>,
    /// All capabilities, no seccomp, no masked paths, all devices.
    #[arg(long)]
    privileged: bool,
    /// seccomp=FILE|unconfined, no-new-privileges.
    #[arg(long)]
    security_opt: Vec<String>,
    /// Resource limits: NAME=SOFT[:HARD].
    #[arg(long)]
    ulimit: Vec<String>,
    /// Add a host device: HOST[:CONTAINER[:PERMS]], or a CDI device vendor.com/class=name.
    #[arg(long)]
    device: Vec<String>,
    /// GPUs as CDI nvidia.com/gpu devices: all, N, or "device=0,1" (docker's --gpus).
    #[arg(long)]
    gpus: Option<String>,
    /// Set metadata: KEY=VALUE.
    #[arg(short, long)]
    label: Vec<String>,
    /// Network: bridge (default), none, host, container:NAME, or a network's name.
    #[arg(long, alias = "net", default_value = "bridge")]
    network: String,
    /// Publish a container's port on the host: [IP:]HOST:CTR[/tcp|udp].
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    publish: Vec<String>,
    #[command(flatten)]
    extra: super::run_extra::ExtraArgs,
    #[command(flatten)]
    net: super::run_net::NetArgs,
    #[command(flatten)]
    policy: super::run_policy::PolicyArgs,
    /// Pull the image first: missing (default), always, never.
    #[arg(long, value_enum, default_value = "missing")]
    pull: super::autopull::PullPolicy,
    /// Image name or id.
    image: String,
    /// Command and arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Args)]
pub(crate) struct StartArgs {
    /// Attach to the container's output and return its exit status.
    #[arg(short, long)]
    attach: bool,
    /// With --restart-policy: start every container whose restart policy is always, or
    /// unless-stopped and not stopped by the user, and that does not run (for boot services).
    #[arg(long, requires = "restart_policy", conflicts_with_all = ["containers", "attach"])]
    all: bool,
    /// With --all: only the containers whose restart policy brings them back at boot.
    #[arg(long, requires = "all")]
    restart_policy: bool,
    /// The container's shim restarting it by its policy (keeps RestartCount).
    #[arg(long, hide = true, conflicts_with = "attach")]
    by_policy: bool,
    /// Containers to start.
    #[arg(required_unless_present = "all")]
    containers: Vec<String>,
}

fn options(a: &CreateArgs) -> Result<ContainerOptions> {
    let mut o = ContainerOptions {
        name: a.name.clone(),
        cmd: a.cmd.clone(),
        entrypoint: a.entrypoint.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: a.tty,
        stdin: a.interactive,
        pids_limit: a.pids_limit,
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        auto_remove: a.rm,
        network: opts::parse_network(&a.network)?,
        ..Default::default()
    };
    for f in &a.env_file {
        o.env.extend(opts::read_env_file(f)?);
    }
    o.env
        .extend(a.env.iter().filter_map(|e| opts::expand_env(e)));
    for v in &a.volume {
        o.mounts.push(opts::parse_volume(v)?);
    }
    for m in &a.mount {
        o.mounts.push(opts::parse_mount(m)?);
    }
    o.memory = a.memory.as_deref().map(opts::parse_memory).transpose()?;
    o.cpus = a.cpus.as_deref().map(opts::parse_cpus).transpose()?;
    for s in &a.security_opt {
        opts::apply_security_opt(&mut o, s)?;
    }
    for u in &a.ulimit {
        o.ulimits.push(opts::parse_ulimit(u)?);
    }
    super::cdi::device_flags(&mut o, &a.device, a.gpus.as_deref())?;
    for l in &a.label {
        o.labels.push(opts::parse_label(l)?);
    }
    for p in &a.publish {
        o.publish.push(opts::parse_publish(p)?);
    }
    opts::check_publish(&o)?;
    o.extra = a.extra.to_extra(&o)?;
    o.net_opts = a.net.to_net_opts(&o.network)?;
    (o.restart, o.health) = a.policy.parse()?;
    if o.auto_remove && !o.restart.is_none() {
        Err(hull_engine::policy::Error::AutoRemove(
            o.restart.name.clone(),
        ))?;
    }
    Ok(o)
}

pub(crate) fn engine(root: &Path) -> Result<Engine> {
    Engine::open(root).with_context(|| format!("opening container store {}", root.display()))
}

pub(crate) fn create(root: &Path, a: CreateArgs) -> Result<u8> {
    let o = options(&a)?;
    super::autopull::ensure(root, &a.image, a.pull)?;
    let e = engine(root)?;
    let r = e.create(&a.image, &o)?;
    outln!("{}", r.id)?;
    Ok(0)
}

pub(crate) fn run(root: &Path, a: RunArgs) -> Result<u8> {
    let o = options(&a.create)?;
    if !a.detach && o.extra.no_log() {
        // Attached output is read from the log, which `none` does not keep.
        anyhow::bail!(
            "--log-driver none needs -d: hull shows an attached container's output from its log"
        );
    }
    super::autopull::ensure(root, &a.create.image, a.create.pull)?;
    let e = engine(root)?;
    let r = e.create(&a.create.image, &o)?;
    if a.detach {
        if let Err(err) = e.start(&r) {
            let _ = e.remove(&r, true, o.auto_remove);
            return Err(err.into());
        }
        if o.auto_remove {
            spawn_remover(root, &r.id)?;
        }
        outln!("{}", r.id)?;
        return Ok(0);
    }
    let code = attach_and_start(&e, &r, true);
    if o.auto_remove {
        e.remove(&r, true, true)?;
    }
    code
}

/// `run -d --rm`: nobody stays attached, so a detached `hull` waits for
/// the exit and removes the container (the shim knows nothing of --rm).
fn spawn_remover(root: &Path, id: &str) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().context("locating hull")?;
    Command::new(exe)
        .arg("--root")
        .arg(root)
        .args(["auto-remove", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of our process group: a Ctrl-C meant for the caller must not stop it.
        .process_group(0)
        .spawn()
        .context("starting the --rm watcher")?;
    Ok(())
}

/// The `--rm` watcher: waits for the exit, then removes.
pub(crate) fn auto_remove(root: &Path, id: &str) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(id)?;
    e.wait(&r)?;
    e.remove(&r, true, true)?;
    Ok(0)
}

pub(crate) fn start(root: &Path, a: StartArgs) -> Result<u8> {
    if a.all {
        return super::run_policy::start_all(root);
    }
    if let (true, [id]) = (a.by_policy, a.containers.as_slice()) {
        return super::run_policy::start_by_policy(root, id);
    }
    let e = engine(root)?;
    if a.attach {
        let [name] = a.containers.as_slice() else {
            anyhow::bail!("start -a takes exactly one container");
        };
        let r = e.find(name)?;
        return attach_and_start(&e, &r, false);
    }
    for c in &a.containers {
        let r = e.find(c)?;
        e.start(&r)?;
        outln!("{c}")?;
    }
    Ok(0)
}

/// Starts `r` with our terminal/stdio attached, forwards signals, streams
/// the output until it exits; its exit status (a byte, like a shell).
///
/// One connection to the shim serves everything: resize, the forwarded
/// signals, start, and the Wait that a thread blocks in; its answer wakes the
/// log follower at once (the shim has flushed the output by then).
fn attach_and_start(e: &Engine, r: &Record, from_start: bool) -> Result<u8> {
    let dir = e.dir(r);
    let shim = e.shim(r)?;
    let _raw = if r.options.tty {
        tty::RawMode::enter()
    } else {
        None
    };
    if r.options.tty {
        tty::resize(&shim);
    }
    if r.options.stdin {
        hull_engine::exec::feed_stdin(e, r, dir.join("stdin"), String::new())?;
    }
    let offset = if from_start {
        0
    } else {
        let (mut o, mut e) = (std::io::sink(), std::io::sink());
        let mut sink = logs::Sink {
            out: &mut o,
            err: &mut e,
            timestamps: false,
        };
        logs::print(&dir, Some(0), &mut sink)?
    };
    // Before start: a signal that arrives as soon as the program runs must
    // be forwarded, not kill hull with its default action.
    tty::forward_signals(shim.clone(), r.options.tty)?;
    // docker's attached `run`/`start -a` journal `attach` before `start`.
    e.emit(r, "attach", &[]);
    let started = e.start(r);
    if let Err(err) = started {
        if !from_start {
            return Err(err.into());
        }
        drop(_raw);
        let _ = e.remove(r, true, r.options.auto_remove);
        return Err(err.into());
    }
    let exited = logs::Exited::new()?;
    // Not a scoped thread: when writing our output fails, we return at once
    // rather than wait for the container.
    let waiter = {
        let exited = exited.clone();
        std::thread::spawn(move || {
            let r = shim.wait("", None);
            exited.set();
            r
        })
    };
    let (mut out, mut err) = (
        super::Output(std::io::stdout().lock()),
        super::Output(std::io::stderr().lock()),
    );
    let mut sink = logs::Sink {
        out: &mut out,
        err: &mut err,
        timestamps: false,
    };
    logs::Follower::from(&dir, offset).follow(&mut sink, &exited)?;
    let done = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiting for the container panicked"))??;
    let (code, at_ns) = done.unwrap_or((137, hull_engine::record::now_ns()));
    e.remember_exit(r, code, at_ns);
    Ok(code.min(255) as u8)
}
