//! Real-kernel tests (root): network namespaces made here stand in for containers.
//!
//! Every test uses its own link prefix, bridge, subnet (10.199.N.0/24), nft table and state
//! dir, talks only to loopback and its own namespaces, and checks that nothing of it is left.
//! Skips (with a note) when not root or when `ip`, `nft` or busybox are missing;
//! HULL_NET_HOST_TESTS=0 skips them. Run: `cargo test -p hull-net --test netns`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hull_net::{AttachRequest, NetworkSpec, Networks, Options, Subnet};

static N: AtomicU32 = AtomicU32::new(0);

/// Everything one test made; dropping it removes all of it even when an assertion failed.
struct Env {
    nets: Networks,
    prefix: String,
    table: String,
    netns: Vec<String>,
    children: Vec<Child>,
    _state: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.nets.reset(false) {
            eprintln!("cleanup reset: {e}");
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        // Only if empty: other tests may be using it.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn setup() -> Option<Env> {
    if std::env::var("HULL_NET_HOST_TESTS").as_deref() == Ok("0") {
        eprintln!("skipped: HULL_NET_HOST_TESTS=0");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network tests need root");
        return None;
    }
    for (c, a) in [("ip", "-V"), ("nft", "--version"), ("busybox", "true")] {
        if !have(c, a) {
            eprintln!("skipped: {c} is not installed");
            return None;
        }
    }
    let n = N.fetch_add(1, Ordering::SeqCst);
    let id = (std::process::id().wrapping_mul(31).wrapping_add(n * 7919)) & 0xfffff;
    let prefix = format!("h{id:05x}");
    let table = format!("hulltest_{id:05x}");
    let state = tempfile::tempdir().expect("state dir");
    let opts = Options {
        state_dir: state.path().join("networks"),
        run_dir: state.path().join("run"),
        link_prefix: prefix.clone(),
        nft_table: table.clone(),
        ..Options::default()
    };
    let nets = Networks::open(opts).expect("open networks");
    Some(Env {
        nets,
        prefix,
        table,
        netns: vec![],
        children: vec![],
        _state: state,
    })
}

impl Env {
    /// A network with its own bridge and a free 10.199.N.0/24.
    fn network(&self, name: &str) -> hull_net::NetworkConfig {
        let start = (std::process::id() + N.fetch_add(1, Ordering::SeqCst) * 37) % 250;
        for i in 0..250 {
            let subnet = Subnet::new(Ipv4Addr::new(10, 199, ((start + i) % 250) as u8, 0), 24);
            let spec = NetworkSpec {
                name: name.to_string(),
                subnet: Some(subnet),
                bridge: Some(format!("{}br", self.prefix)),
                mtu: Some(1400),
            };
            match self.nets.create(&spec) {
                Ok(c) => return c,
                Err(hull_net::NetError::Subnet(_)) => continue,
                Err(e) => panic!("create network: {e}"),
            }
        }
        panic!("no free 10.199.N.0/24");
    }

    fn netns(&mut self, suffix: &str) -> (String, PathBuf) {
        let name = format!("{}{suffix}", self.prefix);
        run("ip", &["netns", "add", &name]);
        self.netns.push(name.clone());
        std::fs::create_dir_all(Path::new("/etc/netns").join(&name)).expect("/etc/netns dir");
        (name.clone(), PathBuf::from(format!("/run/netns/{name}")))
    }

    fn links(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with(&self.prefix))
            .collect()
    }

