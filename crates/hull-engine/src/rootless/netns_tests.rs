//! Unit tests of the rootless netns's decisions (which listener, which pid, which lock).
#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn paths_under_the_run_dir() {
    let run = Path::new("/run/user/1000/hull");
    assert_eq!(ns_file(run), Path::new("/run/user/1000/hull/netns/ns"));
    assert_eq!(
        pasta_pid(run),
        Path::new("/run/user/1000/hull/netns/pasta.pid")
    );
    assert!(bound(Path::new("/nonexistent")).is_none());
    let p: Vec<PortMapping> = ["9000:90", "8080:80", "5353:53/udp", "8080:81/udp"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(port_list(&p, Protocol::Tcp), "8080,9000");
    assert_eq!(port_list(&p, Protocol::Udp), "5353,8080");
    assert_eq!(port_list(&[], Protocol::Tcp), "none");
}

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534        0 222 1 0 100 0 0 10 0
   2: 0100007F:1F92 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0
   3: 00000000:1F93 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0
";

#[test]
fn a_port_is_ours_only_when_our_pasta_listens_on_it() {
    let t = [TCP.to_string(), String::new()];
    // Our uid, one of pasta's sockets.
    assert_eq!(classify(&t, 8080, 0, Some(&[111])), Listen::Ours);
    // Another user's (unmapped: the overflow uid) listener.
    assert_eq!(classify(&t, 8081, 0, Some(&[222])), Listen::Foreign);
    assert_eq!(classify(&t, 8081, 0, None), Listen::Foreign);
    // Established, not listening.
    assert_eq!(classify(&t, 8082, 0, Some(&[333])), Listen::Nobody);
    // Our uid but not pasta's socket (another process of ours); unknown fds: our uid.
    assert_eq!(classify(&t, 8083, 0, Some(&[111])), Listen::Foreign);
    assert_eq!(classify(&t, 8083, 0, None), Listen::Ours);
    assert_eq!(classify(&t, 9999, 0, None), Listen::Nobody);
    // Ours on IPv4, another user's on IPv6.
    let v6 = "  sl local rem st q tr re uid to inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0:0 0 65534 0 555";
    let t = [TCP.to_string(), v6.to_string()];
    assert_eq!(classify(&t, 8080, 0, Some(&[111])), Listen::Foreign);
}

#[test]
fn a_recorded_pid_counts_only_with_its_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pid");
    let me = std::process::id() as i32;
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let comms = [comm.trim()];
    let start = start_time(me).unwrap();
    std::fs::write(&file, format!("{me} {start}")).unwrap();
    assert_eq!(live_pid(&file, &comms), Some(me));
    // The same pid, another process (reused): not ours to kill.
    std::fs::write(&file, format!("{me} {}", start + 1)).unwrap();
    assert_eq!(live_pid(&file, &comms), None);
    std::fs::write(&file, format!("{me}")).unwrap();
    assert_eq!(live_pid(&file, &comms), None);
    std::fs::write(&file, format!("{me} {start}")).unwrap();
    assert_eq!(live_pid(&file, &["pasta"]), None);
}

#[test]
fn a_lock_taken_on_a_removed_file_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let first = lock(&run).unwrap();
    let r = run.clone();
    let waiter = std::thread::spawn(move || {
        let f = lock(&r).unwrap();
        let (a, b) = (
            f.metadata().unwrap(),
            std::fs::metadata(r.join("netns.lock")),
        );
        use std::os::unix::fs::MetadataExt;
        (f, b.is_ok_and(|b| a.ino() == b.ino()))
    });
    std::thread::sleep(Duration::from_millis(200));
    // `system reset`: the run dir goes while the lock is held.
    std::fs::remove_dir_all(&run).unwrap();
    drop(first);
    let (_held, same) = waiter.join().unwrap();
    assert!(same, "the waiter holds a lock on a file no longer there");
}
