//! The runtime's use of hull-cgroups: where a container's cgroup goes, when
//! its init joins it, and the resources applied at create and `update`.
//!
//! Every container gets a cgroup (runc's rule: `linux.cgroupsPath`, else the
//! id under the caller's own cgroup), so that `kill --all`, `ps`, `pause` and
//! `delete` can find all its processes, not only init.
//!
//! Under `--systemd-cgroup` (runc's systemd driver, see systemd.rs) the
//! cgroup is a transient scope that systemd makes, fills and removes; the
//! rest works on its directory as on any other.

mod systemd;

pub(crate) use systemd::check as check_systemd;

use hull_cgroups::{Cgroup, Hierarchy, LinuxResources, Mode};
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
    #[error(
        "container's cgroup unexpectedly frozen: thaw it, or choose another linux.cgroupsPath"
    )]
    Frozen,
    #[error("container has no cgroup recorded")]
    Missing,
    #[error("linux.resources: cannot set limits: the container could not create or join its cgroup (rootless, no delegated cgroup)")]
    RootlessLimits,
    #[error("--systemd-cgroup")]
    Systemd(#[source] hull_cgroups::systemd::Error),
    #[error("linux.cgroupsPath")]
    SystemdPath(#[source] hull_cgroups::systemd::Error),
    #[error("--systemd-cgroup: a rootless container would need systemd's user instance, which hullc does not use yet")]
    SystemdRootless,
}

/// A container's cgroup, as kept in its state.
#[derive(Debug, Clone)]
pub(crate) struct Cgroups {
    cg: Cgroup,
    /// Rootless without an explicit cgroupsPath: a cgroup we may not
    /// create or join is skipped rather than an error (runc's rule).
    optional: bool,
    /// Its directories exist (made by `prepare` on v2, or by `create`).
    created: bool,
    /// `--systemd-cgroup`: the transient unit that owns the cgroup.
    unit: Option<hull_cgroups::systemd::Unit>,
}

/// The caller's /proc/self/mountinfo and /proc/self/cgroup, read once: the
/// cgroup is resolved from them, and init's cgroup mount reuses them (a new
/// mount namespace shows init the same host hierarchies and, until it is
/// moved, init is in the caller's cgroups).
pub(crate) struct HostViews {
    pub(crate) mountinfo: String,
    pub(crate) cgroup: String,
}

impl HostViews {
    pub(crate) fn read() -> Result<HostViews, CgroupError> {
        let read = |path: &str| {
            hull_cgroups::read_proc(path).map_err(|source| {
                CgroupError::Detect(hull_cgroups::Error::Read {
                    path: path.into(),
                    source,
                })
            })
        };
        Ok(HostViews {
            mountinfo: read("/proc/self/mountinfo")?,
            cgroup: read("/proc/self/cgroup")?,
        })
    }
}

/// Resolves the cgroup for `spec`. On pure v2 it is also created, because
/// clone3 places init in it (CLONE_INTO_CGROUP); elsewhere [`Cgroups::create`]
/// and `join` do that while init builds its rootfs. `None`: rootless, and the cgroup
/// could not be made (not delegated). Under `systemd`, nothing is made: systemd
/// creates the scope once init exists ([`Cgroups::start_unit`]).
pub(crate) fn prepare(
    spec: &Spec,
    id: &str,
    rootless: bool,
    host: &HostViews,
    systemd: bool,
) -> Result<Option<Cgroups>, CgroupError> {
    let h = Hierarchy::from_proc(&host.mountinfo, &host.cgroup).map_err(CgroupError::Detect)?;
    let path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    if systemd {
        let cg = systemd::resolve(&h, path.as_deref(), id, rootless)?;
        check_existing(&cg.cg)?;
        return Ok(Some(cg));
    }
    let cg = Cgroup::resolve(&h, path.as_deref(), id).map_err(CgroupError::Path)?;
    check_existing(&cg)?;
    let cg = Cgroups {
        optional: rootless && path.is_none(),
        created: false,
        cg,
        unit: None,
    };
    if cg.cg.mode() == Mode::V2 {
        return cg.create(spec);
    }
    Ok(Some(cg))
}

/// runc's checks of a cgroup that exists before `create` (libcontainer/factory_linux.go). A frozen
/// one is an error: init would freeze as it joins, and `create` would wait for it forever. One
/// with processes in it is allowed, as runc 1.1 allows it, with a warning: `kill --all`, `ps`,
/// `pause` and `delete` will take those processes for the container's.
fn check_existing(cg: &Cgroup) -> Result<(), CgroupError> {
    if !cg.exists() {
        return Ok(());
    }
    match cg.is_frozen() {
        Ok(true) => return Err(CgroupError::Frozen),
        Ok(false) => {}
        // The freezer hierarchy's directory may be the one that does not exist yet (v1).
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(op("reading freezer state")(e)),
    }
    if let Ok(pids) = cg.pids() {
        if !pids.is_empty() {
            tracing::warn!(
                "container's cgroup is not empty: {} process(es) found",
                pids.len()
            );
        }
    }
    Ok(())
}

/// The key of the systemd unit in the state's cgroup object (next to the
/// cgroup's own fields, which older states have alone).
const SYSTEMD_UNIT: &str = "systemdUnit";

/// Errors that mean "not ours to write" (runc's isIgnorableError).
fn denied(e: &hull_cgroups::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::EROFS)
    )
}

