//! Issue 24: what a hostile image or another local user must not get through hull.
//! The store is private to root (an unprivileged user, made here with useradd, can neither
//! run an image's setuid-root file nor open its device nodes nor read a container's secrets
//! and logs), the container's user is looked up inside its rootfs, and no mount may replace
//! /proc, /sys or /dev.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ctr::{text, Entry, Env};
use serde_json::json;

const IMG: &str = "hull.test/bb:1";

/// A throwaway unprivileged user, deleted on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    fn new() -> User {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hullsec{}x{n}", std::process::id());
        let st = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", &name])
            .status()
            .expect("useradd");
        assert!(st.success(), "useradd {name}");
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        User {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// Runs `script` with /bin/sh as this user: (success, stdout, stderr).
    fn sh(&self, script: &str) -> (bool, String, String) {
        let o = Command::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--", "/bin/sh", "-c", script])
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.success(), out, err)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn only_entry(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

/// Every way in that the attacker tries, each refused with EACCES.
fn assert_refused(u: &User, what: &str, script: &str) {
    let (ok, out, err) = u.sh(script);
    assert!(
        !ok && err.contains("Permission denied"),
        "{what}: not refused (ok {ok}, out {out:?}, err {err:?})"
    );
}

#[test]
fn store_is_private_to_root() {
    let e = Env::new();
    // Where /var/lib/hull sits: under directories everyone may enter.
    set_mode(e.root.path(), 0o755);
    let bb = std::fs::read("/bin/busybox").unwrap();
    e.load_with(
        IMG,
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}),
        &[
            Entry::File("bin/busybox-suid", bb, 0o4755),
            // /dev/kvm's numbers, open to everyone (the host's node is 0600 or 0660).
            Entry::CharDev("srv/kvm", 10, 232, 0o666),
        ],
    );
    let id = e
        .ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "-e",
            "SECRET=hunter2",
            IMG,
            "sh",
            "-c",
            "echo log-line; sleep 1000",
        ])
        .trim()
        .to_string();
    let root = e.root.path();
    let snap = only_entry(&root.join("snapshots"));
    let merged = root.join("containers").join(&id).join("merged");
    let ctr = root.join("ctr").join(&id);
    assert!(merged.join("bin/busybox-suid").exists() && ctr.join("config.json").exists());

    let u = User::new();
    let check_all = |u: &User| {
        for base in [&snap, &merged] {
            let d = base.display();
            assert_refused(u, "setuid file", &format!("{d}/bin/busybox-suid id -u"));
            assert_refused(u, "device node", &format!(": <>{d}/srv/kvm"));
        }
        assert_refused(
            u,
            "config.json",
            &format!("cat {}/config.json", ctr.display()),
        );
        assert_refused(u, "log", &format!("cat {}/container.log", ctr.display()));
        assert_refused(u, "database", &format!("cat {}/hull.db", root.display()));
    };
    check_all(&u);
    for d in [
        "",
        "snapshots",
        "containers",
        "ctr",
        "blobs",
        "tmp",
        "volumes",
    ] {
        if root.join(d).exists() {
            assert_eq!(mode(&root.join(d)), 0o700, "{d}");
        }
    }
    assert_eq!(mode(&root.join("hull.db")), 0o600);

    // A store made before: wide modes everywhere, fixed by the next command of any kind.
    for d in ["", "snapshots", "containers", "ctr"] {
        set_mode(&root.join(d), 0o755);
    }
    set_mode(&root.join("hull.db"), 0o644);
    e.ok(&["ps"]);
    check_all(&u);
    for d in ["", "snapshots", "containers", "ctr"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d} after ps");
    }
    assert_eq!(mode(&root.join("hull.db")), 0o600);
    set_mode(root, 0o755);
    set_mode(&root.join("snapshots"), 0o755);
    set_mode(&root.join("hull.db"), 0o644);
    e.ok(&["images"]);
    assert_eq!(mode(root), 0o700);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
    assert_eq!(mode(&root.join("hull.db")), 0o600);
    e.ok(&["rm", "-f", &id]);
    e.assert_clean();
}

