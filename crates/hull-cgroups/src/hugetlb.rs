//! hugetlb controller (v1 hugetlb.<size>.limit_in_bytes, v2 hugetlb.<size>.max).

use oci_spec::runtime::LinuxHugepageLimit;

use crate::cgroup::Target;
use crate::fs::{has, write};
use crate::memory::max_or;
use crate::{Cgroup, Error};

pub(crate) fn apply(cg: &Cgroup, limits: &[LinuxHugepageLimit]) -> Result<(), Error> {
    if limits.is_empty() {
        return Ok(());
    }
    let target = cg.need("hugepageLimits", "hugetlb", "hugetlb")?;
    for l in limits {
        let size = l.page_size();
        if size.is_empty() || size.contains('/') || size.contains("..") {
            return Err(Error::InvalidResource {
                resource: "hugepageLimits",
                reason: format!("bad page size {size:?}"),
            });
        }
        // Kernels >= 5.7 also have reservation ("rsvd") limits; runc sets both
        // so that reserved-but-unfaulted pages are limited too.
        let (d, limit_file, rsvd_file, value) = match target {
            Target::V1(d) => (
                d,
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                l.limit().to_string(),
            ),
            Target::V2(d) => (
                d,
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
                max_or(l.limit()),
            ),
        };
        if !has(d, &limit_file) {
            return Err(Error::InvalidResource {
                resource: "hugepageLimits",
                reason: format!(
                    "page size {size} is not supported by this kernel ({limit_file} missing)"
                ),
            });
        }
        write(d, &limit_file, &value)?;
        if has(d, &rsvd_file) {
            write(d, &rsvd_file, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::LinuxHugepageLimitBuilder;

    fn lim(size: &str, v: i64) -> Vec<LinuxHugepageLimit> {
        vec![LinuxHugepageLimitBuilder::default()
            .page_size(size)
            .limit(v)
            .build()
            .expect("b")]
    }

    #[test]
    fn hybrid_uses_unified_and_enables_controller() {
        let f = Fake::hybrid();
        let cg = f.cgroup(&["hugetlb.2MB.max", "hugetlb.2MB.rsvd.max"]);
        apply(&cg, &lim("2MB", 4 << 20)).expect("apply");
        let d = cg.unified_path().expect("u");
        assert_eq!(read(&d.join("hugetlb.2MB.max")), (4 << 20).to_string());
        assert_eq!(read(&d.join("hugetlb.2MB.rsvd.max")), (4 << 20).to_string());
        // Enabled on demand in the parent (the unified mount root here).
        assert_eq!(read(&f.p("unified/cgroup.subtree_control")), "+hugetlb");
        assert!(apply(&cg, &lim("1GB", 1)).is_err(), "unsupported size");
        assert!(apply(&cg, &lim("../x", 1)).is_err());
    }

    #[test]
    fn v1_missing_controller_is_an_error_only_when_set() {
        let f = Fake::v1();
        let cg = f.cgroup(&[]);
        apply(&cg, &[]).expect("unset");
        assert!(matches!(
            apply(&cg, &lim("2MB", 1)),
            Err(Error::ControllerMissing { .. })
        ));
    }
}
