//! OCI hooks (issue 4): each kind at its moment and in its namespace, with
//! the state JSON on stdin, its args, env and timeout; failures of the early
//! kinds fail `create` and tear everything down, the late kinds only log.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Bundle, Hullc};
use serde_json::{json, Value};

/// A host-side hook that appends `NAME STATUS MNT_NS` to `log` (the state
/// JSON comes on stdin).
fn host_hook(name: &str, log: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!(
            "st=$(cat); s=$(echo \"$st\" | sed 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/'); echo \"{name} $s $(readlink /proc/self/ns/mnt)\" >> {}",
            log.display())]
    })
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_hook_runs_at_its_moment_in_its_namespace() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let log = h.scratch().join("hooks.log");
    b.config["hooks"] = json!({
        "prestart": [host_hook("prestart", &log)],
        "createRuntime": [host_hook("createRuntime", &log)],
        "createContainer": [host_hook("createContainer", &log)],
        // Resolved and run inside the container, after pivot_root.
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start-state.json"]}],
        "poststart": [host_hook("poststart", &log)],
        "poststop": [host_hook("poststop", &log)]
    });
    b.args(&["sleep", "1000"]);
    let id = h.id("hooks");
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt")
        .expect("own mnt ns")
        .to_string_lossy()
        .to_string();
    h.create(&b, &id, &[]).ok();
    let after_create = lines(&log);
    let names: Vec<&str> = after_create
        .iter()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["prestart", "createRuntime", "createContainer"],
        "{after_create:?}"
    );
    assert!(
        after_create
            .iter()
            .all(|l| l.split(' ').nth(1) == Some("creating")),
        "{after_create:?}"
    );
    assert!(
        after_create[1].ends_with(&host_mnt),
        "createRuntime runs in the runtime's mount namespace"
    );
    assert!(
        !after_create[2].ends_with(&host_mnt),
        "createContainer runs in the container's mount namespace"
    );
    assert!(
        !b.rootfs().join("tmp/start-state.json").exists(),
        "startContainer waits for start"
    );
    h.cmd(&["start", &id]).ok();
    let start_state: Value = serde_json::from_str(
        &std::fs::read_to_string(b.rootfs().join("tmp/start-state.json"))
            .expect("startContainer ran inside the container"),
    )
    .expect("state JSON on stdin");
    assert_eq!(start_state["id"], json!(id));
    let all = lines(&log);
    assert_eq!(
        all.get(3)
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ")),
        Some("poststart running".into()),
        "{all:?}"
    );
    h.cmd(&["delete", "--force", &id]).ok();
    let all = lines(&log);
    assert_eq!(
        all.get(4)
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ")),
        Some("poststop stopped".into()),
        "{all:?}"
    );
}

#[test]
fn hooks_get_their_args_env_and_no_caller_env() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.scratch().join("env.txt");
    b.config["hooks"] = json!({"createRuntime": [{
        "path": "/bin/sh",
        // argv[0] as the shell saw it (from /proc), then `sh -c`'s $0.
        "args": ["custom-argv0", "-c", format!("echo \"$(tr '\\0' ' ' < /proc/$$/cmdline | cut -d' ' -f1) $0 $HOOK_VAR ${{HULL_TEST_TAG:-unset}}\" > {}", out.display()), "arg1"],
        "env": ["HOOK_VAR=from-config"]
    }]});
    let id = h.id("hookenv");
    h.run(&b, &id, &[]).ok();
    assert_eq!(
        std::fs::read_to_string(&out).expect("hook ran").trim(),
        "custom-argv0 arg1 from-config unset"
    );
}

#[test]
fn failing_early_hooks_fail_create_and_leave_nothing() {
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let h = Hullc::new();
        let mut b = Bundle::new(&h);
        b.config["hooks"] = json!({ kind: [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}] });
        let id = h.id("hookfail");
        h.create(&b, &id, &[]).fails_with(&[
            &format!("hooks.{kind}[0]"),
            "exit status 3",
            "hook-said-no",
        ]);
        common::assert_clean(&h, &b, &[&id]);
    }
}

#[test]
fn hook_timeout_is_enforced() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let id = h.id("hooktimeout");
    let t = Instant::now();
    h.create(&b, &id, &[])
        .fails_with(&["hooks.createRuntime[0]", "timed out"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    common::assert_clean(&h, &b, &[&id]);
}

#[test]
fn failing_late_hooks_are_logged_and_do_not_stop_the_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let fail = json!([{"path": "/bin/false"}]);
    b.config["hooks"] = json!({"poststart": fail, "poststop": fail});
    b.args(&["sleep", "1000"]);
    let id = h.id("hooklate");
    h.create(&b, &id, &[]).ok();
    let o = h.cmd(&["start", &id]).ok();
    assert!(
        o.stderr.contains("hooks.poststart[0]"),
        "the failure is logged: {}",
        o.stderr
    );
    assert_eq!(h.status(&id), "running");
    let o = h.cmd(&["delete", "--force", &id]).ok();
    assert!(o.stderr.contains("hooks.poststop[0]"), "{}", o.stderr);
    common::assert_clean(&h, &b, &[&id]);
}

#[test]
fn failing_start_container_hook_fails_start() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["hooks"] =
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}]});
    b.args(&["sh", "-c", "touch /tmp/ran"]);
    let id = h.id("hookstart");
    h.create(&b, &id, &[]).ok();
    h.cmd(&["start", &id])
        .fails_with(&["hooks.startContainer[0]", "exit status 4"]);
    h.wait_status(&id, "stopped");
    assert!(
        !b.rootfs().join("tmp/ran").exists(),
        "the program never ran"
    );
}