/// Whether the config sets any limit (device rules aside): those need a
/// cgroup even when rootless.
pub(crate) fn has_limits(spec: &Spec) -> bool {
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return false;
    };
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("devices");
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(|o| o.is_empty())));
        return !m.is_empty();
    }
    false
}

/// The config's resources with the device rules runc always adds: deny all,
/// then the config's rules, then the default allow list (/dev/null, ptys...).
fn resources_of(spec: &Spec) -> LinuxResources {
    let mut r = config_resources(spec);
    let mut devices: Vec<LinuxDeviceCgroup> = r.devices().clone().unwrap_or_default();
    devices.extend(hull_cgroups::default_allowed_devices());
    r.set_devices(Some(devices));
    r
}

/// `linux.resources` as the config has it (empty when absent).
fn config_resources(spec: &Spec) -> LinuxResources {
    spec.linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default()
}

fn op(op: &'static str) -> impl FnOnce(hull_cgroups::Error) -> CgroupError {
    move |source| CgroupError::Op { op, source }
}

impl Cgroups {
    /// On pure cgroup v2: the dir fd for clone3's CLONE_INTO_CGROUP. None
    /// for a systemd scope not started yet: systemd moves init in.
    pub(crate) fn clone_fd(&self) -> Option<std::fs::File> {
        if self.unit.is_some() && !self.created {
            return None;
        }
        self.cg.unified_dir()
    }

    /// The cgroup's directories (for `exec --cgroup`'s sub-cgroups).
    pub(crate) fn cgroup(&self) -> &Cgroup {
        &self.cg
    }

    pub(crate) fn enter(&self, pid: i32) -> Result<(), CgroupError> {
        self.cg
            .add_process(pid)
            .map_err(|source| CgroupError::Enter { pid, source })
    }

    /// mkdir in every hierarchy, unless `prepare` did. `None`: rootless
    /// and not allowed to (the directories are removed again). The config's
    /// limits decide what a v2 "domain invalid" directory may become
    /// (runc's CreateCgroupPath: threaded only without domain limits).
    pub(crate) fn create(mut self, spec: &Spec) -> Result<Option<Cgroups>, CgroupError> {
        if self.created {
            return Ok(Some(self));
        }
        match self.cg.create_for(&config_resources(spec)) {
            Ok(()) => {
                self.created = true;
                Ok(Some(self))
            }
            Err(e) if self.optional && denied(&e) => {
                tracing::debug!("rootless: no cgroup for the container: {e}");
                let _ = self.cg.destroy();
                Ok(None)
            }
            Err(e) => Err(CgroupError::Create(e)),
        }
    }

    /// At create, once `create` made it: sets the config's resources, then
    /// moves init in. Resources come first so that init goes from the
    /// caller's device rules to the container's in one step: v1 sets them
    /// as "deny all" followed by the allows, and a member opening or
    /// creating a device node in between would fail at random. `None`:
    /// rootless and not allowed to join (the directories are removed).
    pub(crate) fn join(self, spec: &Spec, pid: i32) -> Result<Option<Cgroups>, CgroupError> {
        self.apply(spec)?;
        match self.cg.add_process(pid) {
            Ok(()) => Ok(Some(self)),
            Err(e) if self.optional && denied(&e) => {
                tracing::debug!("rootless: cannot join the container's cgroup: {e}");
                let _ = self.cg.destroy();
                Ok(None)
            }
            Err(source) => Err(CgroupError::Enter { pid, source }),
        }
    }

