//! `hull` networking end to end as root: published ports reached from the host on 127.0.0.1,
//! names on user networks, none/host/container: modes, teardown after exit/stop/rm/reset,
//! bad input; and image `Volumes` (anonymous volumes). Each test has its own link prefix,
//! nft table and subnets (see `ctr/mod.rs`), talks only to loopback and its containers, and
//! leaves nothing behind.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use ctr::{free_port, http_get, text, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/net:1";
const HTTPD: &[&str] = &["busybox", "httpd", "-f", "-p", "80", "-h", "/srv"];

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

fn inspect(e: &Env, name: &str) -> Value {
    serde_json::from_str::<Value>(&e.ok(&["inspect", name])).unwrap()[0].clone()
}

fn fails_with(e: &Env, args: &[&str], needles: &[&str]) {
    let o = e.hull(args);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn published_port_reaches_httpd_from_host_loopback() {
    let e = env();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    // Without an address: every local address of the host, 127.0.0.1 included.
    let any = free_port();
    let publish_any = format!("{any}:80");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "-p",
        &publish_any,
        IMG,
    ];
    args.extend_from_slice(HTTPD);
    e.ok(&args);
    let body = http_get(port, "/from-image");
    assert!(body.ends_with("image data\n"), "{body}");
    assert!(http_get(any, "/from-image").ends_with("image data\n"));

    assert_eq!(
        e.ok(&["port", "web"]),
        format!("80/tcp -> 127.0.0.1:{port}\n80/tcp -> 0.0.0.0:{any}\n")
    );
    assert_eq!(
        e.ok(&["port", "web", "80/tcp"]),
        format!("127.0.0.1:{port}\n0.0.0.0:{any}\n")
    );
    assert!(e.ok(&["ps"]).contains(&format!("127.0.0.1:{port}->80/tcp")));
    let i = inspect(&e, "web");
    let ns = &i["NetworkSettings"];
    let net = format!("10.199.{}.", e.net.n);
    assert!(ns["IPAddress"].as_str().unwrap().starts_with(&net), "{ns}");
    assert_eq!(ns["Gateway"], format!("{net}1"));
    assert_eq!(ns["IPPrefixLen"], 24);
    assert_eq!(ns["MacAddress"].as_str().unwrap().len(), 17, "{ns}");
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostPort"], port.to_string());
    assert_eq!(ns["Ports"]["80/tcp"][1]["HostIp"], "0.0.0.0");
    assert_eq!(ns["Networks"]["bridge"]["IPAddress"], ns["IPAddress"]);
    assert_eq!(i["HostConfig"]["NetworkMode"], "bridge");
    // The same from inside: address, MAC, default route, hosts and resolv.conf.
    let ip = ns["IPAddress"].as_str().unwrap().to_string();
    let inside = e.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "cat /sys/class/net/eth0/address /etc/hosts /etc/resolv.conf; busybox ip route",
    ]);
    assert!(
        inside.contains(ns["MacAddress"].as_str().unwrap()),
        "{inside}"
    );
    assert!(inside.contains(&format!("{ip}\tweb")), "{inside}");
    assert!(inside.contains(&format!("default via {net}1")), "{inside}");
    assert!(!inside.contains("nameserver 127."), "{inside}");
    // Another container on the bridge reaches it by address.
    let back = e.ok(&[
        "run",
        "--rm",
        IMG,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{ip}/from-image"),
    ]);
    assert_eq!(back, "image data\n");

    // docker releases the network on stop: the lease and port rules go, the record stays.
    assert!(!e.leases().is_empty() && !e.port_rules().is_empty());
    e.ok(&["stop", "-t", "1", "web"]);
    assert!(e.leases().is_empty(), "{:?}", e.leases());
    assert!(e.port_rules().is_empty(), "{:?}", e.port_rules());
    assert_eq!(e.ok(&["port", "web"]), "");
    assert_eq!(inspect(&e, "web")["NetworkSettings"]["IPAddress"], "");
    e.ok(&["rm", "web"]);
    e.assert_clean();
}