/// A host file an image's /etc/passwd may point at: a user the host knows, uid 4242.
fn host_passwd(e: &Env) -> PathBuf {
    let p = e.work.path().join("host-passwd");
    std::fs::write(&p, "evil:x:4242:4242::/:/bin/sh\n").unwrap();
    set_mode(e.work.path(), 0o755);
    p
}

#[test]
fn user_lookup_stays_in_the_rootfs() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    let host = host_passwd(&e);
    let hostp = host.to_str().unwrap().to_string();
    e.load_with(
        "hull.test/link:1",
        json!({"Env": ["PATH=/bin"], "Cmd": ["id"]}),
        &[Entry::Symlink("etc/passwd", hostp.clone())],
    );
    let o = e.hull(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "evil",
        "hull.test/link:1",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    assert!(err.contains("unable to find user evil"), "{err}");

    // /dev/zero: read until memory ran out. Bounded here so that a regression fails
    // instead of taking the machine down.
    e.load_with(
        "hull.test/zero:1",
        json!({"Env": ["PATH=/bin"], "Cmd": ["id"], "User": "web"}),
        &[Entry::Symlink("etc/passwd", "/dev/zero".into())],
    );
    let mut c = e.cmd(&["run", "--rm", "--network", "none", "hull.test/zero:1"]);
    limit_memory(&mut c);
    let o = c.output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{out}{err}");
    assert!(err.contains("unable to find user web"), "{err}");

    // A running container swaps its /etc/passwd before an admin's `exec -u`.
    let id = e
        .ok(&["run", "-d", "--network", "none", IMG, "sleep", "1000"])
        .trim()
        .to_string();
    e.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        &format!("busybox ln -sf {hostp} /etc/passwd"),
    ]);
    let o = e.hull(&["exec", "-u", "evil", &id, "id"]);
    let (out, err) = text(&o);
    assert!(!o.status.success() && !out.contains("4242"), "{out}{err}");
    assert!(err.contains("unable to find user evil"), "{err}");
    // A large regular file: refused with the limit named.
    e.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "busybox rm /etc/passwd; busybox dd if=/dev/zero of=/etc/passwd bs=1M count=5 2>/dev/null",
    ]);
    let o = e.hull(&["exec", "-u", "web", &id, "id"]);
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.contains("larger than 4 MiB"),
        "{err}"
    );
    e.ok(&["rm", "-f", &id]);
    e.assert_clean();
}

/// At most 2 GiB of address space for hull (and what it starts).
fn limit_memory(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn no_mount_over_proc_sys_or_dev() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    for (img, vol) in [("vproc", "/proc"), ("vsys", "/sys/"), ("vdev", "//dev")] {
        let name = format!("hull.test/{img}:1");
        e.load(
            &name,
            json!({"Env": ["PATH=/bin"], "Cmd": ["true"], "Volumes": {vol: {}}}),
        );
        let o = e.hull(&["run", "--rm", "--network", "none", &name]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{vol}: {out}{err}");
        let path = vol.trim_matches('/');
        assert!(
            err.contains(&format!("/{path} cannot be")) && err.contains("Volumes"),
            "{vol}: {err}"
        );
    }
    let host = e.work.path().to_str().unwrap().to_string();
    for (flag, spec, path) in [
        ("-v", format!("{host}:/proc"), "/proc"),
        ("-v", format!("{host}:/proc/"), "/proc"),
        ("-v", "data:/x/../sys".to_string(), "/sys"),
        (
            "--mount",
            format!("type=bind,src={host},dst=//proc"),
            "/proc",
        ),
        ("--mount", "type=tmpfs,target=/dev".to_string(), "/dev"),
    ] {
        let o = e.hull(&["run", "--rm", "--network", "none", flag, &spec, IMG, "true"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{spec}: {out}{err}");
        assert!(err.contains(&format!("{path} cannot be")), "{spec}: {err}");
    }
    // Still fine: a bind beside them, and lxcfs's /proc files.
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{host}:/procx"),
        IMG,
        "sh",
        "-c",
        "echo ok",
    ]);
    assert_eq!(out, "ok\n");
    e.assert_clean();
}
