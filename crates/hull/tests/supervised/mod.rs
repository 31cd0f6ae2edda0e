//! Helpers of the restart policy and healthcheck tests (`policy.rs`, `health.rs`): the
//! image, `inspect`, polling, the journal and the shim of a container.
#![allow(clippy::unwrap_used, dead_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::ctr::{self, Env};

pub const IMG: &str = "hull.test/policy:1";

pub fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

pub fn inspect(e: &Env, name: &str) -> Value {
    serde_json::from_str::<Value>(&e.ok(&["inspect", name])).unwrap()[0].clone()
}

/// Polls `f` until it holds (panics with `what` after `secs`).
pub fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status(e: &Env, name: &str) -> String {
    inspect(e, name)["State"]["Status"].as_str().unwrap().into()
}

pub fn restarts(e: &Env, name: &str) -> u64 {
    inspect(e, name)["RestartCount"].as_u64().unwrap()
}

/// Lines of the container's log (each run appends one `run` line).
pub fn runs(e: &Env, name: &str) -> usize {
    e.ok(&["logs", name])
        .lines()
        .filter(|l| *l == "run")
        .count()
}

/// The shim of container `name`: the one whose working directory is its bundle.
pub fn shim_of(e: &Env, name: &str) -> i32 {
    let id = inspect(e, name)["Id"].as_str().unwrap().to_string();
    let dir = std::fs::canonicalize(e.root.path().join("ctr").join(id)).unwrap();
    *ctr::shims_under(e.root.path())
        .iter()
        .find(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == dir))
        .unwrap()
}

/// The actions journaled for container `name` (`<root>/events.jsonl`, what `hull events`
/// reads), oldest first.
pub fn actions(e: &Env, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(e.root.path().join("events.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["Actor"]["Attributes"]["name"] == name)
        .filter_map(|v| v["Action"].as_str().map(str::to_string))
        .collect()
}

pub fn health(e: &Env, name: &str) -> Value {
    inspect(e, name)["State"]["Health"].clone()
}