#[test]
fn user_network_containers_resolve_each_other_by_name() {
    let e = env();
    let subnet = e.net.subnet(197);
    e.ok(&["network", "create", "--subnet", &subnet, "tnet"]);
    let ls = e.ok(&["network", "ls"]);
    assert!(ls.contains("tnet") && ls.contains(&subnet), "{ls}");
    let mut args = vec!["run", "-d", "--name", "a", "--network", "tnet", IMG];
    args.extend_from_slice(HTTPD);
    e.ok(&args);
    let got = e.ok(&[
        "run",
        "--rm",
        "--name",
        "b",
        "--network",
        "tnet",
        IMG,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://a/from-image",
    ]);
    assert_eq!(got, "image data\n");
    // Hosts files are kept current as containers come and go.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "tnet",
        IMG,
        "sleep",
        "1000",
    ]);
    let hosts = e.ok(&["exec", "a", "cat", "/etc/hosts"]);
    assert!(hosts.contains("\tc ") || hosts.contains("\tc\n"), "{hosts}");
    assert!(!hosts.contains("\tb"), "b left its name behind: {hosts}");
    assert_eq!(
        e.ok(&[
            "exec",
            "c",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://a/from-image"
        ]),
        "image data\n"
    );
    let info: Value = serde_json::from_str(&e.ok(&["network", "inspect", "tnet"])).unwrap();
    assert_eq!(info[0]["subnet"], subnet);
    let names: Vec<&str> = info[0]["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"a") && names.contains(&"c"), "{names:?}");
    // A network in use is not removed, and the error names its containers.
    fails_with(&e, &["network", "rm", "tnet"], &["in use", "a"]);
    e.ok(&["rm", "-f", "c"]);
    let hosts = e.ok(&["exec", "a", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("\tc"), "{hosts}");
    e.ok(&["rm", "-f", "a"]);
    e.ok(&["network", "rm", "tnet"]);
    assert!(!e.ok(&["network", "ls", "-q"]).contains("tnet"));
    e.assert_clean();
}

fn netns_of_host() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn none_host_and_container_modes() {
    let e = env();
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMG,
            "ls",
            "/sys/class/net"
        ]),
        "lo\n"
    );
    let res = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMG,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(!res.contains("nameserver 127."), "{res}");
    // host: the host's namespace and interfaces.
    let ns = e.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMG,
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(ns.trim(), netns_of_host());
    let ifs = e.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMG,
        "ls",
        "/sys/class/net",
    ]);
    let host_if = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .find(|n| n != "lo" && !n.starts_with("hn"))
        .unwrap();
    assert!(ifs.lines().any(|l| l == host_if), "{host_if} not in {ifs}");
    assert_eq!(inspect_mode(&e, "host"), "host");
    // container:NAME shares the namespace (and hosts) of a running container.
    e.ok(&["run", "-d", "--name", "owner", IMG, "sleep", "1000"]);
    let theirs = e.ok(&["exec", "owner", "busybox", "readlink", "/proc/self/ns/net"]);
    let mine = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        IMG,
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(mine, theirs);
    assert_ne!(mine.trim(), netns_of_host());
    let ip = inspect(&e, "owner")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let hosts = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        IMG,
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains(&format!("{ip}\towner")), "{hosts}");
    fails_with(
        &e,
        &["run", "--rm", "--network", "container:nothere", IMG, "true"],
        &["no such container"],
    );
    e.ok(&["stop", "-t", "0", "owner"]);
    fails_with(
        &e,
        &["run", "--rm", "--network", "container:owner", IMG, "true"],
        &["--network", "not running"],
    );
    e.ok(&["rm", "owner"]);
    e.assert_clean();
}

