//! hull-cgroups: cgroupfs management for the hull runtime on cgroup v1, pure
//! v2 and hybrid hosts, following runc's libcontainer/cgroups behaviour.
//!
//! ```no_run
//! # fn main() -> Result<(), hull_cgroups::Error> {
//! use hull_cgroups::{Cgroup, Hierarchy, LinuxResources};
//! let h = Hierarchy::detect()?;
//! let cg = Cgroup::resolve(&h, Some("/hull/ctr1"), "ctr1")?;
//! cg.create()?;
//! cg.add_process(1234)?;
//! cg.apply(&LinuxResources::default())?;
//! # Ok(()) }
//! ```
//!
//! All kernel access goes through paths derived from the detected mounts, so
//! the whole crate can be exercised against a fake tree (see `testutil`).

mod apply;
mod blkio;
mod bpf_query;
mod cgroup;
mod cpu;
mod create_v2;
mod detect;
mod device_rules;
mod devices;
mod devices_bpf;
mod error;
mod freezer;
mod fs;
mod hugetlb;
mod memory;
mod network;
mod oom;
mod pids;
mod stats;
pub mod systemd;
#[cfg(test)]
mod testutil;

pub use cgroup::Cgroup;
pub use detect::{read_proc, Hierarchy, Mode};
pub use devices::default_allowed_devices;
pub use error::Error;
pub use oci_spec::runtime::LinuxResources;
pub use oom::{oom_counter_file, oom_kills};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuUsage, Hugetlb, Memory, MemoryEntry, Pids, Stats, Throttling,
};
