//! The engine's side of restart policies and healthchecks (see [`crate::policy`]): the
//! policy file in the bundle, the start the shim asks for (`start --by-policy`), the
//! boot-time `start --all --restart-policy`, and `update --restart`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use serde_json::Value;

use crate::engine::{Engine, Error, State};
use crate::policy::{self, PolicyFile, RestartPolicy};
use crate::record::{ExitInfo, Record};
use crate::shim::TaskStatus;

/// A container's run lock (`ROOT/ctr/ID/.run.lock`, an flock): a start holds it while it
/// makes the task anew and starts it. Recording an exit takes it without waiting and gives
/// up when a start holds it: with restart policies a start comes unasked (from the shim), and
/// an exit recorded (network released) from a stale look at the task would otherwise tear
/// down the network the restart just set up, or save an old record over the new one.
pub(crate) struct RunLock(#[allow(dead_code)] File);

/// How long a stop waits for a start under way before it sets its mark anyway.
const MARK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why `start --by-policy` did not start a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The user stopped or killed it since the exit the shim saw.
    ManuallyStopped,
    /// It runs (someone else started it first).
    Running,
}

/// What `start --all --restart-policy` did: per container tried, its name and the outcome.
pub type PolicyStarts = Vec<(String, Result<u32, Error>)>;

impl Engine {
    /// Writes the bundle's policy file for `rec`; `image_health` is the image's
    /// `Healthcheck`. The restart command is this `hull` with the same root.
    pub(crate) fn write_policy(
        &self,
        rec: &Record,
        image_health: Option<&Value>,
        dir: &Path,
    ) -> Result<(), Error> {
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        // No hull binary found (an embedder of the engine): the shim cannot restart, so
        // the policy stays recorded but inert; healthchecks still run.
        let restart_cmd = crate::binaries::find("hull", "HULL_CLI")
            .map(|bin| {
                vec![
                    bin.to_string_lossy().into_owned(),
                    "--root".into(),
                    root.to_string_lossy().into_owned(),
                    "start".into(),
                    "--by-policy".into(),
                    rec.id.clone(),
                ]
            })
            .unwrap_or_default();
        let f = PolicyFile {
            restart_policy: rec.options.restart.clone(),
            healthcheck: rec.options.health.effective(image_health),
            restart_cmd,
        };
        policy::write_policy(dir, &f).map_err(Error::from)
    }

    /// Whether `r`'s shim answers. A container whose shim was killed (kill -9) cannot be
    /// stopped, waited for or restarted by policy any more: `start` makes it anew.
    pub(crate) fn shim_alive(&self, r: &Record) -> bool {
        let ok = self.shim(r).and_then(|s| Ok(s.state("")?)).is_ok();
        if !ok {
            self.forget_shim(&r.id);
        }
        ok
    }

    /// The start the shim runs for a restart policy: as [`Engine::start`], but it keeps the
    /// `RestartCount` (and adds this restart to it), and a container the user stopped
    /// meanwhile stays stopped.
    ///
    /// The stop mark is looked at under the run lock, which a stop or kill also takes to set
    /// it: a stop lands either before (seen here: no start) or after the start (it finds the
    /// container running and stops it), never between the look and the start.
    pub fn start_by_policy(&self, r: &Record) -> Result<Result<u32, Skipped>, Error> {
        let dir = self.dir(r);
        test_hold(&dir, "before");
        let run = self.run_lock(&r.id, true)?;
        if policy::manually_stopped(&dir) {
            return Ok(Err(Skipped::ManuallyStopped));
        }
        test_hold(&dir, "after");
        // Counted before the start: a run that exits at once is decided on by the shim
        // (`on-failure:N`) with this restart in the count. Only a start that is made counts.
        let count = || policy::set_restart_count(&dir, policy::restart_count(&dir) + 1);
        match self.start_locked(r, &run, count) {
            Ok(pid) => Ok(Ok(pid)),
            Err(Error::AlreadyStarted(_)) => Ok(Err(Skipped::Running)),
            Err(e) => Err(e),
        }
    }

    /// `start --all --restart-policy` (run at boot by a service manager): every container
    /// whose policy is `always`, or `unless-stopped` and not stopped by the user, that does
    /// not run under a live shim.
    pub fn start_all_by_policy(&self) -> Result<PolicyStarts, Error> {
        let mut out = Vec::new();
        for r in self.containers.list()? {
            let dir = self.dir(&r);
            if !r.options.restart.at_boot(policy::manually_stopped(&dir)) {
                continue;
            }
            let live = self.state(&r).is_live() && self.shim_alive(&r);
            if live {
                continue;
            }
            // docker's daemon start: an `always` container the user stopped comes back too.
            policy::set_manual_stop(&dir, false);
            out.push((r.name.clone(), self.start_task(&r, || {})));
        }
        Ok(out)
    }

