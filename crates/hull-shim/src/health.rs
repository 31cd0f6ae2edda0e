//! Healthchecks: the check runs in the container as any exec does (`hullc exec`), every
//! interval while the container runs; the results go to [`HEALTH_STATE`] in docker's
//! `State.Health` shape, which `hull ps`/`inspect` read.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hullc::{ChildStdio, Hullc, Launch};
use crate::process::Status;
use crate::reaper::Reaper;
use crate::supervise::{self, Healthcheck, HEALTH_LOCK, HEALTH_STATE};
use crate::tasks::Tasks;

/// docker's defaults and limits.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// What one check needs to run in the container.
pub struct Probe {
    pub id: String,
    pub bundle: PathBuf,
    pub hullc: Hullc,
    pub reaper: Arc<Reaper>,
    /// The shim's tasks, to see whether the container is paused.
    pub tasks: Weak<Tasks>,
}

impl Probe {
    fn paused(&self) -> bool {
        let Some(tasks) = self.tasks.upgrade() else {
            return false;
        };
        tasks
            .state(&self.id, "")
            .is_ok_and(|(_, p)| matches!(p.status, Status::Paused))
    }
}

/// One result (docker's `HealthcheckResult`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Outcome {
    start: String,
    end: String,
    exit_code: i64,
    output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Health {
    status: String,
    failing_streak: u32,
    log: Vec<Outcome>,
}

impl Health {
    fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// docker's update for one result; `counts`: a failure counts (past the start period).
    fn add(&mut self, r: Outcome, retries: u32, counts: bool) {
        if r.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if counts || self.status != "starting" {
            // docker: failures within the start period do not count while still starting.
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(r);
        if self.log.len() > MAX_LOG {
            self.log.remove(0);
        }
    }
}

/// The exclusive flock of the bundle's [`HEALTH_LOCK`]: `hull healthcheck run` records its
/// result in [`HEALTH_STATE`] too, each reading it and writing it back under the lock.
fn lock(bundle: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(bundle.join(HEALTH_LOCK))
        .ok()?;
    // SAFETY: flock on a descriptor we own; released when it is closed.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(f)
}

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// Starts the check loop of one run of the container; it ends when `run` moves past `gen`.
pub fn spawn(probe: Probe, check: Healthcheck, run: Arc<AtomicU64>, gen: u64) {
    let spawned = std::thread::Builder::new()
        .name("health".into())
        .spawn(move || check_loop(&probe, &check, &run, gen));
    if let Err(e) = spawned {
        log::warn!("cannot start the healthcheck thread: {e}");
    }
}

fn check_loop(p: &Probe, check: &Healthcheck, run: &AtomicU64, gen: u64) {
    let interval = dur(check.interval, DEFAULT_INTERVAL);
    let timeout = dur(check.timeout, DEFAULT_TIMEOUT);
    let retries = if check.retries == 0 {
        DEFAULT_RETRIES
    } else {
        check.retries
    };
    let start_period = dur(check.start_period, Duration::ZERO);
    let began = Instant::now();
    let current = || run.load(Ordering::SeqCst) == gen;
    {
        let _lock = lock(&p.bundle);
        supervise::write_json(&p.bundle, HEALTH_STATE, &Health::starting());
    }
    loop {
        // Sleep in slices: an exit ends the loop without waiting a whole interval.
        let wake = Instant::now() + interval;
        while Instant::now() < wake {
            if !current() {
                return;
            }
            std::thread::sleep((wake - Instant::now()).min(Duration::from_millis(200)));
        }
        // docker skips the checks of a paused container: a check would join its frozen
        // cgroup and time out, making a healthy container unhealthy.
        if p.paused() {
            continue;
        }
        let r = probe(p, &check.test, timeout);
        if !current() {
            return;
        }
        record(p, r, retries, began.elapsed() >= start_period);
    }
}

/// Adds result `r` to the recorded health (as it is now: `hull healthcheck run` may have
/// added one), and journals a change of status.
fn record(p: &Probe, r: Outcome, retries: u32, counts: bool) {
    let _lock = lock(&p.bundle);
    let mut h: Health = std::fs::read(p.bundle.join(HEALTH_STATE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_else(Health::starting);
    let before = h.status.clone();
    h.add(r, retries, counts);
    supervise::write_json(&p.bundle, HEALTH_STATE, &h);
    if before != h.status {
        // docker's event for a change of status (`hull events`).
        let action = format!("health_status: {}", h.status);
        log::info!("{action}");
        if let Some(t) = crate::journal::target(&p.bundle) {
            t.emit(&p.id, &action, &[]);
        }
    }
}

/// The command of a `Test`: `CMD-SHELL` through `/bin/sh -c`, `CMD` as it is.
fn argv(test: &[String]) -> Option<Vec<String>> {
    match test.split_first()? {
        (k, rest) if k == "CMD-SHELL" => Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]),
        (k, rest) if k == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        _ => None,
    }
}

/// Runs one check; a failure to run it at all is a failed check (docker: exit code -1).
fn probe(p: &Probe, test: &[String], timeout: Duration) -> Outcome {
    let start = SystemTime::now();
    let (exit_code, output) = match exec(p, test, timeout) {
        Ok(r) => r,
        Err(msg) => (-1, msg),
    };
    Outcome {
        start: crate::jsonlog::rfc3339(start),
        end: crate::jsonlog::rfc3339(SystemTime::now()),
        exit_code,
        output,
    }
}

/// The process of the container's `config.json` with the check's arguments: the same
/// user, environment and working directory as the container's (docker's exec defaults).
fn process(p: &Probe, args: Vec<String>) -> Result<Value, String> {
    let config = std::fs::read(p.bundle.join("config.json")).map_err(|e| e.to_string())?;
    let config: Value = serde_json::from_slice(&config).map_err(|e| e.to_string())?;
    let mut proc = config["process"].clone();
    proc["args"] = args.into();
    proc["terminal"] = false.into();
    if let Some(o) = proc.as_object_mut() {
        o.remove("consoleSize");
    }
    Ok(proc)
}

fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((r.into(), w.into()))
}

