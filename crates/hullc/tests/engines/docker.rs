//! Docker Engine 20.10 (Debian `docker.io`) driving the runtime: a private
//! dockerd with its own containerd, data/exec roots, socket, cgroup parent,
//! no bridge and no iptables; `--default-runtime` is the runtime under
//! test so `docker build` steps use it too. Docker's default seccomp
//! profile applies to every container, as it does for Docker's users.
//!
//! Each test starts one daemon pair and runs every scenario against it,
//! listing all failures at the end; `docker_with_runc` is the reference
//! that proves the scenarios, `docker_with_hullc` tests hullc.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::support::{
    cgroup_children, image_archive, leaks, links, old_seccomp_profile, remove_cgroup_trees, stderr,
    stdout, stop_child, success, umount_under, wait_for, Containerd, Runtime, Scenarios, HULLC,
    IMAGE_TAG,
};

/// Debian's client and daemon, by path: /usr/local/bin/docker on this
/// kind of machine is an unrelated static client.
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

struct Docker {
    // Drop order: dockerd first, then its containerd, then the temp dir.
    dockerd: Option<Child>,
    ctd: Option<Containerd>,
    dir: tempfile::TempDir,
    sock: String,
    cgroup: String,
    made_run_docker: bool,
}

impl Docker {
    fn start(rt: Runtime) -> Result<Docker> {
        let dir = tempfile::Builder::new().prefix("hull-docker").tempdir()?;
        let ctd = Containerd::start(&dir.path().join("ctd"))?;
        let mut d = Docker {
            sock: dir.path().join("docker.sock").display().to_string(),
            cgroup: format!("hull-engines-docker-{}-{}", std::process::id(), rt.name()),
            made_run_docker: !Path::new("/run/docker").exists(),
            dockerd: None,
            ctd: Some(ctd),
            dir,
        };
        // overlay2 where the temp dir's filesystem allows it, else vfs.
        for driver in ["overlay2", "vfs"] {
            match d.spawn_dockerd(rt, driver) {
                Ok(()) => return Ok(d),
                Err(e) => eprintln!("dockerd with {driver}: {e:#}"),
            }
        }
        anyhow::bail!("dockerd did not start: {}", d.log_tail(40))
    }

    fn spawn_dockerd(&mut self, rt: Runtime, driver: &str) -> Result<()> {
        let p = self.dir.path();
        // Else dockerd writes /etc/docker/key.json (there is no flag for it).
        let conf = serde_json::json!({"deprecated-key-path": p.join("key.json")});
        std::fs::write(p.join("daemon.json"), conf.to_string())?;
        let log = std::fs::File::create(p.join("dockerd.log"))?;
        let arg = |s: &str| p.join(s).display().to_string();
        let mut child = Command::new(DOCKERD)
            .args(["--config-file", &arg("daemon.json")])
            .args([
                "--containerd",
                &self
                    .ctd
                    .as_ref()
                    .map(|c| c.sock.clone())
                    .unwrap_or_default(),
            ])
            .args(["--data-root", &arg("data"), "--exec-root", &arg("exec")])
            .args([
                "--pidfile",
                &arg("docker.pid"),
                "-H",
                &format!("unix://{}", self.sock),
            ])
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--ip-forward=false", "--ip-masq=false"])
            .args(["--storage-driver", driver])
            .args(["--cgroup-parent", &format!("/{}", self.cgroup)])
            .args(["--add-runtime", &format!("hullc={HULLC}")])
            .args(["--default-runtime", rt.name()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn dockerd")?;
        let ready = wait_for("dockerd", Duration::from_secs(60), || {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            self.run(&["version"]).status.success()
        });
        if let (Ok(()), Ok(None)) = (&ready, child.try_wait()) {
            self.dockerd = Some(child);
            return Ok(());
        }
        stop_child(&mut child, Duration::from_secs(10));
        umount_under(&p.join("data"));
        let _ = std::fs::remove_dir_all(p.join("data"));
        ready?;
        anyhow::bail!("dockerd exited: {}", self.log_tail(20))
    }

    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["120", DOCKER, "-H", &format!("unix://{}", self.sock)])
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        success(&format!("docker {args:?}"), self.run(args))
    }

    fn inspect(&self, name: &str, format: &str) -> Result<String> {
        Ok(self
            .ok(&["inspect", "-f", format, name])?
            .trim()
            .to_string())
    }

