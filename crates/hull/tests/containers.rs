//! `hull run/ps/logs/exec/stop/rm/...` end to end as root, with busybox
//! images loaded from OCI archives built by the test and a temp `--root`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::time::{Duration, Instant};

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/bb:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin", "FROM_IMAGE=yes"], "Cmd": ["sh", "-c", "echo default"], "WorkingDir": "/srv"}));
    e
}

#[test]
fn run_foreground_output_and_exit_status() {
    let e = env();
    let o = e.hull(&[
        "run",
        "--rm",
        IMG,
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert_eq!(out, "hi\n");
    assert!(err.contains("oops"), "{err}");
    assert_eq!(e.ok(&["run", "--rm", IMG]), "default\n");
    e.assert_clean();
}

#[test]
fn image_config_and_overrides() {
    let e = env();
    e.load("hull.test/ep:1", json!({"Entrypoint": ["echo", "ep"], "Cmd": ["x"], "User": "web", "WorkingDir": "/home/web", "Env": ["PATH=/bin", "A=1"]}));
    assert_eq!(e.ok(&["run", "--rm", "hull.test/ep:1"]), "ep x\n");
    assert_eq!(e.ok(&["run", "--rm", "hull.test/ep:1", "y"]), "ep y\n");
    let id = e.ok(&["run", "--rm", "--entrypoint", "id", "hull.test/ep:1"]);
    assert!(
        id.starts_with("uid=1000(web) gid=1000(web)") && id.contains("50(staff)"),
        "{id}"
    );
    assert_eq!(
        e.ok(&["run", "--rm", "--entrypoint", "pwd", "hull.test/ep:1"]),
        "/home/web\n"
    );
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "-w",
            "/tmp",
            "--entrypoint",
            "pwd",
            "hull.test/ep:1"
        ]),
        "/tmp\n"
    );
    let id = e.ok(&[
        "run",
        "--rm",
        "-u",
        "123:45",
        "--entrypoint",
        "id",
        "hull.test/ep:1",
    ]);
    assert!(id.starts_with("uid=123 gid=45"), "{id}");
    let env_out = e.ok(&[
        "run",
        "--rm",
        "-e",
        "A=2",
        "-e",
        "B=3",
        "--entrypoint",
        "env",
        "hull.test/ep:1",
    ]);
    assert!(
        env_out.contains("A=2\n") && env_out.contains("B=3\n") && !env_out.contains("A=1\n"),
        "{env_out}"
    );
    assert!(env_out.contains("HOME=/home/web"), "{env_out}");
    let envf = e.work.path().join("envfile");
    std::fs::write(&envf, "# c\nC=4\n").unwrap();
    let env_out = e.ok(&[
        "run",
        "--rm",
        "--env-file",
        envf.to_str().unwrap(),
        IMG,
        "env",
    ]);
    assert!(
        env_out.contains("C=4\n") && env_out.contains("FROM_IMAGE=yes"),
        "{env_out}"
    );
    assert_eq!(
        e.ok(&["run", "--rm", "--hostname", "box", IMG, "hostname"]),
        "box\n"
    );
    let hosts = e.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        IMG,
        "cat",
        "/etc/hosts",
        "/etc/hostname",
    ]);
    assert!(
        hosts.contains("localhost") && hosts.contains("box"),
        "{hosts}"
    );
    e.assert_clean();
}

