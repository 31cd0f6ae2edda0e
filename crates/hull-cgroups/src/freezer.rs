//! Freezing and killing: v1 freezer.state, v2 cgroup.freeze / cgroup.kill.

use std::path::Path;
use std::time::Duration;

use crate::fs::{self as cgfs, has, write};
use crate::{Cgroup, Error, Mode};

const TIMEOUT: Duration = Duration::from_secs(10);

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    fn freezer(&self) -> Option<Freezer<'_>> {
        if let Some(d) = self.v1.get("freezer") {
            return Some(Freezer::V1(&d.path));
        }
        let u = self.unified.as_ref()?;
        // cgroup.freeze exists in every non-root v2 cgroup since Linux 5.2.
        has(&u.path, "cgroup.freeze").then_some(Freezer::V2(&u.path))
    }

    /// Freeze every task and wait until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    /// Thaw the cgroup and wait until it is no longer frozen.
    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        match self.freezer() {
            None => Err(Error::ControllerMissing {
                resource: "freeze",
                controller: "freezer",
            }),
            Some(Freezer::V1(d)) => {
                let want = if frozen { "FROZEN" } else { "THAWED" };
                // v1 passes through FREEZING and may stall on a task that
                // is in an uninterruptible sleep; runc re-writes the state
                // while polling, which nudges the kernel to retry.
                let ok = cgfs::poll(TIMEOUT, || {
                    write(d, "freezer.state", want)?;
                    Ok(cgfs::read(&d.join("freezer.state"))? == want)
                })?;
                if !ok && frozen {
                    // Leave it usable rather than half frozen, as runc does.
                    let _ = write(d, "freezer.state", "THAWED");
                }
                if ok {
                    Ok(())
                } else {
                    Err(Error::Timeout {
                        path: d.join("freezer.state"),
                        state: want,
                    })
                }
            }
            Some(Freezer::V2(d)) => {
                write(d, "cgroup.freeze", if frozen { "1" } else { "0" })?;
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                let events = d.join("cgroup.events");
                let ok = cgfs::poll(TIMEOUT, || {
                    Ok(cgfs::read(&events)?.lines().any(|l| l.trim() == want))
                })?;
                if ok {
                    Ok(())
                } else {
                    if frozen {
                        let _ = write(d, "cgroup.freeze", "0");
                    }
                    Err(Error::Timeout {
                        path: events,
                        state: want,
                    })
                }
            }
        }
    }

    /// Whether the cgroup is frozen (false when there is no freezer).
    pub fn is_frozen(&self) -> Result<bool, Error> {
        match self.freezer() {
            None => Ok(false),
            Some(Freezer::V1(d)) => Ok(cgfs::read(&d.join("freezer.state"))? == "FROZEN"),
            // The requested state, as runc reports it; cgroup.events may lag.
            Some(Freezer::V2(d)) => Ok(cgfs::read(&d.join("cgroup.freeze"))? == "1"),
        }
    }

    /// Signal every process in the cgroup (recursively).
    ///
    /// Pure v2 with SIGKILL uses cgroup.kill (Linux 5.14), which is atomic.
    /// Otherwise the cgroup is frozen around the pid walk so that no task can
    /// fork a child we miss (runc's signalAllProcesses); a signal sent to a
    /// frozen task is delivered when it is thawed.
    pub fn kill_all(&self, sig: i32) -> Result<(), Error> {
        if let (Mode::V2, Some(u), libc::SIGKILL) = (self.mode, &self.unified, sig) {
            if has(&u.path, "cgroup.kill") {
                return write(&u.path, "cgroup.kill", "1");
            }
        }
        let frozen = match self.freezer() {
            Some(_) => self
                .freeze()
                .map_err(|e| tracing::warn!(error = %e, "freeze before kill"))
                .is_ok(),
            None => false,
        };
        let res = self.signal_each(sig);
        if frozen {
            self.thaw()?;
        }
        res
    }

    fn signal_each(&self, sig: i32) -> Result<(), Error> {
        let mut errs = Vec::new();
        for pid in self.pids()? {
            // SAFETY: kill(2) takes plain integers and touches no memory.
            let r = unsafe { libc::kill(pid, sig) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                // Already gone between listing and signalling: not an error.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    errs.push(Error::Signal {
                        pid,
                        signal: sig,
                        source: e,
                    });
                }
            }
        }
        Error::collect(errs)
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::*;
    use std::fs;

    #[test]
    fn v1_freeze_thaw() {
        let f = Fake::v1();
        let cg = f.cgroup(&["freezer:freezer.state"]);
        assert!(!cg.is_frozen().expect("state"));
        cg.freeze().expect("freeze");
        assert!(cg.is_frozen().expect("state"));
        cg.thaw().expect("thaw");
        assert_eq!(
            read(&cg.v1_path("freezer").expect("f").join("freezer.state")),
            "THAWED"
        );
    }

    #[test]
    fn v2_freeze_waits_for_events() {
        let f = Fake::v2();
        let cg = f.cgroup(&["cgroup.freeze"]);
        let d = cg.unified_path().expect("u").to_path_buf();
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").expect("w");
        cg.freeze().expect("freeze");
        assert!(cg.is_frozen().expect("state"));
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").expect("w");
        cg.thaw().expect("thaw");
        assert_eq!(read(&d.join("cgroup.freeze")), "0");
    }

    #[test]
    fn v2_kill_uses_cgroup_kill() {
        let f = Fake::v2();
        let cg = f.cgroup(&["cgroup.kill"]);
        cg.kill_all(libc::SIGKILL).expect("kill");
        assert_eq!(
            read(&cg.unified_path().expect("u").join("cgroup.kill")),
            "1"
        );
    }

    #[test]
    fn no_freezer() {
        let f = Fake::v2();
        let cg = f.cgroup(&[]);
        assert!(!cg.is_frozen().expect("no freezer"));
        assert!(cg.freeze().is_err());
        // Empty cgroup, no freezer: signalling nobody is fine.
        cg.kill_all(libc::SIGTERM).expect("kill");
    }
}
