//! containerd 1.6 (Debian) driving the runtime through its own Go runc
//! shim: `ctr run --runc-binary RUNTIME`, with `--seccomp` (containerd's
//! default profile) where it matters, against a private containerd.
//! `containerd_with_runc` is the reference, `containerd_with_hullc` the
//! test.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::support::{
    cgroup_children, image_archive, leaks, links, old_seccomp_profile, remove_cgroup_trees, stderr,
    stdout, stop_child, success, wait_for, Containerd, Runtime, Scenarios,
};

const IMAGE: &str = "docker.io/library/hullbox:latest";

struct Ctr {
    ctd: Option<Containerd>,
    dir: tempfile::TempDir,
    /// Namespace, and so the parent cgroup of every container (ctr's
    /// default cgroups path is /<namespace>/<id>).
    ns: String,
    rt: Runtime,
}

impl Ctr {
    fn start(rt: Runtime) -> Result<Ctr> {
        let dir = tempfile::Builder::new().prefix("hull-ctr").tempdir()?;
        let ctd = Containerd::start(&dir.path().join("ctd"))?;
        Ok(Ctr {
            ctd: Some(ctd),
            dir,
            ns: format!("hull-engines-ctr-{}-{}", std::process::id(), rt.name()),
            rt,
        })
    }

    /// Where containerd's runc shim points the runtime's `--root`.
    fn shim_root(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/containerd/runc").join(&self.ns)
    }

    fn sock(&self) -> String {
        self.ctd
            .as_ref()
            .map(|c| c.sock.clone())
            .unwrap_or_default()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["120", "ctr", "-a", &self.sock(), "-n", &self.ns])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        success(&format!("ctr {args:?}"), self.run(args)).with_context(|| {
            format!(
                "containerd log tail:\n{}",
                self.ctd
                    .as_ref()
                    .map(|c| c.log_tail(15))
                    .unwrap_or_default()
            )
        })
    }

    /// `ctr run` with the runtime under test as the runc shim's binary.
    fn ctr_run(&self, flags: &[&str], id: &str, cmd: &[&str]) -> Output {
        let rt = self.rt.path();
        let mut a = vec!["run", "--runc-binary", &rt];
        a.extend_from_slice(flags);
        a.push(IMAGE);
        a.push(id);
        a.extend_from_slice(cmd);
        self.run(&a)
    }

    fn status(&self, id: &str) -> String {
        self.ok(&["task", "ls"])
            .unwrap_or_default()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    fn wait_status(&self, id: &str, want: &str) -> Result<()> {
        wait_for(&format!("{id} {want}"), Duration::from_secs(20), || {
            self.status(id) == want
        })
    }

    /// Removes the task and container `id` whatever state they are in.
    fn remove(&self, id: &str) {
        let _ = self.run(&["task", "kill", "-s", "SIGKILL", id]);
        let _ = self.run(&["task", "rm", "-f", id]);
        let _ = self.run(&["container", "rm", id]);
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        if let Ok(ids) = self.ok(&["container", "ls", "-q"]) {
            for id in ids.split_whitespace() {
                self.remove(id);
            }
        }
        drop(self.ctd.take());
        remove_cgroup_trees(&self.ns);
        let _ = std::fs::remove_dir_all(self.shim_root());
    }
}

