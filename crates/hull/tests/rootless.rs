//! Rootless hull: a real unprivileged user (made here with useradd, subordinate ids added
//! with usermod, all removed at the end even on failure) runs the hull binary through
//! `runuser`, with its own HOME and XDG_RUNTIME_DIR. Must run as root (to make the users);
//! needs uidmap (newuidmap/newgidmap), passt (pasta), docker-registry and skopeo.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

mod rootless_env;

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

use common::free_port;
use rootless_env::{
    cannot_see, http_get, registry_image, sh, skip_unless_root, walk_uids, Tun, User, HULL,
};

#[test]
fn ordinary_user_pulls_runs_and_resets() {
    if skip_unless_root() {
        return;
    }
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    let pull = u.hull(&["pull", &img]);
    assert!(pull.status.success(), "{pull:?}");
    let warn = String::from_utf8_lossy(&pull.stderr);
    assert!(warn.contains("device nodes"), "no device warning: {warn}");

    // Output and exit codes.
    let o = u.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err\n"));

    // Owners from the image, through the subordinate range; root inside is the user.
    let script = "stat -c '%u:%g %n' /home/u /home/u/notes /nob /keep/c; id -u; \
                  ls /keep; ls /gone /dev-null-copy 2>&1 | wc -l";
    let out = u.ok(&["run", "--rm", "--network", "none", &img, "sh", "-c", script]);
    let want =
        "1000:1000 /home/u\n1000:1000 /home/u/notes\n65534:65534 /nob\n0:0 /keep/c\n0\nc\n2\n";
    assert_eq!(out, want);
    // On the host the snapshot's files belong to the range, the user's own root to it.
    let range_start: u32 = u
        .range
        .as_ref()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let owners: Vec<u32> = walk_uids(&u.data().join("snapshots"));
    assert!(
        owners.contains(&(range_start + 999)),
        "uid 1000 maps to start+999: {owners:?}"
    );
    assert!(owners.contains(&(range_start + 65533)), "{owners:?}");
    assert!(owners.contains(&u.uid));

    // Detached, exec, logs, ps, stop, rm; a volume written by uid 1000 inside.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "none",
        "-v",
        "vol:/data",
        &img,
        "sh",
        "-c",
        "echo started; touch /data/by-root; sleep 1000",
    ]);
    let o = u.hull(&[
        "exec",
        "-u",
        "1000",
        "c1",
        "sh",
        "-c",
        "touch /data/x 2>&1; id -u; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    u.ok(&["exec", "c1", "sh", "-c", "chown 1000:1000 /data"]);
    u.ok(&["exec", "-u", "1000:1000", "c1", "touch", "/data/mine"]);
    let st = u.ok(&[
        "exec",
        "c1",
        "stat",
        "-c",
        "%u:%g %n",
        "/data/mine",
        "/data/by-root",
    ]);
    assert_eq!(st, "1000:1000 /data/mine\n0:0 /data/by-root\n");
    assert!(u.ok(&["logs", "c1"]).contains("started"));
    // No cgroup on this hybrid host: update's limits are refused as run's are.
    let e = u.fails(&["update", "--memory", "64m", "c1"]);
    assert!(
        e.contains("--memory: ") && e.contains("cgroup v1 or hybrid"),
        "{e}"
    );
    assert!(u.ok(&["ps"]).contains("c1"));
    assert!(u.ok(&["inspect", "c1"]).contains("\"Running\": true"));
    u.ok(&["stop", "-t", "1", "c1"]);
    u.ok(&["rm", "c1"]);
    assert!(!u.ok(&["ps", "-a"]).contains("c1"));
    // commit: the container's opaque directory (user.overlay.opaque in its upper dir)
    // becomes an OCI opaque whiteout; the old entries stay hidden in the new image.
    let script = "rm -rf /keep; mkdir /keep; echo n > /keep/n";
    u.ok(&[
        "run",
        "--name",
        "cm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        script,
    ]);
    u.ok(&["commit", "cm", "committed:1"]);
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "committed:1",
        "ls",
        "/keep",
    ]);
    assert_eq!(out, "n\n");
    u.ok(&["rm", "cm"]);

    // run -d --rm: the watcher hull (started inside the namespace) removes it.
    u.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "gone",
        "--network",
        "none",
        &img,
        "true",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while u.ok(&["ps", "-a"]).contains("gone") {
        assert!(
            Instant::now() < deadline,
            "run -d --rm container not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Everything under the user's own dirs, nothing of root's.
    let info = u.ok(&["info"]);
    // This host is hybrid: the controllers are in v1 hierarchies no user is given.
    let limits = info
        .lines()
        .find_map(|l| l.strip_prefix("Cgroup Limits:"))
        .map(str::trim);
    assert!(
        info.contains("Rootless:")
            && limits.is_some_and(
                |l| l.starts_with("no: rootless without") && l.contains("cgroup v1 or hybrid")
            ),
        "{info}"
    );
    assert!(info.contains(&u.data().display().to_string()), "{info}");

    u.ok(&["system", "reset", "-f"]);
    assert!(!u.data().exists(), "storage left after reset");
    assert!(!u.run.join("hull").exists(), "run dir left after reset");
    let left = u.processes_after_exit();
    assert!(left.is_empty(), "processes left after reset: {left:?}");
}

#[test]
fn published_port_reaches_a_rootless_container() {
    if skip_unless_root() {
        return;
    }
    let _tun = Tun::open();
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);
    let port = free_port();
    let p = format!("{port}:80");
    u.ok(&[
        "run", "-d", "--name", "web", "-p", &p, &img, "busybox", "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        match http_get(port) {
            Ok(b) if b.contains("200") => break b,
            r if Instant::now() > deadline => panic!("no answer on {port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(body.contains("hello from a rootless container"), "{body}");
    assert!(u.ok(&["ps"]).contains(&format!("0.0.0.0:{port}->80/tcp")));
    // The container reaches out through pasta too: the registry on the host's loopback is
    // not the container's, but pasta gives it the host's address and routes.
    u.ok(&["stop", "-t", "1", "web"]);
    assert!(http_get(port).is_err(), "port {port} still open after stop");
    let left = pastas_after_exit(&u);
    assert!(left.is_empty(), "pasta left after stop: {left:?}");
    u.ok(&["rm", "web"]);

    // What cannot work without privileges says so, naming the flag.
    let e = u.fails(&["run", "--rm", "-p", "80:80", &img, "true"]);
    assert!(
        e.contains("-p 80:80") && e.contains("ip_unprivileged_port_start"),
        "{e}"
    );
    let e = u.fails(&["run", "--rm", "--network", "mynet", &img, "true"]);
    assert!(
        e.contains("--network mynet") && e.contains("no such network"),
        "{e}"
    );
    let e = u.fails(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--network",
        "none",
        &img,
        "true",
    ]);
    assert!(e.contains("--memory") && e.contains("delegat"), "{e}");
    assert!(e.contains("cgroup v1 or hybrid"), "{e}");
    let e = u.fails(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "--network",
        "none",
        &img,
        "true",
    ]);
    assert!(e.contains("--pids-limit") && e.contains("delegat"), "{e}");
    assert!(
        !u.ok(&["ps", "-a"]).contains(&img),
        "a refused container was left"
    );
    // --network host: the host's interfaces (sysfs of the host's netns is bound read-only).
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "ls",
        "/sys/class/net",
    ]);
    assert!(out.contains("lo"), "{out}");
    u.ok(&["system", "reset", "-f"]);
}

