//! `hull system service` driven by the real docker client (Debian's docker.io 20.10,
//! `/usr/bin/docker`) over a temp socket, and raw HTTP for the error cases. No dockerd.
#![allow(clippy::unwrap_used)]

mod apisvc;
mod ctr;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apisvc::{env, http, net_lock, start, IMG};

#[test]
fn docker_run_foreground_output_and_exit_code() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let o = s.run(&[
        "run",
        "--rm",
        IMG,
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("oops"), "{o:?}");
    assert_eq!(s.ok(&["run", "--rm", IMG]), "default\n");
    // --rm: gone once the client returns.
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    // Input through the hijacked connection, and its end.
    let mut c = s
        .docker(&[
            "run",
            "--rm",
            "-i",
            IMG,
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ABC\ndone\n", "{o:?}");
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_lifecycle_ps_logs_inspect() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "k=v",
        IMG,
        "sh",
        "-c",
        "echo one; echo two >&2; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = s.ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.Status}}"]);
    assert!(ps.starts_with(&format!("{} web Up", &id[..12])), "{ps}");
    // `hull ps` sees the same container.
    assert!(e.ok(&["ps"]).contains("web"));
    assert_eq!(
        s.ok(&["ps", "-q", "--filter", "label=k=v"]).trim(),
        &id[..12]
    );
    assert_eq!(s.ok(&["ps", "-q", "--filter", "label=k=x"]), "");
    let insp: serde_json::Value = serde_json::from_str(&s.ok(&["inspect", "web"])).unwrap();
    assert_eq!(insp[0]["Id"], id);
    assert_eq!(insp[0]["Name"], "/web");
    assert_eq!(insp[0]["State"]["Running"], true);
    assert_eq!(insp[0]["Config"]["Labels"]["k"], "v");
    assert_eq!(
        s.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}",
            "web"
        ]),
        "running no\n"
    );
    // logs -f follows until the container stops; stderr stays stderr.
    let follower = s
        .docker(&["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.ok(&["stop", "-t", "5", "web"]);
    let o = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\nbye\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "two\n");
    let ps = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Exited (0)"), "{ps}");
    assert_eq!(s.ok(&["logs", "--tail", "1", "web"]), "bye\n");
    // kill, top, pause, restart, rm -f.
    s.ok(&["start", "web"]);
    let top = s.ok(&["top", "web"]);
    assert!(top.contains("sleep") || top.contains("sh -c"), "{top}");
    s.ok(&["pause", "web"]);
    assert!(s.ok(&["ps", "--format", "{{.Status}}"]).contains("Paused"));
    s.ok(&["unpause", "web"]);
    s.ok(&["kill", "web"]);
    assert_eq!(s.ok(&["wait", "web"]).trim(), "137");
    s.ok(&["restart", "-t", "1", "web"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", "web"]),
        "true\n"
    );
    s.ok(&["rm", "-f", "web"]);
    assert_eq!(s.ok(&["ps", "-aq"]), "");
    drop(s);
    e.assert_clean();
}

#[test]
fn bad_requests_get_dockers_status_and_the_service_goes_on() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    let (code, body) = http(&s.sock, "GET", "/v1.41/containers/nope/json", "");
    assert_eq!(code, 404);
    assert!(
        body.contains(r#""message":"No such container: nope""#),
        "{body}"
    );
    let (code, body) = http(&s.sock, "POST", "/containers/create", "{not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid JSON"), "{body}");
    let (code, body) = http(
        &s.sock,
        "POST",
        "/containers/create",
        r#"{"Image":"nope:1"}"#,
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("No such image: nope:1"), "{body}");
    let (code, _) = http(&s.sock, "GET", "/v1.41/nothing/here", "");
    assert_eq!(code, 404);
    s.ok(&["create", "--name", "dup", IMG]);
    let o = s.run(&["create", "--name", "dup", IMG]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is already in use"),
        "{o:?}"
    );
    let (code, body) = http(
        &s.sock,
        "POST",
        "/containers/create?name=dup",
        &format!(r#"{{"Image":"{IMG}"}}"#),
    );
    assert_eq!(code, 409, "{body}");
    let (code, body) = http(&s.sock, "DELETE", "/containers/dup?force=1", "");
    assert_eq!(code, 204, "{body}");
    let (code, body) = http(&s.sock, "GET", "/_ping", "");
    assert_eq!((code, body.as_str()), (200, "OK"));
    drop(s);
    e.assert_clean();
}

#[test]
fn idle_service_exits_and_containers_outlive_it() {
    let _l = net_lock();
    let e = env();
    let mut s = start(&e, "1");
    let id = s.ok(&["run", "-d", IMG, "sleep", "60"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "service did not exit when idle");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert!(!s.sock.exists(), "socket left behind");
    // The container runs on without the service: its shim watches it.
    let ps = e.ok(&["ps", "-q"]);
    assert_eq!(ps.trim(), &id.trim()[..12]);
    e.ok(&["rm", "-f", id.trim()]);
    e.assert_clean();
}

#[test]
fn docker_exec_plain_stdin_and_terminal() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    s.ok(&["run", "-d", "--name", "box", IMG, "sleep", "60"]);
    let o = s.run(&["exec", "box", "sh", "-c", "echo in; echo err >&2; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "in\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = s.run(&["exec", "box", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    let mut c = s
        .docker(&["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED\n", "{o:?}");
    // -it needs a terminal on our side: script(1) gives docker one.
    let o = Command::new("script")
        .args([
            "-qec",
            "/usr/bin/docker exec -it box sh -c 'tty; stty size; exit 5'",
            "/dev/null",
        ])
        .env("DOCKER_HOST", format!("unix://{}", s.sock.display()))
        .env("DOCKER_CONFIG", s.home.path())
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(o.status.code(), Some(5), "{out}");
    s.ok(&["rm", "-f", "box"]);
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_volumes() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    assert_eq!(s.ok(&["volume", "create", "data"]), "data\n");
    assert!(s.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        IMG,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let mp = s.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(mp.trim()).join("f")).unwrap(),
        "kept\n"
    );
    // `hull volume ls` sees the same volume.
    assert!(e.ok(&["volume", "ls"]).contains("data"));
    s.ok(&["create", "--name", "user", "-v", "data:/data", IMG]);
    let o = s.run(&["volume", "rm", "data"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{o:?}"
    );
    s.ok(&["rm", "user"]);
    s.ok(&["volume", "rm", "data"]);
    let o = s.run(&["volume", "inspect", "data"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such volume: data"),
        "{o:?}"
    );
    // prune takes the unused volumes only.
    s.ok(&["volume", "create", "spare"]);
    s.ok(&["volume", "create", "kept"]);
    s.ok(&["create", "--name", "keeper", "-v", "kept:/k", IMG]);
    let out = s.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("spare") && !out.contains("kept"), "{out}");
    assert_eq!(s.ok(&["volume", "ls", "-q"]), "kept\n");
    s.ok(&["rm", "-v", "keeper"]);
    s.ok(&["volume", "rm", "kept"]);
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_image_inspect_shows_the_whole_config() {
    let e = env();
    let ctx = e.work.path().join("hc");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a"), "a\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY a /a\nMAINTAINER someone\nONBUILD RUN true\n\
         HEALTHCHECK --interval=5s --retries=4 CMD [\"/bin/check\"]\n",
    )
    .unwrap();
    e.ok(&["build", "-q", "-t", "hull.test/hc:1", ctx.to_str().unwrap()]);
    let s = start(&e, "0");
    let hc = s.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck}} {{json .Config.OnBuild}} {{.Author}}",
        "hull.test/hc:1",
    ]);
    assert_eq!(
        hc.trim(),
        r#"{"Test":["CMD","/bin/check"],"Interval":5000000000,"Retries":4} ["RUN true"] someone"#
    );
    drop(s);
    e.assert_clean();
}

#[test]
fn docker_restart_policy_and_healthcheck() {
    let _l = net_lock();
    let e = env();
    let s = start(&e, "0");
    s.ok(&[
        "run",
        "-d",
        "--name",
        "r",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        IMG,
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    // The shim restarts it twice (docker's RestartCount), then it stays exited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = "2 exited on-failure 2\n";
    let f = "{{.RestartCount}} {{.State.Status}} {{.HostConfig.RestartPolicy.Name}} \
             {{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    while s.ok(&["inspect", "-f", f, "r"]) != done {
        assert!(std::time::Instant::now() < deadline, "no {done:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(s.ok(&["logs", "r"]), "run\nrun\nrun\n");
    s.ok(&["rm", "r"]);
    // docker's --health-* become Config.Healthcheck, which the shim runs.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        IMG,
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ]);
    while s.ok(&["inspect", "-f", "{{.State.Health.Status}}", "h"]) != "healthy\n" {
        assert!(std::time::Instant::now() < deadline, "never healthy");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(s.ok(&["ps"]).contains("(healthy)"));
    s.ok(&["rm", "-f", "h"]);
    drop(s);
    e.assert_clean();
}