    /// The container's dir in a v1 controller (docker's cgroupfs driver:
    /// `<cgroup-parent>/<full id>`).
    fn cgroup_dir(&self, controller: &str, name: &str) -> Result<PathBuf> {
        let id = self.inspect(name, "{{.Id}}")?;
        Ok(Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup)
            .join(id))
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if self.dockerd.is_some() {
            if let Ok(ids) = self.ok(&["ps", "-a", "-q"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let _ = self.run(&[&["rm", "-f"], &ids[..]].concat());
                }
            }
        }
        if let Some(mut c) = self.dockerd.take() {
            stop_child(&mut c, Duration::from_secs(30));
        }
        drop(self.ctd.take());
        // dockerd leaves its overlay and netns mounts when it dies hard.
        umount_under(self.dir.path());
        remove_cgroup_trees(&self.cgroup);
        if self.made_run_docker {
            // dockerd makes /run/docker/plugins whatever its exec-root.
            let _ = std::fs::remove_dir("/run/docker/plugins");
            let _ = std::fs::remove_dir("/run/docker");
        }
    }
}

fn usable() -> bool {
    crate::support::usable(&[DOCKER, DOCKERD, "containerd", "ctr"])
}

fn docker_test(rt: Runtime) {
    if !usable() {
        return;
    }
    let v = Command::new(DOCKER).arg("--version").output().unwrap();
    eprintln!("{}", stdout(&v).trim());
    let links_before = links();
    let t = std::time::Instant::now();
    let d = Docker::start(rt).unwrap();
    let tar = image_archive(d.dir.path());
    d.ok(&["load", "-i", tar.to_str().unwrap()]).unwrap();
    let mut s = Scenarios::new(&format!("docker/{}", rt.name()));
    s.run("run --rm: output, exit status, seccomp", || run_rm(&d, rt));
    s.run("an old seccomp profile (no close_range)", || {
        old_profile(&d, rt)
    });
    s.run("start errors: 127/126 and the runtime's words", || {
        start_errors(&d, rt)
    });
    s.run(
        "run -d, logs, exec, top, pause, update, stop, start, kill, rm",
        || detached(&d, rt),
    );
    s.run("exec errors", || exec_errors(&d, rt));
    s.run("oom: --memory 8m", || oom(&d, rt));
    s.run("info: runtime and its version", || info(&d, rt));
    s.run("build: RUN steps on the default runtime", || build(&d));
    s.run("the runtime removed every container's cgroup", || {
        let left = d.ok(&["ps", "-a", "-q"])?;
        ensure!(left.trim().is_empty(), "containers left: {left}");
        wait_for("no container cgroups", Duration::from_secs(10), || {
            cgroup_children(&d.cgroup).is_empty()
        })
        .with_context(|| format!("{:?}", cgroup_children(&d.cgroup)))
    });
    let dir = d.dir.path().to_path_buf();
    let cgroup = d.cgroup.clone();
    drop(d);
    let left = leaks(&dir, &cgroup, &links_before);
    s.run("teardown leaves nothing", || {
        ensure!(left.is_empty(), "{left:?}");
        ensure!(!dir.exists(), "{} left", dir.display());
        Ok(())
    });
    eprintln!("docker/{}: {:.1} s", rt.name(), t.elapsed().as_secs_f32());
    s.finish();
}

#[test]
fn docker_with_runc() {
    docker_test(Runtime::Runc);
}

#[test]
fn docker_with_hullc() {
    docker_test(Runtime::Hullc);
}

fn run_rm(d: &Docker, rt: Runtime) -> Result<()> {
    let o = d.run(&[
        "run",
        "--rm",
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sh",
        "-c",
        "echo hi; grep -E '^Seccomp:' /proc/self/status; exit 3",
    ]);
    ensure!(o.status.code() == Some(3), "exit status: {o:?}");
    // Mode 2: docker's default profile is installed as a filter.
    ensure!(stdout(&o) == "hi\nSeccomp:\t2\n", "{o:?}");
    let out = d.ok(&["ps", "-a", "-q"])?;
    ensure!(out.trim().is_empty(), "--rm left {out}");
    Ok(())
}

fn old_profile(d: &Docker, rt: Runtime) -> Result<()> {
    let Some(profile) = old_seccomp_profile(d.dir.path()) else {
        eprintln!("old profile: skipped (no /usr/share/containers/seccomp.json)");
        return Ok(());
    };
    let opt = format!("seccomp={}", profile.display());
    let o = d.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sh",
        "-c",
        "echo hi; grep -E '^Seccomp:' /proc/self/status",
    ]);
    ensure!(stdout(&o) == "hi\nSeccomp:\t2\n", "{o:?}");
    ensure!(o.status.success(), "{o:?}");
    Ok(())
}

