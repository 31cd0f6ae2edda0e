//! Restart policies and healthchecks: the flags (`--restart`, `--health-*`), the image's
//! `Healthcheck`, and the files through which the engine and the container's shim share
//! them. There is no daemon: the shim applies both (hull-shim's `supervise`), so everything
//! it needs is in the bundle directory, and what it learns is written back there.
//!
//! - [`POLICY_FILE`], written by the engine (create, `update --restart`): the policy, the
//!   effective healthcheck, and the command the shim runs to restart the container.
//! - [`RESTART_STATE`], written by `start --by-policy`, and [`HEALTH_STATE`], written by the
//!   shim and `healthcheck run` under [`HEALTH_LOCK`] (temp file + rename).
//! - [`MANUAL_STOP`], made by the engine before a user's `stop`/`kill`/`rm -f`: the shim
//!   does not restart a container the user stopped (docker's `HasBeenManuallyStopped`).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const POLICY_FILE: &str = "hull-policy.json";
pub const RESTART_STATE: &str = "restart-state.json";
pub const HEALTH_STATE: &str = "health.json";
/// Flocked by whoever updates [`HEALTH_STATE`]: the shim, `healthcheck run`.
pub const HEALTH_LOCK: &str = ".health.lock";
pub const MANUAL_STOP: &str = "manual-stop";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --restart value {0:?}: use no, on-failure[:N], always or unless-stopped")]
    Restart(String),
    #[error("invalid --restart value {0:?}: only on-failure takes a maximum retry count")]
    RestartCount(String),
    #[error("invalid {flag} value {value:?}: {why}")]
    Health {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("conflicting options: --no-healthcheck and {0}")]
    NoHealthcheck(&'static str),
    #[error("conflicting options: --restart {0} and --rm (a removed container cannot restart)")]
    AutoRemove(String),
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// docker's `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no` (stored as docker does: the empty string), `on-failure`, `always`, `unless-stopped`.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "MaximumRetryCount")]
    pub max_retries: u32,
}

impl RestartPolicy {
    /// Whether `start --all --restart-policy` (the boot-time start) brings it back.
    pub fn at_boot(&self, manually_stopped: bool) -> bool {
        match self.name.as_str() {
            "always" => true,
            "unless-stopped" => !manually_stopped,
            _ => false,
        }
    }
    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }
}

/// `--restart` as docker takes it.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, Error> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let name = match name {
        "no" | "" => "",
        "on-failure" | "always" | "unless-stopped" => name,
        _ => return Err(Error::Restart(s.into())),
    };
    let max_retries = match count {
        None => 0,
        Some(_) if name != "on-failure" => return Err(Error::RestartCount(s.into())),
        Some(c) => c.parse().map_err(|_| Error::Restart(s.into()))?,
    };
    Ok(RestartPolicy {
        name: name.into(),
        max_retries,
    })
}

/// The `--health-*` flags as given; `None` keeps the image's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    /// A whole docker `Test` (the API's `Config.Healthcheck`); `cmd` wins over it.
    #[serde(default)]
    pub test: Option<Vec<String>>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub start_period_ns: Option<i64>,
    pub retries: Option<u32>,
    pub none: bool,
}

/// docker's `Config.Healthcheck`: durations in nanoseconds, 0 meaning the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["CMD", args...]`, `["CMD-SHELL", command]` or `["NONE"]`.
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

/// A Go duration as docker's flags take it: `30s`, `1m30s`, `500ms`, `1h`, `0`.
fn parse_duration(flag: &'static str, s: &str) -> Result<i64, Error> {
    let bad = |why| Error::Health {
        flag,
        value: s.into(),
        why,
    };
    if s == "0" {
        return Ok(0);
    }
    let ns = crate::time::go_duration_ns(s).map_err(bad)?;
    i64::try_from(ns).map_err(|_| bad("too long"))
}

/// A `--health-interval`/`--health-timeout`/`--health-start-period`: docker refuses
/// anything between 0 and 1 ms (the check would spin).
pub fn parse_health_duration(flag: &'static str, s: &str) -> Result<i64, Error> {
    let ns = parse_duration(flag, s)?;
    if ns != 0 && ns < 1_000_000 {
        return Err(Error::Health {
            flag,
            value: s.into(),
            why: "must be 0 (the default) or at least 1ms",
        });
    }
    Ok(ns)
}

impl HealthFlags {
    /// The flags an API client's `Config.Healthcheck` stands for (0: keep the image's).
    pub fn from_api(h: &Healthcheck) -> HealthFlags {
        let set = |v: i64| (v > 0).then_some(v);
        HealthFlags {
            none: h.test.first().is_some_and(|t| t == "NONE"),
            test: (!h.test.is_empty() && h.test[0] != "NONE").then(|| h.test.clone()),
            interval_ns: set(h.interval),
            timeout_ns: set(h.timeout),
            start_period_ns: set(h.start_period),
            retries: (h.retries > 0).then_some(h.retries),
            cmd: None,
        }
    }