#[test]
fn detached_lifecycle() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        IMG,
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; exec sleep 1000",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up"), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["logs", "web"]).contains("line5") {
        assert!(Instant::now() < deadline, "no output in logs");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.ok(&["logs", "--tail", "2", "web"]), "line4\nline5\n");
    let ts = e.ok(&["logs", "--timestamps", "--tail", "1", "web"]);
    assert!(ts.starts_with("20") && ts.contains("Z line5"), "{ts}");
    let raw = std::fs::read_to_string(
        e.root
            .path()
            .join("ctr")
            .join(id.trim())
            .join("container.log"),
    )
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["log"].as_str(), first["stream"].as_str()),
        (Some("line1\n"), Some("stdout"))
    );
    assert_eq!(e.ok(&["exec", "web", "echo", "x"]), "x\n");
    let o = e.hull(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(
        e.ok(&[
            "exec",
            "-w",
            "/tmp",
            "-e",
            "Q=1",
            "web",
            "sh",
            "-c",
            "pwd; echo $Q"
        ]),
        "/tmp\n1\n"
    );
    let top = e.ok(&["top", "web"]);
    assert!(top.contains("sleep 1000"), "{top}");
    e.ok(&["pause", "web"]);
    assert!(e.ok(&["ps"]).contains("Paused"));
    e.ok(&["unpause", "web"]);
    // A new hull process sees the same state (nothing lives in hull).
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web"])).unwrap();
    assert_eq!(inspect[0]["State"]["Status"], "running");
    assert!(inspect[0]["State"]["Pid"].as_u64().unwrap() > 0);
    assert_eq!(inspect[0]["Name"], "/web");
    let name_in_use = e.hull(&["run", "-d", "--name", "web", IMG, "true"]);
    assert_eq!(name_in_use.status.code(), Some(125));
    assert!(text(&name_in_use).1.contains("already in use"));
    let t = Instant::now();
    e.ok(&["stop", "-t", "1", "web"]);
    assert!(t.elapsed() < Duration::from_secs(8));
    let ps = e.ok(&["ps"]);
    assert!(!ps.contains("web"), "{ps}");
    let psa = e.ok(&["ps", "-a"]);
    assert!(psa.contains("web") && psa.contains("Exited (137)"), "{psa}");
    assert_eq!(e.ok(&["wait", "web"]), "137\n");
    let j: serde_json::Value =
        serde_json::from_str(&e.ok(&["ps", "-a", "--format", "json"])).unwrap();
    assert_eq!(j[0]["State"], "exited");
    assert_eq!(j[0]["ExitCode"], 137);
    // Logs of a finished container are still there.
    assert!(e.ok(&["logs", "web"]).contains("line1"));
    e.ok(&["rm", "web"]);
    assert!(!e.ok(&["ps", "-a"]).contains("web"));
    e.assert_clean();
}

#[test]
fn wait_create_start_kill_rm_force() {
    let e = env();
    let id = e.ok(&[
        "create",
        "--name",
        "c1",
        IMG,
        "sh",
        "-c",
        "sleep 0.3; exit 4",
    ]);
    assert!(e.ok(&["ps", "-a"]).contains("Created"));
    e.ok(&["start", "c1"]);
    assert_eq!(e.ok(&["wait", id.trim()]), "4\n");
    assert!(e.ok(&["ps", "-a"]).contains("Exited (4)"));
    let o = e.hull(&["start", "-a", "c1"]);
    assert_ne!(o.status.code(), Some(0));
    e.ok(&["rm", "c1"]);

    // pid 1 ignores signals it has no handler for, so trap one.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        IMG,
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.1; done",
    ]);
    let busy = e.hull(&["rm", "k"]);
    assert_eq!(busy.status.code(), Some(125));
    assert!(text(&busy).1.contains("running"), "{}", text(&busy).1);
    e.ok(&["kill", "-s", "TERM", "k"]);
    assert_eq!(e.ok(&["wait", "k"]), "42\n");
    e.ok(&["rm", "k"]);

    e.ok(&["run", "-d", "--name", "f", IMG, "sleep", "1000"]);
    e.ok(&["rm", "-f", "f"]);

    // -d --rm: removed once it exits, with no hull attached.
    e.ok(&["run", "-d", "--rm", "--name", "gone", IMG, "sleep", "0.2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = |e: &Env| {
        e.ok(&["ps", "-a"]).contains("gone")
            || std::fs::read_dir(e.root.path().join("ctr"))
                .unwrap()
                .count()
                > 1
    };
    while busy(&e) {
        assert!(
            Instant::now() < deadline,
            "run -d --rm container not removed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    e.assert_clean();
}

#[test]
fn volumes_and_read_only() {
    let e = env();
    let host = e.work.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let v = format!("{}:/mnt", host.display());
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "-v",
            &v,
            IMG,
            "sh",
            "-c",
            "cat /mnt/in; echo back > /mnt/out"
        ]),
        "from host\n"
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/mnt:ro", host.display());
    let o = e.hull(&["run", "--rm", "-v", &ro, IMG, "touch", "/mnt/x"]);
    assert_ne!(o.status.code(), Some(0));
    let missing = e.hull(&["run", "--rm", "-v", "/no/such/dir:/mnt", IMG, "true"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(text(&missing).1.contains("/no/such/dir"));

    e.ok(&["volume", "create", "data1"]);
    e.ok(&[
        "run",
        "--rm",
        "-v",
        "data1:/d",
        IMG,
        "sh",
        "-c",
        "echo kept > /d/f",
    ]);
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,source=data1,target=/e",
            IMG,
            "cat",
            "/e/f"
        ]),
        "kept\n"
    );
    assert!(e.ok(&["volume", "ls"]).contains("data1"));
    e.ok(&["volume", "rm", "data1"]);
    assert!(!e.ok(&["volume", "ls", "-q"]).contains("data1"));

    let o = e.hull(&["run", "--rm", "--read-only", IMG, "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).1.contains("Read-only"), "{}", text(&o).1);
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--read-only",
            "--mount",
            "type=tmpfs,target=/tmp",
            IMG,
            "sh",
            "-c",
            "touch /tmp/x && echo ok"
        ]),
        "ok\n"
    );
    e.assert_clean();
}

