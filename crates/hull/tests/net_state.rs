//! One network state per host, as root: two `--root`s running containers side by side share
//! one IPAM (never the same address) and one list of networks, and `system reset` of one root
//! leaves the other's containers reachable. And the per-container network flags: `--ip`,
//! `--network-alias`, `--add-host`, `--dns-search`/`--dns-option`, with their bad values.
//! Each test holds `/tmp/hull-net-tests.lock` and its own slot (see `ctr/mod.rs`).
#![allow(clippy::unwrap_used)]

mod ctr;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ctr::{archive, free_port, http_get, ok, text, Env, HULL};
use serde_json::{json, Value};

const IMG: &str = "hull.test/netstate:1";
const HTTPD: &[&str] = &["busybox", "httpd", "-f", "-p", "80", "-h", "/srv"];

/// Serialises the tests that give containers networks with the other helpers' tests.
struct NetLock(#[allow(dead_code)] std::fs::File);

fn net_lock() -> NetLock {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/hull-net-tests.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own; released when it closes.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    NetLock(f)
}

fn config() -> Value {
    json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]})
}

/// A second `--root` on the same host as `e` (same slot, same host-wide network state),
/// reset on drop (before `e`'s own reset).
struct Root2<'a> {
    e: &'a Env,
    dir: tempfile::TempDir,
}

impl Drop for Root2<'_> {
    fn drop(&mut self) {
        let _ = self.cmd(&["system", "reset", "--force"]).output();
    }
}

