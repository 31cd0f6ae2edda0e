//! memory controller: limit, reservation, swap, swappiness, OOM killer.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::cgroup::Target;
use crate::fs::{self as cgfs, has, write};
use crate::{Cgroup, Error};

const RES: &str = "memory";

pub(crate) fn apply(cg: &Cgroup, m: &LinuxMemory) -> Result<(), Error> {
    if *m == LinuxMemory::default() {
        return Ok(());
    }
    if m.kernel().is_some() {
        // kmem limits are deprecated (and rejected by kernels >= 5.16); runc ignores them too.
        tracing::debug!("linux.resources.memory.kernel is ignored");
    }
    match cg.need(RES, "memory", "memory")? {
        Target::V1(d) => v1(d, m),
        Target::V2(d) => v2(d, m),
    }
}

fn v1(d: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // runc: an unlimited memory update without explicit swap also lifts swap.
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    if limit > 0 {
        check_before_update(m, &d.join("memory.usage_in_bytes"), limit)?;
    }
    let swap_ok = has(d, "memory.memsw.limit_in_bytes");
    let set_swap = |v: i64| -> Result<(), Error> {
        if swap_ok {
            write(d, "memory.memsw.limit_in_bytes", &v.to_string())
        } else if v == -1 {
            Ok(()) // swap accounting off: "unlimited" is already the case
        } else {
            Err(Error::InvalidResource {
                resource: "memory.swap",
                reason: "swap accounting is disabled on this kernel".into(),
            })
        }
    };
    if limit != 0 && swap != 0 {
        // The kernel requires memory.limit <= memsw.limit at every step, so
        // the order depends on whether the limits grow or shrink (runc).
        let cur = cgfs::read_u64(&d.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        if swap == -1 || (swap > 0 && cur < swap as u64) {
            set_swap(swap)?;
            write(d, "memory.limit_in_bytes", &limit.to_string())?;
        } else {
            write(d, "memory.limit_in_bytes", &limit.to_string())?;
            set_swap(swap)?;
        }
    } else if limit != 0 {
        write(d, "memory.limit_in_bytes", &limit.to_string())?;
    } else if swap != 0 {
        set_swap(swap)?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        write(d, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(t) = m.kernel_tcp().filter(|t| *t != 0) {
        if has(d, "memory.kmem.tcp.limit_in_bytes") {
            write(d, "memory.kmem.tcp.limit_in_bytes", &t.to_string())?;
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::InvalidResource {
                resource: "memory.swappiness",
                reason: format!("{s} is not in 0..=100"),
            });
        }
        write(d, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(d, "memory.oom_control", "1")?;
    }
    if let Some(h) = m.use_hierarchy() {
        write(d, "memory.use_hierarchy", if h { "1" } else { "0" })?;
    }
    Ok(())
}

fn v2(d: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().unwrap_or(0);
    let swap = swap_v2(m.swap().unwrap_or(0), limit)?;
    if limit > 0 {
        check_before_update(m, &d.join("memory.current"), limit)?;
    }
    // swap == limit converts to 0: no swap at all, which must be written
    // ("0"), not skipped like an unset swap, or the cgroup keeps swapping
    // without bound (runc writes "0" too).
    let swap = match swap {
        0 if m.swap().unwrap_or(0) > 0 => Some("0".to_string()),
        0 => None,
        s => Some(max_or(s)),
    };
    // Swap first: memory.swap.max is independent of memory.max on v2, but a
    // failing swap write should not leave a half-applied memory limit.
    if let Some(swap) = swap {
        if !has(d, "memory.swap.max") {
            // Without swap accounting "max" and "0" are moot (runc ignores
            // them there too); a real limit cannot be honoured.
            if swap != "max" && swap != "0" {
                return Err(Error::InvalidResource {
                    resource: "memory.swap",
                    reason: "memory.swap.max is missing (swap accounting disabled?)".into(),
                });
            }
        } else {
            write(d, "memory.swap.max", &swap)?;
        }
    }
    if limit != 0 {
        write(d, "memory.max", &max_or(limit))?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        write(d, "memory.low", &max_or(r))?;
    }
    if m.swappiness().is_some() || m.disable_oom_killer() == Some(true) || m.kernel_tcp().is_some()
    {
        // No v2 equivalent; runc ignores these on cgroup v2 as well.
        tracing::warn!(
            "memory swappiness/disableOOMKiller/kernelTCP are not supported on cgroup v2, ignored"
        );
    }
    Ok(())
}

/// runc's ConvertMemorySwapToCgroupV2Value: OCI swap is memory+swap, v2
/// memory.swap.max is swap alone. 0 = unset, -1 = unlimited.
pub(crate) fn swap_v2(swap: i64, limit: i64) -> Result<i64, Error> {
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let bad = |reason: &str| {
        Err(Error::InvalidResource {
            resource: "memory.swap",
            reason: reason.to_string(),
        })
    };
    if limit == 0 || limit == -1 {
        return bad("a swap limit needs a memory limit");
    }
    if limit < 0 || swap < limit {
        return bad("memory+swap limit must be >= the memory limit");
    }
    Ok(swap - limit)
}

/// With checkBeforeUpdate, refuse a limit below current usage instead of
/// letting the kernel reclaim or OOM-kill (runc 1.2).
fn check_before_update(m: &LinuxMemory, usage_file: &Path, limit: i64) -> Result<(), Error> {
    if m.check_before_update() != Some(true) {
        return Ok(());
    }
    let usage = cgfs::read_u64(usage_file)?;
    if usage > limit as u64 {
        return Err(Error::InvalidResource {
            resource: "memory.limit",
            reason: format!("new limit {limit} is below current usage {usage} (checkBeforeUpdate)"),
        });
    }
    Ok(())
}

/// "-1" (or any negative) → "max", the v2 spelling of unlimited.
pub(crate) fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::LinuxMemoryBuilder;

    fn mem(limit: i64, swap: i64) -> LinuxMemory {
        LinuxMemoryBuilder::default()
            .limit(limit)
            .swap(swap)
            .build()
            .expect("build")
    }

    #[test]
    fn v1_limits_and_order() {
        let f = Fake::v1();
        let files = [
            "memory:memory.limit_in_bytes",
            "memory:memory.memsw.limit_in_bytes",
            "memory:memory.soft_limit_in_bytes",
            "memory:memory.swappiness",
            "memory:memory.oom_control",
            "memory:memory.use_hierarchy",
        ];
        let cg = f.cgroup(&files);
        let d = cg.v1_path("memory").expect("memory").to_path_buf();
        std::fs::write(d.join("memory.limit_in_bytes"), "9223372036854771712").expect("w");
        let m = LinuxMemoryBuilder::default()
            .limit(100 << 20)
            .swap(200 << 20)
            .reservation(50 << 20)
            .swappiness(10u64)
            .disable_oom_killer(true)
            .use_hierarchy(true)
            .kernel(1)
            .build()
            .expect("build");
        apply(&cg, &m).expect("apply");
        assert_eq!(
            read(&d.join("memory.limit_in_bytes")),
            (100 << 20).to_string()
        );
        assert_eq!(
            read(&d.join("memory.memsw.limit_in_bytes")),
            (200 << 20).to_string()
        );
        assert_eq!(
            read(&d.join("memory.soft_limit_in_bytes")),
            (50 << 20).to_string()
        );
        assert_eq!(read(&d.join("memory.swappiness")), "10");
        assert_eq!(read(&d.join("memory.oom_control")), "1");
        assert_eq!(read(&d.join("memory.use_hierarchy")), "1");
        apply(&cg, &mem(-1, 0)).expect("unlimited");
        assert_eq!(read(&d.join("memory.limit_in_bytes")), "-1");
        assert_eq!(read(&d.join("memory.memsw.limit_in_bytes")), "-1");
        let bad = LinuxMemoryBuilder::default()
            .swappiness(101u64)
            .build()
            .expect("b");
        assert!(apply(&cg, &bad).is_err());
    }

    #[test]
    fn v1_check_before_update() {
        let f = Fake::v1();
        let cg = f.cgroup(&[
            "memory:memory.limit_in_bytes",
            "memory:memory.usage_in_bytes",
        ]);
        let d = cg.v1_path("memory").expect("memory").to_path_buf();
        std::fs::write(d.join("memory.usage_in_bytes"), "5000\n").expect("w");
        let m = LinuxMemoryBuilder::default()
            .limit(4096)
            .check_before_update(true)
            .build()
            .expect("b");
        let e = apply(&cg, &m).expect_err("below usage");
        assert!(e.to_string().contains("below current usage"), "{e}");
    }

    #[test]
    fn v2_files_and_units() {
        let f = Fake::v2();
        let cg = f.cgroup(&["memory.max", "memory.swap.max", "memory.low"]);
        let d = cg.unified_path().expect("u").to_path_buf();
        let m = LinuxMemoryBuilder::default()
            .limit(100)
            .swap(300)
            .reservation(10)
            .build()
            .expect("b");
        apply(&cg, &m).expect("apply");
        assert_eq!(read(&d.join("memory.max")), "100");
        assert_eq!(read(&d.join("memory.swap.max")), "200");
        assert_eq!(read(&d.join("memory.low")), "10");
        apply(&cg, &mem(-1, 0)).expect("unlimited");
        assert_eq!(read(&d.join("memory.max")), "max");
        assert_eq!(read(&d.join("memory.swap.max")), "max");
        assert!(apply(&cg, &mem(100, 50)).is_err(), "swap < limit");
        apply(&cg, &mem(100, 100)).expect("swap == limit");
        assert_eq!(read(&d.join("memory.swap.max")), "0", "no swap at all");
        let f = Fake::v2();
        let cg = f.cgroup(&["memory.max"]);
        apply(&cg, &mem(100, 100)).expect("no swap accounting: 0 is moot");
        assert!(apply(&cg, &mem(100, 300)).is_err(), "a swap limit is not");
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_v2(0, 0).expect("ok"), 0);
        assert_eq!(swap_v2(0, -1).expect("ok"), -1);
        assert_eq!(swap_v2(-1, 100).expect("ok"), -1);
        assert_eq!(swap_v2(100, 100).expect("ok"), 0);
        assert!(swap_v2(100, 0).is_err());
    }

    #[test]
    fn missing_controller() {
        let f = Fake::v2();
        std::fs::write(f.p("cgroup.controllers"), "cpu").expect("w");
        let cg = f.cgroup(&[]);
        let e = apply(&cg, &mem(100, 0)).expect_err("no memory controller");
        assert!(matches!(e, Error::ControllerMissing { .. }), "{e}");
        apply(&cg, &LinuxMemory::default()).expect("unset resource is skipped");
    }
}
