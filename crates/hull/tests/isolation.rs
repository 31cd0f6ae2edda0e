//! Networks are isolated from each other as docker's DOCKER-ISOLATION chains isolate them: a
//! container cannot open a connection into another hull network (default bridge -> user
//! network, user network -> default bridge, user network -> user network), while the host,
//! the gateways of every bridge and published ports stay reachable. Each test has its own
//! link prefix, nft table and subnets (see `ctr/mod.rs`).
#![allow(clippy::unwrap_used)]

mod ctr;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ctr::{free_port, Env};
use serde_json::{json, Value};

const IMG: &str = "hull.test/iso:1";
const HTTPD: &[&str] = &["busybox", "httpd", "-f", "-p", "80", "-h", "/srv"];

/// Starts an httpd container `name` on `network` and returns its address there.
fn httpd(e: &Env, name: &str, network: &str, publish: Option<&str>) -> String {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    if let Some(p) = publish {
        args.extend_from_slice(&["-p", p]);
    }
    args.push(IMG);
    args.extend_from_slice(HTTPD);
    e.ok(&args);
    let i: Value = serde_json::from_str(&e.ok(&["inspect", name])).unwrap();
    let ip = i[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty(), "{name} has no address on {network}: {i}");
    ip
}

/// GET `url` from inside container `from`: the body, or `None` when it cannot be fetched
/// within a few seconds (a dropped SYN times out; `timeout`, as this busybox's `wget -T`
/// crashes).
fn wget_from(e: &Env, from: &str, url: &str) -> Option<String> {
    let o = e.hull(&[
        "exec", from, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", url,
    ]);
    let (out, err) = ctr::text(&o);
    eprintln!("{from} -> {url}: {:?} {out:?} {err:?}", o.status);
    o.status.success().then_some(out)
}

/// GET `path` from `ip:port` on the host, retrying while the server starts.
fn host_get(ip: Ipv4Addr, port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(2)).and_then(
            |mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            },
        );
        match got {
            Ok(body) if body.contains("200 OK") => return body,
            other => assert!(
                Instant::now() < deadline,
                "GET {ip}:{port}{path}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tiny HTTP server on the host (every address): answers `host\n` to anything.
fn host_server() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhost\n");
        }
    });
    port
}

fn gateway(subnet: &str) -> String {
    let base = subnet.trim_end_matches(".0/24");
    format!("{base}.1")
}

#[test]
fn networks_are_isolated_but_host_and_published_ports_are_not() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    let app = e.net.subnet(197);
    let other = e.net.subnet(196);
    e.ok(&["network", "create", "--subnet", &app, "appnet"]);
    e.ok(&["network", "create", "--subnet", &other, "othernet"]);
    let published = free_port();
    let publish = format!("{published}:80");
    let d = httpd(&e, "d", "bridge", None);
    let a = httpd(&e, "a", "appnet", Some(&publish));
    let a2 = httpd(&e, "a2", "appnet", None);
    let o = httpd(&e, "o", "othernet", None);
    // Every server answers the host (the host reaches every network, as with docker).
    for ip in [&d, &a, &a2, &o] {
        host_get(ip.parse().unwrap(), 80, "/from-image");
    }
    let url = |ip: &str| format!("http://{ip}/from-image");

    // Inside one network, containers reach each other.
    assert_eq!(
        wget_from(&e, "a2", &url(&a)).as_deref(),
        Some("image data\n")
    );
    // Across networks, in every direction, they do not.
    for (from, to, what) in [
        ("d", &a, "default bridge -> appnet"),
        ("a", &d, "appnet -> default bridge"),
        ("a", &o, "appnet -> othernet"),
        ("o", &a2, "othernet -> appnet"),
        ("o", &d, "othernet -> default bridge"),
    ] {
        let got = wget_from(&e, from, &url(to));
        assert_eq!(got, None, "{what}: {from} reached {to}");
    }

    // The host stays reachable on every gateway, its own network's and the others'.
    let hp = host_server();
    let default_gw = gateway(&e.net.subnet(199));
    for from in ["d", "a", "o"] {
        for gw in [&default_gw, &gateway(&app), &gateway(&other)] {
            let got = wget_from(&e, from, &format!("http://{gw}:{hp}/"));
            assert_eq!(got.as_deref(), Some("host\n"), "{from} -> host at {gw}");
        }
    }
    // A published port: from the host, and from containers of other networks through the
    // host's address (DNAT), as a client outside would reach it.
    assert!(host_get(Ipv4Addr::LOCALHOST, published, "/from-image").ends_with("image data\n"));
    for from in ["d", "o"] {
        let got = wget_from(
            &e,
            from,
            &format!("http://{default_gw}:{published}/from-image"),
        );
        assert_eq!(got.as_deref(), Some("image data\n"), "{from} -> -p");
    }

    // Removing a network takes its bridge out of the isolation set; the others stay isolated.
    e.ok(&["rm", "-f", "o"]);
    e.ok(&["network", "rm", "othernet"]);
    let listing = std::process::Command::new("nft")
        .args(["list", "table", "inet", &e.net.table()])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains("f-othernet"), "{listing}");
    assert!(
        !listing.contains(&format!("\"{}2\"", e.net.prefix())),
        "{listing}"
    );
    assert_eq!(wget_from(&e, "d", &url(&a)), None, "d reached a");
    for c in ["d", "a", "a2"] {
        e.ok(&["rm", "-f", c]);
    }
    e.assert_clean();
}
