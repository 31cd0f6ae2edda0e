//! Restart policies and healthchecks, end to end as root: the container's shim applies
//! them with no daemon running (see docs/restart.md). Busybox image and cleanup as in
//! `ctr/mod.rs`; most containers use `--network none`, the one with a network holds
//! `/tmp/hull-net-tests.lock` as the other network tests do.
#![allow(clippy::unwrap_used)]

mod ctr;
mod supervised;

use std::time::Duration;

use ctr::Env;
use supervised::{actions, env, inspect, restarts, runs, shim_of, status, until, IMG};

/// Runs until `hull exec NAME touch /tmp/stop` (init, PID 1 of its namespace, ignores
/// signals from inside it), then exits 0; each run logs `run`.
const STOPPABLE: &str = "rm -f /tmp/stop; echo run; while [ ! -f /tmp/stop ]; do sleep 0.1; done";

fn shim_pid(e: &Env) -> i32 {
    let pids = ctr::shims_under(e.root.path());
    assert_eq!(pids.len(), 1, "one shim: {pids:?}");
    pids[0]
}

#[test]
fn on_failure_restarts_n_times() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "fail",
        "--network",
        "none",
        "--restart",
        "on-failure:3",
        IMG,
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    // 1 run + 3 restarts, then it stays exited.
    until(30, "four runs", || {
        runs(&e, "fail") == 4 && status(&e, "fail") == "exited"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&e, "fail"), 4, "no fifth run");
    let i = inspect(&e, "fail");
    assert_eq!(i["RestartCount"], 3);
    assert_eq!(i["State"]["ExitCode"], 1);
    // As docker journals a policy's restart: a die and a start each time (the shim's die
    // of a run that exits at once can land before hull's start of it: no strict order).
    let acts = actions(&e, "fail");
    let count = |a: &str| acts.iter().filter(|x| *x == a).count();
    assert_eq!((count("start"), count("die")), (4, 4), "{acts:?}");
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(i["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    // A user's start resets the count (docker does), and the policy applies again.
    e.ok(&["start", "fail"]);
    until(30, "eight runs", || {
        runs(&e, "fail") == 8 && status(&e, "fail") == "exited"
    });
    assert_eq!(restarts(&e, "fail"), 3);
    // A success is not restarted by on-failure.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "ok",
        "--network",
        "none",
        "--restart",
        "on-failure",
        IMG,
        "sh",
        "-c",
        "echo run",
    ]);
    until(10, "ok exited", || status(&e, "ok") == "exited");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!((runs(&e, "ok"), restarts(&e, "ok")), (1, 0));
    e.ok(&["rm", "-f", "fail", "ok"]);
    e.assert_clean();
}

#[test]
fn user_stop_and_kill_are_not_restarted() {
    let e = env();
    for name in ["a", "b"] {
        e.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            "always",
            IMG,
            "sh",
            "-c",
            STOPPABLE,
        ]);
    }
    e.ok(&["stop", "-t", "1", "a"]);
    e.ok(&["kill", "b"]);
    until(10, "b exited", || status(&e, "b") == "exited");
    std::thread::sleep(Duration::from_secs(2));
    for name in ["a", "b"] {
        assert_eq!(status(&e, name), "exited", "{name} stays stopped");
        assert_eq!((runs(&e, name), restarts(&e, name)), (1, 0), "{name}");
    }
    // `always` restarts an exit of the container's own (here: it ends itself).
    e.ok(&["start", "a"]);
    until(10, "a runs twice", || runs(&e, "a") == 2);
    e.ok(&["exec", "a", "touch", "/tmp/stop"]);
    until(20, "a restarted", || {
        runs(&e, "a") == 3 && status(&e, "a") == "running"
    });
    assert_eq!(restarts(&e, "a"), 1);
    // `update --restart no` applies to the running container at once.
    e.ok(&["update", "--restart", "no", "a"]);
    e.ok(&["exec", "a", "touch", "/tmp/stop"]);
    until(10, "a exited", || status(&e, "a") == "exited");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&e, "a"), 3);
    assert_eq!(inspect(&e, "a")["HostConfig"]["RestartPolicy"]["Name"], "");
    e.ok(&["rm", "-f", "a", "b"]);
    e.assert_clean();
}

