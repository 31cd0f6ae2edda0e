//! Command-line definition and dispatch: one module per command group.
//! Commands return the exit status (the container's for run/exec/start -a).

/// `println!` that hands back a closed stdout as an error ([`StdoutClosed`]) instead of
/// panicking: `hull ps | head` closes the pipe early, and hull then ends as quietly as
/// docker does (see [`main`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err($crate::cli::out_err)
    }};
}

mod archive;
mod attach;
mod autopull;
mod build;
mod cdi;
mod commit;
mod cp;
mod ctl;
mod events;
mod exec;
mod image_ops;
mod images;
mod info;
mod logs;
mod manage;
mod network;
mod ps;
mod pull;
mod push;
mod rootless;
mod run;
mod run_extra;
mod run_net;
mod run_policy;
mod service;
mod stats;
mod table;
mod template;
mod tty;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hull", version, about = "Daemonless container tool")]
struct Cli {
    /// Storage root for images, snapshots and containers [default: /var/lib/hull; for an
    /// ordinary user $XDG_DATA_HOME/hull, i.e. ~/.local/share/hull (docs/rootless.md)].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// CDI spec directory (repeatable; later ones take precedence). Default: /etc/cdi, /var/run/cdi.
    #[arg(long, global = true)]
    cdi_spec_dir: Vec<PathBuf>,
    /// Storage option KEY=VALUE (repeatable), as podman's: `mount_program=PATH` mounts container
    /// root filesystems with PATH (fuse-overlayfs) instead of the kernel's overlayfs.
    #[arg(long = "storage-opt", global = true, value_name = "KEY=VALUE")]
    storage_opt: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images (and snapshots/blobs no longer used).
    Rmi(images::RmiArgs),
    /// Save an image to an OCI archive.
    Save(archive::SaveArgs),
    /// Load images from an OCI or docker archive.
    Load(archive::LoadArgs),
    /// Build an image from a Containerfile/Dockerfile.
    Build(build::BuildArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Manage images.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Give an image another name.
    Tag(image_ops::TagArgs),
    /// Push an image to a registry.
    Push(push::PushArgs),
    /// Log in to a registry (writes an auth file docker and podman read).
    Login(push::LoginArgs),
    /// Log out of a registry.
    Logout(push::LogoutArgs),
    /// Show the history of an image.
    History(image_ops::HistoryArgs),
    /// Make an image from a root filesystem tarball.
    Import(image_ops::ImportArgs),
    /// Make an image from a container's changes.
    Commit(commit::CommitArgs),
    /// Write a container's filesystem as a tar archive.
    Export(commit::ExportArgs),
    /// List the files a container added (A), changed (C) and deleted (D).
    Diff(commit::DiffArgs),
    /// Create and start a container (foreground unless -d).
    Run(run::RunArgs),
    /// Create a container without starting it.
    Create(run::CreateArgs),
    /// Start created or stopped containers.
    Start(run::StartArgs),
    /// Restart containers (stop, then start).
    Restart(ctl::StopArgs),
    /// Stop containers (stop signal, then SIGKILL after -t seconds).
    Stop(ctl::StopArgs),
    /// Send a signal to containers.
    Kill(ctl::KillArgs),
    /// Remove containers.
    Rm(ctl::RmArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// Show a container's output.
    Logs(logs::LogsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Show container details as JSON.
    Inspect(ps::InspectArgs),
    /// Wait for containers to exit and print their exit codes.
    Wait(ctl::NamesArgs),
    /// Freeze all processes of containers.
    Pause(ctl::NamesArgs),
    /// Thaw paused containers.
    Unpause(ctl::NamesArgs),
    /// Show containers' resource usage (CPU, memory, network, block I/O, PIDs).
    Stats(stats::StatsArgs),
    /// Stream the root's events (containers, images, networks, volumes) until Ctrl-C.
    Events(events::EventsArgs),
    /// Copy files between a container and the host (CONTAINER:PATH on one side).
    Cp(cp::CpArgs),
    /// Rename a container.
    Rename(manage::RenameArgs),
    /// Change running or stopped containers' resource limits.
    Update(manage::UpdateArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(manage::ContainerCommand),
    /// Show hull's and its runtime's versions.
    Version(info::FormatArgs),
    /// Show system-wide information.
    Info(info::FormatArgs),
    /// Attach our stdio to a running container (detach: ctrl-p ctrl-q).
    Attach(attach::AttachArgs),
    /// Show a container's processes.
    Top(ps::OneArgs),
    /// List a container's published ports.
    Port(ps::PortArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage hull as a whole.
    #[command(subcommand)]
    System(network::SystemCommand),
    /// Manage named volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Container Device Interface: list devices, generate a spec for NVIDIA GPUs.
    #[command(subcommand)]
    Cdi(cdi::CdiCommand),
    /// Run a container's healthcheck.
    #[command(subcommand)]
    Healthcheck(run_policy::HealthcheckCommand),
    /// Internal: the watcher of `run -d --rm`.
    #[command(hide = true)]
    AutoRemove { id: String },
}

/// Set once a write to our stdout or stderr found the reader gone (EPIPE): whatever error
/// that write turns into further up ends hull quietly.
static OUTPUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// A write to stdout or stderr failed because the reader went away.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Maps a failed write of ours: a closed pipe becomes [`StdoutClosed`], the rest stays.
pub(crate) fn out_err(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OUTPUT_CLOSED.store(true, Ordering::Relaxed);
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Our stdout or stderr for code that writes through `io::Write` (logs, attach): notes a
/// closed pipe the way [`outln!`] does.
pub(crate) struct Output<W>(pub(crate) W);

impl<W: std::io::Write> std::io::Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(note_closed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(note_closed)
    }
}

fn note_closed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        OUTPUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Ends like docker when the reader of our output is gone: killed by SIGPIPE, no message
/// (a shell sees 141; `set -o pipefail` scripts see the same as with docker). Rust ignores
/// SIGPIPE, so a write fails with EPIPE instead and we get here.
fn die_of_sigpipe() -> ExitCode {
    // SAFETY: restoring the default disposition and raising a signal at ourselves touch no
    // memory; nothing else of ours runs afterwards.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    ExitCode::from(141)
}

/// Parses the command line: help and version print (exit 0), usage errors exit 125 like
/// every other error of hull's own (docker's convention; clap's own code is 2).
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| {
        // Printing ignores a closed pipe (`hull --help | head -1`).
        let _ = e.print();
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
            _ => ExitCode::from(125),
        }
    })
}

/// Runs the CLI; errors print as `Error: cause: cause...` with exit code 125
/// (podman's code for errors of the tool itself).
pub(crate) fn main() -> ExitCode {
    let mut cli = match parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    cdi::set_spec_dirs(&cli.cdi_spec_dir);
    if let Err(e) = rootless::storage_opts(&cli.storage_opt) {
        eprintln!("Error: {e:#}");
        return ExitCode::from(125);
    }
    let root = match rootless::storage_root(cli.root.take()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::from(125);
        }
    };
    let r = &root;
    let done = |res: anyhow::Result<()>| res.map(|()| 0u8);
    let result = match cli.command {
        Command::Pull(a) => done(pull::run(r, a)),
        Command::Images(a) => done(images::list(r, a)),
        Command::Rmi(a) => done(images::rmi(r, a)),
        Command::Save(a) => done(archive::save(r, a)),
        Command::Load(a) => done(archive::load(r, a)),
        Command::Image(c) => done(images::image(r, c)),
        Command::Tag(a) => done(image_ops::tag(r, a)),
        Command::Push(a) => done(push::push(r, a)),
        Command::Login(a) => done(push::login(a)),
        Command::Logout(a) => done(push::logout(a)),
        Command::History(a) => done(image_ops::history(r, a)),
        Command::Import(a) => done(image_ops::import(r, a)),
        Command::Commit(a) => done(commit::commit(r, a)),
        Command::Export(a) => done(commit::export(r, a)),
        Command::Diff(a) => done(commit::diff(r, a)),
        Command::Build(a) => done(build::run(r, a)),
        Command::Builder(c) => done(build::builder(r, c)),
        Command::Run(a) => run::run(r, a),
        Command::Create(a) => run::create(r, a),
        Command::Start(a) => run::start(r, a),
        Command::Stop(a) => ctl::stop(r, a),
        Command::Restart(a) => ctl::restart(r, a),
        Command::Kill(a) => ctl::kill(r, a),
        Command::Rm(a) => ctl::rm(r, a),
        Command::Ps(a) => ps::ps(r, a),
        Command::Logs(a) => logs::run(r, a),
        Command::Exec(a) => exec::run(r, a),
        Command::Inspect(a) => ps::inspect(r, a),
        Command::Wait(a) => ctl::wait(r, a),
        Command::Pause(a) => ctl::pause(r, a, true),
        Command::Unpause(a) => ctl::pause(r, a, false),
        Command::Stats(a) => stats::run(r, a),
        Command::Events(a) => events::run(r, a),
        Command::Cp(a) => cp::run(r, a),
        Command::Rename(a) => manage::rename(r, a),
        Command::Update(a) => manage::update(r, a),
        Command::Container(c) => manage::container(r, c),
        Command::Version(a) => info::version(r, a),
        Command::Info(a) => info::info(r, a),
        Command::Attach(a) => attach::run(r, a),
        Command::Top(a) => ps::top(r, a),
        Command::Port(a) => ps::port(r, a),
        Command::Volume(c) => volume::run(r, c),
        Command::Network(c) => network::run(r, c),
        Command::System(c) => network::system(r, c),
        Command::Cdi(c) => done(cdi::run(c)),
        Command::AutoRemove { id } => run::auto_remove(r, &id),
        Command::Healthcheck(c) => run_policy::healthcheck(r, c),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(_) if OUTPUT_CLOSED.load(Ordering::Relaxed) => die_of_sigpipe(),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// Opens the image store, naming the root in errors.
pub(crate) fn open_store(root: &std::path::Path) -> anyhow::Result<hull_image::Store> {
    use anyhow::Context as _;
    hull_image::Store::open(root).with_context(|| format!("opening image store {}", root.display()))
}
