//! The runtime's use of hull-cgroups: where a container's cgroup goes, when
//! its init joins it, and the resources applied at create and `update`.
//!
//! Every container gets a cgroup (runc's rule: `linux.cgroupsPath`, else the
//! id under the caller's own cgroup), so that `kill --all`, `ps`, `pause` and
//! `delete` can find all its processes, not only init.

use hull_cgroups::{Cgroup, Hierarchy, LinuxResources};
use oci_spec::runtime::{LinuxDeviceCgroup, Spec};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups: detecting the host's hierarchies")]
    Detect(#[source] hull_cgroups::Error),
    #[error("linux.cgroupsPath: {0}")]
    Path(#[source] hull_cgroups::Error),
    #[error("cgroups: creating the container's cgroup")]
    Create(#[source] hull_cgroups::Error),
    #[error("cgroups: adding pid {pid}")]
    Enter {
        pid: i32,
        #[source]
        source: hull_cgroups::Error,
    },
    #[error("linux.resources")]
    Apply(#[source] hull_cgroups::Error),
    #[error("cgroups: {op}")]
    Op {
        op: &'static str,
        #[source]
        source: hull_cgroups::Error,
    },
    #[error("container has no cgroup recorded")]
    Missing,
}

/// A container's cgroup, as kept in its state.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups(Cgroup);

/// Resolves and creates the cgroup for `spec` (nothing is joined yet).
pub(crate) fn prepare(spec: &Spec, id: &str) -> Result<Option<Cgroups>, CgroupError> {
    let h = Hierarchy::detect().map_err(CgroupError::Detect)?;
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cg = Cgroup::resolve(&h, path.as_deref(), id).map_err(CgroupError::Path)?;
    cg.create().map_err(CgroupError::Create)?;
    Ok(Some(Cgroups(cg)))
}

/// The config's resources with the device rules runc always adds: deny all,
/// then the config's rules, then the default allow list (/dev/null, ptys...).
fn resources_of(spec: &Spec) -> LinuxResources {
    let mut r = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut devices: Vec<LinuxDeviceCgroup> = r.devices().clone().unwrap_or_default();
    devices.extend(hull_cgroups::default_allowed_devices());
    r.set_devices(Some(devices));
    r
}

fn op(op: &'static str) -> impl FnOnce(hull_cgroups::Error) -> CgroupError {
    move |source| CgroupError::Op { op, source }
}

impl Cgroups {
    /// On pure cgroup v2: the dir fd for clone3's CLONE_INTO_CGROUP.
    pub(crate) fn clone_fd(&self) -> Option<std::fs::File> {
        self.0.unified_dir()
    }

    pub(crate) fn enter(&self, pid: i32) -> Result<(), CgroupError> {
        self.0
            .add_process(pid)
            .map_err(|source| CgroupError::Enter { pid, source })
    }

    pub(crate) fn apply(&self, spec: &Spec) -> Result<(), CgroupError> {
        self.0
            .apply(&resources_of(spec))
            .map_err(CgroupError::Apply)
    }

    /// `hullc update`: only what the caller gave (no device reset).
    pub(crate) fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.0.apply(r).map_err(CgroupError::Apply)
    }

    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        self.0
            .destroy()
            .map_err(op("removing the container's cgroup"))
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).expect("a cgroup always serializes")
    }

    pub(crate) fn from_json(v: Option<&serde_json::Value>) -> Option<Cgroups> {
        v.and_then(|v| serde_json::from_value(v.clone()).ok())
            .map(Cgroups)
    }

    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.0.is_frozen().map_err(op("reading freezer state"))
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        self.0.freeze().map_err(op("freezing"))
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        self.0.thaw().map_err(op("thawing"))
    }

    pub(crate) fn kill_all(&self, sig: i32) -> Result<(), CgroupError> {
        // Nothing left (the usual case at delete): skip the freeze/thaw
        // round trip, whose first use flips a kernel static key (IPIs).
        if !self.0.exists() || self.0.pids().is_ok_and(|p| p.is_empty()) {
            return Ok(());
        }
        self.0.kill_all(sig).map_err(op("signalling every process"))
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.0.pids().map_err(op("listing processes"))
    }

    pub(crate) fn stats(&self) -> Result<hull_cgroups::Stats, CgroupError> {
        self.0.stats().map_err(op("reading statistics"))
    }

    pub(crate) fn oom_kills(&self) -> Result<u64, CgroupError> {
        self.0.oom_kill_count().map_err(op("reading oom events"))
    }
}