impl<'a> Root2<'a> {
    fn new(e: &'a Env) -> Root2<'a> {
        let r = Root2 {
            e,
            dir: tempfile::tempdir().unwrap(),
        };
        let a = archive(e.work.path(), IMG, config());
        r.ok(&["load", "-i", a.to_str().unwrap()]);
        r
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HULL);
        c.arg("--root").arg(self.dir.path()).args(args);
        c.envs(self.e.envs());
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        ok(&self.cmd(args).output().unwrap())
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn cmd_at(e: &Env, root: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(HULL);
    c.arg("--root").arg(root).args(args).envs(e.envs());
    c.output().unwrap()
}

fn ip_of(e: &Env, root: &Path, name: &str) -> Ipv4Addr {
    let v: Value = serde_json::from_str(&ok(&cmd_at(e, root, &["inspect", name]))).unwrap();
    v[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn two_roots_share_one_ipam_and_reset_only_their_own() {
    let _l = net_lock();
    let e = Env::new();
    e.load(IMG, config());
    let b = Root2::new(&e);
    let roots: [PathBuf; 2] = [e.root.path().into(), b.path().into()];
    // Four containers per root, all started at once.
    std::thread::scope(|s| {
        for (i, root) in roots.iter().enumerate() {
            for j in 0..4 {
                let (e, root) = (&e, root.clone());
                s.spawn(move || {
                    let name = format!("c{i}{j}");
                    let o = cmd_at(
                        e,
                        &root,
                        &["run", "-d", "--name", &name, IMG, "sleep", "1000"],
                    );
                    ok(&o);
                });
            }
        }
    });
    let mut ips = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        for j in 0..4 {
            ips.push(ip_of(&e, root, &format!("c{i}{j}")));
        }
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "an address handed out twice: {ips:?}");
    assert_eq!(e.leases().len(), 8);

    // Definitions are host-wide: a network made from one root is the other's too.
    e.ok(&[
        "network",
        "create",
        "--subnet",
        &e.net.subnet(195),
        "shared",
    ]);
    let ls = b.ok(&["network", "ls"]);
    assert!(
        ls.contains("shared") && ls.contains(&e.net.subnet(195)),
        "{ls}"
    );
    assert_eq!(
        b.ok(&["network", "ls", "-q"]),
        e.ok(&["network", "ls", "-q"])
    );

    // B serves on the bridge (a published port) and on the shared network.
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let mut args = vec!["run", "-d", "--name", "web", "-p", &publish, IMG];
    args.extend_from_slice(HTTPD);
    b.ok(&args);
    let mut args = vec!["run", "-d", "--name", "web2", "--network", "shared", IMG];
    args.extend_from_slice(HTTPD);
    b.ok(&args);
    e.ok(&[
        "run",
        "-d",
        "--name",
        "a2",
        "--network",
        "shared",
        IMG,
        "sleep",
        "1000",
    ]);
    assert!(http_get(port, "/from-image").ends_with("image data\n"));
    let b_veths = e.links().len();

    // A's reset: only A's containers lose their networking.
    e.ok(&["system", "reset", "--force"]);
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "");
    assert_eq!(e.leases().len(), 6, "B's leases stay: {:?}", e.leases());
    assert!(e.table_exists(), "the shared nft table went");
    assert!(e.links().len() < b_veths);
    assert!(http_get(port, "/from-image").ends_with("image data\n"));
    let web = ip_of(&e, b.path(), "web");
    let got = b.ok(&[
        "run",
        "--rm",
        IMG,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{web}/from-image"),
    ]);
    assert_eq!(got, "image data\n");
    let got = b.ok(&[
        "run",
        "--rm",
        "--network",
        "shared",
        IMG,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web2/from-image",
    ]);
    assert_eq!(got, "image data\n");
    assert!(
        b.ok(&["network", "ls"]).contains("shared"),
        "in use by B: kept"
    );

    // B's reset: nothing of hull's is left on the host.
    b.ok(&["system", "reset", "--force"]);
    assert!(e.leases().is_empty(), "{:?}", e.leases());
    let links = e.links_settled(|_| true);
    assert!(links.is_empty(), "links left: {links:?}");
    assert!(!e.table_exists(), "nft table left");
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
fn ip_alias_add_host_and_dns_flags() {
    let _l = net_lock();
    let e = Env::new();
    e.load(IMG, config());
    let n = e.net.n;
    e.ok(&["network", "create", "--subnet", &e.net.subnet(195), "tnet"]);
    let fixed = format!("10.195.{n}.50");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "tnet",
        "--ip",
        &fixed,
        "--network-alias",
        "db",
        "--network-alias",
        "db.internal",
        "--add-host",
        "foo.example:192.0.2.7",
        "--add-host",
        "gw:host-gateway",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "ndots:2",
        IMG,
    ];
    args.extend_from_slice(HTTPD);
    e.ok(&args);
    let addr = e.ok(&["exec", "a", "busybox", "ip", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {fixed}/24")), "{addr}");
    let resolv = e.ok(&["exec", "a", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("search corp.example\n"), "{resolv}");
    assert!(resolv.contains("options ndots:2\n"), "{resolv}");
    // Another container on the network reaches it by its aliases.
    for alias in ["db", "db.internal"] {
        let got = e.ok(&[
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
            &format!("http://{alias}/from-image"),
        ]);
        assert_eq!(got, "image data\n", "{alias}");
    }
    // The --add-host entries survive the rewrites as containers come and go.
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
    assert!(hosts.contains("192.0.2.7\tfoo.example\n"), "{hosts}");
    assert!(hosts.contains(&format!("10.195.{n}.1\tgw\n")), "{hosts}");
    assert!(hosts.contains("\tc "), "{hosts}");
    let from_c = e.ok(&["exec", "c", "cat", "/etc/hosts"]);
    assert!(from_c.contains(&format!("{fixed}\ta ")), "{from_c}");
    assert!(
        !from_c.contains("foo.example"),
        "a's --add-host is a's: {from_c}"
    );
    // Without a network of hull's: host-gateway is the default bridge's gateway.
    let hosts = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "gw:host-gateway",
        "--add-host",
        "v6:::1",
        IMG,
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains(&format!("10.199.{n}.1\tgw\n")), "{hosts}");
    assert!(hosts.contains("::1\tv6\n"), "{hosts}");

    // Refused before anything is made.
    let before = e.ok(&["ps", "-a", "-q"]);
    let leases = e.leases().len();
    let outside = format!("10.195.{n}.255");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--network", "tnet", "--ip", &fixed],
            vec!["--ip", "already in use", "a"],
        ),
        (
            vec!["--network", "tnet", "--ip", "10.1.2.3"],
            vec!["--ip", "not an assignable"],
        ),
        (
            vec!["--network", "tnet", "--ip", &outside],
            vec!["--ip", "not an assignable"],
        ),
        (
            vec!["--ip", &fixed],
            vec!["--ip", "user-defined networks", "bridge"],
        ),
        (
            vec!["--network-alias", "x"],
            vec!["--network-alias", "user-defined"],
        ),
        (
            vec!["--network", "tnet", "--ip", "10.0.0.300"],
            vec!["invalid --ip"],
        ),
        (
            vec!["--add-host", "nocolon"],
            vec!["invalid --add-host", "HOST:IP"],
        ),
        (
            vec!["--add-host", "h:not-an-ip"],
            vec!["invalid --add-host", "not-an-ip"],
        ),
        (
            vec!["--add-host", "bad name:1.2.3.4"],
            vec!["invalid --add-host", "host name"],
        ),
        (
            vec!["--network", "tnet", "--network-alias", "bad/alias"],
            vec!["invalid --network-alias"],
        ),
        (
            vec!["--dns", "not-an-ip"],
            vec!["invalid --dns", "not-an-ip"],
        ),
        (
            vec!["--network", "container:a", "--add-host", "h:1.2.3.4"],
            vec!["--add-host"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend(flags);
        args.extend([IMG, "true"]);
        fails_with(&e, &args, &needles);
    }
    assert_eq!(e.ok(&["ps", "-a", "-q"]), before);
    assert_eq!(e.leases().len(), leases);
    e.ok(&["rm", "-f", "a", "c"]);
    e.assert_clean();
}

#[test]
fn a_lease_whose_container_directory_is_gone_is_reclaimed() {
    let _l = net_lock();
    let e = Env::new();
    e.load(IMG, config());
    let b = Root2::new(&e);
    e.ok(&["network", "create", "--subnet", &e.net.subnet(195), "tnet"]);
    let fixed = format!("10.195.{}.60", e.net.n);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "old",
        "--network",
        "tnet",
        "--ip",
        &fixed,
        IMG,
        "sleep",
        "1000",
    ]);
    fails_with(
        &e,
        &[
            "run",
            "--rm",
            "--network",
            "tnet",
            "--ip",
            &fixed,
            IMG,
            "true",
        ],
        &["--ip", "already in use"],
    );
    // As if B's root had been deleted with its container running: the lease's holder (the
    // container's directory) is gone, so the address is free for the next container.
    let v: Value = serde_json::from_str(&b.ok(&["inspect", "old"])).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    let dir = b.path().join("ctr").join(&id);
    let moved = b.path().join("ctr").join(format!(".moved-{id}"));
    std::fs::rename(&dir, &moved).unwrap();
    let o = e.hull(&[
        "run",
        "-d",
        "--name",
        "new",
        "--network",
        "tnet",
        "--ip",
        &fixed,
        IMG,
        "sleep",
        "1000",
    ]);
    std::fs::rename(&moved, &dir).unwrap();
    ok(&o);
    assert_eq!(
        ip_of(&e, e.root.path(), "new"),
        fixed.parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(e.leases().len(), 1, "{:?}", e.leases());
    b.ok(&["rm", "-f", "old"]);
    e.ok(&["rm", "-f", "new"]);
    e.assert_clean();
}

#[test]
fn network_rm_reclaims_a_lease_whose_container_directory_is_gone() {
    let _l = net_lock();
    let e = Env::new();
    e.load(IMG, config());
    let b = Root2::new(&e);
    e.ok(&[
        "network",
        "create",
        "--subnet",
        &e.net.subnet(196),
        "gonenet",
    ]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "old",
        "--network",
        "gonenet",
        IMG,
        "sleep",
        "1000",
    ]);
    fails_with(&e, &["network", "rm", "gonenet"], &["gonenet", "in use"]);
    // As if B's root had been deleted with its container running: its lease is stale, and
    // stale leases do not keep the network, as they do not keep an address.
    let v: Value = serde_json::from_str(&b.ok(&["inspect", "old"])).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    let dir = b.path().join("ctr").join(&id);
    let moved = b.path().join("ctr").join(format!(".moved-{id}"));
    std::fs::rename(&dir, &moved).unwrap();
    let o = e.hull(&["network", "rm", "gonenet"]);
    std::fs::rename(&moved, &dir).unwrap();
    ok(&o);
    assert!(e.leases().is_empty(), "{:?}", e.leases());
    b.ok(&["rm", "-f", "old"]);
    e.assert_clean();
}
