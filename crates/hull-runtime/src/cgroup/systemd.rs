//! `--systemd-cgroup`, as runc's systemd driver: `linux.cgroupsPath` is
//! `slice:prefix:name`, and the container's cgroup is the transient scope
//! `prefix-name.scope` in that slice. hull places init with
//! CLONE_INTO_CGROUP elsewhere, but StartTransientUnit needs an existing
//! pid to move (`PIDs=`), so here init is cloned in the caller's cgroup and
//! the scope is started with it once it exists, before init goes on
//! (protocol.rs: `Created`). Limits systemd owns become unit properties (it
//! re-applies them at every daemon-reload); then every resource is also
//! written through cgroupfs in the delegated scope, as runc does.

use hull_cgroups::systemd::{self as sd, Manager, Unit};
use hull_cgroups::{Cgroup, Hierarchy, LinuxResources, Mode};
use oci_spec::runtime::Spec;

use super::{config_resources, CgroupError, Cgroups};

/// Before anything is made: systemd must be init (a clear error, not a
/// D-Bus connection failure later), and the container not rootless.
pub(crate) fn check(rootless: bool) -> Result<(), CgroupError> {
    if rootless {
        return Err(CgroupError::SystemdRootless);
    }
    if !sd::running() {
        return Err(CgroupError::Systemd(sd::Error::NotRunning));
    }
    Ok(())
}

/// The container's unit and the cgroup systemd will give it (not made).
pub(super) fn resolve(
    h: &Hierarchy,
    cgroups_path: Option<&str>,
    id: &str,
    rootless: bool,
) -> Result<Cgroups, CgroupError> {
    let unit = Unit::parse(cgroups_path, id, rootless).map_err(CgroupError::SystemdPath)?;
    let path = unit.cgroup_path().map_err(CgroupError::SystemdPath)?;
    let cg = Cgroup::resolve(h, Some(&path), id).map_err(CgroupError::Path)?;
    Ok(Cgroups {
        cg,
        optional: false,
        created: false,
        unit: Some(unit),
    })
}

fn connect() -> Result<Manager, CgroupError> {
    Manager::connect().map_err(CgroupError::Systemd)
}

fn props(cg: &Cgroup, r: &LinuxResources) -> Result<Vec<sd::Property>, CgroupError> {
    sd::properties(r, cg.mode() == Mode::V2).map_err(CgroupError::Systemd)
}

impl Cgroups {
    /// Starts the container's unit with `pid` in it and the config's limits
    /// as its properties, and waits until systemd has done so. Nothing to do
    /// without `--systemd-cgroup`.
    pub(crate) fn start_unit(&self, spec: &Spec, pid: i32) -> Result<(), CgroupError> {
        let Some(unit) = &self.unit else {
            return Ok(());
        };
        let props = props(&self.cg, &config_resources(spec))?;
        let pid = u32::try_from(pid).ok();
        connect()?
            .start(unit, pid, &props)
            .map_err(CgroupError::Systemd)
    }

    /// `update`: the limits systemd owns, in its unit (runtime properties,
    /// gone at reboot like the container).
    pub(super) fn set_unit_properties(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let Some(unit) = &self.unit else {
            return Ok(());
        };
        let props = props(&self.cg, r)?;
        if props.is_empty() {
            return Ok(());
        }
        connect()?
            .set_properties(&unit.name, &props)
            .map_err(CgroupError::Systemd)
    }

    /// Stops the unit and waits: systemd kills what is left in it and
    /// removes its cgroup. A unit already gone is fine.
    pub(super) fn stop_unit(&self) -> Result<(), CgroupError> {
        let Some(unit) = &self.unit else {
            return Ok(());
        };
        connect()?.stop(&unit.name).map_err(CgroupError::Systemd)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    #[test]
    fn the_state_keeps_the_unit() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_proc(mi, "0::/user.slice/session-1.scope\n").unwrap();
        let cg = resolve(&h, Some("machine-a.slice:hull:t"), "t", false).unwrap();
        let want = "/sys/fs/cgroup/machine.slice/machine-a.slice/hull-t.scope";
        assert_eq!(cg.cg.unified_path(), Some(Path::new(want)));
        // systemd moves init in: no CLONE_INTO_CGROUP before the unit exists.
        assert!(cg.clone_fd().is_none());
        let back = Cgroups::from_json(Some(&cg.to_json())).unwrap();
        assert_eq!(back.unit, cg.unit);
        assert_eq!(back.cg, cg.cg);
        // A state written without the driver (or before it existed): no unit.
        let plain = serde_json::to_value(&cg.cg).unwrap();
        assert!(Cgroups::from_json(Some(&plain)).unwrap().unit.is_none());
        assert!(matches!(
            resolve(&h, Some("/plain/path"), "t", false),
            Err(CgroupError::SystemdPath(_))
        ));
    }
}