/// Docker maps the runtime's error text to the exit status: Go's errno
/// wording (`no such file or directory`, `executable file not found`,
/// `permission denied`) gives 127/126, anything else 125.
fn start_errors(d: &Docker, rt: Runtime) -> Result<()> {
    let cases: [(&str, i32, &str); 4] = [
        ("nothere", 127, "executable file not found in $PATH"),
        ("/bin/nothere", 127, "no such file or directory"),
        ("/bin/noexec", 126, "permission denied"),
        ("/bin", 126, "permission denied"),
    ];
    let mut bad = Vec::new();
    for (cmd, code, words) in cases {
        let o = d.run(&[
            "run",
            "--rm",
            "--runtime",
            rt.name(),
            "--network",
            "none",
            IMAGE_TAG,
            cmd,
        ]);
        let err = stderr(&o);
        if o.status.code() != Some(code) || !err.contains(words) {
            bad.push(format!(
                "{cmd}: want {code} and {words:?}, got {:?}: {}",
                o.status.code(),
                err.trim()
            ));
        }
    }
    let left = d.ok(&["ps", "-a", "-q"])?;
    for id in left.split_whitespace() {
        d.ok(&["rm", "-f", id])?;
    }
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// The init traps SIGTERM (docker stop) and says so in its log.
const TRAPPER: &str = "trap 'echo bye; exit 0' TERM; echo started; sleep 1000 & wait";

fn detached(d: &Docker, rt: Runtime) -> Result<()> {
    let c = "bg";
    d.ok(&[
        "run",
        "-d",
        "--name",
        c,
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sh",
        "-c",
        TRAPPER,
    ])?;
    wait_for("the log line", Duration::from_secs(20), || {
        d.ok(&["logs", c]).is_ok_and(|l| l.contains("started"))
    })?;
    ensure!(d.inspect(c, "{{.HostConfig.Runtime}}")? == rt.name());
    ensure!(d.ok(&["exec", c, "echo", "in", "exec"])? == "in exec\n");
    let o = d.run(&["exec", c, "sh", "-c", "exit 7"]);
    ensure!(o.status.code() == Some(7), "exec exit status: {o:?}");
    let mut child = d
        .cmd(&["exec", "-i", c, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, b"exec stdin\n")?;
    let o = child.wait_with_output()?;
    ensure!(stdout(&o) == "exec stdin\n", "exec -i: {o:?}");
    // docker top: the shim lists pids (runtime `ps`).
    let top = d.ok(&["top", c])?;
    ensure!(top.contains("sleep 1000"), "top: {top}");

    d.ok(&["pause", c])?;
    ensure!(d.inspect(c, "{{.State.Status}}")? == "paused");
    let freezer = std::fs::read_to_string(d.cgroup_dir("freezer", c)?.join("freezer.state"))?;
    ensure!(freezer.trim() == "FROZEN", "freezer.state {freezer}");
    d.ok(&["unpause", c])?;
    ensure!(d.inspect(c, "{{.State.Status}}")? == "running");
    ensure!(d.ok(&["exec", c, "true"]).is_ok());

    d.ok(&["update", "--memory", "64m", "--memory-swap", "64m", c])?;
    let limit = std::fs::read_to_string(d.cgroup_dir("memory", c)?.join("memory.limit_in_bytes"))?;
    ensure!(limit.trim() == "67108864", "memory.limit_in_bytes {limit}");

    d.ok(&["stop", "-t", "20", c])?;
    ensure!(d.inspect(c, "{{.State.ExitCode}}")? == "0");
    let logs = d.ok(&["logs", c])?;
    ensure!(logs == "started\nbye\n", "logs: {logs:?}");

    // Start the stopped container again, then SIGKILL it.
    d.ok(&["start", c])?;
    ensure!(d.inspect(c, "{{.State.Status}}")? == "running");
    d.ok(&["kill", c])?;
    wait_for("exit after kill", Duration::from_secs(20), || {
        d.inspect(c, "{{.State.Status}}")
            .is_ok_and(|s| s == "exited")
    })?;
    ensure!(d.inspect(c, "{{.State.ExitCode}}")? == "137");
    d.ok(&["rm", c])?;

    // rm -f of a running container.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "fg",
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sleep",
        "1000",
    ])?;
    d.ok(&["rm", "-f", "fg"])?;
    let left = d.ok(&["ps", "-a", "-q"])?;
    ensure!(left.trim().is_empty(), "left: {left}");
    Ok(())
}