#[test]
fn stop_cancels_a_pending_restart() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--network",
        "none",
        "--restart",
        "always",
        IMG,
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    // Six quick runs: the back-off is 3.2 s by then (100 ms doubling).
    until(30, "six runs", || runs(&e, "loop") >= 6);
    until(10, "between two runs", || status(&e, "loop") == "exited");
    e.ok(&["stop", "loop"]);
    let n = runs(&e, "loop");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(runs(&e, "loop"), n, "no run after the stop");
    assert_eq!(status(&e, "loop"), "exited");
    e.ok(&["rm", "loop"]);
    e.assert_clean();
}

/// Runs `--restart always` container `name` whose first run exits at once (later ones
/// run on), with the policy's start held at `point` (`HULL_TEST_POLICY_HOLD`); returns the
/// hold file once it is held.
fn held_restart(e: &Env, name: &str, point: &str) -> std::path::PathBuf {
    let out = e
        .cmd(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            "always",
            IMG,
            "sh",
            "-c",
            "echo run; [ -f /tmp/ran ] && exec sleep 1000; touch /tmp/ran; exit 1",
        ])
        .env("HULL_TEST_POLICY_HOLD", point)
        .output()
        .unwrap();
    ctr::ok(&out);
    let id = inspect(e, name)["Id"].as_str().unwrap().to_string();
    let hold = e.root.path().join("ctr").join(&id).join(".policy-hold");
    until(20, "the policy's start held", || hold.exists());
    hold
}

/// A `stop` landing after the policy's start has looked at the stop mark, before it
/// starts the container, is not lost: it waits for that start and stops what it started.
#[test]
fn stop_during_the_policy_start_is_not_lost() {
    let e = env();
    let hold = held_restart(&e, "race", "after");
    let stop = e.cmd(&["stop", "-t", "1", "race"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&hold).unwrap();
    assert!(stop.wait_with_output().unwrap().status.success());
    until(10, "race exited", || status(&e, "race") == "exited");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&e, "race"), "exited", "the stop was lost");
    assert!(!hold.exists(), "no restart after the stop");
    e.ok(&["rm", "-f", "race"]);
    e.assert_clean();
}

/// A restart the policy did not make (a stop came before its start) is not counted.
#[test]
fn a_skipped_restart_is_not_counted() {
    let e = env();
    let hold = held_restart(&e, "skip", "before");
    e.ok(&["stop", "-t", "1", "skip"]);
    std::fs::remove_file(&hold).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&e, "skip"), "exited");
    assert_eq!((runs(&e, "skip"), restarts(&e, "skip")), (1, 0));
    e.ok(&["rm", "-f", "skip"]);
    e.assert_clean();
}

/// Serialises the tests that give containers networks with the other helpers' tests.
fn net_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/hull-net-tests.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own; released when it closes.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

#[test]
fn always_survives_kill_9_of_its_shim() {
    let _net = net_lock();
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--restart",
        "always",
        IMG,
        "sh",
        "-c",
        STOPPABLE,
    ]);
    let old = shim_pid(&e);
    // SAFETY: kill of a pid we just found; no memory involved.
    assert_eq!(unsafe { libc::kill(old, libc::SIGKILL) }, 0);
    until(10, "the shim gone", || {
        ctr::shims_under(e.root.path()).is_empty()
    });
    // The boot-time start brings it back under a new shim, the policy kept.
    let out = e.ok(&["start", "--all", "--restart-policy"]);
    assert_eq!(out, "web\n");
    until(10, "web runs again", || status(&e, "web") == "running");
    assert_ne!(shim_pid(&e), old);
    assert_eq!(runs(&e, "web"), 2);
    let ip = inspect(&e, "web")["NetworkSettings"]["IPAddress"].clone();
    assert!(
        ip.as_str().is_some_and(|s| !s.is_empty()),
        "an address: {ip}"
    );
    // The new shim applies the kept policy: an exit is restarted, the network with it.
    e.ok(&["exec", "web", "touch", "/tmp/stop"]);
    until(20, "web restarted", || {
        runs(&e, "web") == 3 && status(&e, "web") == "running"
    });
    assert_eq!(restarts(&e, "web"), 1);
    // The restarted container's interface is there and up (a stale release would remove it).
    std::thread::sleep(Duration::from_secs(1));
    let link = e.ok(&["exec", "web", "cat", "/sys/class/net/eth0/operstate"]);
    assert_eq!(link.trim(), "up");
    let ip = inspect(&e, "web")["NetworkSettings"]["IPAddress"].clone();
    assert!(
        ip.as_str().is_some_and(|s| !s.is_empty()),
        "an address: {ip}"
    );
    e.ok(&["rm", "-f", "web"]);
    e.assert_clean();
}

