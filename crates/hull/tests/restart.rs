//! `hull start` of a stopped container and `hull restart`, end to end as root:
//! the same name, rootfs (files written by the first run), address, names and
//! published ports, logs appended. Network slot and cleanup as in `ctr/mod.rs`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::time::{Duration, Instant};

use ctr::{free_port, http_get, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/restart:1";

fn inspect(e: &Env, name: &str) -> Value {
    serde_json::from_str::<Value>(&e.ok(&["inspect", name])).unwrap()[0].clone()
}

fn status(e: &Env, name: &str) -> String {
    inspect(e, name)["State"]["Status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `wget` of `http://web/note` from a second container on the network.
fn from_neighbour(e: &Env, url: &str) -> String {
    e.ok(&[
        "run",
        "--rm",
        "--network",
        "tnet",
        IMG,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    ])
}

#[test]
fn start_after_exit_and_restart() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&["network", "create", "--subnet", &e.net.subnet(197), "tnet"]);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    // Each run: says so, shows what the last run left, leaves a note, serves /srv.
    let script = "echo run; cat /srv/note 2>/dev/null; echo kept >/srv/note; \
                  exec busybox httpd -f -p 80 -h /srv";
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "tnet",
        "-p",
        &publish,
        IMG,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(http_get(port, "/note").lines().last(), Some("kept"));
    let ip = inspect(&e, "web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(status(&e, "web"), "exited");

    // Started again: same container, its rootfs kept, network and port back.
    assert_eq!(e.ok(&["start", "web"]), "web\n");
    assert_eq!(status(&e, "web"), "running");
    assert_eq!(http_get(port, "/note").lines().last(), Some("kept"));
    let ns = inspect(&e, "web")["NetworkSettings"].clone();
    assert_eq!(ns["IPAddress"], ip.as_str(), "{ns}");
    assert_eq!(from_neighbour(&e, "http://web/note"), "kept\n");
    assert_eq!(from_neighbour(&e, &format!("http://{ip}/note")), "kept\n");
    let hosts = e.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\tweb")), "{hosts}");

    // restart: stop, then start; logs of all three runs, in order.
    assert_eq!(e.ok(&["restart", "-t", "1", "web"]), "web\n");
    assert_eq!(status(&e, "web"), "running");
    assert_eq!(http_get(port, "/note").lines().last(), Some("kept"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = "run\nrun\nkept\nrun\nkept\n";
    while e.ok(&["logs", "web"]) != want {
        assert!(
            Instant::now() < deadline,
            "logs: {:?}",
            e.ok(&["logs", "web"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // start of a running container is refused.
    let o = e.hull(&["start", "web"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    e.ok(&["rm", "-f", "web"]);
    e.ok(&["network", "rm", "tnet"]);
    e.assert_clean();
}

/// A container that exited on its own (never stopped) starts again with its
/// rootfs; `start -a` shows only the new run's output. No network: this one
/// need not wait for the host-wide network test lock.
#[test]
fn start_after_own_exit_keeps_rootfs() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "once",
        IMG,
        "sh",
        "-c",
        "cat /count 2>/dev/null; echo x >>/count",
    ]);
    assert_eq!(e.ok(&["wait", "once"]), "0\n");
    assert_eq!(e.ok(&["start", "-a", "once"]), "x\n");
    assert_eq!(e.ok(&["start", "-a", "once"]), "x\nx\n");
    assert_eq!(e.ok(&["logs", "once"]), "x\nx\nx\n");
    e.ok(&["rm", "once"]);
    e.assert_clean();
}