    /// Refuses `--no-healthcheck` together with another health flag (docker does too).
    pub fn check(&self) -> Result<(), Error> {
        if !self.none {
            return Ok(());
        }
        let set = [
            (self.cmd.is_some(), "--health-cmd"),
            (self.interval_ns.is_some(), "--health-interval"),
            (self.timeout_ns.is_some(), "--health-timeout"),
            (self.start_period_ns.is_some(), "--health-start-period"),
            (self.retries.is_some(), "--health-retries"),
        ];
        match set.iter().find(|(on, _)| *on) {
            Some((_, flag)) => Err(Error::NoHealthcheck(flag)),
            None => Ok(()),
        }
    }

    /// The healthcheck a container runs: the image's (`image`, its config's `Healthcheck`),
    /// overridden field by field by the flags; `None` for none at all.
    pub fn effective(&self, image: Option<&Value>) -> Option<Healthcheck> {
        if self.none {
            return None;
        }
        let mut h: Healthcheck = image
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if let Some(t) = &self.test {
            h.test = t.clone();
        }
        if let Some(c) = &self.cmd {
            h.test = vec!["CMD-SHELL".into(), c.clone()];
        }
        h.interval = self.interval_ns.unwrap_or(h.interval);
        h.timeout = self.timeout_ns.unwrap_or(h.timeout);
        h.start_period = self.start_period_ns.unwrap_or(h.start_period);
        h.retries = self.retries.unwrap_or(h.retries);
        match h.test.first().map(String::as_str) {
            None | Some("NONE") => None,
            _ => Some(h),
        }
    }
}

/// What [`POLICY_FILE`] holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyFile {
    pub restart_policy: RestartPolicy,
    pub healthcheck: Option<Healthcheck>,
    /// Run by the shim to restart the container: `hull --root R start --by-policy ID`, which
    /// makes the task anew as `hull start` does (network attach included).
    pub restart_cmd: Vec<String>,
}

/// Writes `f` into the bundle `dir` atomically (the shim may be reading it).
pub fn write_policy(dir: &Path, f: &PolicyFile) -> Result<(), Error> {
    let dst = dir.join(POLICY_FILE);
    let tmp = dir.join(format!(".{POLICY_FILE}.{}", std::process::id()));
    let data = serde_json::to_vec_pretty(f).unwrap_or_default();
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Write { path, source }
    };
    std::fs::write(&tmp, data).map_err(err(&tmp))?;
    std::fs::rename(&tmp, &dst).map_err(err(&dst))
}

pub fn read_policy(dir: &Path) -> Option<PolicyFile> {
    serde_json::from_slice(&std::fs::read(dir.join(POLICY_FILE)).ok()?).ok()
}

/// `RestartCount` as the shim last wrote it (0 when it never restarted the container).
pub fn restart_count(dir: &Path) -> u64 {
    std::fs::read(dir.join(RESTART_STATE))
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|v| v["RestartCount"].as_u64())
        .unwrap_or(0)
}

/// Writes `RestartCount` (temp file + rename: the shim reads it at each exit). Best
/// effort, as the shim's own writes of it were.
pub fn set_restart_count(dir: &Path, n: u64) {
    let tmp = dir.join(format!(".{RESTART_STATE}.{}", std::process::id()));
    let data = serde_json::json!({ "RestartCount": n }).to_string();
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(RESTART_STATE));
    }
}

/// docker's `State.Health` as the shim last wrote it.
pub fn health(dir: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join(HEALTH_STATE)).ok()?).ok()
}

/// The health status (`starting`, `healthy`, `unhealthy`) for `ps`.
pub fn health_status(dir: &Path) -> Option<String> {
    health(dir)?["Status"].as_str().map(str::to_string)
}

pub fn manually_stopped(dir: &Path) -> bool {
    dir.join(MANUAL_STOP).exists()
}

/// Marks the container stopped by the user (before the signal, so the shim sees it at
/// the exit), or clears the mark (a user's start).
pub fn set_manual_stop(dir: &Path, on: bool) {
    let p = dir.join(MANUAL_STOP);
    let _ = if on {
        std::fs::write(&p, b"")
    } else {
        std::fs::remove_file(&p)
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restart_values() {
        assert_eq!(parse_restart("no").unwrap().name, "");
        let p = parse_restart("on-failure:3").unwrap();
        assert_eq!((p.name.as_str(), p.max_retries), ("on-failure", 3));
        assert_eq!(parse_restart("always").unwrap().max_retries, 0);
        for bad in ["sometimes", "always:2", "on-failure:x", "on-failure:-1"] {
            assert!(parse_restart(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let d = |s| parse_health_duration("--health-interval", s);
        assert_eq!(d("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(d("500ms").unwrap(), 500_000_000);
        assert_eq!(d("0").unwrap(), 0);
        for bad in ["", "10", "5x", "-1s", "10us", "s"] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_image() {
        let img = serde_json::json!({"Test": ["CMD", "true"], "Interval": 5, "Retries": 2});
        let f = HealthFlags {
            retries: Some(7),
            ..Default::default()
        };
        let h = f.effective(Some(&img)).unwrap();
        assert_eq!((h.test[0].as_str(), h.interval, h.retries), ("CMD", 5, 7));
        let none = HealthFlags {
            none: true,
            ..Default::default()
        };
        assert!(none.effective(Some(&img)).is_none());
        assert!(none.check().is_ok());
        let img = serde_json::json!({"Test": ["NONE"]});
        assert!(HealthFlags::default().effective(Some(&img)).is_none());
    }
}