    fn table_exists(&self) -> bool {
        Command::new("nft")
            .args(["list", "table", "inet", &self.table])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("nft")
            .success()
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns, "busybox"];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// GET / over a plain TCP connection, retrying while httpd starts.
fn http_get(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(b) if b.contains("200") => return b,
            r if Instant::now() > deadline => panic!("GET {addr}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn bridge_ping_names_published_ports_and_clean_teardown() {
    let Some(mut env) = setup() else { return };
    let cfg = env.network("t");
    let gw = cfg.gateway;
    let (ns_a, path_a) = env.netns("a");
    let (ns_b, path_b) = env.netns("b");
    let p_lo = free_port();
    let p_gw = free_port();
    let hosts_a = PathBuf::from(format!("/etc/netns/{ns_a}/hosts"));
    let hosts_b = PathBuf::from(format!("/etc/netns/{ns_b}/hosts"));

    let a = env
        .nets
        .attach(
            "t",
            &AttachRequest {
                container_id: format!("{ns_a}-id"),
                names: vec!["alpha".into()],
                netns: path_a,
                hosts_file: Some(hosts_a.clone()),
                ..AttachRequest::default()
            },
        )
        .expect("attach a");
    let b = env
        .nets
        .attach(
            "t",
            &AttachRequest {
                container_id: format!("{ns_b}-id"),
                names: vec!["beta".into(), "www".into()],
                netns: path_b,
                ports: vec![
                    format!("127.0.0.1:{p_lo}:80").parse().expect("port"),
                    format!("{gw}:{p_gw}:80").parse().expect("port"),
                ],
                hosts_file: Some(hosts_b.clone()),
                ..AttachRequest::default()
            },
        )
        .expect("attach b");
    assert_ne!(a.ip, b.ip);
    assert!(cfg.subnet.is_assignable(a.ip) && cfg.subnet.is_assignable(b.ip));
    assert_eq!((a.gateway, a.mtu, a.ifname.as_str()), (gw, 1400, "eth0"));

    // Addresses, MTU, loopback and the default route inside the namespace.
    let addr = run("ip", &["-n", &ns_a, "-o", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("{}/24", a.ip)), "{addr}");
    assert!(run("ip", &["-n", &ns_a, "link", "show", "eth0"]).contains("mtu 1400"));
    assert!(run("ip", &["-n", &ns_a, "link", "show", "lo"]).contains("UP"));
    let route = run("ip", &["-n", &ns_a, "route"]);
    assert!(
        route.contains(&format!("default via {gw} dev eth0")),
        "{route}"
    );

    // Both reach the gateway and each other, by address and by name.
    in_ns(&ns_a, &["ping", "-c1", "-W3", &gw.to_string()]);
    in_ns(&ns_b, &["ping", "-c1", "-W3", &gw.to_string()]);
    in_ns(&ns_a, &["ping", "-c1", "-W3", &b.ip.to_string()]);
    in_ns(&ns_a, &["ping", "-c1", "-W3", "beta"]);
    in_ns(&ns_b, &["ping", "-c1", "-W3", "alpha"]);

    // Hosts files list both containers, each file its own container first; the one written
    // at A's attach was rewritten when B joined.
    let ha = std::fs::read_to_string(&hosts_a).expect("hosts a");
    let hb = std::fs::read_to_string(&hosts_b).expect("hosts b");
    assert!(
        ha.contains(&format!("{}\talpha\n{}\tbeta www\n", a.ip, b.ip)),
        "{ha}"
    );
    assert!(
        hb.contains(&format!("{}\tbeta www\n{}\talpha\n", b.ip, a.ip)),
        "{hb}"
    );
    assert_eq!(b.hosts, hb);
    assert!(
        !b.resolv_conf.contains("nameserver 127."),
        "{}",
        b.resolv_conf
    );

    // A web server in B, reached from the host on 127.0.0.1 and on the bridge address, and
    // from A through the published port on the gateway (hairpin).
    let www = tempfile::tempdir().expect("www");
    std::fs::write(www.path().join("index.html"), "hello from beta\n").expect("index");
    let httpd = Command::new("ip")
        .args([
            "netns", "exec", &ns_b, "busybox", "httpd", "-f", "-p", "80", "-h",
        ])
        .arg(www.path())
        .spawn()
        .expect("httpd");
    env.children.push(httpd);
    let body = http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, p_lo)));
    assert!(body.contains("hello from beta"), "{body}");
    let body = http_get(SocketAddr::from((gw, p_gw)));
    assert!(body.contains("hello from beta"), "{body}");
    // (busybox nc: the static busybox's wget crashes on this host.)
    let mut nc = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns_a,
            "busybox",
            "nc",
            "-w",
            "5",
            &gw.to_string(),
        ])
        .arg(p_gw.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("nc");
    nc.stdin
        .take()
        .expect("stdin")
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("request");
    let out = nc.wait_with_output().expect("nc output");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("hello from beta"), "hairpin: {body}");

    // Port clashes are refused before anything is made.
    let (_, path_c) = env.netns("c");
    let clash = env.nets.attach(
        "t",
        &AttachRequest {
            container_id: "c".into(),
            netns: path_c,
            ports: vec![format!("{p_lo}:81").parse().expect("port")],
            ..AttachRequest::default()
        },
    );
    assert!(
        matches!(clash, Err(hull_net::NetError::PortTaken { .. })),
        "{clash:?}"
    );

    // Teardown: detach both, remove the network; nothing of ours is left.
    let info = env.nets.inspect("t").expect("inspect");
    assert_eq!(info.containers.len(), 2);
    assert!(env.links().contains(&b.host_veth));
    let lb = env
        .nets
        .detach("t", &format!("{ns_b}-id"))
        .expect("detach b");
    assert_eq!(lb.map(|l| l.ip), Some(b.ip));
    assert!(!env.links().contains(&b.host_veth));
    let listing = run("nft", &["list", "table", "inet", &env.table]);
    assert!(!listing.contains("dnat ip to"), "{listing}");
    let ha = std::fs::read_to_string(&hosts_a).expect("hosts a");
    assert!(!ha.contains("beta"), "{ha}");
    assert!(env
        .nets
        .detach("t", &format!("{ns_b}-id"))
        .expect("again")
        .is_none());
    assert!(
        run("ip", &["-n", &ns_b, "-o", "link"]).lines().count() == 1,
        "only lo in b"
    );
    assert!(env.nets.remove("t", false).is_err(), "a is still attached");
    env.nets
        .detach_all(&format!("{ns_a}-id"))
        .expect("detach a");
    env.nets.remove("t", false).expect("remove");
    assert_eq!(env.links(), Vec::<String>::new());
    assert!(!env.table_exists());
    assert!(env.nets.list().expect("list").is_empty());
}

