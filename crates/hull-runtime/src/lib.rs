//! hull-runtime: the container library behind `hullc` (and later the shim).
//!
//! The create path runs in two processes (no re-exec, no threads):
//! `parent` (the caller) and `init` (the container's first process, cloned
//! into its namespaces), which speak the typed protocol in `protocol`.
//! See ARCHITECTURE.md for the whole path.

mod bindsrc;
mod cgroup;
mod cgroup_ops;
mod cgroupfs;
mod config;
mod console;
mod container;
mod devices;
mod exec;
mod exec_cgroup;
pub mod exeseal;
mod hooks;
mod init;
mod lsm;
mod mountattr;
mod mounts;
mod namespaces;
mod parent;
mod paths;
mod process;
mod protocol;
mod reread;
mod rootfs;
pub mod rootless;
mod run;
mod seccomp;
mod seccomp_setup;
mod signal;
mod spec;
mod state;
mod trampoline;
mod tty_proxy;
mod userns;

pub use cgroup_ops::{oom_kills, oom_kills_final, pause, pids, resume, stats, update, Event};
pub use config::{load_bundle, validate_id, ConfigError};
pub use container::{delete, kill, list, start, state, ContainerError, State};
pub use exec::{container_process, exec, ExecError, ExecOptions};
pub use hull_cgroups::LinuxResources;
pub use parent::{create, CreateError, CreateOptions, Created};
pub use reread::{read_stable, RereadError};
pub use run::{run, RunError};
pub use signal::{parse as parse_signal, SignalError};
pub use spec::{default_spec, features, write_spec, SpecError};
pub use state::Status;