#[test]
fn bad_input() {
    let e = env();
    // Missing: a pull is tried (`--pull missing`), and fails for a registry that is not there.
    let o = e.hull(&["run", "--rm", "hull.test/nope:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o).1.contains("Unable to find image"),
        "{}",
        text(&o).1
    );
    let o = e.hull(&["run", "--rm", "--pull", "never", "hull.test/nope:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("hull pull"), "{}", text(&o).1);
    let o = e.hull(&["run", "--rm", "--memory", "lots", IMG, "true"]);
    assert!(text(&o).1.contains("--memory"));
    let o = e.hull(&["rm", "nothere"]);
    assert!(text(&o).1.contains("no such container"));
    e.assert_clean();
}

fn status_field(e: &Env, extra: &[&str], field: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[IMG, "grep", field, "/proc/self/status"]);
    e.ok(&args)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn security_and_resource_flags_seen_from_inside() {
    let e = env();
    // docker's default capability set, seccomp filter on.
    assert_eq!(status_field(&e, &[], "CapBnd"), "00000000a80425fb");
    assert_eq!(status_field(&e, &[], "Seccomp:"), "2");
    assert_eq!(status_field(&e, &[], "NoNewPrivs"), "0");
    assert_eq!(
        status_field(
            &e,
            &["--cap-drop", "all", "--cap-add", "net_admin"],
            "CapBnd"
        ),
        "0000000000001000"
    );
    assert_eq!(
        status_field(&e, &["--security-opt", "seccomp=unconfined"], "Seccomp:"),
        "0"
    );
    assert_eq!(
        status_field(&e, &["--security-opt", "no-new-privileges"], "NoNewPrivs"),
        "1"
    );
    let profile = e.work.path().join("allow.json");
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#).unwrap();
    let sp = format!("seccomp={}", profile.display());
    let o = e.hull(&[
        "run",
        "--rm",
        "--security-opt",
        &sp,
        IMG,
        "sh",
        "-c",
        "mkdir /tmp/d",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert_ne!(
        status_field(&e, &["--privileged"], "CapBnd"),
        "00000000a80425fb"
    );
    assert_eq!(status_field(&e, &["--privileged"], "Seccomp:"), "0");
    // Masked files are /dev/null binds (of those this kernel has).
    let masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap();
    assert_eq!(
        e.ok(&["run", "--rm", IMG, "stat", "-c", "%t,%T", masked]),
        "1,3\n"
    );
    let o = e.hull(&["run", "--rm", IMG, "touch", "/proc/sys/kernel/hostname"]);
    assert_ne!(o.status.code(), Some(0));
    // Resources through the container's own cgroup (v2 namespace root).
    let script = "cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max pids.max cpu.max; \
        else cat memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us; fi";
    let lim = e.ok(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "33",
        "--cpus",
        "1.5",
        IMG,
        "sh",
        "-c",
        script,
    ]);
    assert!(
        lim == "67108864\n33\n150000 100000\n" || lim == "67108864\n33\n150000\n",
        "{lim}"
    );
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:2048",
            IMG,
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn"
        ]),
        "1024\n2048\n"
    );
    assert_eq!(
        e.ok(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/mynull",
            IMG,
            "stat",
            "-c",
            "%t,%T",
            "/dev/mynull"
        ]),
        "1,3\n"
    );
    e.ok(&["create", "--name", "lab", "--label", "a=b", IMG, "true"]);
    let i: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "lab"])).unwrap();
    assert_eq!(i[0]["Config"]["Labels"]["a"], "b");
    assert_eq!(i[0]["State"]["Status"], "created");
    e.ok(&["rm", "lab"]);
    e.assert_clean();
}

fn shim_pid(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|p| {
            let pid: i32 = p.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            (cmd.contains("containerd-shim-hull-v2") && cmd.contains(id)).then_some(pid)
        })
}

