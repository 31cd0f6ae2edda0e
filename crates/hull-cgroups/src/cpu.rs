//! cpu and cpuset controllers.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroup::{Dir, Target};
use crate::fs::{self as cgfs, write};
use crate::{Cgroup, Error};

pub(crate) fn apply(cg: &Cgroup, c: &LinuxCpu) -> Result<(), Error> {
    let cpu_set = c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
        || c.idle().is_some();
    if cpu_set {
        match cg.need("cpu", "cpu", "cpu")? {
            Target::V1(d) => v1(d, c)?,
            Target::V2(d) => v2(d, c)?,
        }
    }
    apply_cpuset(cg, c)
}

fn apply_cpuset(cg: &Cgroup, c: &LinuxCpu) -> Result<(), Error> {
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let (Target::V1(d) | Target::V2(d)) = cg.need("cpu.cpus/mems", "cpuset", "cpuset")?;
    if let Some(v) = cpus {
        write(d, "cpuset.cpus", v)?;
    }
    if let Some(v) = mems {
        write(d, "cpuset.mems", v)?;
    }
    Ok(())
}

fn v1(d: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write(d, "cpu.shares", &s.to_string())?;
    }
    // The kernel may reject a smaller period while the old quota is still in
    // place (old_quota/new_period exceeding the parent's limit): like runc,
    // tolerate EINVAL when a quota follows, and retry the period after it.
    let mut retry_period = None;
    if let Some(p) = c.period().filter(|p| *p != 0) {
        if let Err(e) = write(d, "cpu.cfs_period_us", &p.to_string()) {
            if e.raw_os_error() != Some(libc::EINVAL) || c.quota().unwrap_or(0) == 0 {
                return Err(e);
            }
            retry_period = Some(p);
        }
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        write(d, "cpu.cfs_quota_us", &q.to_string())?;
        if let Some(p) = retry_period {
            write(d, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    if let Some(b) = c.burst() {
        write(d, "cpu.cfs_burst_us", &b.to_string())?;
    }
    // rt_period before rt_runtime, as runc; the kernel refuses a period below the current
    // runtime (EINVAL), so then the runtime goes first and the period is written again.
    let period = c.realtime_period().filter(|p| *p != 0);
    let period_failed = match period {
        Some(p) => write(d, "cpu.rt_period_us", &p.to_string()).err(),
        None => None,
    };
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        write(d, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let (Some(e), Some(p)) = (period_failed, period) {
        write(d, "cpu.rt_period_us", &p.to_string()).map_err(|_| e)?;
    }
    if let Some(i) = c.idle() {
        write(d, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

fn v2(d: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if c.realtime_period().unwrap_or(0) != 0 || c.realtime_runtime().unwrap_or(0) != 0 {
        return Err(Error::InvalidResource {
            resource: "cpu.realtime",
            reason: "realtime scheduling limits are not supported on cgroup v2".into(),
        });
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write(d, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if let Some(v) = cpu_max(d, c.quota().unwrap_or(0), c.period().unwrap_or(0))? {
        write(d, "cpu.max", &v)?;
    }
    if let Some(b) = c.burst() {
        write(d, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = c.idle() {
        write(d, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

/// The `cpu.max` value for a quota and/or period (0: not given), leaving the
/// one not given as it is, as on v1 where they are separate files. runc's
/// fs2 writes "QUOTA 100000" or "max PERIOD" there, but `runc update` fills
/// the missing half from the saved config, so a later `--cpu-quota` keeps a
/// custom period. We have no saved config here: the kernel keeps the period
/// when only "$MAX" is written (cgroup-v2.rst, cpu.max), and for a period
/// alone the current $MAX is read back. On a new cgroup ("max 100000") this
/// is exactly what runc writes.
fn cpu_max(d: &Path, quota: i64, period: u64) -> Result<Option<String>, Error> {
    let q = |quota: i64| {
        if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        }
    };
    Ok(match (quota, period) {
        (0, 0) => None,
        (quota, 0) => Some(q(quota)),
        (0, period) => {
            let path = d.join("cpu.max");
            let cur = cgfs::read(&path)?;
            let max = cur.split_whitespace().next().ok_or_else(|| Error::Parse {
                path,
                reason: format!("{cur:?} is not \"$MAX $PERIOD\""),
            })?;
            Some(format!("{max} {period}"))
        }
        (quota, period) => Some(format!("{} {period}", q(quota))),
    })
}

/// runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] → [1, 10000].
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262_142
}

/// v1 cpuset refuses tasks while cpuset.cpus/mems are empty, and new cgroups
/// start empty: copy them down from the nearest ancestor (runc ensureParent).
pub(crate) fn ensure_cpuset(d: &Dir) -> Result<(), Error> {
    let mut parent = d.mount.clone();
    for dir in d.chain() {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = cgfs::read(&dir.join(f))?;
            if cur.is_empty() {
                let v = cgfs::read(&parent.join(f))?;
                write(&dir, f, &v)?;
            }
        }
        parent = dir;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::LinuxCpuBuilder;

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn v1_files() {
        let f = Fake::v1();
        let cg = f.cgroup(&[
            "cpu:cpu.shares",
            "cpu:cpu.cfs_period_us",
            "cpu:cpu.cfs_quota_us",
            "cpu:cpu.cfs_burst_us",
            "cpu:cpu.rt_period_us",
            "cpu:cpu.rt_runtime_us",
            "cpu:cpu.idle",
        ]);
        let c = LinuxCpuBuilder::default()
            .shares(512u64)
            .quota(50_000)
            .period(100_000u64)
            .burst(1000u64)
            .realtime_period(1_000_000u64)
            .realtime_runtime(950_000)
            .idle(1)
            .cpus("0-1")
            .mems("0")
            .build()
            .expect("b");
        apply(&cg, &c).expect("apply");
        let d = cg.v1_path("cpu").expect("cpu");
        for (file, want) in [
            ("cpu.shares", "512"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_burst_us", "1000"),
            ("cpu.rt_period_us", "1000000"),
            ("cpu.rt_runtime_us", "950000"),
            ("cpu.idle", "1"),
        ] {
            assert_eq!(read(&d.join(file)), want, "{file}");
        }
        let s = cg.v1_path("cpuset").expect("cpuset");
        assert_eq!(read(&s.join("cpuset.cpus")), "0-1");
        assert_eq!(read(&s.join("cpuset.mems")), "0");
    }

    #[test]
    fn v2_files() {
        let f = Fake::v2();
        let cg = f.cgroup(&[
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "cpuset.cpus",
            "cpuset.mems",
        ]);
        let d = cg.unified_path().expect("u");
        let c = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(20_000)
            .burst(5u64)
            .cpus("1")
            .build()
            .expect("b");
        std::fs::write(d.join("cpu.max"), "max 100000").expect("w");
        apply(&cg, &c).expect("apply");
        assert_eq!(read(&d.join("cpu.weight")), "39");
        // The quota alone: the kernel keeps the period.
        assert_eq!(read(&d.join("cpu.max")), "20000");
        assert_eq!(read(&d.join("cpu.max.burst")), "5");
        assert_eq!(read(&d.join("cpuset.cpus")), "1");
        let c = LinuxCpuBuilder::default()
            .quota(-1)
            .period(50_000u64)
            .build()
            .expect("b");
        apply(&cg, &c).expect("apply");
        assert_eq!(read(&d.join("cpu.max")), "max 50000");
        let c = LinuxCpuBuilder::default().quota(-1).build().expect("b");
        apply(&cg, &c).expect("apply");
        assert_eq!(read(&d.join("cpu.max")), "max");
        let rt = LinuxCpuBuilder::default()
            .realtime_runtime(5)
            .build()
            .expect("b");
        assert!(apply(&cg, &rt).is_err());
    }

    /// `hullc update --cpu-quota` after a custom period keeps the period, and
    /// `--cpu-period` alone keeps the quota (runc update's rule), where a
    /// default period of 100000 used to be written.
    #[test]
    fn v2_update_keeps_the_other_half_of_cpu_max() {
        let f = Fake::v2();
        let cg = f.cgroup(&["cpu.max"]);
        let d = cg.unified_path().expect("u");
        // The fake file stands for the kernel's view after "30000 50000".
        std::fs::write(d.join("cpu.max"), "30000 50000\n").expect("w");
        let quota = LinuxCpuBuilder::default().quota(20_000).build().expect("b");
        apply(&cg, &quota).expect("apply");
        let written = read(&d.join("cpu.max"));
        assert!(
            !written.contains("100000"),
            "quota only must not reset the period: wrote {written:?}"
        );
        assert_eq!(written, "20000");
        std::fs::write(d.join("cpu.max"), "30000 50000\n").expect("w");
        let period = LinuxCpuBuilder::default()
            .period(20_000u64)
            .build()
            .expect("b");
        apply(&cg, &period).expect("apply");
        assert_eq!(read(&d.join("cpu.max")), "30000 20000", "quota kept");
        std::fs::write(d.join("cpu.max"), "max 100000\n").expect("w");
        apply(&cg, &period).expect("apply");
        assert_eq!(read(&d.join("cpu.max")), "max 20000", "runc's new cgroup");
        std::fs::write(d.join("cpu.max"), "").expect("w");
        let e = apply(&cg, &period).expect_err("unparsable cpu.max");
        assert!(e.to_string().contains("cpu.max"), "{e}");
    }
}
