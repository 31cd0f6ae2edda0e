//! hullc's command line: `run` exit statuses and stdio, `spec`, `features`,
//! `list`, `state` fields, `--pid-file`, global flags, container ids.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn run_prints_hello_and_exits_3() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo hello; exit 3"]);
    let id = h.id("hello");
    let o = h.run(&b, &id, &[]);
    assert_eq!(o.stdout, "hello\n", "{o:?}");
    assert_eq!(o.code(), Some(3), "{o:?}");
    // Without --keep the container is deleted once it exits.
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn run_exit_zero_is_zero() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let id = h.id("zero");
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout, "");
}

#[test]
fn run_killed_container_exits_128_plus_signal() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // A pid namespace's init cannot SIGKILL itself, so share the host's pid
    // namespace here: the shell really dies of the signal.
    b.remove_namespace("pid");
    b.args(&["sh", "-c", "kill -KILL $$; echo survived"]);
    let id = h.id("killed");
    let o = h.run(&b, &id, &[]);
    assert_eq!(o.code(), Some(128 + 9), "{o:?}");
    assert_eq!(o.stdout, "");
}

#[test]
fn run_reports_signal_from_hullc_kill() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "touch /tmp/ready; exec sleep 1000"]);
    b.save();
    let id = h.id("fgkill");
    h.track(&id);
    let bundle = b.path().to_str().unwrap();
    let fg = h.spawn(&["run", "--bundle", bundle, &id]);
    wait_until("container ready", Duration::from_secs(20), || {
        b.rootfs().join("tmp/ready").exists()
    });
    h.cmd(&["kill", &id, "KILL"]).ok();
    let o = fg.wait();
    assert_eq!(o.code(), Some(137), "{o:?}");
}

#[test]
fn run_forwards_sigterm_to_the_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // pid 1 of a pid namespace only gets signals it has a handler for.
    b.args(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 42' TERM; touch /tmp/ready; while :; do sleep 0.05; done",
    ]);
    b.save();
    let id = h.id("fwd");
    h.track(&id);
    let bundle = b.path().to_str().unwrap();
    let fg = h.spawn(&["run", "--bundle", bundle, &id]);
    wait_until("trap installed", Duration::from_secs(20), || {
        b.rootfs().join("tmp/ready").exists()
    });
    // SAFETY: kill with a pid we spawned and a signal number.
    assert_eq!(unsafe { libc::kill(fg.pid(), libc::SIGTERM) }, 0);
    let o = fg.wait();
    assert_eq!(o.code(), Some(42), "{o:?}");
    assert_eq!(o.stdout, "got-term\n");
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn container_stderr_is_hullc_stderr() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo to-out; echo to-err >&2"]);
    let id = h.id("stderr");
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout, "to-out\n");
    assert_eq!(o.stderr, "to-err\n");
}

#[test]
fn container_stdin_is_hullc_stdin() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "read line; echo \"got $line\""]);
    let input = h.scratch().join("input");
    fs::write(&input, "from-the-caller\n").unwrap();
    let id = h.id("stdin");
    let o = h
        .run_with(&b, &id, &[], |c| {
            c.stdin(Stdio::from(fs::File::open(&input).unwrap()));
        })
        .ok();
    assert_eq!(o.stdout, "got from-the-caller\n");
}

#[test]
fn run_detach_returns_while_container_runs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("detach");
    h.run(&b, &id, &["--detach"]).ok();
    let st = h.state(&id);
    assert_eq!(st["status"], "running");
    let pid = st["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid), "init {pid} should be alive");
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(),
        "sleep\u{0}1000\u{0}"
    );
    h.cmd(&["delete", "--force", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "exit 5"]);
    let id = h.id("keep");
    let o = h.run(&b, &id, &["--keep"]);
    assert_eq!(o.code(), Some(5));
    assert_eq!(h.status(&id), "stopped");
    h.cmd(&["delete", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn run_without_keep_deletes_the_container() {
    let h = Hullc::new();
    let b = Bundle::new(&h);
    let id = h.id("nokeep");
    h.run(&b, &id, &[]).ok();
    h.cmd(&["state", &id]).fails_with(&[&id, "does not exist"]);
}

#[test]
fn state_has_the_runtime_spec_fields() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["annotations"] = json!({ "org.example.key": "value" });
    let id = h.id("state");
    h.create(&b, &id, &[]).ok();
    let st = h.state(&id);
    assert_eq!(st["ociVersion"], b.config["ociVersion"]);
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 1 && alive(pid as i32), "pid {pid}");
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert_eq!(st["rootfs"], b.rootfs().to_str().unwrap());
    // RFC 3339, e.g. 2025-01-02T03:04:05.123456789Z
    let created = st["created"].as_str().unwrap();
    assert!(
        created.len() >= 20 && created.as_bytes()[4] == b'-' && created.contains('T'),
        "created {created:?}"
    );
    assert!(st.get("owner").is_some(), "owner missing: {st}");
    assert_eq!(st["annotations"], json!({ "org.example.key": "value" }));
}

