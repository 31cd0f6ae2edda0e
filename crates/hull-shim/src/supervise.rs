//! Restart policies and healthchecks, applied by the shim itself: hull has no daemon, and
//! the shim is the one process that lives as long as the container and sees its exits.
//!
//! hull (hull-engine's `policy`) leaves [`POLICY_FILE`] in the bundle: the restart policy,
//! the healthcheck, and the command that restarts the container. The shim reads it at each
//! start and exit (so `hull update --restart` applies at once, and a new shim after a
//! `kill -9` of this one finds the same policy), and writes what it learns beside it:
//! [`RESTART_STATE`] (`RestartCount`) and [`HEALTH_STATE`] (docker's `State.Health`).
//! A bundle without the file (containerd's) is left alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::reaper::Reaper;
use crate::tasks::Tasks;
use crate::{health, restart};

pub const POLICY_FILE: &str = "hull-policy.json";
pub const RESTART_STATE: &str = "restart-state.json";
pub const HEALTH_STATE: &str = "health.json";
/// Flocked by whoever updates [`HEALTH_STATE`] (this shim, `hull healthcheck run`).
pub const HEALTH_LOCK: &str = ".health.lock";
/// Made by hull before a user's stop or kill: that exit is not restarted.
pub const MANUAL_STOP: &str = "manual-stop";

/// docker's `RestartPolicy`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RestartPolicy {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "MaximumRetryCount", default)]
    pub max_retries: u32,
}

/// docker's `Healthcheck` (durations in nanoseconds, 0 for the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: i64,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub start_period: i64,
    #[serde(default)]
    pub retries: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub restart_cmd: Vec<String>,
}

pub fn read_policy(bundle: &Path) -> Option<Policy> {
    serde_json::from_slice(&std::fs::read(bundle.join(POLICY_FILE)).ok()?).ok()
}

/// Writes `v` as `bundle/name` through a temporary file and a rename, so that hull never
/// reads half a file.
pub fn write_json(bundle: &Path, name: &str, v: &impl Serialize) {
    let tmp = bundle.join(format!(".{name}.tmp"));
    let data = serde_json::to_vec(v).unwrap_or_default();
    let res = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, bundle.join(name)));
    if let Err(e) = res {
        log::warn!("cannot write {}: {e}", bundle.join(name).display());
    }
}

struct Entry {
    bundle: PathBuf,
    started: Instant,
    /// docker's back-off: 0 before the first restart, then 100 ms doubling.
    delay: Duration,
    /// Bumped at each start and exit: a health loop of an older run stops.
    run: Arc<AtomicU64>,
}

/// The policy side of one shim: per container, its bundle and its back-off.
pub struct Supervisor {
    reaper: Arc<Reaper>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Supervisor {
    pub fn new(reaper: Arc<Reaper>) -> Self {
        Supervisor {
            reaper,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A task was created from `bundle` (again, for a restart: the back-off is kept).
    pub fn created(&self, id: &str, bundle: &Path) {
        let mut m = self.lock();
        let e = m.entry(id.into()).or_insert_with(|| Entry {
            bundle: bundle.into(),
            started: Instant::now(),
            delay: Duration::ZERO,
            run: Arc::new(AtomicU64::new(0)),
        });
        e.bundle = bundle.into();
    }

    /// The container's init started: its healthcheck begins.
    pub fn started(&self, id: &str, tasks: &Arc<Tasks>) {
        let (bundle, run, gen) = {
            let mut m = self.lock();
            let Some(e) = m.get_mut(id) else { return };
            e.started = Instant::now();
            let gen = e.run.fetch_add(1, Ordering::SeqCst) + 1;
            (e.bundle.clone(), Arc::clone(&e.run), gen)
        };
        let Some(check) = read_policy(&bundle).and_then(|p| p.healthcheck) else {
            return;
        };
        let probe = health::Probe {
            id: id.into(),
            bundle,
            hullc: tasks.hullc().clone(),
            reaper: Arc::clone(&self.reaper),
            tasks: Arc::downgrade(tasks),
        };
        health::spawn(probe, check, run, gen);
    }

    /// The container's init exited with `status`: its healthcheck ends, and the restart
    /// policy decides whether it comes back.
    pub fn exited(&self, id: &str, status: u32) {
        let (bundle, delay) = {
            let mut m = self.lock();
            let Some(e) = m.get_mut(id) else { return };
            e.run.fetch_add(1, Ordering::SeqCst);
            e.delay = restart::next_delay(e.delay, e.started.elapsed());
            (e.bundle.clone(), e.delay)
        };
        if read_policy(&bundle).is_none() {
            return;
        }
        restart::spawn(bundle, status, delay, Arc::clone(&self.reaper));
    }
}
