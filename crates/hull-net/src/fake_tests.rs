//! `Networks` against fake kernels: creation and collision rules, attach/rollback, detach
//! error collection, reset's choice of links, and the nft rules each step leaves.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use crate::netlink::{LinkError, LinkSummary, Links, VethRequest};
use crate::nft::{self, Nft, NftError};
use crate::{AttachRequest, NetError, NetworkSpec, Networks, Options, Subnet};

#[derive(Default)]
struct KernelState {
    links: Vec<LinkSummary>,
    routes: Vec<(Subnet, Option<u32>)>,
    veths: Vec<VethRequest>,
    deleted: Vec<String>,
    sysctls: Vec<(String, String)>,
    fail_veth: bool,
    fail_delete: bool,
    table: Option<Vec<Value>>,
    next_handle: u64,
}

/// Holds the first deletion of link `name`: says so on `entered`, then waits (at most 10 s)
/// for `release`, so a test can act while an attach is between its checks and its claim.
struct Gate {
    name: String,
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<KernelState>>, Arc<Mutex<Option<Gate>>>);

impl Fake {
    fn gate(&self, g: Gate) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(g);
    }
    fn get(&self) -> MutexGuard<'_, KernelState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn link(&self, name: &str, kind: &str, master: Option<u32>) -> u32 {
        let mut k = self.get();
        let index = k.links.len() as u32 + 1;
        k.links.push(LinkSummary {
            name: name.into(),
            index,
            kind: Some(kind.into()),
            master,
        });
        index
    }
    fn rules(&self) -> Vec<String> {
        let k = self.get();
        k.table
            .iter()
            .flatten()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["chain"].as_str().unwrap_or(""),
                    r["comment"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

fn io(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

impl Links for Fake {
    fn ensure_bridge(&self, name: &str, _: Ipv4Addr, _: u8, _: u32) -> Result<(), LinkError> {
        if !self.get().links.iter().any(|l| l.name == name) {
            self.link(name, "bridge", None);
        }
        Ok(())
    }
    fn add_veth(&self, req: &VethRequest) -> Result<(), LinkError> {
        if self.get().fail_veth {
            return Err(LinkError::Netlink {
                what: format!("create veth {}", req.host_name),
                source: io(libc::EPERM),
            });
        }
        let master = self
            .get()
            .links
            .iter()
            .find(|l| l.name == req.bridge)
            .map(|l| l.index);
        self.link(&req.host_name, "veth", master);
        self.get().veths.push(req.clone());
        Ok(())
    }
    fn delete_link(&self, name: &str) -> Result<bool, LinkError> {
        let gate = {
            let mut g = self.1.lock().unwrap_or_else(|e| e.into_inner());
            g.take_if(|g| g.name == name)
        };
        if let Some(g) = gate {
            let _ = g.entered.send(());
            let _ = g.release.recv_timeout(std::time::Duration::from_secs(10));
        }
        let mut k = self.get();
        k.deleted.push(name.to_string());
        if k.fail_delete {
            return Err(LinkError::Netlink {
                what: format!("delete link {name}"),
                source: io(libc::EBUSY),
            });
        }
        let before = k.links.len();
        k.links.retain(|l| l.name != name);
        Ok(k.links.len() != before)
    }
    fn links(&self) -> Result<Vec<LinkSummary>, LinkError> {
        Ok(self.get().links.clone())
    }
    fn routes(&self) -> Result<Vec<(Subnet, Option<u32>)>, LinkError> {
        Ok(self.get().routes.clone())
    }
    fn sysctl(&self, key: &str, value: &str) -> Result<(), LinkError> {
        self.get().sysctls.push((key.into(), value.into()));
        Ok(())
    }
}

impl Nft for Fake {
    fn apply(&self, batch: &Value) -> Result<(), NftError> {
        let mut k = self.get();
        for cmd in batch["nftables"].as_array().into_iter().flatten() {
            if cmd["add"].get("table").is_some() && k.table.is_none() {
                k.table = Some(vec![]);
            } else if let Some(rule) = cmd["add"].get("rule") {
                k.next_handle += 1;
                let mut r = rule.clone();
                r["handle"] = json!(k.next_handle);
                k.table.get_or_insert_with(Vec::new).push(r);
            } else if let Some(rule) = cmd["delete"].get("rule") {
                k.table
                    .get_or_insert_with(Vec::new)
                    .retain(|r| r["handle"] != rule["handle"]);
            } else if let Some(chain) = cmd["flush"].get("chain") {
                k.table
                    .get_or_insert_with(Vec::new)
                    .retain(|r| r["chain"] != chain["name"]);
            } else if cmd["delete"].get("table").is_some() {
                k.table = None;
            }
        }
        Ok(())
    }
    fn list_table(&self, _: &str) -> Result<Option<Value>, NftError> {
        let k = self.get();
        Ok(k.table.as_ref().map(|rules| {
            let items: Vec<Value> = rules.iter().map(|r| json!({ "rule": r })).collect();
            json!({ "nftables": items })
        }))
    }
}

fn setup() -> (Networks, Fake, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = Fake::default();
    fake.link("eth0", "device", None);
    fake.get()
        .routes
        .push(("192.0.2.0/24".parse().expect("net"), Some(1)));
    fake.get()
        .routes
        .push(("10.87.5.0/24".parse().expect("net"), Some(1)));
    let nets = Networks::with_backends(
        opts_of(dir.path(), None),
        Box::new(fake.clone()),
        Box::new(fake.clone()),
    )
    .expect("open");
    (nets, fake, dir)
}

/// State in `dir` (definitions in `def`, leases in `run`), acting for root `dir/<owner>`.
fn opts_of(dir: &std::path::Path, owner: Option<&str>) -> Options {
    Options {
        state_dir: dir.join("def"),
        run_dir: dir.join("run"),
        owner: owner.map(|o| dir.join(o)),
        ..Options::default()
    }
}

fn spec(name: &str, subnet: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        subnet: subnet.map(|s| s.parse().expect("subnet")),
        ..NetworkSpec::default()
    }
}

fn req(id: &str, ports: &[&str]) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        names: vec![id.into()],
        netns: "/proc/1/ns/net".into(),
        ports: ports.iter().map(|p| p.parse().expect("port")).collect(),
        ..AttachRequest::default()
    }
}

