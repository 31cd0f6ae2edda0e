//! `healthcheck run`: the container's check run once now, as its shim runs it (an exec,
//! bounded by `--health-timeout`), and its result recorded in the bundle's
//! [`policy::HEALTH_STATE`] beside the shim's (under [`policy::HEALTH_LOCK`], which the
//! shim takes too), with docker's rules for the status (podman's `healthcheck run` records
//! its result the same way).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::engine::{Engine, Error};
use crate::exec::ExecOptions;
use crate::policy::{self, Healthcheck};
use crate::record::{self, Record};

/// docker's defaults.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept, and output kept per result.
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;
/// How long the output is read on after the check's exit.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// What one `healthcheck run` found.
pub struct CheckRun {
    /// The check's exit status; -1 when it timed out.
    pub exit_code: i64,
    /// The status recorded after it (`healthy`, `unhealthy`, `starting`).
    pub status: String,
}

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// Copies `from` to `to` until EOF, keeping the first [`MAX_OUTPUT`] bytes in `kept`.
fn tee(mut from: File, mut to: impl Write + Send + 'static, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let _ = to.write_all(&buf[..n]).and_then(|()| to.flush());
        let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_OUTPUT.saturating_sub(k.len());
        k.extend_from_slice(&buf[..n.min(room)]);
    }
}

impl Engine {
    /// Runs `r`'s healthcheck `h` once (its output on our stdout/stderr), records the result
    /// and journals a change of status, as the shim does for its own checks.
    pub fn run_healthcheck(&self, r: &Record, h: &Healthcheck) -> Result<CheckRun, Error> {
        let cmd = match h.test.split_first() {
            Some((k, rest)) if k == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((_, rest)) => rest.to_vec(),
            None => Vec::new(),
        };
        let o = ExecOptions {
            cmd,
            env: Vec::new(),
            user: None,
            workdir: None,
            stdin: false,
            tty: false,
            console_size: None,
        };
        let timeout = dur(h.timeout, DEFAULT_TIMEOUT);
        let start_ns = record::now_ns();
        // A check that cannot be run is a failed one (docker: -1 and the error).
        let (exit_code, output) = match crate::exec_io::start(self, r, &o) {
            Ok(s) => finish(s, timeout)?,
            Err(e @ Error::NotRunning(_)) => return Err(e),
            Err(e) => (-1, e.to_string()),
        };
        let result = json!({
            "Start": crate::time::rfc3339(start_ns),
            "End": crate::time::rfc3339(record::now_ns()),
            "ExitCode": exit_code,
            "Output": output,
        });
        // docker: failures within the start period do not count while still starting.
        let since_start = r.started_ns.map_or(i128::MAX, |s| start_ns - s);
        let counts = since_start >= i128::from(h.start_period.max(0));
        let retries = if h.retries == 0 {
            DEFAULT_RETRIES
        } else {
            h.retries
        };
        let (before, status) = record_result(&self.dir(r), result, retries, counts)?;
        if before != status {
            self.emit(r, &format!("health_status: {status}"), &[]);
        }
        Ok(CheckRun { exit_code, status })
    }
}

/// Copies the output of the started check `s` and waits for it, killing it at `timeout`;
/// its exit status (-1 when it timed out) and output (the first [`MAX_OUTPUT`] bytes).
fn finish(s: crate::exec_io::Started, timeout: Duration) -> Result<(i64, String), Error> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done) = std::sync::mpsc::channel();
    let mut copiers = 1;
    {
        let (k, tx) = (Arc::clone(&kept), done_tx.clone());
        std::thread::spawn(move || {
            tee(s.stdout, std::io::stdout(), k);
            tx.send(())
        });
    }
    if let Some(err) = s.stderr {
        copiers += 1;
        let (k, tx) = (Arc::clone(&kept), done_tx);
        std::thread::spawn(move || {
            tee(err, std::io::stderr(), k);
            tx.send(())
        });
    }
    let code = wait_or_kill(&s.shim, &s.exec_id, timeout);
    // The output's end, but not for ever: a process the check left in the background
    // (`cmd &`) may hold it open. Its copier is then left behind (this command ends soon).
    let grace = std::time::Instant::now() + OUTPUT_GRACE;
    for _ in 0..copiers {
        let left = grace.saturating_duration_since(std::time::Instant::now());
        if done.recv_timeout(left).is_err() {
            break;
        }
    }
    // Deleted whatever happened: a failed wait or kill must not leave the exec behind.
    let _ = s.shim.delete(&s.exec_id);
    Ok(match code? {
        Some(code) => {
            let out = kept.lock().unwrap_or_else(|p| p.into_inner());
            (code, String::from_utf8_lossy(&out).into_owned())
        }
        None => (-1, format!("Health check exceeded timeout ({timeout:?})")),
    })
}

/// The check's exit code, or `None` when it ran past `timeout` (then it is killed).
fn wait_or_kill(
    shim: &crate::shim::Shim,
    exec_id: &str,
    timeout: Duration,
) -> Result<Option<i64>, Error> {
    if let Some((code, _)) = shim.wait(exec_id, Some(timeout))? {
        return Ok(Some(i64::from(code)));
    }
    if let Err(e) = shim.kill(exec_id, libc::SIGKILL as u32, false) {
        // A check that exited between the wait's timeout and the kill makes the shim answer
        // "already finished": still a timeout, not an error. Anything else while it runs
        // is one (and waiting below without a deadline would then hang).
        let stopped = matches!(
            shim.state(exec_id).map(|st| st.status),
            Ok(crate::shim::TaskStatus::Stopped { .. })
        );
        if !stopped {
            return Err(e.into());
        }
    }
    let _ = shim.wait(exec_id, None);
    Ok(None)
}

/// Adds `result` to the recorded health under the lock; the status before and after.
fn record_result(
    dir: &Path,
    result: Value,
    retries: u32,
    counts: bool,
) -> Result<(String, String), Error> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    };
    let lock_path = dir.join(policy::HEALTH_LOCK);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("cannot open", &lock_path))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("cannot lock", &lock_path)(
            std::io::Error::last_os_error(),
        ));
    }
    let mut h = policy::health(dir)
        .unwrap_or_else(|| json!({"Status": "starting", "FailingStreak": 0, "Log": []}));
    let before = h["Status"].as_str().unwrap_or("starting").to_string();
    let healthy = result["ExitCode"] == 0;
    if healthy {
        h["FailingStreak"] = 0.into();
        h["Status"] = "healthy".into();
    } else if counts || before != "starting" {
        let streak = h["FailingStreak"].as_u64().unwrap_or(0) + 1;
        h["FailingStreak"] = streak.into();
        if streak >= u64::from(retries) {
            h["Status"] = "unhealthy".into();
        }
    }
    let mut log = h["Log"].as_array().cloned().unwrap_or_default();
    log.push(result);
    let over = log.len().saturating_sub(MAX_LOG);
    log.drain(..over);
    h["Log"] = log.into();
    let dst = dir.join(policy::HEALTH_STATE);
    let tmp = dir.join(format!(".{}.{}", policy::HEALTH_STATE, std::process::id()));
    std::fs::write(&tmp, h.to_string()).map_err(io("cannot write", &tmp))?;
    std::fs::rename(&tmp, &dst).map_err(io("cannot write", &dst))?;
    let status = h["Status"].as_str().unwrap_or("starting").to_string();
    Ok((before, status))
}
