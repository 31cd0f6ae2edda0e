//! Details of the rootfs setup where runc's own suite (tests/integration,
//! issue 17) found hullc behaving differently from runc: the order of the
//! read-only remounts, recursive mount attributes, a tmpfs's mode, host
//! procfs under `--no-pivot`, the cwd of createContainer hooks, the moment
//! the seccomp filter goes in, bind sources only the host's root can reach,
//! and the foreground terminal's line endings. Each is seen from outside:
//! what the container's processes (or hooks) observe.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A tmpfs mounted by the test on the host, lazily unmounted on drop.
struct HostTmpfs(PathBuf);

impl HostTmpfs {
    fn at(p: &Path) -> HostTmpfs {
        fs::create_dir_all(p).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "hulltest"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
        HostTmpfs(p.to_path_buf())
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// mounts.bats "ro /dev mount": `/dev` with `ro` still gets its device
/// nodes and the `/dev/pts` mount, and is read-only once the container runs.
#[test]
fn read_only_dev_is_remounted_after_what_goes_in_it() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"].as_array_mut().unwrap().push(json!("ro"));
        }
    }
    let out = h.sh(
        &mut b,
        "grep '^tmpfs /dev ' /proc/mounts; test -c /dev/null && test -e /dev/pts/ptmx && echo nodes; \
         touch /dev/x 2>&1 || true",
    );
    let mut lines = out.lines();
    let dev = lines.next().unwrap();
    assert!(
        dev.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("nodes"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
}

/// mounts_recursive.bats: `rro` makes the mounts below a bind read-only
/// too (mount_setattr AT_RECURSIVE), which `ro` does not; `rnoexec` reaches
/// the submount's flags as well.
#[test]
fn recursive_read_only_reaches_submounts() {
    let h = Hullc::new();
    let vol = h.scratch().join("vol");
    let _top = HostTmpfs::at(&vol);
    let _sub = HostTmpfs::at(&vol.join("sub"));
    let mut b = Bundle::new(&h);
    b.add_mount(
        json!({"destination": "/rro", "source": vol, "options": ["rbind", "rro", "rnoexec"]}),
    );
    b.add_mount(json!({"destination": "/ro", "source": vol, "options": ["rbind", "ro"]}));
    let out = h.sh(
        &mut b,
        "for f in /rro/x /rro/sub/x /ro/x /ro/sub/x; do touch $f 2>/dev/null && echo $f rw || echo $f ro; done; \
         grep ' /rro/sub ' /proc/self/mountinfo",
    );
    let mut lines = out.lines();
    let got: Vec<&str> = lines.by_ref().take(4).collect();
    assert_eq!(
        got,
        ["/rro/x ro", "/rro/sub/x ro", "/ro/x ro", "/ro/sub/x rw"],
        "{out}"
    );
    let sub = lines.next().unwrap();
    let opts = sub.split(' ').nth(5).unwrap();
    assert!(opts.split(',').any(|o| o == "noexec"), "{sub}");
}

/// run.bats "runc run with tmpfs": a tmpfs over an existing directory takes
/// that directory's mode, setuid/setgid/sticky included, unless `mode=`
/// says otherwise.
#[test]
fn tmpfs_takes_the_mode_of_the_directory_it_covers() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::create_dir_all(b.rootfs().join("covered")).unwrap();
    fs::set_permissions(
        b.rootfs().join("covered"),
        fs::Permissions::from_mode(0o7777),
    )
    .unwrap();
    fs::create_dir_all(b.rootfs().join("given")).unwrap();
    fs::set_permissions(b.rootfs().join("given"), fs::Permissions::from_mode(0o710)).unwrap();
    b.add_mount(
        json!({"destination": "/covered", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev"]}),
    );
    b.add_mount(
        json!({"destination": "/given", "type": "tmpfs", "source": "tmpfs",
        "options": ["mode=0410"]}),
    );
    b.add_mount(json!({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"}));
    let out = h.sh(&mut b, "stat -c %a /covered /given /fresh");
    assert_eq!(out, "7777\n410\n1777\n");
}

/// no_pivot.bats: under `--no-pivot` the host's /proc is unmounted from the
/// container's mount namespace, so a process in a new user namespace cannot
/// mount a procfs without the masked paths (the kernel allows that only
/// while a full, uncovered procfs is in the namespace).
#[test]
fn no_pivot_leaves_no_bare_procfs_to_mount() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    for set in ["bounding", "permitted", "effective"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SETFCAP"));
    }
    b.args(&[
        "unshare",
        "-mrpf",
        "sh",
        "-c",
        "mount -t proc none /proc && echo mounted",
    ]);
    let id = h.id("nopivotproc");
    let o = h.run(&b, &id, &["--no-pivot"]);
    assert!(!o.stdout.contains("mounted"), "{o:?}");
    assert!(o.stderr.contains("ermission denied"), "{o:?}");
    // With pivot_root the same program is refused too (the old root is gone).
    let id = h.id("pivotproc");
    let o = h.run(&b, &id, &[]);
    assert!(!o.stdout.contains("mounted"), "{o:?}");
}

/// hooks.bats: createContainer hooks run in the rootfs, so relative paths
/// in them name the container's files (runc chdirs there first).
#[test]
fn create_container_hooks_run_in_the_rootfs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let log = h.scratch().join("cwd.log");
    b.config["hooks"] = json!({"createContainer": [{"path": "/bin/sh",
        "args": ["sh", "-c", format!("pwd > {}; touch ./from-hook", log.display())]}]});
    h.sh(&mut b, "true");
    assert_eq!(
        fs::read_to_string(&log).unwrap().trim(),
        b.rootfs().to_str().unwrap()
    );
    assert!(b.rootfs().join("from-hook").exists());
}

/// seccomp.bats "startContainer hook": with noNewPrivileges the filter is
/// in place before `start`, so startContainer hooks (run by init) are
/// under it, as in runc; the error says so in runc's words.
#[test]
fn start_container_hooks_run_under_the_seccomp_filter() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]
    });
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh",
        "args": ["sh", "-c", "mkdir /tmp/from-hook"]}]});
    b.args(&["true"]);
    let id = h.id("schook");
    h.run(&b, &id, &[])
        .fails_with(&["error running hook", "bad system call"]);
    assert!(!b.rootfs().join("tmp/from-hook").exists());
}