#[test]
fn start_all_restart_policy_picks_always_and_unless_stopped() {
    let e = env();
    let run = |name: &str, policy: &str, cmd: &str| {
        e.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            policy,
            IMG,
            "sh",
            "-c",
            cmd,
        ]);
    };
    run("al", "always", "echo run; exec sleep 1000");
    run("us", "unless-stopped", "echo run; exec sleep 1000");
    run("usstopped", "unless-stopped", "echo run; exec sleep 1000");
    run("no", "no", "echo run");
    run("of", "on-failure", "echo run");
    run("live", "always", "echo run; exec sleep 1000");
    // What a reboot leaves: containers that do not run, shims gone. al and usstopped are
    // stopped by the user; us loses its shim (kill -9) while it runs.
    e.ok(&["stop", "-t", "1", "usstopped"]);
    e.ok(&["stop", "-t", "1", "al"]);
    let us = shim_of(&e, "us");
    // SAFETY: kill of a pid we just found; no memory involved.
    assert_eq!(unsafe { libc::kill(us, libc::SIGKILL) }, 0);
    until(10, "us's shim gone", || {
        !ctr::shims_under(e.root.path()).contains(&us)
    });
    until(10, "no and of exited", || {
        status(&e, "no") == "exited" && status(&e, "of") == "exited"
    });
    let out = e.ok(&["start", "--all", "--restart-policy"]);
    let mut started: Vec<&str> = out.lines().collect();
    started.sort();
    // docker at daemon start: `always` even when stopped by the user, `unless-stopped` not.
    assert_eq!(started, ["al", "us"]);
    for (name, st) in [
        ("al", "running"),
        ("us", "running"),
        ("usstopped", "exited"),
        ("no", "exited"),
        ("of", "exited"),
        ("live", "running"),
    ] {
        assert_eq!(status(&e, name), st, "{name}");
    }
    assert_eq!(runs(&e, "live"), 1, "a running container is left alone");
    e.ok(&["rm", "-f", "al", "us", "usstopped", "no", "of", "live"]);
    e.assert_clean();
}

#[test]
fn bad_values_exit_125_and_create_nothing() {
    let e = env();
    for (args, flag) in [
        (&["--restart", "sometimes"][..], "--restart"),
        (&["--restart", "always:3"], "--restart"),
        (&["--restart", "on-failure:x"], "--restart"),
        (&["--health-interval", "5"], "--health-interval"),
        (&["--health-timeout", "soon"], "--health-timeout"),
        (&["--health-start-period", "-1s"], "--health-start-period"),
        (&["--health-retries", "-2"], "--health-retries"),
        (&["--health-cmd", " "], "--health-cmd"),
        (
            &["--no-healthcheck", "--health-cmd", "true"],
            "--health-cmd",
        ),
        (&["--rm", "--restart", "always"], "--rm"),
    ] {
        let mut a = vec!["run", "-d", "--network", "none", "--name", "bad"];
        a.extend_from_slice(args);
        a.extend([IMG, "true"]);
        let o = e.hull(&a);
        let (_, err) = ctr::text(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} names {flag}: {err}");
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    e.ok(&["create", "--name", "c", "--network", "none", IMG, "true"]);
    let o = e.hull(&["update", "--restart", "often", "c"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(ctr::text(&o).1.contains("--restart"));
    assert_eq!(inspect(&e, "c")["HostConfig"]["RestartPolicy"]["Name"], "");
    e.ok(&["rm", "c"]);
    e.assert_clean();
}

/// A created, never started container with a restart policy is not restarted by its removal:
/// `rm` kills the created init, and that exit is no reason to bring it back (docker never
/// restarts a removed container).
#[test]
fn removing_a_created_container_does_not_restart_it() {
    let e = env();
    let made = [
        "create",
        "--network",
        "none",
        "--name",
        "made",
        "--restart",
        "always",
        IMG,
        "sleep",
        "1000",
    ];
    e.ok(&made);
    e.ok(&["rm", "made"]);
    // The first restart would come 100 ms after the exit.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    let events = e.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--format",
        "{{.Action}}",
    ]);
    assert!(!events.contains("start"), "restarted after rm: {events}");
    e.assert_clean();
}
