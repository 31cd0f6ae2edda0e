//! Healthchecks, end to end as root: the container's shim runs them with no daemon
//! (see docs/restart.md), `hull healthcheck run` runs one now. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;
mod supervised;

use std::time::{Duration, Instant};

use ctr::Env;
use serde_json::{json, Value};
use supervised::{actions, env, health, inspect, shim_of, until, IMG};

#[test]
fn health_follows_a_file_in_the_container() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--network",
        "none",
        "--health-cmd",
        "cat /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "--health-timeout",
        "5s",
        IMG,
        "sh",
        "-c",
        "echo ready >/tmp/ok; exec sleep 1000",
    ]);
    let i = inspect(&e, "h");
    assert_eq!(
        i["Config"]["Healthcheck"]["Test"],
        json!(["CMD-SHELL", "cat /tmp/ok"])
    );
    assert_eq!(i["Config"]["Healthcheck"]["Interval"], 300_000_000);
    until(15, "healthy", || health(&e, "h")["Status"] == "healthy");
    let ps = e.ok(&["ps", "--filter", "name=h", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(healthy)"), "{ps}");
    let h = health(&e, "h");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].clone(), last["Output"].clone()),
        (json!(0), json!("ready\n"))
    );
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());
    assert_eq!(e.hull(&["healthcheck", "run", "h"]).status.code(), Some(0));
    // The file removed: two failures in a row make it unhealthy.
    e.ok(&["exec", "h", "sh", "-c", "rm /tmp/ok"]);
    until(15, "unhealthy", || health(&e, "h")["Status"] == "unhealthy");
    let h = health(&e, "h");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    assert!(h["Log"].as_array().unwrap().len() <= 5, "{h}");
    let ps = e.ok(&["ps", "--filter", "name=h", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(unhealthy)"), "{ps}");
    assert_eq!(e.hull(&["healthcheck", "run", "h"]).status.code(), Some(1));
    // And back.
    e.ok(&["exec", "h", "touch", "/tmp/ok"]);
    until(15, "healthy again", || {
        let h = health(&e, "h");
        h["Status"] == "healthy" && h["FailingStreak"] == 0
    });
    let acts = actions(&e, "h");
    let health: Vec<&str> = acts
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("health_status"))
        .collect();
    assert_eq!(
        health,
        [
            "health_status: healthy",
            "health_status: unhealthy",
            "health_status: healthy"
        ],
        "{acts:?}"
    );
    e.ok(&["rm", "-f", "h"]);
    e.assert_clean();
}

/// The threads of process `pid`.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// A check that leaves a process holding its output open (`sleep &`) is over at its exit,
/// with its output; nothing of it stays behind in the shim.
#[test]
fn health_check_leaving_a_process_behind() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "orphan",
        "--network",
        "none",
        "--health-cmd",
        "sleep 1000 & echo ok",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "5s",
        IMG,
        "sleep",
        "1000",
    ]);
    until(15, "healthy", || {
        health(&e, "orphan")["Status"] == "healthy"
    });
    let last = |e: &Env| {
        let h = health(e, "orphan");
        h["Log"].as_array().unwrap().last().unwrap().clone()
    };
    assert_eq!(last(&e)["Output"], "ok\n");
    let shim = shim_of(&e, "orphan");
    let before = threads(shim);
    std::thread::sleep(Duration::from_secs(3));
    let after = threads(shim);
    assert!(after <= before + 1, "shim threads {before} -> {after}");
    let l = last(&e);
    assert_eq!(
        (l["ExitCode"].clone(), l["Output"].clone()),
        (json!(0), json!("ok\n"))
    );
    e.ok(&["rm", "-f", "orphan"]);
    e.assert_clean();
}