/// userns.bats "2 inaccessible mounts": bind sources under a directory
/// only the host's root may enter are opened by hullc outside the user
/// namespace, as runc does; root in the container is an unprivileged uid
/// on the host and could not open them itself.
#[test]
fn user_namespace_binds_sources_only_host_root_can_reach() {
    let h = Hullc::new();
    let private = h.scratch().join("private");
    for n in ["1", "2"] {
        fs::create_dir_all(private.join(n).join("dir")).unwrap();
        fs::write(private.join(n).join("dir/foo.txt"), n).unwrap();
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    let mut b = Bundle::new(&h);
    // The targets exist (the rootfs is the host root's, not the container's).
    for d in ["m1", "m2"] {
        fs::create_dir_all(b.rootfs().join(d)).unwrap();
    }
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.add_mount(
        json!({"destination": "/m1", "source": private.join("1/dir"), "options": ["bind"]}),
    );
    b.add_mount(
        json!({"destination": "/m2", "source": private.join("2/dir"), "options": ["rbind", "ro"]}),
    );
    let out = h.sh(&mut b, "cat /m1/foo.txt /m2/foo.txt");
    assert_eq!(out, "12");
}

/// run.bats compares `hullc run`'s output line by line: the foreground
/// terminal passes `\n` through without adding `\r` (runc clears ONLCR).
#[test]
fn foreground_terminal_output_has_no_carriage_returns() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["terminal"] = json!(true);
    b.args(&["sh", "-c", "echo one; echo two"]);
    let id = h.id("onlcr");
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout, "one\ntwo\n");
}