#[test]
fn create_picks_subnets_and_refuses_collisions() {
    let (nets, fake, _d) = setup();
    let a = nets.create(&spec("a", None)).expect("a");
    assert_eq!(
        (a.subnet.to_string(), a.bridge.as_str()),
        ("10.87.1.0/24".into(), "hull1")
    );
    let b = nets.create(&spec("b", Some("10.87.6.0/24"))).expect("b");
    assert_eq!(b.bridge, "hull2");
    let c = nets.create(&spec("c", None)).expect("c");
    assert_eq!(c.subnet.to_string(), "10.87.2.0/24");
    let e = nets
        .create(&spec("d", Some("10.87.5.0/25")))
        .expect_err("host route");
    assert_eq!(
        e.to_string(),
        "subnet 10.87.5.0/25 overlaps 10.87.5.0/24 (host route via eth0)"
    );
    let e = nets
        .create(&spec("d", Some("10.87.0.0/16")))
        .expect_err("hull network");
    assert!(e.to_string().contains("(hull network a)"), "{e}");
    assert!(matches!(
        nets.create(&spec("a", None)),
        Err(NetError::Exists(_))
    ));
    let e = nets.create(&NetworkSpec {
        bridge: Some("hull1".into()),
        ..spec("e", None)
    });
    assert!(matches!(e, Err(NetError::BridgeTaken { .. })), "{e:?}");
    // A route through hull's own bridge does not block that network's definition.
    let idx = fake.link("hull1", "bridge", None);
    fake.get()
        .routes
        .push(("10.87.1.0/24".parse().expect("net"), Some(idx)));
    nets.create(&spec("f", None)).expect("f");
    let names: Vec<String> = nets
        .list()
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "b", "c", "f"]);
}

