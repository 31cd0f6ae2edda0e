//! runc's command line, as containerd's go-runc and podman's conmon use it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--version` in runc's lines, because engines parse them: dockerd splits
/// every line containing "version" on that word (runtime name before it,
/// version after) and reads `commit:` for `docker info`, so no other line
/// may contain "version". clap prints `hullc ` before this text.
fn version_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "version {}\ncommit: {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            option_env!("HULLC_COMMIT").unwrap_or("unknown"),
            oci_spec::runtime::VERSION,
        )
    })
}

#[derive(Parser, Debug)]
#[command(
    name = "hullc",
    version = version_text(),
    disable_version_flag = true,
    about = "hullc: a low-level OCI container runtime (runc-compatible)"
)]
pub struct Cli {
    /// Print the version (runc's shape).
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Root directory for container state [default: /run/hullc, or
    /// $XDG_RUNTIME_DIR/hullc when unprivileged].
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// The container's cgroup is a systemd transient scope (runc's systemd
    /// driver): linux.cgroupsPath reads "slice:prefix:name". Needs systemd
    /// as init; `update` and `delete` find the unit in the state.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless cgroup handling: true, false or auto (unprivileged, or root
    /// of a user namespace).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master of a terminal container.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's init pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for ramdisk roots).
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility; not supported yet.
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// Container id.
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Run the process of a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init.
    Kill {
        /// Signal every process in the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and its resources.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for unprivileged users.
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports, as runtime-spec features JSON.
    Features,
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List the container's processes.
    Ps {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        /// Options for ps(1) in table format (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change the container's resource limits.
    Update(UpdateArgs),
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// Print resource statistics and OOM events.
    Events {
        /// Print one stats object and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats objects.
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    /// runtime-spec linux.resources JSON from a file, or - for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory + swap limit (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight). runc spells it --cpu-share.
    #[arg(long, visible_alias = "cpu-share")]
    pub cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// Realtime period in microseconds.
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may use (e.g. 0-1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// runtime-spec process JSON; replaces the flags below.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process' pid to.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Extra environment (KEY=value), repeatable.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// UID[:GID] to run as.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids, repeatable.
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (CAP_NAME), repeatable.
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N extra fds (3..3+N) to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility; not supported.
    #[arg(long)]
    pub pidfd_socket: Option<PathBuf>,
    /// Allow exec in a paused container (the process starts on resume).
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in an existing sub-cgroup of the container's:
    /// `[CONTROLLER[,CONTROLLER]:]PATH`, repeatable per controller (v1).
    #[arg(long)]
    pub cgroup: Vec<String>,
    pub id: String,
    /// Command and arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