    /// `update --restart`: the record and the bundle's policy file, which the shim reads
    /// at the next exit, so the change applies to a running container at once.
    pub fn update_restart(&self, r: &Record, p: &RestartPolicy) -> Result<(), Error> {
        let _lock = self.containers.lock()?;
        let mut r = self.containers.find(&r.id)?;
        if !p.is_none() && r.options.auto_remove {
            return Err(policy::Error::AutoRemove(p.name.clone()).into());
        }
        r.options.restart = p.clone();
        let dir = self.dir(&r);
        let mut f = policy::read_policy(&dir).unwrap_or_default();
        f.restart_policy = p.clone();
        policy::write_policy(&dir, &f)?;
        Ok(self.containers.save(&r)?)
    }

    /// Takes the run lock (waiting for it with `wait`). The lock is an flock, which belongs
    /// to the open file: taken a second time in this process it would wait for itself.
    pub(crate) fn run_lock(&self, id: &str, wait: bool) -> Result<RunLock, Error> {
        let p = self.containers.dir_of(id).join(".run.lock");
        let err = |source| Error::Io {
            what: "cannot lock",
            path: p.clone(),
            source,
        };
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(err)?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        // SAFETY: flock on a descriptor we own; closing it (drop) releases the lock.
        if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(RunLock(f))
    }

    /// The user's stop mark (`stop`, `kill`, `rm -f`), set under the run lock so that a
    /// policy's start under way is either over (and the caller then finds the container
    /// running) or sees the mark (see [`Engine::start_by_policy`]). Held only for this:
    /// the caller's own exit recording takes the lock again.
    ///
    /// Waited for at most [`MARK_WAIT`]: a start that hangs (a shim that does not answer)
    /// must not make `stop`, `kill` or `rm -f` hang with it; past that the mark is set
    /// without the lock.
    pub(crate) fn mark_stopped(&self, r: &Record) {
        let deadline = std::time::Instant::now() + MARK_WAIT;
        let _run = loop {
            match self.run_lock(&r.id, false) {
                Ok(l) => break Some(l),
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::WouldBlock
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break None,
            }
        };
        policy::set_manual_stop(&self.dir(r), true);
    }

    /// Records exit `e` of container `id` and releases its network, if it is still the
    /// container's state: no start under way (see [`RunLock`]) and the shim still reports
    /// that exit (or is gone, so nothing can start it behind our back).
    pub(crate) fn settle_exit(&self, id: &str, e: ExitInfo) {
        let Ok(_run) = self.run_lock(id, false) else {
            return;
        };
        let current = match self.shim_for(id).and_then(|s| Ok(s.state("")?)) {
            Ok(t) => matches!(t.status, TaskStatus::Stopped { at_ns, .. } if at_ns == e.at_ns),
            Err(_) => true,
        };
        let Ok(mut r) = self.containers.find(id) else {
            return;
        };
        if !current {
            return;
        }
        if r.exit != Some(e) {
            r.exit = Some(e);
            let _ = self.containers.save(&r);
        }
        self.release_after_exit(&r);
    }

    /// Whether a `start` must make the task anew under a new shim: the old shim is gone
    /// (killed, or the host rebooted) while the container was not known to have exited.
    pub(crate) fn orphaned(&self, r: &Record, st: &State) -> bool {
        !matches!(st, State::Exited(_)) && !self.shim_alive(r)
    }
}

/// A test hook: with `HULL_TEST_POLICY_HOLD=POINT` (inherited by the shim and the restart
/// command it runs), `start --by-policy` stops at `POINT` (`before` its look at the stop
/// mark, or `after` it, before the start), makes `DIR/.policy-hold` and waits (at most
/// 30 s) until it is removed, so that a test can land a `stop` there. Debug builds only (the
/// tests run those): a release build ignores the variable, so no environment can stall a
/// policy restart.
#[cfg(debug_assertions)]
fn test_hold(dir: &Path, point: &str) {
    if std::env::var_os("HULL_TEST_POLICY_HOLD").is_none_or(|v| v != point) {
        return;
    }
    let p = dir.join(".policy-hold");
    if std::fs::write(&p, b"").is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while p.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Release builds: the test hook above is compiled out.
#[cfg(not(debug_assertions))]
fn test_hold(_: &Path, _: &str) {}
