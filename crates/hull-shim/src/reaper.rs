//! Child reaping for a subreaper process.
//!
//! The shim is a child subreaper, so every container process (init, execs,
//! their orphans) and every `hullc` invocation ends up as our child. A single
//! thread reaps them all with `waitpid(-1)`; callers that spawned a child ask
//! for its exit by pid instead of calling `wait` themselves (which would race
//! with the reaper and get ECHILD).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

/// Exits nobody asked for yet (e.g. orphans reparented to us) are kept this
/// long so a late `wait_pid` still finds them, then dropped oldest first.
const MAX_UNCLAIMED: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot become a child subreaper")]
    Subreaper(#[source] std::io::Error),
    #[error("cannot install the SIGCHLD handler")]
    Signal(#[source] std::io::Error),
    #[error("cannot start the reaper thread")]
    Thread(#[source] std::io::Error),
}

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// Exit code, or 128 + signal number when killed by a signal (shell
    /// convention, which is also what containerd reports).
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Default)]
struct State {
    unclaimed: HashMap<i32, Exit>,
    order: VecDeque<i32>,
    watchers: HashMap<i32, Sender<Exit>>,
}

/// The process-wide reaper. Create it once with [`Reaper::start`].
#[derive(Default)]
pub struct Reaper {
    state: Mutex<State>,
    cv: Condvar,
}

impl Reaper {
    /// Marks this process a child subreaper (when `subreaper`) and starts the
    /// reaping thread.
    pub fn start(subreaper: bool) -> Result<Arc<Reaper>, Error> {
        if subreaper {
            // SAFETY: prctl with integer arguments only; no memory is passed.
            let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            if rc != 0 {
                return Err(Error::Subreaper(std::io::Error::last_os_error()));
            }
        }
        let mut signals =
            signal_hook::iterator::Signals::new([libc::SIGCHLD]).map_err(Error::Signal)?;
        let reaper = Arc::new(Reaper::default());
        let r = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // A child may have exited before the handler was installed.
                r.reap_all();
                for _ in signals.forever() {
                    r.reap_all();
                }
            })
            .map_err(Error::Thread)?;
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock aborts the process (panic=abort in
        // release), so a poisoned lock only happens in tests; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reap_all(&self) {
        loop {
            let mut raw = 0;
            // SAFETY: `raw` is a valid out pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let status = if libc::WIFEXITED(raw) {
                libc::WEXITSTATUS(raw) as u32
            } else if libc::WIFSIGNALED(raw) {
                128 + libc::WTERMSIG(raw) as u32
            } else {
                continue;
            };
            self.deliver(Exit {
                pid,
                status,
                at: SystemTime::now(),
            });
        }
    }

    fn deliver(&self, exit: Exit) {
        let mut st = self.lock();
        if let Some(tx) = st.watchers.remove(&exit.pid) {
            // The receiver may be gone (shim shutting down); nothing to do then.
            let _ = tx.send(exit);
            return;
        }
        if st.unclaimed.insert(exit.pid, exit).is_none() {
            st.order.push_back(exit.pid);
        }
        while st.order.len() > MAX_UNCLAIMED {
            if let Some(old) = st.order.pop_front() {
                st.unclaimed.remove(&old);
            }
        }
        drop(st);
        self.cv.notify_all();
    }

    fn take(st: &mut State, pid: i32) -> Option<Exit> {
        let e = st.unclaimed.remove(&pid)?;
        st.order.retain(|p| *p != pid);
        Some(e)
    }

    /// Blocks until `pid` (a child we spawned) has exited.
    pub fn wait_pid(&self, pid: i32) -> Exit {
        let mut st = self.lock();
        loop {
            if let Some(e) = Self::take(&mut st, pid) {
                return e;
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The exit of `pid` if it has already been reaped, without blocking.
    pub fn try_pid(&self, pid: i32) -> Option<Exit> {
        Self::take(&mut self.lock(), pid)
    }

    /// Sends the exit of `pid` to `tx` once it happens (at once when it
    /// already did). Used for long-lived container processes.
    pub fn watch(&self, pid: i32, tx: Sender<Exit>) {
        let mut st = self.lock();
        match Self::take(&mut st, pid) {
            Some(e) => {
                let _ = tx.send(e);
            }
            None => {
                st.watchers.insert(pid, tx);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::zombie_processes)]
mod tests {
    use super::*;

    #[test]
    fn reaps_spawned_children() {
        let r = Reaper::start(false).unwrap();
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let e = r.wait_pid(child.id() as i32);
        assert_eq!(e.status, 7);
        let child = std::process::Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        r.watch(child.id() as i32, tx);
        assert_eq!(rx.recv().unwrap().status, 137);
    }
}
