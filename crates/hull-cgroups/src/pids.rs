//! pids controller.

use oci_spec::runtime::LinuxPids;

use crate::cgroup::Target;
use crate::fs::write;
use crate::{Cgroup, Error};

pub(crate) fn apply(cg: &Cgroup, p: &LinuxPids) -> Result<(), Error> {
    let (Target::V1(d) | Target::V2(d)) = cg.need("pids", "pids", "pids")?;
    // Same file and syntax on v1 and v2; runc treats limit <= 0 as unlimited.
    let v = if p.limit() > 0 {
        p.limit().to_string()
    } else {
        "max".to_string()
    };
    write(d, "pids.max", &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::LinuxPidsBuilder;

    #[test]
    fn v1_and_v2() {
        for f in [Fake::v1(), Fake::v2()] {
            let cg = f.cgroup(&[if cg_is_v1(&f) {
                "pids:pids.max"
            } else {
                "pids.max"
            }]);
            let (Target::V1(d) | Target::V2(d)) = cg.need("pids", "pids", "pids").expect("pids");
            apply(
                &cg,
                &LinuxPidsBuilder::default().limit(10).build().expect("b"),
            )
            .expect("apply");
            assert_eq!(read(&d.join("pids.max")), "10");
            apply(
                &cg,
                &LinuxPidsBuilder::default().limit(-1).build().expect("b"),
            )
            .expect("apply");
            assert_eq!(read(&d.join("pids.max")), "max");
        }
    }

    fn cg_is_v1(f: &Fake) -> bool {
        f.h.mode() == crate::Mode::V1
    }
}
