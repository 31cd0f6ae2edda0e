//! net_cls / net_prio (v1 only: cgroup v2 has no network controllers, use
//! eBPF there) and rdma.

use std::collections::HashMap;

use oci_spec::runtime::{LinuxNetwork, LinuxRdma};

use crate::cgroup::Target;
use crate::fs::write;
use crate::{Cgroup, Error};

pub(crate) fn apply(cg: &Cgroup, n: &LinuxNetwork) -> Result<(), Error> {
    if let Some(id) = n.class_id() {
        match cg.target("net_cls", "net_cls")? {
            Some(Target::V1(d)) => write(d, "net_cls.classid", &id.to_string())?,
            _ => {
                return Err(Error::ControllerMissing {
                    resource: "network.classID",
                    controller: "net_cls",
                })
            }
        }
    }
    let prios = n.priorities().as_deref().unwrap_or_default();
    if !prios.is_empty() {
        let Some(Target::V1(d)) = cg.target("net_prio", "net_prio")? else {
            return Err(Error::ControllerMissing {
                resource: "network.priorities",
                controller: "net_prio",
            });
        };
        // One "ifname prio" pair per write: the kernel parses a single entry.
        for p in prios {
            write(
                d,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    Ok(())
}

pub(crate) fn apply_rdma(cg: &Cgroup, rdma: &HashMap<String, LinuxRdma>) -> Result<(), Error> {
    if rdma.is_empty() {
        return Ok(());
    }
    let (Target::V1(d) | Target::V2(d)) = cg.need("rdma", "rdma", "rdma")?;
    for (dev, l) in rdma {
        let mut v = dev.clone();
        if let Some(h) = l.hca_handles() {
            v += &format!(" hca_handle={h}");
        }
        if let Some(o) = l.hca_objects() {
            v += &format!(" hca_object={o}");
        }
        write(d, "rdma.max", &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::{LinuxInterfacePriorityBuilder, LinuxNetworkBuilder};

    #[test]
    fn v1_net_cls_prio() {
        let f = Fake::v1();
        let cg = f.cgroup(&["net_cls:net_cls.classid", "net_prio:net_prio.ifpriomap"]);
        let prio = LinuxInterfacePriorityBuilder::default()
            .name("eth0")
            .priority(5u32)
            .build()
            .expect("b");
        let n = LinuxNetworkBuilder::default()
            .class_id(0x10001u32)
            .priorities(vec![prio])
            .build()
            .expect("b");
        apply(&cg, &n).expect("apply");
        let d = cg.v1_path("net_cls").expect("net");
        assert_eq!(read(&d.join("net_cls.classid")), "65537");
        assert_eq!(read(&d.join("net_prio.ifpriomap")), "eth0 5");
    }

    #[test]
    fn v2_network_is_an_error() {
        let f = Fake::v2();
        let cg = f.cgroup(&[]);
        let n = LinuxNetworkBuilder::default()
            .class_id(1u32)
            .build()
            .expect("b");
        assert!(matches!(
            apply(&cg, &n),
            Err(Error::ControllerMissing { .. })
        ));
        apply(&cg, &LinuxNetwork::default()).expect("unset is fine");
    }
}
