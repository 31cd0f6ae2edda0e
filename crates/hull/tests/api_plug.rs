//! Through `hull system service` with the docker 20.10 client: `network connect` and
//! `disconnect` on a running container (hot-plug), `import`, `commit`, `export` and
//! `update`.
#![allow(clippy::unwrap_used)]

mod apisvc;
mod ctr;

use std::time::{Duration, Instant};

use apisvc::{env, http, net_lock, start, IMG};

/// The interface names in `ip -o addr` output of container `c`.
fn ifaces(s: &apisvc::Service, c: &str) -> String {
    s.ok(&["exec", c, "busybox", "ip", "-o", "-4", "addr"])
}

#[test]
fn docker_network_connect_and_disconnect_a_running_container() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    // The slot's pool holds one /24: the second network gets a subnet of the slot's own.
    s.ok(&["network", "create", "n1"]);
    s.ok(&["network", "create", "--subnet", &e.net.subnet(195), "n2"]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "n2",
        IMG,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/srv",
    ]);
    s.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "n1",
        IMG,
        "sleep",
        "120",
    ]);
    let before = ifaces(&s, "c");
    assert!(!before.contains("eth1"), "{before}");
    assert!(!s.ok(&["exec", "c", "cat", "/etc/hosts"]).contains("srv"));

    s.ok(&["network", "connect", "--alias", "client", "n2", "c"]);
    let subnet = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "n2",
    ]);
    let net_prefix = subnet.trim().rsplit_once('.').unwrap().0.to_string();
    let after = ifaces(&s, "c");
    let eth1 = after.lines().find(|l| l.contains("eth1")).unwrap_or("");
    assert!(eth1.contains(&format!("inet {net_prefix}.")), "{after}");
    // c reaches srv by name on n2; srv's hosts file names c and its alias.
    // (`timeout`, as this busybox's `wget -T` crashes; a retry while httpd starts.)
    let got = s.ok(&[
        "exec",
        "c",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do busybox timeout 3 busybox wget -q -O - \
         http://srv:8080/from-image && exit 0; sleep 0.5; done; exit 1",
    ]);
    assert_eq!(got, "image data\n");
    let hosts = s.ok(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.contains("\tc ") && l.contains("client")),
        "{hosts}"
    );
    // c keeps its first network's default route and names itself by its n1 address.
    let routes = s.ok(&["exec", "c", "busybox", "ip", "route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default") && l.contains("eth0")),
        "{routes}"
    );
    let nets = s.ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "c",
    ]);
    assert_eq!(nets.trim(), "n1 n2");
    let on_n2 = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        "n2",
    ]);
    assert!(on_n2.split_whitespace().any(|n| n == "c"), "{on_n2}");
    // Twice is refused, as docker does.
    let o = s.run(&["network", "connect", "n2", "c"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already"),
        "{o:?}"
    );

    s.ok(&["network", "disconnect", "n2", "c"]);
    let gone = ifaces(&s, "c");
    assert!(!gone.contains("eth1") && gone.contains("eth0"), "{gone}");
    assert!(!s.ok(&["exec", "c", "cat", "/etc/hosts"]).contains("srv"));
    assert!(!s
        .ok(&["exec", "srv", "cat", "/etc/hosts"])
        .contains("client"));
    let o = s.run(&["network", "disconnect", "n2", "c"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not connected"),
        "{o:?}"
    );
    let o = s.run(&["network", "connect", "nonet", "c"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nonet"),
        "{o:?}"
    );

    // Connected again, then removed running: its lease and veth go with it.
    s.ok(&["network", "connect", "n2", "c"]);
    assert!(ifaces(&s, "c").contains("eth1"));
    s.ok(&["rm", "-f", "c", "srv"]);
    s.ok(&["network", "rm", "n1", "n2"]);
    drop(s);
    e.assert_clean();
}

/// Polls `f` for up to 30 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn docker_commit_export_import_update() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "w",
        "--network",
        "none",
        IMG,
        "sh",
        "-c",
        "echo committed > /srv/new; rm /srv/from-image; touch /tmp/ready; sleep 120",
    ]);
    eventually("w's files", || {
        s.run(&["exec", "w", "stat", "/tmp/ready"]).status.success()
    });

    // export: the merged filesystem, without what the container deleted.
    let out = s.docker(&["export", "w"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut names = Vec::new();
    for en in tar::Archive::new(&out.stdout[..]).entries().unwrap() {
        names.push(en.unwrap().path().unwrap().display().to_string());
    }
    for want in ["bin/busybox", "srv/new", "etc/passwd"] {
        assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("from-image")), "{names:?}");
    let rootfs = e.work.path().join("rootfs.tar");
    std::fs::write(&rootfs, &out.stdout).unwrap();

    // commit: the container's layer (a whiteout for the deleted file) as a new image.
    let id = s.ok(&[
        "commit",
        "-a",
        "tester",
        "-m",
        "from w",
        "-c",
        r#"CMD ["sh", "-c", "cat /srv/new; ls /srv"]"#,
        "w",
        "hull.test/committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let run = s.ok(&["run", "--rm", "--network", "none", "hull.test/committed:1"]);
    assert_eq!(run, "committed\nnew\n");
    let author = s.ok(&["inspect", "-f", "{{.Author}}", "hull.test/committed:1"]);
    assert_eq!(author.trim(), "tester");
    let o = s.run(&["commit", "nosuch", "x:1"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container"),
        "{o:?}"
    );

    // import: the exported tar (sent as the request body) as a one-layer image.
    let id = s.ok(&[
        "import",
        "-c",
        r#"CMD ["cat", "/srv/new"]"#,
        "-c",
        "ENV PATH=/bin",
        "-m",
        "imported",
        rootfs.to_str().unwrap(),
        "hull.test/imported:2",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let run = s.ok(&["run", "--rm", "--network", "none", "hull.test/imported:2"]);
    assert_eq!(run, "committed\n");
    let layers = s.ok(&[
        "inspect",
        "-f",
        "{{len .RootFS.Layers}}",
        "hull.test/imported:2",
    ]);
    assert_eq!(layers.trim(), "1");
    let o = s.run(&["import", "http://example.invalid/x.tar", "x:1"]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fromSrc"),
        "{o:?}"
    );
    let (code, body) = http(
        &s.sock,
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=Bad%20Name",
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("repo"), "{body}");

    // update: the memory limit is the container's cgroup's; the policy is inspect's.
    s.ok(&["update", "--memory", "64m", "--restart", "always", "w"]);
    let insp = s.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
        "w",
    ]);
    assert_eq!(insp.trim(), "67108864 always");
    let limit = s.ok(&[
        "exec",
        "w",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(limit.trim(), "67108864");
    let o = s.run(&["update", "--cpu-shares", "512", "w"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CpuShares"),
        "{o:?}"
    );
    let o = s.run(&["update", "--memory", "64m", "nosuch"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container"),
        "{o:?}"
    );
    // A policy an AutoRemove container cannot have is the client's error.
    s.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "rr",
        "--network",
        "none",
        IMG,
        "sleep",
        "60",
    ]);
    let (code, body) = http(
        &s.sock,
        "POST",
        "/v1.41/containers/rr/update",
        r#"{"RestartPolicy": {"Name": "always"}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("--rm"), "{body}");
    s.ok(&["rm", "-f", "rr"]);
    // A policy given by update restarts the container when it exits.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--network",
        "none",
        IMG,
        "sh",
        "-c",
        "sleep 3; exit 3",
    ]);
    s.ok(&["update", "--restart", "always", "r"]);
    eventually("r's restart", || {
        s.ok(&["inspect", "-f", "{{.RestartCount}}", "r"]).trim() != "0"
    });

    s.ok(&["rm", "-f", "w", "r"]);
    s.ok(&["rmi", "hull.test/committed:1", "hull.test/imported:2"]);
    drop(s);
    e.assert_clean();
}