#[test]
fn attach_creates_default_network_and_rules() {
    let (nets, fake, _d) = setup();
    let a = nets
        .attach("bridge", &req("a", &["127.0.0.1:8080:80"]))
        .expect("attach a");
    assert_eq!(
        (a.ip, a.gateway),
        (Ipv4Addr::new(10, 87, 0, 2), Ipv4Addr::new(10, 87, 0, 1))
    );
    let b = nets.attach("bridge", &req("b", &[])).expect("attach b");
    assert_eq!(b.ip, Ipv4Addr::new(10, 87, 0, 3));
    assert!(
        b.hosts.contains("10.87.0.3\tb\n10.87.0.2\ta\n"),
        "{}",
        b.hosts
    );
    let info = nets.inspect("bridge").expect("inspect");
    assert_eq!(info.config.bridge, "hull0");
    assert_eq!(info.containers.len(), 2);
    let k = fake.get();
    assert_eq!(k.veths[0].host_name, nets.veth_name("bridge", "a"));
    assert_eq!(k.veths[0].host_name.len(), 15);
    assert!(k
        .sysctls
        .contains(&("net/ipv4/conf/hull0/route_localnet".into(), "1".into())));
    assert!(k
        .sysctls
        .contains(&("net/ipv4/ip_forward".into(), "1".into())));
    drop(k);
    let tag = crate::nft::container_tag("bridge", "a");
    let rules = fake.rules();
    // Three masquerade rules and the isolation rule.
    assert_eq!(
        rules.iter().filter(|r| r.ends_with(":n:bridge")).count(),
        4,
        "{rules:?}"
    );
    assert!(
        rules.contains(&"f-bridge:n:bridge".to_string()),
        "{rules:?}"
    );
    assert!(
        rules.contains(&format!("prerouting:{tag}")) && rules.contains(&format!("output:{tag}"))
    );
    let e = nets
        .attach("bridge", &req("c", &["8080:81"]))
        .expect_err("port taken");
    assert!(
        e.to_string().contains("already published by container a"),
        "{e}"
    );
    assert!(matches!(
        nets.attach("nope", &req("x", &[])),
        Err(NetError::NotFound(_))
    ));
    nets.detach("bridge", "a").expect("detach");
    assert!(!fake.rules().iter().any(|r| r.ends_with(&tag)));
    nets.remove("bridge", true).expect("remove");
    assert!(
        fake.get().table.is_none(),
        "last network gone: table deleted"
    );
    assert!(!fake.get().links.iter().any(|l| l.name.starts_with("hull")));
}

#[test]
fn failed_attach_rolls_back() {
    let (nets, fake, _d) = setup();
    nets.create(&spec("n", None)).expect("create");
    fake.get().fail_veth = true;
    let e = nets
        .attach("n", &req("a", &["9000:80"]))
        .expect_err("veth fails");
    assert!(e.to_string().starts_with("create veth hull"), "{e}");
    assert!(nets.inspect("n").expect("inspect").containers.is_empty());
    assert!(fake.get().deleted.contains(&nets.veth_name("n", "a")));
    fake.get().fail_veth = false;
    let a = nets.attach("n", &req("a", &["9000:80"])).expect("retry");
    assert_eq!(a.ip, Ipv4Addr::new(10, 87, 1, 2));
}

#[test]
fn detach_collects_errors_and_still_releases() {
    let (nets, fake, _d) = setup();
    nets.create(&spec("n", None)).expect("create");
    nets.attach("n", &req("a", &["9000:80"])).expect("attach");
    fake.get().fail_delete = true;
    let e = nets.detach("n", "a").expect_err("delete fails");
    assert!(
        e.to_string().contains("delete veth hull") && e.to_string().contains("busy"),
        "{e}"
    );
    assert!(
        nets.inspect("n").expect("inspect").containers.is_empty(),
        "lease released anyway"
    );
    assert!(
        !fake.rules().iter().any(|r| r.starts_with("prerouting:")),
        "port rules removed anyway"
    );
    assert!(nets.detach("n", "a").expect("idempotent").is_none());
}

