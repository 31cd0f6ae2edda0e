//! blkio (v1) / io (v2) controller.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::cgroup::Target;
use crate::fs::{has, write};
use crate::{Cgroup, Error};

pub(crate) fn apply(cg: &Cgroup, b: &LinuxBlockIo) -> Result<(), Error> {
    if *b == LinuxBlockIo::default() {
        return Ok(());
    }
    match cg.need("blockIO", "blkio", "io")? {
        Target::V1(d) => v1(d, b),
        Target::V2(d) => v2(d, b),
    }
}

fn list(v: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
    v.as_deref().unwrap_or_default()
}

fn v1(d: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    // Kernels without CFQ (blk-mq, >= 5.0) only have the BFQ file.
    let weight_file = if has(d, "blkio.weight") {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        write(d, weight_file, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        write(d, "blkio.leaf_weight", &w.to_string())?;
    }
    let wdev_file = if has(d, "blkio.weight_device") {
        "blkio.weight_device"
    } else {
        "blkio.bfq.weight_device"
    };
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            write(d, wdev_file, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
        }
        if let Some(w) = wd.leaf_weight() {
            write(
                d,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
    }
    for (file, devs) in [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ] {
        // One device per write(2): the kernel parses a single "maj:min rate".
        for t in list(devs) {
            write(
                d,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

fn v2(d: &Path, b: &LinuxBlockIo) -> Result<(), Error> {
    // runc prefers io.bfq.weight (same 1..1000 scale as blkio) when BFQ is
    // present, else io.weight with the blkio → io scale conversion.
    let bfq = has(d, "io.bfq.weight");
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            write(d, "io.bfq.weight", &w.to_string())?;
        } else {
            write(d, "io.weight", &blkio_to_io_weight(w).to_string())?;
        }
    }
    for wd in b.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = wd.weight() {
            let (file, w) = if bfq {
                ("io.bfq.weight", u64::from(w))
            } else {
                ("io.weight", blkio_to_io_weight(w))
            };
            write(d, file, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
        }
    }
    if b.leaf_weight().is_some() {
        tracing::warn!("blockIO.leafWeight is not supported on cgroup v2, ignored");
    }
    for (key, devs) in [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ] {
        for t in list(devs) {
            // 0 means "no limit" in the OCI/v1 sense.
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write(
                d,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

/// runc's ConvertBlkIOToIOWeightValue: [10, 1000] → [1, 10000].
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn blk() -> LinuxBlockIo {
        let t = |r: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(8)
                .minor(0)
                .rate(r)
                .build()
                .expect("b")
        };
        let wd = LinuxWeightDeviceBuilder::default()
            .major(8)
            .minor(16)
            .weight(300u16)
            .build()
            .expect("b");
        LinuxBlockIoBuilder::default()
            .weight(500u16)
            .weight_device(vec![wd])
            .throttle_read_bps_device(vec![t(1000)])
            .throttle_write_iops_device(vec![t(0)])
            .build()
            .expect("b")
    }

    #[test]
    fn conversion() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn v1_files() {
        let f = Fake::v1();
        let cg = f.cgroup(&[
            "blkio:blkio.weight",
            "blkio:blkio.weight_device",
            "blkio:blkio.throttle.read_bps_device",
            "blkio:blkio.throttle.write_iops_device",
        ]);
        apply(&cg, &blk()).expect("apply");
        let d = cg.v1_path("blkio").expect("blkio");
        assert_eq!(read(&d.join("blkio.weight")), "500");
        assert_eq!(read(&d.join("blkio.weight_device")), "8:16 300");
        assert_eq!(read(&d.join("blkio.throttle.read_bps_device")), "8:0 1000");
        assert_eq!(read(&d.join("blkio.throttle.write_iops_device")), "8:0 0");
    }

    #[test]
    fn v2_files() {
        let f = Fake::v2();
        let cg = f.cgroup(&["io.weight", "io.max"]);
        apply(&cg, &blk()).expect("apply");
        let d = cg.unified_path().expect("u");
        // Fake files keep only the last write.
        assert_eq!(read(&d.join("io.weight")), "8:16 2930");
        assert_eq!(read(&d.join("io.max")), "8:0 wiops=max");
        touch(d, &["io.bfq.weight"]);
        apply(
            &cg,
            &LinuxBlockIoBuilder::default()
                .weight(700u16)
                .build()
                .expect("b"),
        )
        .expect("apply");
        assert_eq!(read(&d.join("io.bfq.weight")), "700");
    }
}