    /// The directories init will be in, for its cgroup mount to bind before
    /// it has been moved; none when it may end up without them (rootless).
    pub(crate) fn dirs_for_init(&self) -> Vec<std::path::PathBuf> {
        if self.optional {
            return Vec::new();
        }
        self.cg
            .paths()
            .into_iter()
            .map(|p| p.to_path_buf())
            .collect()
    }

    /// The config's resources. Rootless, device rules that cannot be set
    /// are skipped (runc: "not expected to work"); limits must apply.
    fn apply(&self, spec: &Spec) -> Result<(), CgroupError> {
        let mut r = resources_of(spec);
        if self.optional {
            let mut devices = LinuxResources::default();
            devices.set_devices(r.devices().clone());
            r.set_devices(None);
            if let Err(e) = self.cg.apply(&devices) {
                tracing::debug!("rootless: device cgroup rules not applied: {e}");
            }
        }
        self.cg.apply(&r).map_err(CgroupError::Apply)
    }

    /// `hullc update`: only what the caller gave (no device reset); under
    /// systemd, its unit properties first (runc's order).
    pub(crate) fn update(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        self.set_unit_properties(r)?;
        self.cg.apply(r).map_err(CgroupError::Apply)
    }

    /// Removes the cgroup; under systemd, the unit is stopped first (which
    /// removes the scope's cgroup), then whatever it left.
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        let stopped = self.stop_unit();
        self.cg
            .destroy()
            .map_err(op("removing the container's cgroup"))?;
        stopped
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.cg).expect("a cgroup always serializes");
        if let (Some(u), Some(m)) = (&self.unit, v.as_object_mut()) {
            m.insert(SYSTEMD_UNIT.into(), serde_json::json!(u));
        }
        v
    }

    pub(crate) fn from_json(v: Option<&serde_json::Value>) -> Option<Cgroups> {
        let v = v?;
        let unit = v
            .get(SYSTEMD_UNIT)
            .and_then(|u| serde_json::from_value(u.clone()).ok());
        serde_json::from_value(v.clone()).ok().map(|cg| Cgroups {
            cg,
            optional: false,
            created: true,
            unit,
        })
    }

    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.cg.is_frozen().map_err(op("reading freezer state"))
    }

    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        self.cg.freeze().map_err(op("freezing"))
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        self.cg.thaw().map_err(op("thawing"))
    }

    /// `delete`: SIGKILL whatever is left, then remove the cgroup. Usually
    /// nothing is left, and the first try of rmdir says so. A systemd unit
    /// is stopped after the kill: its own stop would SIGTERM and wait.
    pub(crate) fn kill_and_destroy(&self) -> Result<(), CgroupError> {
        if self.unit.is_some() {
            return self.kill_all(libc::SIGKILL).and_then(|_| self.destroy());
        }
        if self.cg.remove_if_empty() {
            return Ok(());
        }
        self.kill_all(libc::SIGKILL).and_then(|_| self.destroy())
    }

    pub(crate) fn kill_all(&self, sig: i32) -> Result<(), CgroupError> {
        // Nothing left (the usual case at delete): skip the freeze/thaw
        // round trip, whose first use flips a kernel static key (IPIs).
        if !self.cg.exists() || self.cg.pids().is_ok_and(|p| p.is_empty()) {
            return Ok(());
        }
        self.cg
            .kill_all(sig)
            .map_err(op("signalling every process"))
    }

    pub(crate) fn exists(&self) -> bool {
        self.cg.exists()
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.cg.pids().map_err(op("listing processes"))
    }

    pub(crate) fn stats(&self) -> Result<hull_cgroups::Stats, CgroupError> {
        self.cg.stats().map_err(op("reading statistics"))
    }

    pub(crate) fn oom_kills(&self) -> Result<u64, CgroupError> {
        self.cg.oom_kill_count().map_err(op("reading oom events"))
    }
}
