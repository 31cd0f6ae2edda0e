//! `hull events`: the root's event journal, written by hull and by the containers' shims,
//! read back with --since/--until/--filter/--format and followed live. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctr::{text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/events:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The past events matching `filters`, as JSON.
fn past(e: &Env, filters: &[&str]) -> Vec<Value> {
    let until = now();
    let mut a = vec![
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ];
    for f in filters {
        a.extend(["--filter", f]);
    }
    e.ok(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|v| v["Action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn run_rm_journals_create_start_die_destroy() {
    let e = env();
    let o = e.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "once",
        "--label",
        "tier=web",
        IMG,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{:?}", text(&o));
    let evs = past(&e, &["type=container"]);
    assert_eq!(
        actions(&evs),
        ["create", "attach", "start", "die", "destroy"],
        "{evs:#?}"
    );
    let die = &evs[3];
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(die["Actor"]["Attributes"]["name"], "once");
    assert_eq!(die["Actor"]["Attributes"]["image"], IMG);
    assert_eq!(die["Actor"]["Attributes"]["tier"], "web");
    // docker 20.10's legacy fields and scope.
    assert_eq!(die["status"], "die");
    assert_eq!(die["from"], IMG);
    assert_eq!(die["scope"], "local");
    assert_eq!(die["id"], die["Actor"]["ID"]);
    let t0 = evs[0]["timeNano"].as_i64().unwrap();
    assert_eq!(evs[0]["time"].as_i64().unwrap(), t0 / 1_000_000_000);
    // The default format: `TIME TYPE ACTION ID (attributes)`.
    let plain = e.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now(),
        "-f",
        "event=die",
    ]);
    let id = die["Actor"]["ID"].as_str().unwrap();
    assert!(
        plain.contains(&format!(
            " container die {id} (exitCode=3, image={IMG}, name=once, tier=web)"
        )),
        "{plain}"
    );
    e.assert_clean();
}

#[test]
fn die_is_journaled_when_no_hull_runs() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "bg",
        IMG,
        "sh",
        "-c",
        "sleep 2; exit 7",
    ]);
    // A rename before the exit: the shim's `die` carries the new name.
    e.ok(&["rename", "bg", "bg2"]);
    // No hull runs while it exits: only its shim can journal the `die`.
    std::thread::sleep(Duration::from_secs(4));
    let journal = std::fs::read_to_string(e.root.path().join("events.jsonl")).unwrap();
    let die: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["Action"] == "die")
        .collect();
    assert_eq!(die.len(), 1, "{journal}");
    assert_eq!(die[0]["Actor"]["Attributes"]["exitCode"], "7");
    assert_eq!(die[0]["Actor"]["Attributes"]["name"], "bg2");
    // By id: all of them. By name: those made under that name (docker matches the name an
    // event carries).
    let evs = past(&e, &[&format!("container={}", &id.trim()[..12])]);
    assert_eq!(actions(&evs), ["create", "start", "rename", "die"]);
    assert_eq!(actions(&past(&e, &["container=bg2"])), ["rename", "die"]);
    assert_eq!(evs[2]["Actor"]["Attributes"]["oldName"], "bg");
}

