//! `hull network connect|disconnect` on a running container (root): a veth hot-plugged as
//! `eth1` with names both ways, kept across a restart, unplugged on disconnect, refused for
//! what cannot be connected; nothing left after `rm`. Run under the network tests' lock.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::process::Stdio;

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

/// Two connects at once (the record read, plugged and saved under the run and store locks)
/// get two interfaces; a container left only on a connected network gets its default route
/// and keeps its `--add-host` entries; an exited container is not connected to a network
/// that does not exist (its next start would fail).
#[test]
fn concurrent_connects_the_last_network_routes_and_a_missing_one_is_refused() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&["network", "create", "--subnet", &e.net.subnet(193), "qa"]);
    e.ok(&["network", "create", "--subnet", &e.net.subnet(192), "qb"]);
    e.ok(&["network", "create", "--subnet", &e.net.subnet(191), "qc"]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "qa",
        "--add-host",
        "extra.test:10.9.8.7",
        IMG,
        "sleep",
        "120",
    ]);
    let kids: Vec<_> = ["qb", "qc"]
        .iter()
        .map(|n| {
            let mut c = e.cmd(&["network", "connect", n, "a"]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let got = addrs(&e, "a");
    assert!(got.contains("eth1") && got.contains("eth2"), "{got}");

    e.ok(&["network", "disconnect", "qa", "a"]);
    e.ok(&["network", "disconnect", "qc", "a"]);
    let routes = e.ok(&["exec", "a", "busybox", "ip", "route"]);
    let qb_gw = format!("{}.1", e.net.subnet(192).rsplit_once('.').unwrap().0);
    assert!(routes.contains(&format!("default via {qb_gw}")), "{routes}");
    let hosts = e.ok(&["exec", "a", "cat", "/etc/hosts"]);
    assert!(hosts.contains("extra.test"), "{hosts}");
    // Started again on `none`: the connected network is plugged with the default route.
    e.ok(&["restart", "-t", "0", "a"]);
    let routes = e.ok(&["exec", "a", "busybox", "ip", "route"]);
    assert!(routes.contains(&format!("default via {qb_gw}")), "{routes}");

    e.ok(&["run", "--name", "x", "--network", "qa", IMG, "true"]);
    let o = e.hull(&["network", "connect", "nonet", "x"]);
    assert!(
        !o.status.success() && text(&o).1.contains("no such network"),
        "{:?}",
        text(&o)
    );
    e.ok(&["start", "x"]);

    e.ok(&["rm", "-f", "a", "x"]);
    e.ok(&["network", "rm", "qa", "qb", "qc"]);
    e.assert_clean();
}
