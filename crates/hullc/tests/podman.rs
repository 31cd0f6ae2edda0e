//! hullc under podman, through conmon: `podman --runtime PATH-TO-hullc` with
//! its own `--root`/`--runroot` in a temp dir, cgroupfs, no network, and a
//! busybox image loaded from an OCI archive the test writes. podman's
//! default seccomp profile (/usr/share/containers/seccomp.json) applies, as
//! for podman's users. `podman_with_runc` runs the same scenarios on
//! Debian's runc: the reference that proves them.
//!
//! Needs root, `podman` and `conmon` (Debian packages), `busybox-static`, and
//! `script` (bsdutils) for the terminal case. Skips (with a message) without
//! them. This host needs `default_ulimits` in a containers.conf
//! (`CONTAINERS_CONF`), which the test writes, and `--runtime` (podman's
//! default, crun, refuses hybrid cgroup hosts).

#![allow(clippy::unwrap_used)]

#[path = "engines/support.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use support::{old_seccomp_profile, stderr, stdout, success, wait_for, Runtime, Scenarios};

const IMAGE: &str = "localhost/hullbox:latest";

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// An OCI image archive with busybox-static as its single layer.
fn busybox_archive(dir: &Path) -> PathBuf {
    let w = dir.join("img");
    let rootfs = w.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(w.join("blobs/sha256")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "sleep", "cat", "ls", "true", "tty", "grep", "dd",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    // A script without the execute bit: podman's 126.
    std::fs::write(rootfs.join("bin/noexec"), "#!/bin/sh\necho ran\n").unwrap();
    sh(&format!("chmod 0644 {}/bin/noexec", rootfs.display()));
    let blob = |data: &[u8]| -> (String, usize) {
        let tmp = w.join("blob.tmp");
        std::fs::write(&tmp, data).unwrap();
        let hex = sh(&format!("sha256sum {}", tmp.display()))[..64].to_string();
        std::fs::rename(&tmp, w.join("blobs/sha256").join(&hex)).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    sh(&format!(
        "tar --numeric-owner --owner=0 --group=0 -C {} -cf {}/layer.tar .",
        rootfs.display(),
        w.display()
    ));
    let (layer, layer_len) = blob(&std::fs::read(w.join("layer.tar")).unwrap());
    std::fs::remove_file(w.join("layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (cfg, cfg_len) = blob(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_len}],
    });
    let (man, man_len) = blob(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": man, "size": man_len,
            "annotations": {"org.opencontainers.image.ref.name": IMAGE},
        }],
    });
    std::fs::write(w.join("index.json"), index.to_string()).unwrap();
    std::fs::write(w.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::remove_dir_all(&rootfs).unwrap();
    let tar = dir.join("busybox.tar");
    sh(&format!(
        "tar -C {} -cf {} index.json oci-layout blobs",
        w.display(),
        tar.display()
    ));
    std::fs::remove_dir_all(&w).unwrap();
    tar
}

struct Podman {
    dir: tempfile::TempDir,
    runtime: String,
}

