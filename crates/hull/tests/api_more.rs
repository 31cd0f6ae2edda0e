//! Containers and networks through `hull system service` with the docker 20.10 client:
//! network create/ls/rm, cp both ways, stats, top, pause/unpause, restart, rename, prune,
//! and the errors docker gives for bad requests.
#![allow(clippy::unwrap_used)]

mod apisvc;
mod ctr;

use apisvc::{env, http, net_lock, start, IMG};

#[test]
fn docker_networks_and_names_between_containers() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    s.ok(&["network", "create", "--label", "team=a", "apinet"]);
    let ls = s.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["apinet bridge", "bridge bridge", "host host", "none null"] {
        assert!(ls.lines().any(|l| l == want), "{want}: {ls}");
    }
    let f = s.ok(&["network", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(f.lines().count(), 1, "{f}");
    let o = s.run(&["network", "create", "apinet"]);
    assert!(!o.status.success(), "{o:?}");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "apinet",
        "--network-alias",
        "db",
        IMG,
        "sleep",
        "60",
    ]);
    // By name and by alias on the network.
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "apinet",
        IMG,
        "sh",
        "-c",
        "grep -w srv /etc/hosts && grep -w db /etc/hosts",
    ]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let insp = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}}{{end}}",
        "apinet",
    ]);
    assert_eq!(insp.trim(), "srv");
    let o = s.run(&["network", "rm", "apinet"]);
    assert!(!o.status.success(), "{o:?}");
    // A created container changes networks (with an alias).
    s.ok(&[
        "create",
        "--name",
        "late",
        "--network",
        "none",
        IMG,
        "sleep",
        "60",
    ]);
    s.ok(&["network", "connect", "--alias", "cache", "apinet", "late"]);
    s.ok(&["start", "late"]);
    let hosts = s.ok(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.contains("late") && l.contains("cache")),
        "{hosts}"
    );
    // A running container's first network is unplugged too: its names leave the others'.
    s.ok(&["network", "disconnect", "apinet", "late"]);
    let hosts = s.ok(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("cache"), "{hosts}");
    s.ok(&["rm", "-f", "srv", "late"]);
    s.ok(&["network", "rm", "apinet"]);
    s.ok(&["network", "create", "gone"]);
    let out = s.ok(&["network", "prune", "-f"]);
    assert!(out.contains("gone"), "{out}");
    assert!(!s.ok(&["network", "ls"]).contains("gone"));
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_cp_stats_top_pause_restart_rename() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "box",
        IMG,
        "sh",
        "-c",
        "echo in > /inside; sleep 60",
    ]);
    // cp out (a file and a directory) and in (to a new name and into a directory).
    let host = e.work.path();
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.ok(&["cp", "box:/inside", host.join("out").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "in\n");
    s.ok(&["cp", "box:/etc", host.join("etc").to_str().unwrap()]);
    assert!(host.join("etc/hosts").is_file());
    std::fs::write(host.join("up"), "up\n").unwrap();
    s.ok(&["cp", host.join("up").to_str().unwrap(), "box:/renamed"]);
    s.ok(&["cp", host.join("up").to_str().unwrap(), "box:/tmp/"]);
    assert_eq!(
        s.ok(&["exec", "box", "cat", "/renamed", "/tmp/up"]),
        "up\nup\n"
    );
    let o = s.run(&["cp", "box:/nothing", host.join("x").to_str().unwrap()]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container:path: box:/nothing"),
        "{o:?}"
    );

    let st = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        "box",
    ]);
    let f: Vec<&str> = st.split_whitespace().collect();
    assert_eq!(f[0], "box", "{st}");
    assert!(f[1].ends_with("iB") && !f[1].starts_with("0B"), "{st}");
    assert_ne!(f.last().unwrap(), &"0", "{st}");
    let top = s.ok(&["top", "box"]);
    assert!(top.contains("sleep 60"), "{top}");

    s.ok(&["pause", "box"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}}", "box"]).trim(),
        "paused"
    );
    s.ok(&["unpause", "box"]);
    let pid1 = s.ok(&["inspect", "-f", "{{.State.Pid}}", "box"]);
    s.ok(&["restart", "-t", "1", "box"]);
    let pid2 = s.ok(&["inspect", "-f", "{{.State.Pid}}", "box"]);
    assert_ne!(pid1, pid2);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Status}}", "box"]).trim(),
        "running"
    );
    s.ok(&["rename", "box", "crate"]);
    assert_eq!(s.ok(&["ps", "--format", "{{.Names}}"]), "crate\n");
    // hull sees what docker did.
    assert!(e.ok(&["ps"]).contains("crate"));
    s.ok(&["stop", "-t", "1", "crate"]);
    s.ok(&["create", "--name", "idle", IMG]);
    let ids = s.ok(&["ps", "-aq", "--no-trunc"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    let out = s.ok(&["container", "prune", "-f"]);
    for id in ids.lines() {
        assert!(out.contains(id), "{id}: {out}");
    }
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    drop(s);
    e.assert_clean();
}

#[test]
fn bad_requests_name_the_cause() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    for (m, path, body, code, want) in [
        (
            "POST",
            "/v1.41/containers/nope/stop",
            "",
            404,
            "No such container: nope",
        ),
        (
            "GET",
            "/images/nope:1/json",
            "",
            404,
            "No such image: nope:1",
        ),
        ("GET", "/networks/nope", "", 404, "network nope not found"),
        ("POST", "/networks/create", "{bad", 400, "invalid JSON"),
        (
            "POST",
            "/networks/create",
            r#"{"Name":"x","Driver":"overlay"}"#,
            400,
            "overlay",
        ),
        ("DELETE", "/networks/bridge", "", 403, "pre-defined"),
        ("POST", "/images/create", "", 400, "fromImage is required"),
        (
            "POST",
            "/images/nope:1/push",
            "",
            404,
            "does not exist locally",
        ),
        (
            "GET",
            "/containers/nope/archive?path=/",
            "",
            404,
            "No such container",
        ),
        (
            "GET",
            "/containers/json?filters=%7Bbad",
            "",
            400,
            "invalid filters",
        ),
    ] {
        let (c, b) = http(&s.sock, m, path, body);
        assert_eq!(c, code, "{m} {path}: {b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert!(
            v["message"].as_str().unwrap().contains(want),
            "{m} {path}: {b}"
        );
    }
    s.ok(&["create", "--name", "one", IMG]);
    let (c, b) = http(&s.sock, "POST", "/containers/one/rename?name=one", "");
    assert_eq!(c, 409, "{b}");
    let (c, _) = http(&s.sock, "GET", "/_ping", "");
    assert_eq!(c, 200);
    s.ok(&["rm", "one"]);
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_events_past_and_followed() {
    use std::io::BufRead as _;
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    // A follower sees what happens after it started (`--since`: also if the client comes
    // up only after the network is made, as it may on a busy machine).
    let mut follow = s
        .docker(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=network",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    s.ok(&["network", "create", "evnet"]);
    let mut line = String::new();
    std::io::BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // SAFETY: kills the docker client this test started, by its pid.
    unsafe { libc::kill(follow.id() as i32, libc::SIGTERM) };
    let _ = follow.wait();
    assert_eq!(line, "create evnet\n");
    s.ok(&["run", "--rm", "--name", "evbox", IMG, "true"]);
    s.ok(&["volume", "create", "evvol"]);
    s.ok(&["volume", "rm", "evvol"]);
    s.ok(&["network", "rm", "evnet"]);
    // `until` in the future would follow until then: the past only.
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let past = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    for want in [
        "network create",
        "container create",
        "container start",
        "container die",
        "container destroy",
        "volume create",
        "volume destroy",
        "network destroy",
    ] {
        assert!(past.lines().any(|l| l == want), "{want}: {past}");
    }
    let only = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=evbox",
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(only, "evbox\n");
    let (c, b) = http(
        &s.sock,
        "GET",
        "/events?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
        "",
    );
    assert_eq!(c, 400, "{b}");
    drop(s);
    e.assert_clean();
}

/// Sends `head` then `body` on the socket from a thread (the service may answer before it
/// has read everything and close), and returns the status line and body of the answer.
fn send_big(sock: &std::path::Path, head: String, body: Vec<u8>) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    let first = head.lines().next().unwrap_or_default().to_string();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        // No shutdown of the write side after: hyper takes a half-closed connection for a
        // client gone and drops the answer.
        let _ = w.write_all(&body);
    });
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{first}: no answer ({read:?}): {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// A JSON body over the cap is refused with 413 and docker's `{"message"}`, whether its
/// Content-Length says so up front (nothing is read) or a chunked body runs past it; the
/// tar streams (`/images/load`) are not capped.
#[test]
fn json_bodies_are_capped_streams_are_not() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let head = |path: &str, len: Option<usize>| {
        let framing = match len {
            Some(n) => format!("Content-Length: {n}"),
            None => "Transfer-Encoding: chunked".to_string(),
        };
        format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
             {framing}\r\nConnection: close\r\n\r\n"
        )
    };
    // Announced as 1 GiB, 1 MiB sent: answered from the header, without waiting for the rest.
    let (code, body) = send_big(
        &s.sock,
        head("/containers/create", Some(1 << 30)),
        vec![b' '; 1 << 20],
    );
    assert_eq!(code, 413, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["message"].as_str().unwrap().contains("request body"),
        "{body}"
    );
    // 64 MiB chunked into /networks/create: refused at the cap, not read whole.
    let mut chunked = Vec::new();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (code, body) = send_big(&s.sock, head("/networks/create", None), chunked);
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    // A small body still works, and a tar stream past the JSON cap is read (and found not
    // to be an image archive) rather than refused for its size.
    let (code, body) = http(&s.sock, "POST", "/networks/create", "{bad");
    assert_eq!(code, 400, "{body}");
    let (code, body) = send_big(
        &s.sock,
        head("/images/load", Some(8 << 20)),
        vec![0u8; 8 << 20],
    );
    assert_ne!(code, 413, "{body}");
    assert!(body.contains("message"), "{body}");
}
