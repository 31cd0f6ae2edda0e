//! Creating a cgroup on pure v2 as runc's fs2 CreateCgroupPath does: each
//! directory from the mount point down is made if missing, checked for a
//! `cgroup.type` that cannot hold what the container needs, and (all but
//! the last) given every available controller in `cgroup.subtree_control`.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::cgroup::{controllers, Dir};
use crate::{fs as cgfs, Error};

/// Make `u` and its missing ancestors. On error, the directories made here
/// are removed again (runc's deferred os.Remove).
pub(crate) fn create(u: &Dir, r: &LinuxResources) -> Result<(), Error> {
    let domain = needs_domain(r);
    let mut made: Vec<PathBuf> = Vec::new();
    let res = walk(u, domain, &mut made);
    if res.is_err() {
        for d in made.iter().rev() {
            if let Err(e) = fs::remove_dir(d) {
                tracing::debug!(path = %d.display(), error = %e, "remove after failed create");
            }
        }
    }
    res
}

fn walk(u: &Dir, domain: bool, made: &mut Vec<PathBuf>) -> Result<(), Error> {
    enable_all(&u.mount);
    let chain = u.chain();
    for (i, d) in chain.iter().enumerate() {
        match fs::create_dir(d) {
            Ok(()) => made.push(d.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Mkdir {
                    path: d.clone(),
                    source,
                })
            }
        }
        check_type(d, domain)?;
        if i + 1 < chain.len() {
            enable_all(d);
        }
    }
    Ok(())
}

/// runc's containsDomainController: memory, io, cpu or hugetlb limits,
/// whose controllers cannot work in a threaded cgroup (cpu can, but runc
/// counts it, and so do we).
fn needs_domain(r: &LinuxResources) -> bool {
    let memory = r.memory().as_ref().is_some_and(|m| {
        [m.limit(), m.reservation(), m.swap()]
            .iter()
            .any(|v| v.unwrap_or(0) != 0)
    });
    let io = r.block_io().as_ref().is_some_and(|b| {
        b.weight().unwrap_or(0) != 0
            || [
                b.weight_device().as_ref().map(Vec::len),
                b.throttle_read_bps_device().as_ref().map(Vec::len),
                b.throttle_write_bps_device().as_ref().map(Vec::len),
                b.throttle_read_iops_device().as_ref().map(Vec::len),
                b.throttle_write_iops_device().as_ref().map(Vec::len),
            ]
            .iter()
            .any(|n| n.unwrap_or(0) != 0)
    });
    let cpu = r.cpu().as_ref().is_some_and(|c| {
        c.shares().unwrap_or(0) != 0 || c.quota().unwrap_or(0) != 0 || c.period().unwrap_or(0) != 0
    });
    let hugetlb = r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty());
    memory || io || cpu || hugetlb
}

/// A cgroup is "domain invalid" when it sits below a threaded subtree or a
/// thread root (cgroup-v2.rst "Threads"): it can take neither processes nor
/// controllers. Made "threaded" it can take processes, with thread-aware
/// controllers only, which is all a container without domain limits needs.
/// A threaded cgroup never turns back into a domain; with domain limits
/// asked for, all three states are an error naming the directory, before
/// anything is written (runc: "cannot enter cgroupv2 ... with domain
/// controllers"). An unreadable cgroup.type (pre-4.14) is left alone.
fn check_type(d: &Path, domain: bool) -> Result<(), Error> {
    let Ok(kind) = cgfs::read(&d.join("cgroup.type")) else {
        return Ok(());
    };
    match kind.as_str() {
        "domain invalid" | "domain threaded" | "threaded" if domain => Err(Error::CgroupType {
            path: d.to_path_buf(),
            kind,
        }),
        "domain invalid" => {
            if let Err(e) = cgfs::write(d, "cgroup.type", "threaded") {
                tracing::debug!(error = %e, "make a domain invalid cgroup threaded");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Enable every available controller in `d`'s subtree_control: all at
/// once, then one by one if the kernel refuses the batch (cpuset/rt
/// restrictions, a thread root refusing domain controllers), ignoring
/// individual failures: a controller a resource needs fails there, by name.
fn enable_all(d: &Path) {
    let avail = controllers(d);
    if avail.is_empty() {
        return;
    }
    let all: Vec<String> = avail.iter().map(|c| format!("+{c}")).collect();
    if cgfs::write(d, "cgroup.subtree_control", &all.join(" ")).is_err() {
        for c in &all {
            if let Err(e) = cgfs::write(d, "cgroup.subtree_control", c) {
                tracing::debug!(error = %e, "enable controller");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::{Cgroup, Error, LinuxResources};
    use oci_spec::runtime::LinuxMemoryBuilder;

    fn memory_limit() -> LinuxResources {
        let mut r = LinuxResources::default();
        r.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(1 << 30)
                .build()
                .expect("b"),
        ));
        r
    }

    #[test]
    fn domain_invalid_becomes_threaded_without_domain_limits() {
        let f = Fake::v2();
        std::fs::create_dir(f.p("hull")).expect("mkdir");
        std::fs::write(f.p("hull/cgroup.type"), "domain invalid\n").expect("w");
        let cg = Cgroup::resolve(&f.h, Some("/hull/c1"), "x").expect("resolve");
        cg.create().expect("create");
        assert_eq!(read(&f.p("hull/cgroup.type")), "threaded");
        assert!(f.p("hull/c1").is_dir());
    }

    #[test]
    fn threaded_states_refuse_domain_limits_and_leave_nothing() {
        for kind in ["domain invalid", "domain threaded", "threaded"] {
            let f = Fake::v2();
            std::fs::create_dir_all(f.p("a/b")).expect("mkdir");
            std::fs::write(f.p("a/b/cgroup.type"), kind).expect("w");
            let cg = Cgroup::resolve(&f.h, Some("/a/b/c/d"), "x").expect("resolve");
            let e = cg.create_for(&memory_limit()).expect_err(kind);
            assert!(
                matches!(&e, Error::CgroupType { path, .. } if path == &f.p("a/b")),
                "{e:?}"
            );
            assert!(e.to_string().contains(kind), "{e}");
            assert_eq!(read(&f.p("a/b/cgroup.type")), kind, "left as it was");
            assert!(!f.p("a/b/c").exists(), "nothing made below");
            // Without domain limits only "domain invalid" changes.
            cg.create().expect("create");
            let want = if kind == "domain invalid" {
                "threaded"
            } else {
                kind
            };
            assert_eq!(read(&f.p("a/b/cgroup.type")), want);
            assert!(f.p("a/b/c/d").is_dir());
        }
    }

    #[test]
    fn a_domain_takes_everything() {
        let f = Fake::v2();
        std::fs::create_dir(f.p("hull")).expect("mkdir");
        std::fs::write(f.p("hull/cgroup.type"), "domain\n").expect("w");
        let cg = Cgroup::resolve(&f.h, Some("/hull/c1"), "x").expect("resolve");
        cg.create_for(&memory_limit()).expect("create");
        assert_eq!(read(&f.p("hull/cgroup.type")), "domain");
    }
}