#[test]
fn reset_finds_links_by_prefix_and_bridge_membership() {
    let (nets, fake, dir) = setup();
    nets.attach("bridge", &req("a", &["9000:80"]))
        .expect("attach");
    let br = fake
        .get()
        .links
        .iter()
        .find(|l| l.name == "hull0")
        .map(|l| l.index);
    fake.link("hull7", "bridge", None);
    fake.link("hullstray", "veth", None);
    fake.link("vethx", "veth", br);
    fake.link("hullish", "dummy", None);
    fake.link("docker0", "bridge", None);
    nets.reset(true).expect("reset");
    let mut deleted = fake.get().deleted.clone();
    deleted.sort();
    let mut want = vec!["hull0", "hull7", "hullstray", "vethx"];
    want.push(Box::leak(nets.veth_name("bridge", "a").into_boxed_str()));
    want.sort();
    assert_eq!(deleted, want);
    assert!(fake.get().table.is_none());
    let info = nets.inspect("bridge").expect("kept definition");
    assert!(info.containers.is_empty());
    nets.reset(false).expect("reset all");
    assert!(nets.list().expect("list").is_empty());
    assert!(std::fs::read_dir(dir.path().join("def"))
        .expect("dir")
        .all(|e| {
            e.map(|e| !e.file_name().to_string_lossy().ends_with(".json"))
                .unwrap_or(true)
        }));
}

#[test]
fn concurrent_attaches_get_distinct_addresses() {
    // Separate `Networks` on one state dir contend on the flocks like separate processes.
    let (nets, fake, dir) = setup();
    nets.create(&spec("n", Some("10.87.9.0/24")))
        .expect("create");
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let fake = fake.clone();
                let opts = opts_of(dir.path(), Some(&format!("root{}", i % 2)));
                s.spawn(move || {
                    let n = Networks::with_backends(opts, Box::new(fake.clone()), Box::new(fake))
                        .expect("open");
                    n.attach("n", &req(&format!("c{i}"), &[]))
                        .expect("attach")
                        .ip
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "{ips:?}");
    assert_eq!(nets.inspect("n").expect("inspect").containers.len(), 8);
}

#[test]
fn roots_share_one_ipam_and_reset_only_their_own() {
    let (_nets, fake, dir) = setup();
    let open = |owner: &str| {
        Networks::with_backends(
            opts_of(dir.path(), Some(owner)),
            Box::new(fake.clone()),
            Box::new(fake.clone()),
        )
        .expect("open")
    };
    let (a, b) = (open("a"), open("b"));
    let ia = a.attach("bridge", &req("ca", &["8080:80"])).expect("a");
    let ib = b.attach("bridge", &req("cb", &["8081:80"])).expect("b");
    assert_ne!(ia.ip, ib.ip, "one IPAM for both roots");
    // Definitions are host-wide: b sees a's network, and a subnet never clashes.
    a.create(&spec("anet", None)).expect("anet");
    let bnet = b.create(&spec("bnet", None)).expect("bnet");
    assert_eq!(b.list().expect("ls").len(), 3);
    assert_ne!(bnet.subnet, b.inspect("anet").expect("anet").config.subnet);
    b.attach("anet", &req("cb2", &[]))
        .expect("b on a's network");
    let lease = &b.inspect("bridge").expect("bridge").containers[1];
    assert_eq!(lease.owner.as_deref(), Some(dir.path().join("b").as_path()));

    a.reset(false).expect("reset a");
    let left: Vec<String> = (b.inspect("bridge").expect("bridge").containers)
        .into_iter()
        .map(|l| l.container_id)
        .collect();
    assert_eq!(left, ["cb"]);
    let deleted = fake.get().deleted.clone();
    assert!(deleted.contains(&ia.host_veth), "{deleted:?}");
    assert!(!deleted.contains(&ib.host_veth), "{deleted:?}");
    assert!(!deleted.iter().any(|d| d == "hull0"), "{deleted:?}");
    let table = format!("{:?}", fake.get().table);
    assert!(
        table.contains(&nft::container_tag("bridge", "cb")),
        "{table}"
    );
    assert!(
        !table.contains(&nft::container_tag("bridge", "ca")),
        "{table}"
    );
    // a's network stays while b's container is on it; b's idle network stays.
    let names: Vec<String> = b.list().expect("ls").into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["anet", "bnet", "bridge"]);

    // No container left on any network: the kernel state goes, a's definitions stay.
    b.reset(false).expect("reset b");
    assert!(fake.get().table.is_none());
    let names: Vec<String> = b.list().expect("ls").into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["anet", "bridge"]);
    a.reset(false).expect("reset a again");
    assert!(a.list().expect("ls").is_empty());
}

