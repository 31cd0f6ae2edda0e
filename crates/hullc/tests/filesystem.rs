//! The container's filesystem: root (readonly, --no-pivot), mounts and their
//! options, default and configured devices, maskedPaths, readonlyPaths —
//! each checked from inside (mountinfo, stat, reads and writes).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::json;

/// The container's /proc/self/mountinfo.
fn mountinfo(h: &Hullc, b: &mut Bundle) -> String {
    h.sh(b, "cat /proc/self/mountinfo")
}

#[track_caller]
fn opts_at(mi: &str, mp: &str) -> std::collections::HashSet<String> {
    mount_at(mi, mp)
        .unwrap_or_else(|| panic!("no mount at {mp} in\n{mi}"))
        .0
}

#[test]
fn readonly_root_rejects_writes() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["root"]["readonly"] = json!(true);
    let out = h.sh(
        &mut b,
        "touch /newfile 2>&1; echo rc=$?; touch /dev/shm/ok && echo shm-writable",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    // Mounts on top of the read-only root keep their own flags.
    assert!(out.contains("shm-writable"), "{out}");
    assert!(!b.rootfs().join("newfile").exists());
    let mi = mountinfo(&h, &mut b);
    assert!(opts_at(&mi, "/").contains("ro"), "{mi}");
}

#[test]
fn writable_root_writes_reach_the_bundle() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["root"]["readonly"] = json!(false);
    h.sh(&mut b, "echo inside > /written");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("written")).unwrap(),
        "inside\n"
    );
    let mi = mountinfo(&h, &mut b);
    assert!(opts_at(&mi, "/").contains("rw"), "{mi}");
}

/// The `root` field (4th) of the mountinfo line for `/`: the directory of
/// the host filesystem that is the container's root.
fn root_source(mi: &str) -> String {
    mi.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .and_then(|l| l.split(' ').nth(3))
        .unwrap()
        .to_string()
}

#[test]
fn root_is_the_bundle_rootfs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let mi = mountinfo(&h, &mut b);
    // The bundle lives on the host's / filesystem, so mountinfo's root
    // field is its host path; nothing of the host's tree is visible.
    assert_eq!(root_source(&mi), b.rootfs().to_str().unwrap(), "{mi}");
    assert_eq!(
        mi.lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .count(),
        1,
        "{mi}"
    );
}