impl Podman {
    fn new(rt: Runtime) -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("hullc-podman")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\",\"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\n",
        )
        .unwrap();
        Podman {
            dir,
            runtime: rt.path(),
        }
    }

    fn args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "--root".into(),
            d.join("root").display().to_string(),
            "--runroot".into(),
            d.join("runroot").display().to_string(),
            "--runtime".into(),
            self.runtime.clone(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--storage-driver".into(),
            "overlay".into(),
            "--tmpdir".into(),
            d.join("tmp").display().to_string(),
        ]
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg("120")
            .arg("podman")
            .args(self.args())
            .args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            // conmon 2.1.6 writes an `oom` file into its working directory.
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ok` as a scenario step: an error instead of a panic.
    fn try_ok(&self, args: &[&str]) -> Result<String> {
        success(&format!("podman {args:?}"), self.run(args))
    }

    fn inspect(&self, name: &str, format: &str) -> Result<String> {
        Ok(self
            .try_ok(&["inspect", "-f", format, name])?
            .trim()
            .to_string())
    }

    /// The podman command line as one shell string (for `script`).
    fn shell_line(&self, args: &[&str]) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut v = vec![
            format!(
                "CONTAINERS_CONF={}",
                q(&self
                    .dir
                    .path()
                    .join("containers.conf")
                    .display()
                    .to_string())
            ),
            "podman".into(),
        ];
        v.extend(self.args().iter().map(|a| q(a)));
        v.extend(args.iter().map(|a| q(a)));
        v.join(" ")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers, then storage (overlay mounts), then the temp dir.
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.run(&["rmi", "-a", "-f"]);
        let _ = self.run(&["system", "reset", "-f"]);
        // podman's cgroupfs manager parents containers under /libpod_parent.
        remove_parent_cgroups("libpod_parent");
    }
}

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    for bin in ["podman", "conmon"] {
        if !have(bin) {
            eprintln!("skipped: needs {bin} (apt-get install podman conmon)");
            return false;
        }
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: needs busybox-static");
        return false;
    }
    true
}

fn podman_test(rt: Runtime) {
    if !usable() {
        return;
    }
    let t = std::time::Instant::now();
    let p = Podman::new(rt);
    let tar = busybox_archive(p.dir.path());
    p.ok(&["load", "-i", tar.to_str().unwrap()]);
    let mut s = Scenarios::new(&format!("podman/{}", rt.name()));
    s.run("run --rm, -i, -it", || basics(&p));
    s.run("default seccomp profile", || default_seccomp(&p));
    s.run("an old seccomp profile (no close_range)", || {
        old_profile(&p)
    });
    s.run("run -d, exec, stop, rm", || detached(&p));
    s.run("logs, kill, pause, unpause", || signals(&p));
    s.run("oom: --memory 8m", || oom(&p));
    s.run("start and exec errors: 127/126", || errors(&p));
    s.run("teardown leaves nothing", || teardown(p));
    eprintln!("podman/{}: {:.1} s", rt.name(), t.elapsed().as_secs_f32());
    s.finish();
}

#[test]
fn podman_with_runc() {
    podman_test(Runtime::Runc);
}

#[test]
fn podman_with_hullc() {
    podman_test(Runtime::Hullc);
}

fn basics(p: &Podman) -> Result<()> {
    let net = ["--network", "none"];

    // run --rm: output and exit status.
    let o = p.ok(&["run", "--rm", net[0], net[1], IMAGE, "echo", "hi"]);
    assert_eq!(o, "hi\n");
    let o = p.run(&["run", "--rm", net[0], net[1], IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");

    // run -i: stdin through conmon.
    let mut child = p
        .cmd(&["run", "-i", "--rm", net[0], net[1], IMAGE, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");

    // run -it: a terminal via conmon's console socket (script gives podman
    // a tty). The program stays a moment after printing: podman 4.3 + conmon
    // drop the output of an -it container that exits before podman's attach
    // reads it — with runc as well (seen 1 in 3 here with `sh -c tty`).
    if have("script") {
        let line = p.shell_line(&[
            "run",
            "-it",
            "--rm",
            net[0],
            net[1],
            IMAGE,
            "sh",
            "-c",
            "tty; sleep 1",
        ]);
        let o = Command::new("timeout")
            .args(["120", "script", "-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{o:?}");
        assert!(out.contains("/dev/pts/"), "tty said: {out:?}");
    } else {
        eprintln!("run -it: skipped (no `script`)");
    }

    Ok(())
}

fn detached(p: &Podman) -> Result<()> {
    let net = ["--network", "none"];
    // run -d, exec, stop, rm.
    let id = p.ok(&[
        "run", "-d", net[0], net[1], "--name", "bg", IMAGE, "sleep", "1000",
    ]);
    assert!(!id.trim().is_empty());
    let o = p.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(o.contains("bg Up"), "{o}");
    assert_eq!(p.ok(&["exec", "bg", "echo", "in", "exec"]), "in exec\n");
    let o = p.run(&["exec", "bg", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{o:?}");
    let mut child = p
        .cmd(&["exec", "-i", "bg", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"exec stdin\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "exec stdin\n", "{o:?}");
    // sleep as pid 1 ignores SIGTERM: -t 1 makes podman SIGKILL it.
    p.ok(&["stop", "-t", "1", "bg"]);
    let o = p.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(o.contains("bg Exited"), "{o}");
    p.ok(&["rm", "bg"]);
    assert_eq!(p.ok(&["ps", "-a", "-q"]), "");

    Ok(())
}

fn teardown(p: Podman) -> Result<()> {
    // Nothing left in hullc's state dir that podman gave it.
    let state = p.dir.path().join("runroot");
    let left = sh(&format!(
        "find {} -name state.json -path '*hullc*' 2>/dev/null || true",
        state.display()
    ));
    assert_eq!(left, "", "hullc state left");
    let root = p.dir.path().display().to_string();
    drop(p);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root), "mounts left under {root}");
    Ok(())
}

/// podman applies /usr/share/containers/seccomp.json unless told not to:
/// mode 2 (a filter) in the container, for run and for exec.
fn default_seccomp(p: &Podman) -> Result<()> {
    let grep = ["grep", "-E", "^Seccomp:", "/proc/self/status"];
    let o = p.try_ok(&[&["run", "--rm", "--network", "none", IMAGE], &grep[..]].concat())?;
    ensure!(o == "Seccomp:\t2\n", "run: {o:?}");
    p.try_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "sc",
        IMAGE,
        "sleep",
        "1000",
    ])?;
    let o = p.try_ok(&[&["exec", "sc"], &grep[..]].concat());
    p.try_ok(&["rm", "-f", "-t", "0", "sc"])?;
    ensure!(o? == "Seccomp:\t2\n", "exec");
    Ok(())
}

fn old_profile(p: &Podman) -> Result<()> {
    let Some(profile) = old_seccomp_profile(p.dir.path()) else {
        eprintln!("old profile: skipped (no /usr/share/containers/seccomp.json)");
        return Ok(());
    };
    let opt = format!("seccomp={}", profile.display());
    let o = p.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        &opt,
        IMAGE,
        "echo",
        "hi",
    ]);
    ensure!(o.status.success() && stdout(&o) == "hi\n", "{o:?}");
    Ok(())
}

/// The init traps SIGTERM (podman stop) and says so in its log.
const TRAPPER: &str = "trap 'echo bye; exit 0' TERM; echo started; sleep 1000 & wait";

fn signals(p: &Podman) -> Result<()> {
    let c = "sig";
    p.try_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        c,
        IMAGE,
        "sh",
        "-c",
        TRAPPER,
    ])?;
    wait_for("the log line", Duration::from_secs(20), || {
        p.try_ok(&["logs", c]).is_ok_and(|l| l.contains("started"))
    })?;
    p.try_ok(&["pause", c])?;
    ensure!(p.inspect(c, "{{.State.Status}}")? == "paused");
    p.try_ok(&["unpause", c])?;
    ensure!(p.inspect(c, "{{.State.Status}}")? == "running");
    ensure!(p.try_ok(&["exec", c, "echo", "after", "unpause"])? == "after unpause\n");
    p.try_ok(&["stop", "-t", "20", c])?;
    ensure!(p.inspect(c, "{{.State.ExitCode}}")? == "0");
    let logs = p.try_ok(&["logs", c])?;
    ensure!(logs == "started\nbye\n", "logs: {logs:?}");
    p.try_ok(&["start", c])?;
    ensure!(p.inspect(c, "{{.State.Status}}")? == "running");
    p.try_ok(&["kill", c])?;
    wait_for("exit after kill", Duration::from_secs(20), || {
        p.inspect(c, "{{.State.Status}}")
            .is_ok_and(|s| s == "exited")
    })?;
    ensure!(p.inspect(c, "{{.State.ExitCode}}")? == "137");
    p.try_ok(&["rm", c])?;
    Ok(())
}

fn oom(p: &Podman) -> Result<()> {
    // dd's 64 MiB buffer is touched by read(2): far over the 8 MiB limit.
    let o = p.run(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "8m",
        "--network",
        "none",
        IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    p.try_ok(&["rm", "-f", "oom"])?;
    // Only the status: podman 4.3 with conmon 2.1.6 on this cgroup v1
    // host leaves State.OOMKilled false even with runc.
    ensure!(o.status.code() == Some(137), "exit status: {o:?}");
    Ok(())
}

/// podman maps the runtime's message to 127 (not found) and 126 (cannot
/// execute), for run and for exec, when it has Go's errno wording.
fn errors(p: &Podman) -> Result<()> {
    let mut bad = Vec::new();
    let cases = [
        ("nothere", 127),
        ("/bin/nothere", 127),
        ("/bin/noexec", 126),
    ];
    for (cmd, code) in cases {
        let o = p.run(&["run", "--rm", "--network", "none", IMAGE, cmd]);
        if o.status.code() != Some(code) {
            bad.push(format!(
                "run {cmd}: want {code}, {:?}: {}",
                o.status.code(),
                stderr(&o).trim()
            ));
        }
    }
    p.try_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "ex",
        IMAGE,
        "sleep",
        "1000",
    ])?;
    for (cmd, code) in cases {
        let o = p.run(&["exec", "ex", cmd]);
        if o.status.code() != Some(code) {
            bad.push(format!(
                "exec {cmd}: want {code}, {:?}: {}",
                o.status.code(),
                stderr(&o).trim()
            ));
        }
    }
    p.try_ok(&["rm", "-a", "-f", "-t", "0"])?;
    ensure!(bad.is_empty(), "{}", bad.join("\n"));
    Ok(())
}

/// Removes the (empty) cgroup dirs named `name` that the engine under test
/// left as the parent of its containers' cgroups (hullc removes only the
/// container's own leaf, as runc does). Only empty dirs can go, so nothing
/// in use is touched.
fn remove_parent_cgroups(name: &str) {
    fn walk(d: &std::path::Path, name: &str, depth: u32, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mut dirs = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), name, 3, &mut dirs);
    for d in dirs {
        // Children first: the engine may have nested its own levels.
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            {
                let _ = std::fs::remove_dir(e.path());
            }
        }
        let _ = std::fs::remove_dir(&d);
    }
}