/// The user's pasta processes (the rootless netns's, or a container's); pasta re-executes
/// itself as `passt.avx2` where the CPU has AVX2.
fn pastas(u: &User) -> Vec<(i32, String)> {
    let mut v = u.processes();
    v.retain(|(_, c)| c.starts_with("pasta") || c.starts_with("passt"));
    v
}

/// The user's pastas once those ending have ended (a killed one is reaped by init a
/// moment later).
fn pastas_after_exit(u: &User) -> Vec<(i32, String)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pastas(u).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    pastas(u)
}

fn get_until_ok(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(port) {
            Ok(b) if b.contains("200") => return b,
            r if Instant::now() > deadline => panic!("no answer on {port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn user_network_containers_reach_each_other_by_name() {
    if skip_unless_root() {
        return;
    }
    let _tun = Tun::open();
    let u = User::new(true);
    let (_reg, img, _layout) = registry_image();
    u.ok(&["pull", &img]);
    u.ok(&["network", "create", "n"]);
    assert!(u.ok(&["network", "ls", "-q"]).lines().any(|l| l == "n"));
    // Root's networks are not the user's (and the user's not root's).
    assert!(!u
        .ok(&["network", "ls", "-q"])
        .lines()
        .any(|l| l == "bridge"));
    let port = free_port();
    let p = format!("{port}:80");
    let httpd = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"];
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n",
        "-p",
        &p,
        &img,
    ];
    run.extend(httpd);
    u.ok(&run);
    let ns = u.run.join("hull/netns");
    assert!(ns.join("ns").exists(), "no rootless netns");
    assert!(!pastas(&u).is_empty(), "no pasta for the rootless netns");
    // By name, from another container on the network.
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "n",
        &img,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web/index.html",
    ]);
    assert!(out.contains("hello from a rootless container"), "{out}");
    let ins = u.ok(&["inspect", "web"]);
    assert!(ins.contains("\"IPAddress\": \"10."), "{ins}");
    // Published from the host, through the rootless netns's pasta.
    let body = get_until_ok(port);
    assert!(body.contains("hello from a rootless container"), "{body}");

    // A second -p whose host port someone else (root here) listens on, on [::1] only (so
    // the IPv4 check before attaching passes, as when another user binds it while pasta
    // restarts): refused naming the port, and pasta forwards web's port again (it was
    // restarted for the new list).
    let taken = std::net::TcpListener::bind("[::1]:0").unwrap();
    let tport = taken.local_addr().unwrap().port();
    let tp = format!("{tport}:80");
    let mut run2 = vec![
        "run",
        "-d",
        "--name",
        "web2",
        "--network",
        "n",
        "-p",
        &tp,
        &img,
    ];
    run2.extend(httpd);
    let e = u.fails(&run2);
    assert!(e.contains(&format!("host port {tport}/tcp")), "{e}");
    let _ = u.hull(&["rm", "-f", "web2"]);
    let body = get_until_ok(port);
    assert!(body.contains("hello from a rootless container"), "{body}");
    drop(taken);

    // connect/disconnect are refused rootless, changing nothing.
    u.ok(&["network", "create", "n3"]);
    for args in [
        ["network", "connect", "n3", "web"],
        ["network", "disconnect", "n", "web"],
    ] {
        let e = u.fails(&args);
        assert!(
            e.contains(&format!("network {} is not supported rootless", args[1])),
            "{e}"
        );
    }
    let ins = u.ok(&["inspect", "web"]);
    assert!(!ins.contains("\"n3\""), "{ins}");
    let body = get_until_ok(port);
    assert!(body.contains("hello from a rootless container"), "{body}");
    u.ok(&["network", "rm", "n3"]);

    let e = u.fails(&["network", "rm", "n"]);
    assert!(e.contains("in use") && e.contains("web"), "{e}");
    let e = u.fails(&[
        "run",
        "--rm",
        "--network",
        "n",
        "-p",
        &format!("127.0.0.1:{p}"),
        &img,
        "true",
    ]);
    assert!(e.contains("host address"), "{e}");
    // The last container gone, so is the rootless netns with its pasta.
    u.ok(&["rm", "-f", "web"]);
    assert!(http_get(port).is_err(), "port {port} still open after rm");
    assert!(!ns.exists(), "rootless netns left");
    let left = pastas_after_exit(&u);
    assert!(left.is_empty(), "pasta left: {left:?}");
    u.ok(&["network", "rm", "n"]);
    assert!(!u.ok(&["network", "ls", "-q"]).lines().any(|l| l == "n"));

    // system reset ends everything of a running user network.
    u.ok(&["network", "create", "n2"]);
    let mut run = vec![
        "run",
        "-d",
        "--name",
        "w2",
        "--network",
        "n2",
        "-p",
        &p,
        &img,
    ];
    run.extend(httpd);
    u.ok(&run);
    get_until_ok(port);
    u.ok(&["system", "reset", "-f"]);
    assert!(
        http_get(port).is_err(),
        "port {port} still open after reset"
    );
    let left = u.processes_after_exit();
    assert!(left.is_empty(), "processes left after reset: {left:?}");
    assert!(!u.data().exists(), "storage left after reset");
    assert!(!u.run.join("hull").exists(), "run dir left after reset");
}

