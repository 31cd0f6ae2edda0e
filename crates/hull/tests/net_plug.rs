//! `hull network connect|disconnect` on a running container (root): a veth hot-plugged as
//! `eth1` with names both ways, kept across a restart, unplugged on disconnect, refused for
//! what cannot be connected; nothing left after `rm`. Run under the network tests' lock.
#![allow(clippy::unwrap_used)]

mod ctr;

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/plug:1";

fn addrs(e: &Env, c: &str) -> String {
    e.ok(&["exec", c, "busybox", "ip", "-o", "-4", "addr"])
}

#[test]
fn connect_hot_plugs_a_running_container_and_a_restart_keeps_it() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&["network", "create", "--subnet", &e.net.subnet(197), "pa"]);
    e.ok(&["network", "create", "--subnet", &e.net.subnet(196), "pb"]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "pb",
        IMG,
        "sleep",
        "120",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "pa",
        IMG,
        "sleep",
        "120",
    ]);
    assert!(!addrs(&e, "a").contains("eth1"));

    e.ok(&["network", "connect", "--alias", "xa", "pb", "a"]);
    let pb = e.net.subnet(196);
    let pb_prefix = pb.rsplit_once('.').unwrap().0;
    let got = addrs(&e, "a");
    let eth1 = got.lines().find(|l| l.contains("eth1")).unwrap_or("");
    assert!(eth1.contains(&format!("inet {pb_prefix}.")), "{got}");
    let ping = e.hull(&["exec", "a", "busybox", "ping", "-c", "1", "-W", "3", "b"]);
    assert!(ping.status.success(), "{:?}", text(&ping));
    let theirs = e.ok(&["exec", "b", "cat", "/etc/hosts"]);
    assert!(theirs.contains(" xa"), "{theirs}");
    let insp: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "a"])).unwrap();
    let nets = insp[0]["NetworkSettings"]["Networks"].as_object().unwrap();
    assert!(
        nets.contains_key("pa") && nets.contains_key("pb"),
        "{nets:?}"
    );

    // A restart attaches the connected network again.
    e.ok(&["restart", "-t", "0", "a"]);
    assert!(addrs(&e, "a").contains("eth1"));
    assert!(e.ok(&["exec", "b", "cat", "/etc/hosts"]).contains(" xa"));

    e.ok(&["network", "disconnect", "pb", "a"]);
    assert!(!addrs(&e, "a").contains("eth1"));
    assert!(!e.ok(&["exec", "a", "cat", "/etc/hosts"]).contains("\tb "));
    assert!(!e.ok(&["exec", "b", "cat", "/etc/hosts"]).contains(" xa"));
    let o = e.hull(&["network", "disconnect", "pb", "a"]);
    assert!(text(&o).1.contains("not connected"), "{:?}", text(&o));
    let o = e.hull(&["network", "connect", "host", "a"]);
    assert!(
        !o.status.success() && text(&o).1.contains("host"),
        "{:?}",
        text(&o)
    );
    let o = e.hull(&["network", "connect", "nonet", "a"]);
    assert!(text(&o).1.contains("nonet"), "{:?}", text(&o));

    e.ok(&["network", "connect", "pb", "a"]);
    e.ok(&["rm", "-f", "a", "b"]);
    e.ok(&["network", "rm", "pa", "pb"]);
    e.assert_clean();
}