/// Unmounts the rootfs's own mount when the test ends, also after a failure.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// rootfsPropagation "rshared" with the rootfs a shared mount point of its own, as containerd's
/// overlay is under CRI when a container has a bidirectional mount (critest's rshared
/// propagation spec): hullc makes the rootfs's mount private before binding it for pivot_root,
/// as runc does (pivot_root(2) refuses shared mounts with EINVAL, which hullc used to report),
/// and `/` is rshared again inside.
#[test]
fn rshared_rootfs_on_its_own_shared_mount() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let r = b.rootfs().to_path_buf();
    let sh = |c: &str| {
        let st = std::process::Command::new("sh")
            .args(["-c", c])
            .status()
            .unwrap();
        assert!(st.success(), "{c}");
    };
    sh(&format!("mount --bind {0} {0}", r.display()));
    let _umount = Unmount(r.clone());
    sh(&format!("mount --make-shared {}", r.display()));
    b.config["linux"]["rootfsPropagation"] = json!("rshared");
    // A volume with bidirectional propagation (CRI's Bidirectional): what the container mounts
    // in it reaches the host, so it must stay a peer of the host's mount through the pivot.
    let vol = h.scratch().join("vol");
    fs::create_dir_all(vol.join("sub")).unwrap();
    sh(&format!("mount --bind {0} {0}", vol.display()));
    let _umount_vol = Unmount(vol.clone());
    sh(&format!("mount --make-rshared {}", vol.display()));
    fs::create_dir_all(b.rootfs().join("vol")).unwrap();
    b.add_mount(json!({
        "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rshared"]
    }));
    for set in ["bounding", "effective", "permitted"] {
        if let Some(a) = b.config["process"]["capabilities"][set].as_array_mut() {
            a.push(json!("CAP_SYS_ADMIN"));
        }
    }
    let mi = h.sh(
        &mut b,
        "mount -t tmpfs hull-prop /vol/sub && cat /proc/self/mountinfo",
    );
    let root = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    assert!(root.contains(" shared:"), "/ is not shared inside: {mi}");
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let sub = format!("{}/sub", vol.display());
    assert!(
        host.lines()
            .any(|l| l.split(' ').nth(4) == Some(sub.as_str()) && l.contains("hull-prop")),
        "the container's mount in the rshared volume did not reach the host"
    );
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "cat /proc/self/mountinfo; echo END; ls /"]);
    let id = h.id("nopivot");
    let out = h.run(&b, &id, &["--no-pivot"]).ok().stdout;
    let (mi, ls) = out.split_once("END\n").unwrap();
    assert_eq!(root_source(mi), b.rootfs().to_str().unwrap(), "{mi}");
    let mut entries: Vec<&str> = ls.lines().collect();
    entries.sort();
    assert_eq!(
        entries,
        ["bin", "dev", "etc", "proc", "root", "sys", "tmp"],
        "{ls}"
    );
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn bind_mount_read_only() {
    let h = Hullc::new();
    let src = h.scratch().join("ro-src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), "host-data").unwrap();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/mnt/ro", "type": "bind", "source": src,
        "options": ["rbind", "ro"]
    }));
    let out = h.sh(
        &mut b,
        "cat /mnt/ro/data; echo; { echo x > /mnt/ro/new; } 2>&1; echo rc=$?",
    );
    assert!(out.starts_with("host-data\n"), "{out}");
    assert!(
        out.contains("Read-only file system") && out.contains("rc=1"),
        "{out}"
    );
    assert!(!src.join("new").exists());
    let mi = mountinfo(&h, &mut b);
    assert!(opts_at(&mi, "/mnt/ro").contains("ro"), "{mi}");
}

#[test]
fn bind_mount_nosuid_nodev_noexec() {
    let h = Hullc::new();
    let src = h.scratch().join("nx-src");
    fs::create_dir_all(&src).unwrap();
    fs::copy(BUSYBOX, src.join("busybox")).unwrap();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/mnt/nx", "type": "bind", "source": src,
        "options": ["bind", "nosuid", "nodev", "noexec"]
    }));
    let out = h.sh(&mut b, "/mnt/nx/busybox true 2>&1; echo rc=$?");
    // noexec: execve fails with EACCES, which sh reports as 126.
    assert!(out.contains("rc=126"), "{out}");
    let mi = mountinfo(&h, &mut b);
    let o = opts_at(&mi, "/mnt/nx");
    for f in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(o.contains(f), "{f} missing: {o:?}");
    }
}

#[test]
fn bind_mount_without_options_is_executable_and_writable() {
    // The counterpart of the two tests above: same bind, no flags.
    let h = Hullc::new();
    let src = h.scratch().join("plain-src");
    fs::create_dir_all(&src).unwrap();
    fs::copy(BUSYBOX, src.join("busybox")).unwrap();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/mnt/plain", "type": "bind", "source": src, "options": ["bind"]
    }));
    let out = h.sh(
        &mut b,
        "/mnt/plain/busybox echo exec-ok; echo from-container > /mnt/plain/out",
    );
    assert_eq!(out, "exec-ok\n");
    assert_eq!(
        fs::read_to_string(src.join("out")).unwrap(),
        "from-container\n"
    );
}

#[test]
fn bind_mount_of_a_file_creates_the_target() {
    let h = Hullc::new();
    let src = h.scratch().join("file-src");
    fs::write(&src, "single file").unwrap();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/etc/deep/bound.txt", "type": "bind", "source": src,
        "options": ["bind", "ro"]
    }));
    assert_eq!(h.sh(&mut b, "cat /etc/deep/bound.txt"), "single file");
    assert!(b.rootfs().join("etc/deep/bound.txt").is_file());
}