#[test]
fn user_without_subordinate_ids_gets_a_single_id_map() {
    if skip_unless_root() {
        return;
    }
    let u = User::new(false);
    let (_reg, img, _layout) = registry_image();
    let o = u.hull(&["pull", &img]);
    assert!(o.status.success(), "{o:?}");
    let warn = String::from_utf8_lossy(&o.stderr);
    assert!(
        warn.contains("no subordinate ids") && warn.contains("usermod --add-subuids"),
        "{warn}"
    );
    // Files of other owners are the user's (root inside); the rest works.
    let out = u.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "stat",
        "-c",
        "%u %n",
        "/home/u",
        "/nob",
    ]);
    assert_eq!(out, "0 /home/u\n0 /nob\n");

    // The pause process killed under a running container: the next command starts a new
    // one (a killed, unreaped pause is not taken for alive) and still stops and removes it.
    u.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        "--network",
        "none",
        &img,
        "sleep",
        "1000",
    ]);
    let pid: i32 = std::fs::read_to_string(u.run.join("hull/pause.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill touches no memory; the pid is this test user's pause process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(u.ok(&["ps"]).contains(" k\n"));
    u.ok(&["stop", "-t", "1", "k"]);
    u.ok(&["rm", "k"]);
    u.ok(&["system", "reset", "-f"]);
    assert_eq!(u.processes_after_exit(), vec![]);
}

#[test]
fn users_cannot_reach_each_others_or_roots_state() {
    if skip_unless_root() {
        return;
    }
    let a = User::new(true);
    let b = User::new(true);
    let (_reg, img, _layout) = registry_image();
    a.ok(&["pull", &img]);
    a.ok(&["volume", "create", "secret"]);
    let a_root = a.data();
    let a_root = a_root.to_str().unwrap();
    // b's hull, as root of b's own namespace, is still b on the host.
    b.fails(&["--root", a_root, "images"]);
    cannot_see(&b, a_root, &["volume", "ls"], "secret");

    // The Docker API service listens in the user's run dir by default.
    let mut svc = a.cmd(&["system", "service", "-t", "2"]).spawn().unwrap();
    let sock = a.run.join("hull/docker.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", sock.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n").unwrap();
    let mut pong = String::new();
    s.read_to_string(&mut pong).unwrap();
    assert!(pong.ends_with("OK"), "{pong}");
    assert!(svc.wait().unwrap().success());

    // Root's store: made 0700 by hull, under a directory everyone may enter.
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_store = top.path().join("hull");
    let o = sh(Command::new(HULL)
        .arg("--root")
        .arg(&root_store)
        .args(["volume", "create", "rootvol"]));
    assert!(o.status.success(), "{o:?}");
    let store = root_store.to_str().unwrap();
    cannot_see(&b, store, &["volume", "ls"], "rootvol");
    b.fails(&["--root", store, "images"]);
    assert_eq!(
        std::fs::metadata(&root_store).unwrap().mode() & 0o777,
        0o700,
        "root's store must be private"
    );
    // The user's own store is private too.
    assert_eq!(std::fs::metadata(a.data()).unwrap().mode() & 0o777, 0o700);
    a.ok(&["system", "reset", "-f"]);
    b.ok(&["system", "reset", "-f"]);
}
