//! Tests of the lease store and IPAM (`ipam.rs`).

use super::*;

fn config(subnet: &str) -> NetworkConfig {
    let subnet: Subnet = subnet.parse().expect("subnet");
    NetworkConfig {
        name: "t".into(),
        bridge: "htest0".into(),
        subnet,
        gateway: subnet.gateway(),
        mtu: 1500,
        created: 0,
        owner: None,
    }
}

fn lease(id: &str, ip: Ipv4Addr) -> Lease {
    Lease {
        container_id: id.into(),
        ip,
        names: vec![id.into()],
        host_veth: format!("v{id}"),
        ports: vec![],
        hosts_file: None,
        owner: None,
        holder: None,
        extra_hosts: vec![],
        secondary: false,
    }
}

fn alloc(s: &mut NetworkState, id: &str) -> Result<Ipv4Addr, IpamError> {
    let ip = s.pick(id, None)?;
    s.insert(lease(id, ip));
    Ok(ip)
}

#[test]
fn allocate_release_reuse() {
    let mut s = NetworkState::new(config("10.87.0.0/24"));
    assert_eq!(alloc(&mut s, "a").expect("a"), Ipv4Addr::new(10, 87, 0, 2));
    assert_eq!(alloc(&mut s, "b").expect("b"), Ipv4Addr::new(10, 87, 0, 3));
    assert!(matches!(
        alloc(&mut s, "a"),
        Err(IpamError::AlreadyAttached { .. })
    ));
    assert_eq!(
        s.release("a").expect("lease").ip,
        Ipv4Addr::new(10, 87, 0, 2)
    );
    assert!(s.release("a").is_none());
    assert_eq!(alloc(&mut s, "c").expect("c"), Ipv4Addr::new(10, 87, 0, 2));
}

#[test]
fn requested_addresses() {
    let mut s = NetworkState::new(config("10.87.0.0/24"));
    let want = Ipv4Addr::new(10, 87, 0, 77);
    assert_eq!(s.pick("a", Some(want)).expect("free"), want);
    s.insert(lease("a", want));
    assert!(matches!(
        s.pick("b", Some(want)),
        Err(IpamError::InUse { .. })
    ));
    for bad in [
        [10, 87, 0, 0],
        [10, 87, 0, 1],
        [10, 87, 0, 255],
        [10, 88, 0, 5],
    ] {
        let e = s
            .pick("b", Some(Ipv4Addr::from(bad)))
            .expect_err("reserved");
        assert!(matches!(e, IpamError::NotAssignable { .. }), "{e}");
    }
}

#[test]
fn exhaustion_never_hands_out_reserved() {
    let mut s = NetworkState::new(config("10.87.0.0/29"));
    let mut got = vec![];
    for i in 0..5 {
        got.push(alloc(&mut s, &format!("c{i}")).expect("alloc"));
    }
    let e = alloc(&mut s, "c5").expect_err("full");
    assert!(
        e.to_string()
            .contains("no free address left in 10.87.0.0/29"),
        "{e}"
    );
    let octets: Vec<u8> = got.iter().map(|ip| ip.octets()[3]).collect();
    assert_eq!(octets, [2, 3, 4, 5, 6]);
}

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("def"), &dir.join("run")).expect("open")
}

/// Files of both directories, dot files included.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["def", "run"] {
        for e in std::fs::read_dir(dir.join(sub)).expect("dir").flatten() {
            out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
        }
    }
    out.sort();
    out
}

#[test]
fn persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    {
        let _g = store.lock_network("t").expect("lock");
        let mut s = NetworkState::new(config("10.87.0.0/24"));
        alloc(&mut s, "a").expect("a");
        store.write(&s).expect("write");
    }
    let store = open(dir.path());
    let mut s = store.read("t").expect("read").expect("present");
    assert_eq!(s.leases["a"].ip, Ipv4Addr::new(10, 87, 0, 2));
    assert_eq!(alloc(&mut s, "b").expect("b"), Ipv4Addr::new(10, 87, 0, 3));
    assert_eq!(store.names().expect("names"), ["t"]);
    store.delete("t").expect("delete");
    assert!(store.read("t").expect("read").is_none());
    assert!(store.names().expect("names").is_empty());
    assert!(matches!(store.read("../x"), Err(IpamError::BadName(_))));
}