#[test]
fn rbind_carries_submounts_and_bind_does_not() {
    let h = Hullc::new();
    let src = h.scratch().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    // A host mount below the source (in the test's own scratch dir).
    let sub = src.join("sub");
    let _guard = SubMount::tmpfs(&sub);
    fs::write(sub.join("in-submount"), "x").unwrap();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/mnt/r", "type": "bind", "source": src, "options": ["rbind"]
    }));
    b.add_mount(json!({
        "destination": "/mnt/nr", "type": "bind", "source": src, "options": ["bind"]
    }));
    let out = h.sh(&mut b, "ls /mnt/r/sub; echo END; ls /mnt/nr/sub");
    assert_eq!(out, "in-submount\nEND\n");
}

/// A tmpfs mounted by the test on the host, lazily unmounted on drop.
struct SubMount(std::path::PathBuf);

impl SubMount {
    fn tmpfs(p: &Path) -> SubMount {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "hulltest"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
        SubMount(p.to_path_buf())
    }
}

impl Drop for SubMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn tmpfs_mount_with_size_and_mode() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.add_mount(json!({
        "destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "size=2048k", "mode=750"]
    }));
    let out = h.sh(&mut b, "stat -c %a /mnt/t; cat /proc/self/mountinfo");
    let (mode, mi) = out.split_once('\n').unwrap();
    assert_eq!(mode, "750");
    let (opts, fstype, sopts) = mount_at(mi, "/mnt/t").unwrap();
    assert_eq!(fstype, "tmpfs");
    assert!(opts.contains("nosuid"), "{opts:?}");
    let sopts: Vec<&str> = sopts.split(',').collect();
    assert!(sopts.contains(&"size=2048k"), "{sopts:?}");
    assert!(sopts.contains(&"mode=750"), "{sopts:?}");
}

#[test]
fn default_mounts_have_their_types_and_flags() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let mi = mountinfo(&h, &mut b);
    for (mp, ty, flags) in [
        ("/proc", "proc", &[][..]),
        ("/dev", "tmpfs", &["nosuid"][..]),
        ("/dev/pts", "devpts", &["nosuid", "noexec"][..]),
        ("/dev/shm", "tmpfs", &["nosuid", "noexec", "nodev"][..]),
        ("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"][..]),
        ("/sys", "sysfs", &["ro", "nosuid", "noexec", "nodev"][..]),
    ] {
        let (opts, fstype, _) = mount_at(&mi, mp).unwrap_or_else(|| panic!("{mp}: {mi}"));
        assert_eq!(fstype, ty, "{mp}");
        for f in flags {
            assert!(opts.contains(*f), "{mp}: {f} missing in {opts:?}");
        }
    }
}

#[test]
fn devpts_is_a_new_instance_behind_dev_ptmx() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(
        &mut b,
        "readlink /dev/ptmx; stat -L -c '%t:%T' /dev/ptmx; ls /dev/pts",
    );
    // A fresh devpts instance holds only its ptmx (no host ptys).
    assert_eq!(out, "pts/ptmx\n5:2\nptmx\n");
}

#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(
        &mut b,
        "cat /proc/self/mountinfo; echo END; \
         cat /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs 2>/dev/null; true",
    );
    let (mi, procs) = out.split_once("END\n").unwrap();
    let cg: Vec<(String, std::collections::HashSet<String>)> = mi
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let lf: Vec<&str> = left.split(' ').collect();
            let ty = right.split(' ').next()?;
            (ty == "cgroup" || ty == "cgroup2").then(|| {
                (
                    lf[4].to_string(),
                    lf[5].split(',').map(str::to_string).collect(),
                )
            })
        })
        .collect();
    assert!(!cg.is_empty(), "no cgroup mount: {mi}");
    for (mp, opts) in &cg {
        assert!(mp.starts_with("/sys/fs/cgroup"), "{mp}");
        // The spec's default asks for a read-only cgroup mount.
        assert!(opts.contains("ro"), "{mp}: {opts:?}");
    }
    // With a cgroup namespace each hierarchy's root is the container's own
    // cgroup, where the shell is pid 1.
    assert!(procs.lines().any(|p| p == "1"), "{procs}");
}