fn containerd_test(rt: Runtime) {
    if !crate::support::usable(&["containerd", "ctr"]) {
        return;
    }
    let links_before = links();
    let t = std::time::Instant::now();
    let c = Ctr::start(rt).unwrap();
    let tar = image_archive(c.dir.path());
    c.ok(&["images", "import", tar.to_str().unwrap()]).unwrap();
    let mut s = Scenarios::new(&format!("containerd/{}", rt.name()));
    s.run("run --rm: output, exit status", || run_rm(&c));
    s.run("run --seccomp: containerd's default profile", || {
        seccomp(&c)
    });
    s.run("an old seccomp profile (no close_range)", || {
        old_profile(&c)
    });
    s.run("start errors: the runtime's words reach ctr", || {
        start_errors(&c)
    });
    s.run("run -d, exec, pause, resume, ps, kill, rm", || detached(&c));
    s.run("exec errors: the runtime's words reach ctr", || {
        exec_errors(&c)
    });
    s.run("kill --all and delete of an exited task", || {
        exited_task(&c)
    });
    s.run("oom: /tasks/oom and 137", || oom(&c));
    s.run(
        "the runtime removed every container's cgroup and state",
        || {
            let left = c.ok(&["container", "ls", "-q"])?;
            ensure!(left.trim().is_empty(), "containers left: {left}");
            wait_for("no container cgroups", Duration::from_secs(10), || {
                cgroup_children(&c.ns).is_empty()
            })
            .with_context(|| format!("{:?}", cgroup_children(&c.ns)))?;
            // The runc shim's default --root for the runtime.
            let state: Vec<_> = std::fs::read_dir(c.shim_root())
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            ensure!(state.is_empty(), "runtime state left: {state:?}");
            Ok(())
        },
    );
    let dir = c.dir.path().to_path_buf();
    let ns = c.ns.clone();
    drop(c);
    let left = leaks(&dir, &ns, &links_before);
    s.run("teardown leaves nothing", || {
        ensure!(left.is_empty(), "{left:?}");
        ensure!(!dir.exists(), "{} left", dir.display());
        Ok(())
    });
    eprintln!(
        "containerd/{}: {:.1} s",
        rt.name(),
        t.elapsed().as_secs_f32()
    );
    s.finish();
}

#[test]
fn containerd_with_runc() {
    containerd_test(Runtime::Runc);
}

#[test]
fn containerd_with_hullc() {
    containerd_test(Runtime::Hullc);
}

fn run_rm(c: &Ctr) -> Result<()> {
    let o = c.ctr_run(&["--rm"], "fg", &["sh", "-c", "echo hi; exit 3"]);
    ensure!(stdout(&o) == "hi\n", "{o:?}");
    ensure!(o.status.code() == Some(3), "{o:?}");
    Ok(())
}