fn inspect_mode(e: &Env, mode: &str) -> String {
    e.ok(&["create", "--name", "m", "--network", mode, IMG, "true"]);
    let m = inspect(e, "m")["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap()
        .to_string();
    e.ok(&["rm", "m"]);
    m
}

#[test]
fn teardown_on_exit_rm_and_reset() {
    let e = env();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    // Exits on its own, nobody attached: the next ps releases lease and rules.
    e.ok(&[
        "run", "-d", "--name", "quick", "-p", &publish, IMG, "sleep", "0.3",
    ]);
    assert_eq!(e.leases().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["ps", "-a"]).contains("Exited (0)") {
        assert!(Instant::now() < deadline, "quick did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(e.leases().is_empty() && e.port_rules().is_empty());
    e.ok(&["rm", "quick"]);
    // rm -f of a running container with a published port on a user network.
    e.ok(&["network", "create", "--subnet", &e.net.subnet(197), "n1"]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "n1",
        "-p",
        &publish,
        IMG,
        "sleep",
        "1000",
    ]);
    assert_eq!(e.leases().len(), 1);
    assert!(e.links().len() >= 2, "{:?}", e.links()); // bridge + veth
    assert!(e.table_exists());
    e.ok(&["rm", "-f", "s"]);
    e.assert_clean();
    // A failure mid-attach (here: the bridge's name is taken by a veth, so the container's
    // veth cannot be enslaved to it) leaves no container, lease or veth.
    let dummy = format!("{}2", e.net.prefix());
    let peer = format!("{}p", e.net.prefix());
    let made = Command::new("ip")
        .args(["link", "add", &dummy, "type", "veth", "peer", "name", &peer])
        .status();
    assert!(made.unwrap().success());
    e.ok(&[
        "network",
        "create",
        "--subnet",
        &e.net.subnet(196),
        "broken",
    ]);
    let o = e.hull(&["run", "--rm", "--network", "broken", IMG, "true"]);
    let _ = Command::new("ip").args(["link", "del", &dummy]).status();
    assert_eq!(o.status.code(), Some(125), "{}", text(&o).1);
    assert!(text(&o).1.contains("--network broken"), "{}", text(&o).1);
    e.assert_clean();
    // reset: asks first (no answer = no), then removes everything of hull's.
    e.ok(&[
        "run", "-d", "--name", "r1", "-p", &publish, IMG, "sleep", "1000",
    ]);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "r2",
        "--network",
        "n1",
        IMG,
        "sleep",
        "1000",
    ]);
    // As if hull had crashed before writing r1's record: reset still finds its shim, task,
    // rootfs, lease, veth and port rules.
    let r1 = e.ok(&["inspect", "r1"]);
    let r1: Value = serde_json::from_str(&r1).unwrap();
    let dir = e
        .root
        .path()
        .join("ctr")
        .join(r1[0]["Id"].as_str().unwrap());
    std::fs::remove_file(dir.join("container.json")).unwrap();
    let o = e
        .cmd(&["system", "reset"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).1.contains("--force"), "{}", text(&o).1);
    assert_eq!(e.ok(&["ps", "-q"]).lines().count(), 1);
    assert_eq!(e.leases().len(), 2);
    e.ok(&["system", "reset", "--force"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    let links = e.links_settled(|_| true);
    assert!(links.is_empty(), "links left: {links:?}");
    assert!(!e.table_exists(), "nft table left");
    assert!(e.leases().is_empty());
    let nets: Vec<_> = std::fs::read_dir(e.net_state().join("networks"))
        .unwrap()
        .flatten()
        .filter(|f| f.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(nets.is_empty(), "{nets:?}");
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(&e.net.prefix()));
    e.assert_clean();
}

#[test]
fn bad_network_input_is_refused_and_leaves_nothing() {
    let e = env();
    fails_with(
        &e,
        &["run", "--rm", "--network", "nope", IMG, "true"],
        &["--network nope", "no such network", "hull network create"],
    );
    fails_with(
        &e,
        &["run", "--rm", "--network", "bad/name", IMG, "true"],
        &["--network", "bad/name"],
    );
    for bad in ["80", "0:80", "70000:80", "80:80/sctp", "host:80:80"] {
        fails_with(
            &e,
            &["run", "--rm", "-p", bad, IMG, "true"],
            &["-p/--publish", bad],
        );
    }
    fails_with(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "8080:80",
            IMG,
            "true",
        ],
        &["-p/--publish", "none"],
    );
    // A host port some process holds, and one another container publishes.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = format!("127.0.0.1:{}:80", held.local_addr().unwrap().port());
    fails_with(
        &e,
        &["run", "--rm", "-p", &p, IMG, "true"],
        &["-p", "already in use"],
    );
    drop(held);
    let port = free_port();
    let p = format!("127.0.0.1:{port}:80");
    e.ok(&[
        "run", "-d", "--name", "first", "-p", &p, IMG, "sleep", "1000",
    ]);
    fails_with(
        &e,
        &["run", "--rm", "-p", &format!("{port}:81"), IMG, "true"],
        &["-p", "already published", "first"],
    );
    e.ok(&["rm", "-f", "first"]);
    // Subnets: overlap, syntax, reserved names, removing what does not exist.
    e.ok(&["network", "create", "--subnet", &e.net.subnet(197), "n1"]);
    let half = format!("10.197.{}.128/25", e.net.n);
    fails_with(
        &e,
        &["network", "create", "--subnet", &half, "n2"],
        &["overlaps", "n1"],
    );
    fails_with(
        &e,
        &["network", "create", "--subnet", "10.1.2.3", "n3"],
        &["--subnet"],
    );
    fails_with(&e, &["network", "create", "n1"], &["already exists"]);
    fails_with(&e, &["network", "create", "host"], &["reserved"]);
    fails_with(&e, &["network", "rm", "nothere"], &["no such network"]);
    fails_with(&e, &["network", "rm", "bridge"], &["predefined"]);
    assert!(!e.ok(&["network", "ls", "-q"]).contains("n2"));
    e.ok(&["network", "rm", "n1"]);
    e.assert_clean();
}

#[test]
fn image_volumes_become_anonymous_volumes() {
    let e = env();
    e.load(
        "hull.test/vol:1",
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh"], "Volumes": {"/srv": {}}}),
    );
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "v",
        "hull.test/vol:1",
        "sleep",
        "1000",
    ]);
    let vols = e.ok(&["volume", "ls", "-q"]);
    let vol = vols.trim().to_string();
    assert_eq!(vol.len(), 64, "{vols}");
    let data = e.root.path().join("volumes").join(&vol).join("_data");
    assert_eq!(
        std::fs::read_to_string(data.join("from-image")).unwrap(),
        "image data\n"
    );
    let got = e.ok(&[
        "exec",
        "v",
        "sh",
        "-c",
        "cat /srv/from-image; echo w > /srv/new; grep ' /srv ' /proc/mounts | wc -l",
    ]);
    assert_eq!(got, "image data\n1\n");
    assert_eq!(std::fs::read_to_string(data.join("new")).unwrap(), "w\n");
    fails_with(&e, &["volume", "rm", &vol], &["in use"]);
    // rm without -v keeps it (docker's rule); then it can go.
    e.ok(&["rm", "-f", id.trim()]);
    assert!(e.ok(&["volume", "ls", "-q"]).contains(&vol));
    e.ok(&["volume", "rm", &vol]);
    // --rm removes it; a -v over the path means no anonymous volume.
    let out = e.ok(&[
        "run",
        "--rm",
        "hull.test/vol:1",
        "sh",
        "-c",
        "cat /srv/from-image; touch /srv/x && echo ok",
    ]);
    assert_eq!(out, "image data\nok\n");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    // (A fresh named volume is filled from the image too, as docker does.)
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "named:/srv",
        "hull.test/vol:1",
        "ls",
        "/srv",
    ]);
    assert_eq!(out, "from-image\n");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named\n");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "hull.test/vol:1",
        "sleep",
        "1000",
    ]);
    e.ok(&["rm", "-f", "-v", "w"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "named\n");
    e.ok(&["volume", "rm", "named"]);
    e.assert_clean();
}