#[test]
fn state_survives_hull_and_shim_loss() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "quick",
        IMG,
        "sh",
        "-c",
        "echo done; exit 5",
    ]);
    let id = e.ok(&["run", "-d", "--name", "orphan", IMG, "sleep", "1000"]);
    assert_eq!(e.ok(&["wait", "quick"]), "5\n");
    let psa = e.ok(&["ps", "-a"]);
    assert!(
        psa.contains("Exited (5)") && psa.contains("orphan"),
        "{psa}"
    );
    assert_eq!(e.ok(&["logs", "quick"]), "done\n");
    // The shim dies: the container outlives it; ps still tells the truth and rm -f cleans up.
    let pid = shim_pid(id.trim()).expect("shim process");
    let sock = ctr::shim_socket(e.root.path(), id.trim());
    // SAFETY: kill(2) on a pid we just read from /proc.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("orphan") && ps.contains("Up"), "{ps}");
    // A killed shim leaves its socket behind; rm takes it away.
    assert!(sock.exists(), "{}", sock.display());
    e.ok(&["rm", "-f", "orphan"]);
    assert!(!sock.exists(), "socket left: {}", sock.display());
    e.ok(&["rm", "quick"]);
    for cg in [
        "/sys/fs/cgroup/hull",
        "/sys/fs/cgroup/pids/hull",
        "/sys/fs/cgroup/memory/hull",
    ] {
        assert!(
            !std::path::Path::new(cg).join(id.trim()).exists(),
            "cgroup left in {cg}"
        );
    }
    e.assert_clean();
}

/// A `--root` so long that `ROOT/ctr/<id>/shim.sock` would not fit in sun_path (108
/// bytes): the shim's socket lives in /run/hull/s under a hash of the container directory,
/// and goes with the container.
#[test]
fn long_root_shim_socket() {
    let mut e = Env::new();
    e.root = tempfile::Builder::new()
        .prefix(&format!("hull-long-root-{}-", "r".repeat(100)))
        .tempdir()
        .unwrap();
    assert!(e.root.path().as_os_str().len() > 108);
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    assert_eq!(e.ok(&["run", "--rm", IMG, "echo", "hi"]), "hi\n");
    let id = e.ok(&["run", "-d", "--name", "long", IMG, "sleep", "100"]);
    let sock = ctr::shim_socket(e.root.path(), id.trim());
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(&sock).unwrap().file_type().is_socket(),
        "{}",
        sock.display()
    );
    assert!(e.ok(&["ps"]).contains("long"));
    assert_eq!(e.ok(&["exec", "long", "echo", "in"]), "in\n");
    e.ok(&["rm", "-f", "long"]);
    assert!(!sock.exists(), "socket left: {}", sock.display());
    e.assert_clean();
}

#[test]
fn stdin_and_terminal() {
    use std::io::Write;
    use std::process::Stdio;
    let e = env();
    let mut c = e.cmd(&["run", "-i", "--rm", IMG, "sh", "-c", "cat; echo end"]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\nend\n");
    // -it under a pseudo-terminal (script(1)): the container gets a tty.
    let inner = format!(
        "{} --root {} run -it --rm {IMG} sh -c 'tty; exit 2'",
        ctr::HULL,
        e.root.path().display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .envs(e.envs())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(o.status.code(), Some(2), "{out}");
    e.assert_clean();
}

#[test]
fn signals_forwarded_and_logs_follow() {
    use std::process::Stdio;
    let e = env();
    let script = "trap 'echo got; exit 9' INT; echo ready; while :; do sleep 0.1; done";
    let child = e
        .cmd(&["run", "--rm", "--name", "fg", IMG, "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // `logs` fails until `run` has created the container: poll its output.
    let logs = |e: &ctr::Env| {
        String::from_utf8_lossy(&e.cmd(&["logs", "fg"]).output().unwrap().stdout).into_owned()
    };
    while !logs(&e).contains("ready") {
        assert!(Instant::now() < deadline, "container did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(9));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ready\ngot\n");

    e.ok(&[
        "run",
        "-d",
        "--name",
        "f",
        IMG,
        "sh",
        "-c",
        "echo a; sleep 0.5; echo b",
    ]);
    assert_eq!(e.ok(&["logs", "-f", "f"]), "a\nb\n");
    e.ok(&["rm", "f"]);
    e.assert_clean();
}

#[test]
fn reset_waits_for_a_create_in_progress() {
    // A create holds the container store's lock from before its directory exists until its
    // record is complete. Hold it here with such a directory (no record yet): reset must
    // wait, not take the directory for a crashed create's and remove it under the create.
    let e = Env::new();
    let ctr = e.root.path().join("ctr");
    std::fs::create_dir_all(&ctr).unwrap();
    // Declared after `e`: dropped first on a panic, so that Env's own reset never waits.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(ctr.join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    let dir = ctr.join("ab".repeat(32));
    std::fs::create_dir(&dir).unwrap();
    let mut reset = e
        .cmd(&["system", "reset", "--force"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let early = reset.try_wait().unwrap();
    let survived = dir.exists();
    drop(lock);
    let out = reset.wait_with_output().unwrap();
    assert!(
        early.is_none() && survived,
        "reset did not wait for the store lock ({early:?}, directory kept: {survived}): {:?}",
        text(&out)
    );
    assert!(out.status.success(), "{:?}", text(&out));
    // Once the lock is free the directory is what a crashed create left: removed.
    assert!(!dir.exists());
    e.assert_clean();
}