fn seccomp(c: &Ctr) -> Result<()> {
    let grep = ["grep", "-E", "^Seccomp:", "/proc/self/status"];
    let o = c.ctr_run(&["--rm", "--seccomp"], "sc", &grep);
    ensure!(stdout(&o) == "Seccomp:\t2\n", "with --seccomp: {o:?}");
    let o = c.ctr_run(&["--rm"], "nosc", &grep);
    ensure!(stdout(&o) == "Seccomp:\t0\n", "without: {o:?}");
    // An exec joins the container's filter.
    c.ok(&[
        "run",
        "-d",
        "--seccomp",
        "--runc-binary",
        &c.rt.path(),
        IMAGE,
        "scx",
        "sleep",
        "1000",
    ])?;
    c.wait_status("scx", "RUNNING")?;
    let out = c.ok(&[
        "task",
        "exec",
        "--exec-id",
        "g",
        "scx",
        "grep",
        "-E",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    c.remove("scx");
    ensure!(out? == "Seccomp:\t2\n");
    Ok(())
}

fn old_profile(c: &Ctr) -> Result<()> {
    let Some(profile) = old_seccomp_profile(c.dir.path()) else {
        eprintln!("old profile: skipped (no /usr/share/containers/seccomp.json)");
        return Ok(());
    };
    let p = profile.display().to_string();
    let o = c.ctr_run(
        &["--rm", "--seccomp", "--seccomp-profile", &p],
        "old",
        &["grep", "-E", "^Seccomp:", "/proc/self/status"],
    );
    c.remove("old");
    ensure!(o.status.success() && stdout(&o) == "Seccomp:\t2\n", "{o:?}");
    Ok(())
}

/// containerd reads the runtime's `--log` (JSON, `time` in RFC 3339) and
/// passes its message on; if it cannot parse the log it says so instead.
fn start_errors(c: &Ctr) -> Result<()> {
    let mut bad = Vec::new();
    for (cmd, words) in [
        ("nothere", "executable file not found in $PATH"),
        ("/bin/nothere", "no such file or directory"),
        ("/bin/noexec", "permission denied"),
    ] {
        let o = c.ctr_run(&["--rm"], "err", &[cmd]);
        let err = stderr(&o);
        if o.status.success() || !err.contains(words) {
            bad.push(format!(
                "{cmd}: want {words:?}, got {:?}: {}",
                o.status,
                err.trim()
            ));
        }
        c.remove("err");
    }
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

fn detached(c: &Ctr) -> Result<()> {
    let id = "bg";
    let o = c.ctr_run(&["-d"], id, &["sleep", "1000"]);
    success("run -d", o)?;
    c.wait_status(id, "RUNNING")?;
    ensure!(c.ok(&["task", "exec", "--exec-id", "x", id, "echo", "hi"])? == "hi\n");
    let o = c.run(&["task", "exec", "--exec-id", "y", id, "sh", "-c", "exit 5"]);
    ensure!(o.status.code() == Some(5), "exec exit status: {o:?}");
    c.ok(&["task", "pause", id])?;
    ensure!(c.status(id) == "PAUSED", "after pause: {}", c.status(id));
    c.ok(&["task", "resume", id])?;
    ensure!(c.status(id) == "RUNNING", "after resume: {}", c.status(id));
    let ps = c.ok(&["task", "ps", id])?;
    ensure!(ps.lines().count() >= 2, "task ps: {ps}");
    c.ok(&["task", "kill", "-s", "SIGKILL", id])?;
    c.wait_status(id, "STOPPED")?;
    c.ok(&["task", "rm", id])?;
    c.ok(&["container", "rm", id])?;
    Ok(())
}

fn exec_errors(c: &Ctr) -> Result<()> {
    let id = "ex";
    success("run -d", c.ctr_run(&["-d"], id, &["sleep", "1000"]))?;
    c.wait_status(id, "RUNNING")?;
    let mut bad = Vec::new();
    for (cmd, words) in [
        ("nothere", "executable file not found in $PATH"),
        ("/bin/noexec", "permission denied"),
    ] {
        let o = c.run(&["task", "exec", "--exec-id", "e", id, cmd]);
        if o.status.success() || !stderr(&o).contains(words) {
            bad.push(format!("exec {cmd}: want {words:?}: {}", stderr(&o).trim()));
        }
    }
    c.remove(id);
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// runc lets `kill --all` of a stopped container succeed (containerd and
/// Docker send one on clean-up), and the task deletes after it.
fn exited_task(c: &Ctr) -> Result<()> {
    let id = "done";
    success("run -d", c.ctr_run(&["-d"], id, &["sh", "-c", "exit 0"]))?;
    let r = (|| {
        c.wait_status(id, "STOPPED")?;
        c.ok(&["task", "kill", "--all", "-s", "SIGKILL", id])?;
        c.ok(&["task", "rm", id])?;
        c.ok(&["container", "rm", id])?;
        Ok(())
    })();
    c.remove(id);
    r
}

fn oom(c: &Ctr) -> Result<()> {
    let events = c.dir.path().join("events.txt");
    let mut ev = c
        .cmd(&["events"])
        .stdout(std::fs::File::create(&events)?)
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let o = c.ctr_run(
        &["--rm", "--memory-limit", "8388608"],
        "oom",
        // The shim registers its OOM watch after the task starts: an allocation at once can
        // beat it on a loaded host, and then no event comes (for runc's shim alike).
        &[
            "sh",
            "-c",
            "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1",
        ],
    );
    let seen = wait_for("/tasks/oom", Duration::from_secs(10), || {
        std::fs::read_to_string(&events).is_ok_and(|e| {
            e.lines()
                .any(|l| l.contains("/tasks/oom") && l.contains("\"oom\""))
        })
    });
    stop_child(&mut ev, Duration::from_secs(2));
    c.remove("oom");
    ensure!(o.status.code() == Some(137), "exit status: {o:?}");
    seen
}