#[test]
fn stale_leases_are_reclaimed() {
    let (nets, fake, dir) = setup();
    let holder = dir.path().join("ctr-x");
    std::fs::create_dir(&holder).expect("mkdir");
    let ip: Ipv4Addr = "10.87.0.9".parse().expect("ip");
    let mut r = req("x", &["8080:80"]);
    r.holder = Some(holder.clone());
    r.ip = Some(ip);
    let old = nets.attach("bridge", &r).expect("x");
    let mut r2 = req("y", &["8080:80"]);
    r2.ip = Some(ip);
    let e = nets.attach("bridge", &r2).expect_err("taken");
    assert!(e.to_string().contains("already"), "{e}");
    // The holder's root was deleted without `rm`: its address and port are free again.
    std::fs::remove_dir(&holder).expect("rmdir");
    assert_eq!(nets.attach("bridge", &r2).expect("reclaimed").ip, ip);
    assert!(fake.get().deleted.contains(&old.host_veth));
    let ids: Vec<String> = (nets.inspect("bridge").expect("bridge").containers)
        .into_iter()
        .map(|l| l.container_id)
        .collect();
    assert_eq!(ids, ["y"]);
}

#[test]
fn add_hosts_are_kept_in_the_hosts_file_and_host_gateway_is_the_gateway() {
    let (nets, _fake, dir) = setup();
    let hosts = dir.path().join("hosts");
    let mut r = req("x", &[]);
    r.hosts_file = Some(hosts.clone());
    r.extra_hosts = vec![
        crate::files::ExtraHost {
            name: "gw".into(),
            ip: None,
        },
        crate::files::ExtraHost {
            name: "db".into(),
            ip: Some("192.0.2.5".parse().expect("ip")),
        },
    ];
    let att = nets.attach("bridge", &r).expect("x");
    assert!(
        att.hosts.contains("10.87.0.1\tgw\n192.0.2.5\tdb\n"),
        "{}",
        att.hosts
    );
    // Rewritten when another container joins: the entries stay.
    nets.attach("bridge", &req("y", &[])).expect("y");
    let text = std::fs::read_to_string(&hosts).expect("hosts");
    assert!(
        text.contains("192.0.2.5\tdb\n") && text.contains("\ty\n"),
        "{text}"
    );
}

#[test]
fn a_secondary_attach_has_no_default_route_and_one_hosts_file_names_both_networks() {
    let (nets, fake, dir) = setup();
    nets.create(&spec("n1", None)).expect("n1");
    nets.create(&spec("n2", None)).expect("n2");
    let file = |n: &str| dir.path().join(format!("hosts-{n}"));
    let with_file = |id: &str| {
        let mut r = req(id, &[]);
        r.hosts_file = Some(file(id));
        r
    };
    let a = nets.attach("n1", &with_file("a")).expect("a on n1");
    nets.attach("n2", &with_file("srv")).expect("srv on n2");
    let mut plug = with_file("a");
    plug.ifname = Some("eth1".into());
    plug.secondary = true;
    plug.names.push("client".into());
    let a2 = nets.attach("n2", &plug).expect("a on n2");
    let veths = fake.get().veths.clone();
    let v = veths
        .iter()
        .find(|v| v.container_ifname == "eth1")
        .expect("eth1");
    assert!(!v.default_route);
    assert!(veths
        .iter()
        .filter(|v| v.container_ifname == "eth0")
        .all(|v| v.default_route));
    // a names itself by its first address and sees n2's containers; srv sees a's n2 address.
    let mine = std::fs::read_to_string(file("a")).expect("a's hosts");
    assert!(mine.contains(&format!("{}\ta\n", a.ip)), "{mine}");
    assert!(mine.contains("\tsrv\n"), "{mine}");
    let theirs = std::fs::read_to_string(file("srv")).expect("srv's hosts");
    assert!(
        theirs.contains(&format!("{}\ta client\n", a2.ip)),
        "{theirs}"
    );
    // Unplugged: n2's names leave a's file and a's leave srv's.
    nets.detach("n2", "a").expect("detach");
    let mine = std::fs::read_to_string(file("a")).expect("a's hosts");
    assert!(mine.contains("\ta\n") && !mine.contains("srv"), "{mine}");
    let theirs = std::fs::read_to_string(file("srv")).expect("srv's hosts");
    assert!(!theirs.contains("client"), "{theirs}");
}

mod hosts_lock;
mod stale_and_ports;