/// Without a cgroup namespace (runc 1.1's default config) the mount binds
/// the container's own cgroup dirs, which init finds in /proc/self/cgroup
/// while the parent moves it into them at the same time: init must wait
/// for the move, or it binds the caller's cgroups. A few containers,
/// because a lost race shows only some of the time.
#[test]
fn cgroup_mount_without_cgroupns_binds_the_containers_own_cgroup() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.remove_namespace("cgroup");
    for _ in 0..4 {
        let out = h.sh(
            &mut b,
            "cat /sys/fs/cgroup/*/cgroup.procs 2>/dev/null; echo END; \
             grep ' /sys/fs/cgroup/' /proc/self/mountinfo",
        );
        let (procs, mounts) = out.split_once("END\n").unwrap();
        assert!(!mounts.is_empty(), "no cgroup hierarchy mounted");
        // Each bound hierarchy holds exactly the container's processes:
        // the shell (pid 1) and cat; the caller's cgroup would hold
        // processes this pid namespace cannot name.
        let n = mounts.lines().count();
        let ones = procs.lines().filter(|p| *p == "1").count();
        assert_eq!(
            ones, n,
            "pid 1 not in every bound cgroup:\n{procs}\n{mounts}"
        );
        assert!(procs.lines().all(|p| p != "0"), "{procs}");
    }
}

#[test]
fn default_devices_exist_with_numbers_and_modes() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(
        &mut b,
        "stat -c '%n %F %t:%T %a %u:%g' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty",
    );
    let want = [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ]
    .iter()
    .map(|(n, d)| format!("/dev/{n} character special file {d} 666 0:0\n"))
    .collect::<String>();
    assert_eq!(out, want);
}

#[test]
fn default_devices_work() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(
        &mut b,
        "echo discarded > /dev/null && echo null-ok; \
         head -c 4 /dev/zero | od -An -tx1; \
         head -c 16 /dev/urandom | wc -c; \
         { echo x > /dev/full; } 2>&1; echo full-rc=$?",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "null-ok", "{out}");
    assert_eq!(lines[1].trim(), "00 00 00 00", "{out}");
    assert_eq!(lines[2].trim(), "16", "{out}");
    assert!(
        out.contains("No space left on device") && out.contains("full-rc=1"),
        "{out}"
    );
}

#[test]
fn default_dev_links() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(
        &mut b,
        "for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done",
    );
    assert_eq!(
        out,
        "fd=/proc/self/fd\nstdin=/proc/self/fd/0\nstdout=/proc/self/fd/1\n\
         stderr=/proc/self/fd/2\nptmx=pts/ptmx\n"
    );
}

#[test]
fn linux_devices_are_created() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["linux"]["devices"] = json!([
        { "path": "/dev/hull-null", "type": "c", "major": 1, "minor": 3,
          "fileMode": 0o640, "uid": 1000, "gid": 1000 },
        { "path": "/dev/sub/hull-blk", "type": "b", "major": 7, "minor": 200,
          "fileMode": 0o600 },
        { "path": "/dev/hull-fifo", "type": "p", "fileMode": 0o620 },
        { "path": "/dev/hull-zero", "type": "c", "major": 1, "minor": 5,
          "fileMode": 0o666 }
    ]);
    let out = h.sh(
        &mut b,
        "stat -c '%n %F %t:%T %a %u:%g' /dev/hull-null /dev/sub/hull-blk; \
         stat -c '%n %F %a' /dev/hull-fifo; \
         head -c 2 /dev/hull-zero | od -An -tx1",
    );
    // %t/%T are hex: 200 = 0xc8. The last node is a working /dev/zero.
    assert_eq!(
        out,
        "/dev/hull-null character special file 1:3 640 1000:1000\n\
         /dev/sub/hull-blk block special file 7:c8 600 0:0\n\
         /dev/hull-fifo fifo 620\n \
         00 00\n"
    );
}