/// exec failures: docker 20.10 answers 126 for any, with the runtime's
/// message passed on.
fn exec_errors(d: &Docker, rt: Runtime) -> Result<()> {
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sleep",
        "1000",
    ])?;
    let mut bad = Vec::new();
    for (cmd, words) in [
        ("nothere", "executable file not found in $PATH"),
        ("/bin/noexec", "permission denied"),
    ] {
        let o = d.run(&["exec", "ex", cmd]);
        // The 20.10 client prints this error on stdout.
        let err = format!("{}{}", stdout(&o), stderr(&o));
        if o.status.code() != Some(126) || !err.contains(words) {
            bad.push(format!("exec {cmd}: {:?}: {}", o.status.code(), err.trim()));
        }
    }
    d.ok(&["rm", "-f", "ex"])?;
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

fn oom(d: &Docker, rt: Runtime) -> Result<()> {
    // dd's 64 MiB buffer is touched by read(2): far over the 8 MiB limit.
    let o = d.run(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "8m",
        "--runtime",
        rt.name(),
        "--network",
        "none",
        IMAGE_TAG,
        "sh",
        "-c",
        // The shim registers its OOM watch (v1: an eventfd on memory.oom_control) only once
        // the task has started; a kill before that is never reported, whatever the runtime.
        "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1",
    ]);
    // containerd's shim reports the OOM (TaskOOM) apart from the exit, and under load dockerd
    // may handle the exit first; it sets OOMKilled whenever the event comes, so look again.
    let mut killed = d.inspect("oom", "{{.State.OOMKilled}}");
    for _ in 0..50 {
        if !matches!(&killed, Ok(k) if k != "true") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        killed = d.inspect("oom", "{{.State.OOMKilled}}");
    }
    d.ok(&["rm", "-f", "oom"])?;
    ensure!(o.status.code() == Some(137), "exit status: {o:?}");
    ensure!(killed? == "true", "State.OOMKilled");
    Ok(())
}

/// dockerd runs `RUNTIME --version` for the default runtime and parses
/// runc's format (`... version X`, `commit: Y`); "N/A" means it could not.
fn info(d: &Docker, rt: Runtime) -> Result<()> {
    let out = d.ok(&[
        "info",
        "--format",
        "{{.DefaultRuntime}}|{{range $k, $v := .Runtimes}}{{$k}},{{end}}|{{.RuncCommit.ID}}",
    ])?;
    let f: Vec<&str> = out.trim().split('|').collect();
    ensure!(f.len() == 3, "info: {out}");
    ensure!(f[0] == rt.name(), "default runtime {}", f[0]);
    ensure!(f[1].split(',').any(|r| r == "hullc"), "runtimes {}", f[1]);
    ensure!(
        f[2] != "N/A" && !f[2].is_empty(),
        "runtime version (RuncCommit.ID) {:?}; dockerd: {}",
        f[2],
        d.log_tail(200)
            .lines()
            .filter(|l| l.contains("version"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// The classic builder (DOCKER_BUILDKIT=0) runs each RUN step as a
/// container on the daemon's default runtime.
fn build(d: &Docker) -> Result<()> {
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx)?;
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM hullbox\n\
         RUN echo built > /built && grep -E '^Seccomp:' /proc/self/status\n\
         RUN [\"sh\", \"-c\", \"test -f /built\"]\n\
         CMD [\"cat\", \"/built\"]\n",
    )?;
    let out = d.ok(&["build", "-t", "hullbuilt", ctx.to_str().context("path")?])?;
    ensure!(out.contains("Seccomp:\t2"), "build output: {out}");
    ensure!(d.ok(&["run", "--rm", "--network", "none", "hullbuilt"])? == "built\n");
    std::fs::write(ctx.join("Dockerfile"), "FROM hullbox\nRUN nothere\n")?;
    let o = d.run(&["build", "-t", "hullfail", ctx.to_str().context("path")?]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    ensure!(
        !o.status.success() && all.contains("returned a non-zero code: 127"),
        "failing RUN: {o:?}"
    );
    let left = d.ok(&["ps", "-a", "-q"])?;
    for id in left.split_whitespace() {
        d.ok(&["rm", "-f", id])?;
    }
    Ok(())
}
