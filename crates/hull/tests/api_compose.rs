//! docker-compose 1.29 (Debian) against `hull system service`: a three-service project
//! with a published port reached from the host, a client finding the server by service
//! name on the project network, a named volume that outlives `down` but not `down -v`,
//! depends_on, environment and a restart policy; and the Python docker SDK as a third client.
#![allow(clippy::unwrap_used)]

mod apisvc;
mod ctr;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apisvc::{env, net_lock, start, Service, IMG};

const COMPOSE: &str = "/usr/bin/docker-compose";

fn project(port: u16) -> String {
    format!(
        r#"version: "3.7"
services:
  web:
    image: {IMG}
    environment:
      GREETING: hello-from-web
    command: ["sh", "-c", "echo $$GREETING > /www/index.html; exec busybox httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["data:/www"]
    restart: unless-stopped
  client:
    image: {IMG}
    depends_on: [web]
    command: ["sh", "-c", "until busybox wget -q -O - http://web/index.html; do sleep 0.2; done; exec sleep 60"]
  worker:
    image: {IMG}
    depends_on: [web]
    restart: on-failure:3
    command: ["sh", "-c", "echo kept > /data/marker; exec sleep 60"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
"#
    )
}

fn compose(s: &Service, dir: &Path, args: &[&str]) -> Output {
    Command::new(COMPOSE)
        .args(["--ansi", "never", "-p", "hullt"])
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{}", s.sock.display()))
        .env("HOME", s.home.path())
        .env("DOCKER_CONFIG", s.home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(s: &Service, dir: &Path, args: &[&str]) -> String {
    let o = compose(s, dir, args);
    assert!(
        o.status.success(),
        "docker-compose {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn eventually(what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http_get(port: u16) -> Option<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    out.contains("200 OK").then_some(out)
}

#[test]
fn compose_up_ps_logs_exec_down() {
    assert!(
        Path::new(COMPOSE).exists(),
        "apt-get install docker-compose"
    );
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let dir = e.work.path().join("proj");
    std::fs::create_dir(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.join("docker-compose.yml"), project(port)).unwrap();

    ok(&s, &dir, &["up", "-d"]);
    let ps = ok(&s, &dir, &["ps"]);
    for c in ["hullt_web_1", "hullt_client_1", "hullt_worker_1"] {
        assert!(
            ps.lines().any(|l| l.starts_with(c) && l.contains("Up")),
            "{c}: {ps}"
        );
    }
    let page = eventually("web from the host", || http_get(port));
    assert!(page.contains("hello-from-web"), "{page}");
    // The client found `web` by its service name on the project network.
    let logs = eventually("client's fetch", || {
        let l = ok(&s, &dir, &["logs", "client"]);
        l.contains("hello-from-web").then_some(l)
    });
    assert!(logs.contains("client_1"), "{logs}");
    let out = ok(
        &s,
        &dir,
        &["exec", "-T", "web", "sh", "-c", "echo $GREETING"],
    );
    assert_eq!(out.trim(), "hello-from-web");
    let policy = s.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}",
        "hullt_worker_1",
    ]);
    assert_eq!(policy.trim(), "on-failure");
    // hull and docker see the same containers.
    assert!(e.ok(&["ps"]).contains("hullt_client_1"));

    ok(&s, &dir, &["down", "-t", "1"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    assert!(!s.ok(&["network", "ls"]).contains("hullt_default"));
    let mp = s.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "hullt_data"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(mp.trim()).join("marker")).unwrap(),
        "kept\n"
    );

    ok(&s, &dir, &["up", "-d"]);
    eventually("web again", || http_get(port));
    ok(&s, &dir, &["down", "-v", "-t", "1"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    assert!(!s.ok(&["network", "ls"]).contains("hullt"));
    assert!(!s.ok(&["volume", "ls", "-q"]).contains("hullt"));
    assert!(http_get(port).is_none());
    drop(s);
    e.assert_clean();
}

/// The Python docker SDK (scripts/deps.sh pins it) runs docker_sdk.py against the service.
#[test]
fn python_docker_sdk() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker_sdk.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(format!("unix://{}", s.sock.display()))
        .arg(IMG)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "sdk ok\n");
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    drop(s);
    e.assert_clean();
}
