//! `Cgroup::apply`: all of linux.resources, in runc's order.

use std::collections::HashMap;

use crate::fs::{has, write};
use crate::{
    blkio, cpu, devices, hugetlb, memory, network, pids, stats, Cgroup, Error, LinuxResources,
    Mode, Stats,
};

impl Cgroup {
    /// Apply every resource in `r` (also used for `update`). Unset resources
    /// are left alone; a set resource whose controller the host lacks is an
    /// error. `unified` goes last so its raw writes win, as in runc.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        if let Some(d) = r.devices() {
            devices::apply(self, d)?;
        }
        if let Some(m) = r.memory() {
            memory::apply(self, m)?;
        }
        if let Some(c) = r.cpu() {
            cpu::apply(self, c)?;
        }
        if let Some(p) = r.pids() {
            pids::apply(self, p)?;
        }
        if let Some(b) = r.block_io() {
            blkio::apply(self, b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            hugetlb::apply(self, h)?;
        }
        if let Some(n) = r.network() {
            network::apply(self, n)?;
        }
        if let Some(rdma) = r.rdma() {
            network::apply_rdma(self, rdma)?;
        }
        if let Some(u) = r.unified() {
            self.apply_unified(u)?;
        }
        Ok(())
    }

    /// Raw cgroup v2 file writes. On v1/hybrid hosts only files that exist in
    /// the unified directory are accepted (runc refuses `unified` on v1).
    fn apply_unified(&self, u: &HashMap<String, String>) -> Result<(), Error> {
        if u.is_empty() {
            return Ok(());
        }
        let Some(dir) = &self.unified else {
            return Err(Error::UnifiedOnV1(
                "no cgroup v2 hierarchy is mounted".into(),
            ));
        };
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            if k.is_empty() || k.contains('/') || k.contains("..") {
                return Err(Error::InvalidResource {
                    resource: "unified",
                    reason: format!("invalid key {k:?}"),
                });
            }
            if self.mode != Mode::V2 && !has(&dir.path, k) {
                return Err(Error::UnifiedOnV1(format!(
                    "{k} does not exist in the unified hierarchy ({}) of this {:?} host",
                    dir.path.display(),
                    self.mode
                )));
            }
            // On v2 a missing file fails the write with ENOENT naming it;
            // a controller file "ctrl.x" may need the controller enabled first.
            if self.mode == Mode::V2 && !has(&dir.path, k) {
                if let Some((ctrl, _)) = k.split_once('.') {
                    if let Some(static_ctrl) = V2_CONTROLLERS.iter().find(|c| **c == ctrl) {
                        self.need("unified", static_ctrl, static_ctrl)?;
                    }
                }
            }
            let v = u.get(k).map(String::as_str).unwrap_or_default();
            write(&dir.path, k, v)?;
        }
        Ok(())
    }

    /// Current usage, shaped like runc's `events --stats` data.
    pub fn stats(&self) -> Result<Stats, Error> {
        stats::collect(self)
    }

    /// Number of OOM kills in this cgroup so far (0 without a memory controller).
    pub fn oom_kill_count(&self) -> Result<u64, Error> {
        stats::oom_kill_count(self)
    }
}

const V2_CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use crate::LinuxResources;

    fn unified(k: &str, v: &str) -> LinuxResources {
        let mut r = LinuxResources::default();
        r.set_unified(Some([(k.to_string(), v.to_string())].into_iter().collect()));
        r
    }

    #[test]
    fn v2_unified_writes() {
        let f = Fake::v2();
        let cg = f.cgroup(&["memory.high"]);
        cg.apply(&unified("memory.high", "1000")).expect("apply");
        assert_eq!(
            read(&cg.unified_path().expect("u").join("memory.high")),
            "1000"
        );
        assert!(cg.apply(&unified("../memory.high", "1")).is_err());
        assert!(cg.apply(&unified("a/b", "1")).is_err());
        let e = cg
            .apply(&unified("nope.file", "1"))
            .expect_err("missing file");
        assert!(e.to_string().contains("nope.file"), "{e}");
    }

    #[test]
    fn hybrid_unified_needs_existing_file() {
        let f = Fake::hybrid();
        let cg = f.cgroup(&["cgroup.max.depth"]);
        cg.apply(&unified("cgroup.max.depth", "3"))
            .expect("exists in unified");
        assert!(cg.apply(&unified("memory.max", "1")).is_err());
        let f = Fake::v1();
        let cg = f.cgroup(&[]);
        assert!(cg.apply(&unified("memory.max", "1")).is_err());
    }

    #[test]
    fn empty_resources_touch_nothing() {
        let f = Fake::v2();
        std::fs::write(f.p("cgroup.controllers"), "").expect("w");
        let cg = f.cgroup(&[]);
        cg.apply(&LinuxResources::default()).expect("nothing to do");
    }
}