#[test]
fn since_until_and_filters() {
    let e = env();
    e.ok(&["create", "--network", "none", "--name", "a", IMG]);
    std::thread::sleep(Duration::from_millis(50));
    let mid = now();
    std::thread::sleep(Duration::from_millis(50));
    e.ok(&["create", "--network", "none", "--name", "b", IMG]);
    let names = |evs: Vec<Value>| -> Vec<String> {
        evs.iter()
            .map(|v| {
                v["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let until = now();
    let window = |since: &str, until: &str| {
        let out = e.ok(&[
            "events",
            "--since",
            since,
            "--until",
            until,
            "--filter",
            "type=container",
            "--format",
            "json",
        ]);
        names(
            out.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    };
    assert_eq!(window(&mid, &until), ["b"]);
    assert_eq!(window("0", &mid), ["a"]);
    // A duration before now, and RFC 3339.
    assert_eq!(window("1h", &until), ["a", "b"]);
    assert!(window("2000-01-01T00:00:00Z", "2000-01-02").is_empty());
    assert_eq!(names(past(&e, &["container=a"])), ["a"]);
    assert_eq!(names(past(&e, &["container=a", "container=b"])), ["a", "b"]);
    assert!(past(&e, &["container=a", "event=start"]).is_empty());
    // Images: the `load` of the harness, then a tag and its untag.
    e.ok(&["tag", IMG, "hull.test/events:2"]);
    e.ok(&["rmi", "hull.test/events:2"]);
    let imgs = past(&e, &["type=image"]);
    assert_eq!(actions(&imgs), ["load", "tag", "untag"], "{imgs:#?}");
    assert_eq!(imgs[1]["Actor"]["Attributes"]["name"], "hull.test/events:2");
    assert_eq!(
        actions(&past(&e, &["image=hull.test/events:2"])),
        ["tag", "untag"]
    );
    // Volumes (create, mount at start, destroy) and execs.
    e.ok(&["volume", "create", "v1"]);
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "x",
        "-v",
        "v1:/data",
        IMG,
        "sleep",
        "100",
    ]);
    e.ok(&["exec", "x", "true"]);
    e.ok(&["rm", "-f", "x"]);
    e.ok(&["volume", "rm", "v1"]);
    let vols = past(&e, &["type=volume"]);
    assert_eq!(actions(&vols), ["create", "mount", "destroy"], "{vols:#?}");
    assert_eq!(vols[1]["Actor"]["ID"], "v1");
    assert_eq!(vols[1]["Actor"]["Attributes"]["destination"], "/data");
    let execs = past(
        &e,
        &[
            "container=x",
            "event=exec_create",
            "event=exec_start",
            "event=exec_die",
        ],
    );
    assert_eq!(
        actions(&execs),
        ["exec_create: true", "exec_start: true", "exec_die"]
    );
    assert_eq!(execs[2]["Actor"]["Attributes"]["exitCode"], "0");
    let x = actions(&past(&e, &["container=x"]));
    assert_eq!(x.last().map(String::as_str), Some("destroy"), "{x:?}");
    assert!(
        x.contains(&"kill".to_string()) && x.contains(&"die".to_string()),
        "{x:?}"
    );
    // Bad input: exit 125, naming what is wrong.
    for (args, names) in [
        (vec!["events", "--filter", "colour=red"], "colour"),
        (vec!["events", "--filter", "type=bogus"], "bogus"),
        (vec!["events", "--since", "yesterday"], "--since"),
        (vec!["events", "--until", "10x"], "--until"),
        (vec!["events", "--format", "{{.Nope"], "--format"),
    ] {
        let o = e.hull(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
}

/// Kills and reaps the child on every way out of the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn follow_sees_new_events() {
    let e = env();
    let mut child = Child(
        e.cmd(&["events", "--filter", "type=container", "--format", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                return;
            }
        }
    });
    // Started before the container: only what comes after is shown.
    std::thread::sleep(Duration::from_millis(500));
    let t = std::time::Instant::now();
    e.ok(&["create", "--network", "none", "--name", "live", IMG]);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no event within 10 s");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["Action"], "create");
    assert_eq!(v["Actor"]["Attributes"]["name"], "live");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Still streaming: the next one comes too.
    e.ok(&["rm", "live"]);
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap()["Action"],
        "destroy"
    );
    // Streams until killed (the Drop, by its pid), as a user's Ctrl-C ends it.
    assert!(child.0.try_wait().unwrap().is_none());
}

/// `--since`/`--until` past what nanoseconds hold (unix seconds or a duration): exit 125 and
/// an error naming the flag, not an arithmetic overflow.
#[test]
fn huge_since_and_until_name_the_flag() {
    let e = Env::new();
    for (flag, v) in [
        ("--since", "170141183460469231731687303715884105727"),
        ("--until", "99999999999999999999999999999999"),
        ("--since", "9999999999999999999h"),
    ] {
        let o = e.hull(&["events", flag, v]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{flag} {v}: {err}");
        assert!(
            err.contains(flag) && err.contains("out of range") && !err.contains("panicked"),
            "{flag} {v}: {err}"
        );
    }
}