#[test]
fn torn_leases_read_as_none_and_old_definitions_are_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    let mut s = NetworkState::new(config("10.87.0.0/24"));
    store.write(&s).expect("write");
    alloc(&mut s, "a").expect("a");
    store.write_leases(&s).expect("write leases");
    assert_eq!(store.read("t").expect("read").expect("t").leases.len(), 1);
    // What a host crash can leave of an unsynced rename: an empty file.
    std::fs::write(dir.path().join("run/t.json"), b"").expect("tear");
    let back = store.read("t").expect("recovered").expect("t");
    assert_eq!(back.config, s.config);
    assert!(back.leases.is_empty());
    // A definition written before host-wide state held its leases too.
    let old = serde_json::to_vec(&s).expect("old format");
    std::fs::write(dir.path().join("def/t.json"), old).expect("old");
    assert_eq!(
        store.read("t").expect("old read").expect("t").config,
        s.config
    );
    assert_eq!(store.names().expect("names"), ["t"]);
    store.delete("t").expect("delete");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    let same = Store::open(dir.path(), dir.path());
    assert!(same.is_err(), "one dir for both kinds of file");
}

#[test]
fn a_lease_is_stale_once_its_holder_is_gone() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut l = lease("a", Ipv4Addr::new(10, 87, 0, 2));
    assert!(!l.is_stale(), "no holder: never stale");
    l.holder = Some(dir.path().join("ctr"));
    std::fs::create_dir(dir.path().join("ctr")).expect("mkdir");
    assert!(!l.is_stale());
    std::fs::remove_dir(dir.path().join("ctr")).expect("rmdir");
    assert!(l.is_stale());
}

fn named(name: &str, subnet: &str) -> NetworkState {
    let mut c = config(subnet);
    c.name = name.into();
    NetworkState::new(c)
}

#[test]
fn dotted_names_have_their_own_temp_files() {
    // Network `a`'s durable copy `.a.config.json` and network `a.config`'s file
    // `a.config.json` once shared the temp file `.a.config.json.tmp`.
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    let tmps = [
        store.tmp_path("a", TmpKind::Leases),
        store.tmp_path("a", TmpKind::Config),
        store.tmp_path("a.config", TmpKind::Leases),
        store.tmp_path("a.config", TmpKind::Config),
        store.tmp_path("a.leases", TmpKind::Leases),
        store.tmp_path("a.leases", TmpKind::Config),
    ];
    for (i, x) in tmps.iter().enumerate() {
        for y in &tmps[i + 1..] {
            assert_ne!(x, y);
        }
    }
}

#[test]
fn dotted_names_written_concurrently_keep_their_contents() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    let a = named("a", "10.87.0.0/24");
    let ac = named("a.config", "10.88.0.0/24");
    store.write(&a).expect("write a");
    store.write(&ac).expect("write a.config");
    // Each writer holds only its own network's lock, as attach/detach do; `a`'s writer
    // also rewrites its definition, as create and reset do.
    std::thread::scope(|t| {
        t.spawn(|| {
            for _ in 0..300 {
                let _g = store.lock_network("a").expect("lock a");
                store.write(&a).expect("write a");
            }
        });
        t.spawn(|| {
            for _ in 0..300 {
                let _g = store.lock_network("a.config").expect("lock a.config");
                store.write_leases(&ac).expect("write a.config");
            }
        });
    });
    assert_eq!(store.read("a").expect("read a"), Some(a.clone()));
    assert_eq!(store.read("a.config").expect("read"), Some(ac.clone()));
    assert_eq!(store.names().expect("names"), ["a", "a.config"]);
    store.delete("a").expect("delete a");
    store.delete("a.config").expect("delete a.config");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn lock_excludes_other_processes() {
    // flock locks belong to the open file description, so a second open in this
    // process contends like another process would.
    let dir = tempfile::tempdir().expect("tmp");
    let store = open(dir.path());
    let held = store.lock_network("t").expect("lock");
    let path = dir.path().join("run/t.lock");
    let f = File::open(&path).expect("open lock");
    let try2 = Flock::lock(f, FlockArg::LockExclusiveNonblock);
    assert!(try2.is_err(), "second lock must fail while held");
    drop(held);
    let f = File::open(&path).expect("open lock");
    assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
}