/// A paused container is not checked (docker skips it): a check would freeze with it and
/// time out.
#[test]
fn health_is_not_checked_while_paused() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "frozen",
        "--network",
        "none",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "500ms",
        "--health-retries",
        "1",
        IMG,
        "sleep",
        "1000",
    ]);
    until(15, "healthy", || {
        health(&e, "frozen")["Status"] == "healthy"
    });
    e.ok(&["pause", "frozen"]);
    let log = || health(&e, "frozen")["Log"].clone();
    // A check under way when the pause came may still end (and fail): let it.
    std::thread::sleep(Duration::from_secs(1));
    let at_pause = log();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(log(), at_pause, "checked while paused");
    e.ok(&["unpause", "frozen"]);
    until(15, "healthy again", || {
        let h = health(&e, "frozen");
        h["Status"] == "healthy" && h["Log"] != at_pause
    });
    e.ok(&["rm", "-f", "frozen"]);
    e.assert_clean();
}

/// `healthcheck run` records its result with the shim's (podman's does) and stops a check
/// at `--health-timeout`.
#[test]
fn healthcheck_run_records_and_times_out() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "manual",
        "--network",
        "none",
        "--health-cmd",
        "if [ -f /tmp/slow ]; then sleep 10; fi; cat /tmp/ok",
        // The shim's own checks come too late to matter here.
        "--health-interval",
        "1h",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        IMG,
        "sleep",
        "1000",
    ]);
    until(10, "starting", || {
        health(&e, "manual")["Status"] == "starting"
    });
    let run = |e: &Env| {
        let t = Instant::now();
        let o = e.hull(&["healthcheck", "run", "manual"]);
        (o.status.code(), t.elapsed())
    };
    assert_eq!(run(&e).0, Some(1));
    let h = health(&e, "manual");
    assert_eq!(
        (h["Status"].clone(), h["FailingStreak"].clone()),
        (json!("unhealthy"), json!(1))
    );
    e.ok(&["exec", "manual", "sh", "-c", "echo fine >/tmp/ok"]);
    assert_eq!(run(&e).0, Some(0));
    let h = health(&e, "manual");
    assert_eq!(h["Status"], "healthy");
    let log = h["Log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{h}");
    assert_eq!(
        (log[1]["ExitCode"].clone(), log[1]["Output"].clone()),
        (json!(0), json!("fine\n"))
    );
    e.ok(&["exec", "manual", "touch", "/tmp/slow"]);
    let (code, took) = run(&e);
    assert_eq!(code, Some(1));
    assert!(
        took < Duration::from_secs(6),
        "not stopped at the timeout: {took:?}"
    );
    let h = health(&e, "manual");
    let last = h["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], -1, "{h}");
    assert!(last["Output"].as_str().unwrap().contains("timeout"), "{h}");
    assert_eq!(h["Status"], "unhealthy");
    let acts = actions(&e, "manual");
    let changes: Vec<&str> = acts
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("health_status"))
        .collect();
    assert_eq!(
        changes,
        [
            "health_status: unhealthy",
            "health_status: healthy",
            "health_status: unhealthy"
        ]
    );
    e.ok(&["rm", "-f", "manual"]);
    e.assert_clean();
}

#[test]
fn image_healthcheck_and_no_healthcheck() {
    let e = Env::new();
    e.load(
        IMG,
        json!({"Env": ["PATH=/bin"], "Cmd": ["sleep", "1000"],
            "Healthcheck": {"Test": ["CMD", "sh", "-c", "exit 1"], "Interval": 200_000_000, "Retries": 1}}),
    );
    e.ok(&["run", "-d", "--name", "img", "--network", "none", IMG]);
    until(15, "unhealthy", || {
        health(&e, "img")["Status"] == "unhealthy"
    });
    assert_eq!(health(&e, "img")["Log"][0]["ExitCode"], 1);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--network",
        "none",
        "--no-healthcheck",
        IMG,
    ]);
    assert_eq!(health(&e, "off"), Value::Null);
    assert_eq!(inspect(&e, "off")["Config"]["Healthcheck"], Value::Null);
    let (_, err) = ctr::text(&e.hull(&["healthcheck", "run", "off"]));
    assert!(err.contains("has no healthcheck"), "{err}");
    e.ok(&["rm", "-f", "img", "off"]);
    e.assert_clean();
}