#[test]
fn reset_after_a_crash_removes_everything() {
    let Some(mut env) = setup() else { return };
    env.network("crash");
    let (_, path) = env.netns("x");
    let att = env
        .nets
        .attach(
            "crash",
            &AttachRequest {
                container_id: "x".into(),
                names: vec!["x".into()],
                netns: path,
                ports: vec![format!("127.0.0.1:{}:80", free_port())
                    .parse()
                    .expect("port")],
                ..AttachRequest::default()
            },
        )
        .expect("attach");
    // A leftover veth of a half-done attach, known to no lease, enslaved to the bridge.
    let stray = format!("{}zz", env.prefix);
    run(
        "ip",
        &[
            "link",
            "add",
            &stray,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{stray}p"),
        ],
    );
    run(
        "ip",
        &[
            "link",
            "set",
            &stray,
            "master",
            &format!("{}br", env.prefix),
        ],
    );
    assert!(env.links().contains(&att.host_veth));
    assert!(env.table_exists());

    // "Crash": a new process-like handle on the same state dir resets.
    let again = Networks::open(env.nets.options().clone()).expect("reopen");
    again.reset(false).expect("reset");
    assert_eq!(env.links(), Vec::<String>::new());
    assert!(!env.table_exists());
    assert!(again.list().expect("list").is_empty());
    let files: Vec<_> = std::fs::read_dir(&env.nets.options().state_dir)
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".json"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn none_mode_has_only_loopback_and_host_mode_needs_no_netns() {
    use hull_net::{NetnsConfig, NetworkMode};
    let Some(mut env) = setup() else { return };
    let none: NetworkMode = "none".parse().expect("none");
    let cfg = none.netns_config(|_| Err::<PathBuf, ()>(())).expect("none");
    assert_eq!(cfg, NetnsConfig::New { attach: None });
    let (ns, _) = env.netns("n");
    let links = run("ip", &["-n", &ns, "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    let host: NetworkMode = "host".parse().expect("host");
    assert_eq!(
        host.netns_config(|_| Err::<PathBuf, ()>(())),
        Ok(NetnsConfig::Host)
    );
}

#[test]
fn detach_after_the_netns_died_leaves_the_veth_to_the_kernel() {
    let Some(mut env) = setup() else { return };
    env.network("gone");
    let (ns, path) = env.netns("g");
    let req = |id: &str| AttachRequest {
        container_id: id.into(),
        names: vec![id.into()],
        netns: path.clone(),
        ..AttachRequest::default()
    };
    let att = env.nets.attach("gone", &req("g")).expect("attach");
    assert!(env.links().contains(&att.host_veth));
    // The container exits: nothing holds its netns any more.
    run("ip", &["netns", "del", &ns]);
    env.netns.retain(|n| n != &ns);
    let lease = env.nets.detach("gone", "g").expect("detach");
    assert_eq!(lease.map(|l| l.ip), Some(att.ip));
    // cleanup_net runs in a workqueue: the pair is gone soon, without our RTM_DELLINK.
    let t = std::time::Instant::now();
    while env.links().contains(&att.host_veth) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "veth {} outlived its netns",
            att.host_veth
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!("veth gone {:?} after detach", t.elapsed());
    env.nets.remove("gone", false).expect("remove");
    assert_eq!(env.links(), Vec::<String>::new());
}