#[test]
fn pid_file_holds_the_init_pid() {
    let h = Hullc::new();
    let b = Bundle::new(&h);
    let id = h.id("pidfile");
    let pf = h.scratch().join("init.pid");
    h.create(&b, &id, &["--pid-file", pf.to_str().unwrap()])
        .ok();
    let pid: i64 = fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(Value::from(pid), h.state(&id)["pid"]);
}

#[test]
fn list_formats() {
    let h = Hullc::new();
    let b = Bundle::new(&h);
    let (a, c) = (h.id("list-a"), h.id("list-b"));
    h.create(&b, &a, &[]).ok();
    h.create(&b, &c, &[]).ok();

    let q = h.cmd(&["list", "-q"]).ok().stdout;
    let mut want = vec![a.clone(), c.clone()];
    want.sort();
    assert_eq!(q.lines().collect::<Vec<_>>(), want);

    let js: Value =
        serde_json::from_str(&h.cmd(&["list", "--format", "json"]).ok().stdout).unwrap();
    let arr = js.as_array().expect("list --format json is an array");
    assert_eq!(arr.len(), 2, "{js}");
    for e in arr {
        assert!(want.contains(&e["id"].as_str().unwrap().to_string()), "{e}");
        assert_eq!(e["status"], "created");
        assert_eq!(e["bundle"], b.path().to_str().unwrap());
    }

    let table = h.cmd(&["list"]).ok().stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED"] {
        assert!(header.contains(col), "header {header:?}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{table}");
    for (row, id) in rows.iter().zip(&want) {
        assert!(
            row.starts_with(id.as_str()) && row.contains("created"),
            "{row}"
        );
    }
}

#[test]
fn list_of_an_empty_root_is_empty() {
    let h = Hullc::new();
    assert_eq!(h.cmd(&["list", "-q"]).ok().stdout, "");
    let js: Value = serde_json::from_str(&h.cmd(&["list", "--format", "json"]).ok().stdout)
        .expect("json even when empty");
    assert_eq!(js.as_array().map(Vec::len), Some(0), "{js}");
}

#[test]
fn spec_writes_a_default_config() {
    let h = Hullc::new();
    let dir = tempfile::tempdir().unwrap();
    h.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .ok();
    let c: Value =
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(c["root"]["path"], "rootfs");
    assert_eq!(c["process"]["args"], json!(["sh"]));
    assert!(c["ociVersion"].as_str().unwrap().starts_with("1."));
    let ns: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for t in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&t), "{t} missing from {ns:?}");
    }
}

/// runc's integration suite (and scripts written for runc) start from `runc spec` and only edit it:
/// `run -d --console-socket` needs its terminal, and its device rules start with deny-all.
#[test]
fn spec_matches_runc_defaults() {
    let h = Hullc::new();
    let dir = tempfile::tempdir().unwrap();
    h.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .ok();
    let c: Value =
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(c["process"]["terminal"], json!(true), "{c}");
    // CVE-2022-29162: no inheritable capabilities by default.
    assert!(
        c["process"]["capabilities"].get("inheritable").is_none(),
        "{}",
        c["process"]["capabilities"]
    );
    assert_eq!(
        c["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}])
    );
    // A cgroup namespace only where /sys/fs/cgroup is cgroup2 (this CI host: hybrid, so none).
    let v2 = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    let cgroupns = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "cgroup");
    assert_eq!(cgroupns, v2, "{}", c["linux"]["namespaces"]);
}

#[test]
fn spec_writes_into_the_current_directory_by_default() {
    let h = Hullc::new();
    let dir = tempfile::tempdir().unwrap();
    h.cmd_with(&["spec"], |c| {
        c.current_dir(dir.path());
    })
    .ok();
    assert!(dir.path().join("config.json").is_file());
}

#[test]
fn spec_never_overwrites_a_config() {
    let h = Hullc::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    fs::write(&cfg, "precious").unwrap();
    h.cmd(&["spec", "--bundle", dir.path().to_str().unwrap()])
        .fails_with(&["config.json"]);
    assert_eq!(fs::read_to_string(&cfg).unwrap(), "precious");
}

