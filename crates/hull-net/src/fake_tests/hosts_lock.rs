//! A hosts file shared by two networks (hot-plug) is written under its own lock, from the
//! networks' states read under it: writers for two networks (each under its own network's
//! lock only) neither interleave nor leave the other's change out.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{opts_of, req, setup, spec, Fake};
use crate::Networks;

fn open(dir: &std::path::Path, fake: &Fake) -> Networks {
    Networks::with_backends(
        opts_of(dir, None),
        Box::new(fake.clone()),
        Box::new(fake.clone()),
    )
    .expect("open")
}

#[test]
fn writers_for_two_networks_wait_for_the_hosts_file_lock_and_both_land() {
    let (nets, fake, dir) = setup();
    nets.create(&spec("n1", None)).expect("n1");
    nets.create(&spec("n2", None)).expect("n2");
    let file = dir.path().join("hosts-a");
    let mut a = req("a", &[]);
    a.hosts_file = Some(file.clone());
    nets.attach("n1", &a).expect("a on n1");
    a.ifname = Some("eth1".into());
    a.secondary = true;
    nets.attach("n2", &a).expect("a on n2");

    // The lock a writer of a's hosts file takes (held here as a slow writer would).
    let lock = std::fs::File::create(dir.path().join(".hosts-a.lock")).expect("lock file");
    // SAFETY: flock on a descriptor this test owns; dropping it releases the lock.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let joins: Vec<_> = [("n1", "y"), ("n2", "z")]
        .into_iter()
        .map(|(n, id)| {
            let nets = open(dir.path(), &fake);
            std::thread::spawn(move || nets.attach(n, &req(id, &[])).map(|_| ()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let held = std::fs::read_to_string(&file).expect("hosts");
    assert!(
        !held.contains("\ty\n") && !held.contains("\tz\n"),
        "written while its lock was held:\n{held}"
    );
    drop(lock);
    for j in joins {
        j.join().expect("thread").expect("attach");
    }
    let text = std::fs::read_to_string(&file).expect("hosts");
    assert!(text.contains("\ty\n") && text.contains("\tz\n"), "{text}");
}
