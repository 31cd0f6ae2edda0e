//! The Container Device Interface (CDI, cncf-tags/container-device-interface SPEC.md):
//! spec files in `/etc/cdi` and `/var/run/cdi` name devices `vendor.com/class=name`
//! and the container edits (env, device nodes, mounts, hooks, additional gids) each
//! needs. This crate reads and validates them ([`Registry`]), applies a set of devices
//! to an OCI `config.json` ([`apply`]), maps docker's `--gpus` to CDI names
//! ([`gpus`]) and writes a spec for the host's NVIDIA GPUs ([`nvidia`]).

mod apply;
mod gpus;
pub mod ldcache;
mod name;
pub mod nvidia;
mod registry;
mod schema;

pub use apply::{apply, Error as ApplyError};
pub use gpus::{gpu_devices, Error as GpusError};
pub use name::{is_qualified_name, parse_qualified_name, Error as NameError, Qualified};
pub use registry::{spec_dirs, Error as RegistryError, Registry, SPEC_DIRS_ENV};
pub use schema::{ContainerEdits, Device, DeviceNode, Hook, Mount, Spec};

/// The spec versions this crate reads (SPEC.md's version history).
pub const KNOWN_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];