fn exec(p: &Probe, test: &[String], timeout: Duration) -> Result<(i64, String), String> {
    let deadline = Instant::now() + timeout;
    let args = argv(test).ok_or_else(|| format!("invalid healthcheck test {test:?}"))?;
    let spec = p.bundle.join(".health-process.json");
    let data = serde_json::to_vec(&process(p, args)?).unwrap_or_default();
    std::fs::write(&spec, data).map_err(|e| e.to_string())?;
    let (rd, wr) = pipe().map_err(|e| e.to_string())?;
    let wr2 = wr.try_clone().map_err(|e| e.to_string())?;
    let launch = Launch {
        pid_file: &p.bundle.join(".health.pid"),
        console_socket: None,
        log: &p.bundle.join(".health-log.json"),
        stdio: ChildStdio {
            stdin: None,
            stdout: Some(wr),
            stderr: Some(wr2),
        },
    };
    let pid = p
        .hullc
        .exec(&p.id, &spec, launch)
        .map_err(|e| e.to_string())?;
    let (tx, rx) = channel();
    p.reaper.watch(pid, tx);
    let (code, output) = collect(rd, &rx, deadline);
    match code {
        Some(code) => Ok((code, output)),
        None => {
            // Our child, not reaped yet (the reaper would have sent its exit): the pid still
            // names it, but for the instant between this check and the kill.
            if let Ok(exit) = rx.try_recv() {
                return Ok((i64::from(exit.status), output));
            }
            // SAFETY: kill takes no pointers; the pid is our own unreaped child (see above).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Ok((-1, format!("Health check exceeded timeout ({timeout:?})")))
        }
    }
}

/// How often the exit is looked for while the output pipe stays open without news.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// The check's output (the first [`MAX_OUTPUT`] bytes kept, the rest read and dropped so
/// that the check never blocks on a full pipe) and its exit status, or `None` at
/// `deadline`. It does not wait for the pipe's EOF: a process the check left behind (`cmd
/// &`) may hold the pipe open for ever. At the exit it takes what is in the pipe and
/// returns; `rd` is then closed, and such a process gets EPIPE if it writes on.
fn collect(
    mut rd: std::fs::File,
    rx: &std::sync::mpsc::Receiver<crate::reaper::Exit>,
    deadline: Instant,
) -> (Option<i64>, String) {
    use std::os::fd::AsRawFd;
    let fd = rd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; no pointers.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let mut eof = false;
    let mut read_ready = |out: &mut Vec<u8>| {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    };
    let text = |out: &[u8]| String::from_utf8_lossy(out).into_owned();
    loop {
        if let Ok(exit) = rx.try_recv() {
            read_ready(&mut out);
            return (Some(i64::from(exit.status)), text(&out));
        }
        let now = Instant::now();
        if now >= deadline {
            return (None, text(&out));
        }
        if eof {
            // Every writer closed the pipe: only the exit is left to wait for.
            return match rx.recv_timeout(deadline - now) {
                Ok(exit) => (Some(i64::from(exit.status)), text(&out)),
                Err(_) => (None, text(&out)),
            };
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = EXIT_POLL.min(deadline - now).as_millis() as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } > 0 {
            eof = read_ready(&mut out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_become_commands() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            argv(&s(&["CMD-SHELL", "test -f /x"])).unwrap_or_default(),
            s(&["/bin/sh", "-c", "test -f /x"])
        );
        assert_eq!(argv(&s(&["CMD", "true"])).unwrap_or_default(), s(&["true"]));
        assert!(argv(&s(&["NONE"])).is_none());
    }

    #[test]
    fn times_are_rfc3339() {
        let t = std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(crate::jsonlog::rfc3339(t), "2023-11-14T22:13:20.000000005Z");
    }
}