#[test]
fn masked_file_reads_empty() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::write(b.rootfs().join("etc/secret"), "top secret").unwrap();
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc/secret"));
    let out = h.sh(&mut b, "wc -c < /etc/secret; cat /etc/secret");
    assert_eq!(out.trim(), "0");
    // Masking is a mount inside the container; the file itself is intact.
    assert_eq!(
        fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(),
        "top secret"
    );
}

#[test]
fn masked_directory_is_empty_and_read_only() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::create_dir_all(b.rootfs().join("secretdir")).unwrap();
    fs::write(b.rootfs().join("secretdir/key"), "k").unwrap();
    b.config["linux"]["maskedPaths"] = json!(["/secretdir"]);
    let out = h.sh(
        &mut b,
        "ls -A /secretdir; echo END; touch /secretdir/x 2>&1; echo rc=$?",
    );
    let (ls, rest) = out.split_once("END\n").unwrap();
    assert_eq!(ls, "");
    assert!(
        rest.contains("Read-only file system") && rest.contains("rc=1"),
        "{rest}"
    );
    assert!(b.rootfs().join("secretdir/key").exists());
}

/// The spec's default maskedPaths or readonlyPaths that exist on this
/// kernel (the container's /proc and /sys are the host kernel's).
fn existing_defaults(b: &Bundle, key: &str) -> Vec<String> {
    let v: Vec<String> = b.config["linux"][key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!v.is_empty(), "no default {key} exists on this host");
    v
}

#[test]
fn default_masked_paths_are_empty() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let paths = existing_defaults(&b, "maskedPaths");
    // Files read as /dev/null, directories list as an empty tmpfs.
    let script: String = paths
        .iter()
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo {p}=$(ls -A {p} | wc -l); else echo {p}=$(wc -c < {p}); fi;"
            )
        })
        .collect();
    let out = h.sh(&mut b, &script);
    let want: String = paths.iter().map(|p| format!("{p}=0\n")).collect();
    assert_eq!(out, want);
}

#[test]
fn readonly_path_rejects_writes_but_reads() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::create_dir_all(b.rootfs().join("data")).unwrap();
    fs::write(b.rootfs().join("data/f"), "readable").unwrap();
    b.config["linux"]["readonlyPaths"] = json!(["/data"]);
    let out = h.sh(
        &mut b,
        "cat /data/f; echo; { echo x > /data/new; } 2>&1; echo rc=$?; echo y > /elsewhere && echo rest-writable",
    );
    assert!(out.starts_with("readable\n"), "{out}");
    assert!(
        out.contains("Read-only file system") && out.contains("rc=1"),
        "{out}"
    );
    assert!(out.contains("rest-writable"), "{out}");
    assert!(!b.rootfs().join("data/new").exists());
}

#[test]
fn default_readonly_paths_are_read_only_mounts() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let paths = existing_defaults(&b, "readonlyPaths");
    let mi = mountinfo(&h, &mut b);
    for p in &paths {
        assert!(opts_at(&mi, p).contains("ro"), "{p}: {mi}");
    }
}

#[test]
fn missing_masked_and_readonly_paths_are_ignored() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["linux"]["maskedPaths"] = json!(["/no/such/file"]);
    b.config["linux"]["readonlyPaths"] = json!(["/no/such/dir"]);
    assert_eq!(h.sh(&mut b, "echo fine"), "fine\n");
    assert!(
        !b.rootfs().join("no").exists(),
        "hullc created a missing path"
    );
}
