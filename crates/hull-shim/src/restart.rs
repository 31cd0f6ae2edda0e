//! Restart policies: after an exit of the container's init, whether and when it comes
//! back (docker's `restartmanager`), and the restart itself, which is hull's own `start`
//! (run as a command, it makes the task anew through this shim and re-attaches the
//! network as any start does).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::reaper::Reaper;
use crate::supervise::{self, RestartPolicy, MANUAL_STOP, RESTART_STATE};

/// docker's first delay, its factor and its ceiling.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the back-off (docker: 10 s).
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart, given the last one and how long the container ran.
pub fn next_delay(last: Duration, ran: Duration) -> Duration {
    if last.is_zero() || ran >= RESET_AFTER {
        FIRST_DELAY
    } else {
        (last * 2).min(MAX_DELAY)
    }
}

/// docker's decision: `always` and `unless-stopped` restart any exit, `on-failure` a
/// non-zero one while fewer than its maximum (0: no maximum) restarts were made; an exit
/// the user caused (stop, kill) never restarts.
pub fn should_restart(p: &RestartPolicy, status: u32, count: u64, manual: bool) -> bool {
    if manual {
        return false;
    }
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => status != 0 && (p.max_retries == 0 || count < u64::from(p.max_retries)),
        _ => false,
    }
}

pub fn restart_count(bundle: &Path) -> u64 {
    std::fs::read(bundle.join(RESTART_STATE))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v["RestartCount"].as_u64())
        .unwrap_or(0)
}

/// Decides now and again after the back-off (the user may stop the container or change
/// its policy meanwhile), then runs the restart command (which counts the restart if it
/// makes it).
pub fn spawn(bundle: PathBuf, status: u32, delay: Duration, reaper: Arc<Reaper>) {
    let decide = move |b: &Path| {
        let p = supervise::read_policy(b)?;
        let manual = b.join(MANUAL_STOP).exists();
        should_restart(&p.restart_policy, status, restart_count(b), manual).then_some(p)
    };
    if decide(&bundle).is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("restart".into())
        .spawn(move || {
            std::thread::sleep(delay);
            let Some(p) = decide(&bundle) else { return };
            let Some((bin, args)) = p.restart_cmd.split_first() else {
                log::warn!("restart policy without a restart command: not restarted");
                return;
            };
            // The count is hull's to write (`start --by-policy`, under the container's run
            // lock): a start it skips (the user's stop came first) is not a restart.
            let count = restart_count(&bundle) + 1;
            log::info!("restart {count} after exit status {status} (back-off {delay:?})");
            run(bin, args, &reaper);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the restart thread: {e}");
    }
}

/// Runs the restart command; its errors go to the shim's log (its stderr).
fn run(bin: &str, args: &[String], reaper: &Reaper) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn();
    match child {
        // The reaper owns waitpid: ask it, or the exit would be lost to it.
        Ok(c) => {
            let exit = reaper.wait_pid(c.id() as i32);
            if exit.status != 0 {
                log::warn!("restart command failed (exit status {})", exit.status);
            }
        }
        Err(e) => log::warn!("cannot run the restart command {bin}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_resets() {
        let short = Duration::from_secs(1);
        let d1 = next_delay(Duration::ZERO, short);
        assert_eq!(d1, FIRST_DELAY);
        assert_eq!(next_delay(d1, short), FIRST_DELAY * 2);
        assert_eq!(next_delay(Duration::from_secs(50), short), MAX_DELAY);
        assert_eq!(next_delay(Duration::from_secs(8), RESET_AFTER), FIRST_DELAY);
    }

    #[test]
    fn policies_decide_like_docker() {
        let p = |name: &str, max| RestartPolicy {
            name: name.into(),
            max_retries: max,
        };
        assert!(should_restart(&p("always", 0), 0, 9, false));
        assert!(!should_restart(&p("always", 0), 1, 0, true));
        assert!(!should_restart(&p("on-failure", 0), 0, 0, false));
        assert!(should_restart(&p("on-failure", 2), 1, 1, false));
        assert!(!should_restart(&p("on-failure", 2), 1, 2, false));
        assert!(!should_restart(&p("", 0), 1, 0, false));
    }
}
