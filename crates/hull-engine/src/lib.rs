//! hull's container engine, shared by the `hull` commands: OCI bundles from
//! image configs and docker-style options ([`spec`]), the container store
//! ([`record`]), the shim driver ([`shim`]), lifecycle ([`engine`]), exec
//! ([`exec`]), volumes and logs.

pub mod binaries;
pub mod cp;
mod create;
pub mod engine;
pub mod events;
pub mod exec;
pub mod exec_io;
pub mod extra;
pub mod healthcheck;
pub mod image;
pub mod info;
pub mod inspect;
pub mod logs;
pub mod manage;
pub mod net;
pub mod net_opts;
pub mod net_plug;
pub mod opts;
pub mod policy;
pub mod record;
mod restart;
pub mod rootless;
pub mod shim;
pub mod signal;
pub mod spec;
pub mod stats;
pub mod system;
pub mod time;
pub mod user;
pub mod volume;

pub use engine::{Engine, Error, State};
pub use opts::ContainerOptions;
pub use record::Record;
