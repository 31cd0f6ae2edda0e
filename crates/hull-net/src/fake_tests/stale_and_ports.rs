//! Stale leases at `network rm`, and the host-wide port check racing across networks.

use std::sync::mpsc;
use std::time::Duration;

use super::{opts_of, req, setup, spec, Fake, Gate};
use crate::{NetError, Networks};

fn open(dir: &std::path::Path, fake: &Fake) -> Networks {
    Networks::with_backends(
        opts_of(dir, None),
        Box::new(fake.clone()),
        Box::new(fake.clone()),
    )
    .expect("open")
}

#[test]
fn remove_reclaims_stale_leases() {
    let (nets, fake, dir) = setup();
    nets.create(&spec("n", Some("10.87.22.0/24")))
        .expect("create");
    let holders = [dir.path().join("ctr-x"), dir.path().join("ctr-y")];
    let mut veths = Vec::new();
    for (id, h) in ["x", "y"].iter().zip(&holders) {
        std::fs::create_dir(h).expect("mkdir");
        let mut r = req(id, &[]);
        r.holder = Some(h.clone());
        veths.push(nets.attach("n", &r).expect("attach").host_veth);
    }
    // x's holder is gone, y's is not: y still uses the network, and x's lease is reclaimed.
    std::fs::remove_dir(&holders[0]).expect("rmdir");
    match nets.remove("n", false) {
        Err(NetError::InUse(n, 1)) => assert_eq!(n, "n"),
        other => panic!("want in use by 1: {other:?}"),
    }
    let left: Vec<String> = (nets.inspect("n").expect("n").containers)
        .into_iter()
        .map(|l| l.container_id)
        .collect();
    assert_eq!(left, ["y"]);
    assert!(fake.get().deleted.contains(&veths[0]));
    // Once y's holder is gone too, rm goes through, as allocation would reclaim it.
    std::fs::remove_dir(&holders[1]).expect("rmdir");
    nets.remove("n", false)
        .expect("stale leases do not keep the network");
    assert!(matches!(nets.inspect("n"), Err(NetError::NotFound(_))));
    assert!(fake.get().deleted.contains(&veths[1]));
}

#[test]
fn port_check_and_claim_is_atomic_across_networks() {
    let (nets, fake, dir) = setup();
    nets.create(&spec("a", Some("10.87.20.0/24"))).expect("a");
    nets.create(&spec("b", Some("10.87.21.0/24"))).expect("b");
    // A stale lease on a: the next attach to a reclaims it (deleting its veth) after its port
    // check and before it writes its lease. The fake holds it there.
    let holder = dir.path().join("gone");
    std::fs::create_dir(&holder).expect("mkdir");
    let mut r = req("old", &[]);
    r.holder = Some(holder.clone());
    let old = nets.attach("a", &r).expect("old");
    std::fs::remove_dir(&holder).expect("rmdir");
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    fake.gate(Gate {
        name: old.host_veth,
        entered: entered_tx,
        release: release_rx,
    });
    let (d, f) = (dir.path(), &fake);
    let (one, two) = std::thread::scope(|s| {
        let t1 = s.spawn(move || open(d, f).attach("a", &req("one", &["8080:80"])));
        entered
            .recv_timeout(Duration::from_secs(20))
            .expect("attach to a reached the reclaim");
        let (done_tx, done) = mpsc::channel();
        let t2 = s.spawn(move || {
            let r = open(d, f).attach("b", &req("two", &["8080:80"]));
            let _ = done_tx.send(());
            r
        });
        // Unlocked, the attach to b checks and claims 8080 now; locked, it waits for a.
        let _ = done.recv_timeout(Duration::from_secs(2));
        let _ = release.send(());
        (t1.join().expect("t1"), t2.join().expect("t2"))
    });
    assert!(one.is_ok(), "{one:?}");
    match two {
        Err(NetError::PortTaken { container, .. }) => assert_eq!(container, "one"),
        other => panic!("8080 given twice: {other:?}"),
    }
}