#[test]
fn spec_rootless_has_a_user_namespace_and_mappings() {
    let h = Hullc::new();
    let dir = tempfile::tempdir().unwrap();
    h.cmd(&[
        "spec",
        "--rootless",
        "--bundle",
        dir.path().to_str().unwrap(),
    ])
    .ok();
    let c: Value =
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let ns = c["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n["type"] == "user"), "{ns:?}");
    // We run as root: the single mapping maps container 0 to host 0.
    assert_eq!(c["linux"]["uidMappings"][0]["hostID"], 0, "{c}");
    assert_eq!(c["linux"]["gidMappings"][0]["hostID"], 0, "{c}");
}

#[test]
fn features_tells_what_is_supported() {
    let h = Hullc::new();
    let f: Value = serde_json::from_str(&h.cmd(&["features"]).ok().stdout).unwrap();
    let spec_dir = tempfile::tempdir().unwrap();
    h.cmd(&["spec", "--bundle", spec_dir.path().to_str().unwrap()])
        .ok();
    let c: Value =
        serde_json::from_slice(&fs::read(spec_dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(f["ociVersionMax"], c["ociVersion"]);
    assert!(f["ociVersionMin"].as_str().unwrap().starts_with("1.0"));
    let has = |v: &Value, x: &str| v.as_array().unwrap().iter().any(|e| e == x);
    for ns in ["pid", "mount", "uts", "ipc", "network", "cgroup"] {
        assert!(has(&f["linux"]["namespaces"], ns), "{ns}: {f}");
    }
    for o in [
        "ro", "nosuid", "nodev", "noexec", "bind", "rbind", "rprivate",
    ] {
        assert!(has(&f["mountOptions"], o), "{o}: {f}");
    }
    assert!(has(&f["linux"]["capabilities"], "CAP_SYS_ADMIN"), "{f}");
}

#[test]
fn log_json_records_errors_as_json() {
    let h = Hullc::new();
    let log = h.scratch().join("log.json");
    let id = h.id("nosuch");
    h.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        &id,
    ])
    .fails_with(&["does not exist"]);
    let text = fs::read_to_string(&log).unwrap();
    let line: Value = serde_json::from_str(text.lines().last().unwrap()).expect("a JSON log line");
    assert_eq!(line["level"], "error", "{line}");
    assert!(line["msg"].as_str().unwrap().contains(&id), "{line}");
    assert!(line.get("time").is_some(), "{line}");
}

#[test]
fn log_text_records_errors() {
    let h = Hullc::new();
    let log = h.scratch().join("log.txt");
    let id = h.id("nosuch");
    h.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "text",
        "delete",
        &id,
    ])
    .fails_with(&["does not exist"]);
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("level=error") && text.contains(&id),
        "log: {text:?}"
    );
}

#[test]
fn global_flags_go_before_the_command() {
    // go-runc and conmon put --root/--log/--debug before the subcommand.
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["echo", "debug-ok"]);
    b.save();
    let id = h.id("debug");
    h.track(&id);
    let log = h.scratch().join("debug.log");
    let o = h
        .raw(&[
            "--root",
            h.root().to_str().unwrap(),
            "--debug",
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "run",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ])
        .ok();
    assert_eq!(o.stdout, "debug-ok\n");
    // --log takes the log lines away from stderr.
    assert_eq!(o.stderr, "");
}

#[test]
fn invalid_ids_are_rejected_before_anything_is_made() {
    let h = Hullc::new();
    let b = Bundle::new(&h);
    b.save();
    let bundle = b.path().to_str().unwrap();
    for bad in [
        "", ".", "..", "a/b", "/abs", "../up", "a b", "a:b", "a\nb", "é", "a*",
    ] {
        let o = h.cmd(&["create", "--bundle", bundle, bad]);
        o.fails_with(&["invalid container id"]);
        assert_clean(&h, &b, &[]);
    }
}

#[test]
fn ids_with_every_allowed_character_work() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["echo", "ok"]);
    let id = format!("aZ09_.+-{}", unique("x"));
    assert_eq!(h.run(&b, &id, &[]).ok().stdout, "ok\n");
}

#[test]
fn path_like_ids_never_reach_outside_the_root() {
    let h = Hullc::new();
    // A sibling of the state root that "../victim" would name.
    let victim = h.root().parent().unwrap().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("state.json"), "{}").unwrap();
    for args in [
        vec!["delete", "--force", "../victim"],
        vec!["kill", "../victim", "KILL"],
        vec!["state", "../victim"],
        vec!["start", "../victim"],
    ] {
        h.cmd(&args).fails_with(&["invalid container id"]);
    }
    assert!(victim.join("state.json").exists());
}