#[test]
fn listing_commands_need_no_runtime_binaries() {
    let e = env();
    // hull alone, without hullc and the shim next to it or on PATH.
    let lone = e.work.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(ctr::HULL, lone.join("hull")).unwrap();
    e.ok(&["create", "--name", "c", IMG, "true"]);
    let run = |args: &[&str]| {
        Command::new(lone.join("hull"))
            .arg("--root")
            .arg(e.root.path())
            .args(args)
            .envs(e.envs())
            .env("PATH", "/nonexistent")
            .env_remove("HULLC")
            .env_remove("HULL_SHIM")
            .output()
            .unwrap()
    };
    for args in [
        &["ps", "-a"][..],
        &["inspect", "c"],
        &["images"],
        &["network", "ls"],
        &["volume", "ls"],
        &["port", "c"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
    }
    assert!(text(&run(&["ps", "-a"])).0.contains("Created"));
    let o = run(&["run", "--rm", IMG, "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("cannot find"), "{}", text(&o).1);
    e.ok(&["rm", "c"]);
    e.assert_clean();
}

/// Runs `name` detached on the default bridge and SIGKILLs only its shim: the container
/// outlives it (init is not the shim's child). Its id.
fn run_and_kill_shim(e: &Env, name: &str) -> String {
    let id = e
        .ok(&["run", "-d", "--name", name, IMG, "sleep", "1000"])
        .trim()
        .to_string();
    let shims = ctr::shims_under(e.root.path());
    assert_eq!(shims.len(), 1, "{shims:?}");
    // SAFETY: kill(2) on a pid just read from /proc, a shim this test started.
    assert_eq!(unsafe { libc::kill(shims[0], libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctr::shims_under(e.root.path()).is_empty() {
        assert!(Instant::now() < deadline, "the shim did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    id
}

/// The host veths of this slot's containers: its links but the bridges (as `assert_clean`).
fn veths(e: &Env) -> Vec<String> {
    e.links()
        .into_iter()
        .filter(|l| !l.ends_with(|c: char| c.is_ascii_digit()) || l.len() > 7)
        .collect()
}

#[test]
fn listing_without_hullc_keeps_the_network_of_a_container_whose_shim_died() {
    let e = env();
    run_and_kill_shim(&e, "orphan");
    assert_eq!(e.leases().len(), 1);
    let before = veths(&e);
    assert_eq!(before.len(), 1, "{:?}", e.links());
    // The shim does not answer and hullc cannot be asked: the state is unknown, which is no
    // reason to tear down the network of what may well (and here does) still run.
    for args in [&["ps", "-a"][..], &["inspect", "orphan"]] {
        let o = e.cmd(args).env("HULLC", "/nonexistent").output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
    }
    assert_eq!(e.leases().len(), 1, "lease released by a listing");
    assert_eq!(veths(&e), before, "veth deleted by a listing");
    assert!(e.ok(&["ps"]).contains("orphan"));
    e.ok(&["rm", "-f", "orphan"]);
    e.assert_clean();
}

#[test]
fn rm_that_cannot_delete_the_task_keeps_its_network_and_rootfs() {
    let e = env();
    let id = run_and_kill_shim(&e, "stuck");
    let before = veths(&e);
    assert_eq!(before.len(), 1, "{:?}", e.links());
    // A hullc whose delete fails (as it does for a task it cannot kill): the task may still
    // run, so neither its veth and lease nor its rootfs may go, only the rm fail.
    let real = std::path::Path::new(ctr::HULL).with_file_name("hullc");
    let wrapper = e.work.path().join("hullc-no-delete");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = delete ] && {{ echo refused >&2; exit 1; }}; done\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = e
        .cmd(&["rm", "-f", "stuck"])
        .env("HULLC", &wrapper)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).1.contains("refused"), "{}", text(&o).1);
    assert_eq!(e.leases().len(), 1, "lease released");
    assert_eq!(veths(&e), before, "veth deleted");
    let rootfs = e.root.path().join("containers").join(&id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&*rootfs.to_string_lossy()),
        "rootfs unmounted"
    );
    assert!(e.ok(&["ps"]).contains("stuck"));
    // With a working hullc, rm finishes the job.
    e.ok(&["rm", "-f", "stuck"]);
    e.assert_clean();
}
