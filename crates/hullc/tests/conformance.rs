//! Conformance (issue 6): generated configs run through `hullc run` with
//! `hull-check` (crates/hull-conformance) as the container's program. The
//! checker reads the config (copied to `/config.json` in the rootfs) and
//! reports each field it verified from inside as one JSON line; a test fails
//! listing every field that is not ok, so a regression names itself.
//!
//! The checker must be a static binary (the rootfs is busybox-static only).
//! The test builds it on first use with
//! `RUSTFLAGS="-C target-feature=+crt-static" cargo build -p hull-conformance
//! --target <host triple>` into its own target dir under
//! `CARGO_TARGET_TMPDIR` (so the flags never invalidate the workspace build,
//! and a `cargo test` that holds the workspace's build lock cannot deadlock
//! it). `HULL_CHECK_BIN=/path/to/hull-check` skips the build.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Bundle, Helper, Hullc};
use serde_json::{json, Value};

/// The static hull-check binary, built once per test process.
fn checker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HULL_CHECK_BIN") {
            return PathBuf::from(p);
        }
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hull-check");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "hull-conformance",
                "--bin",
                "hull-check",
            ])
            .args(["--target", &triple, "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo build for hull-check");
        assert!(
            out.status.success(),
            "building hull-check failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir.join(triple).join("debug/hull-check")
    })
}

/// `kind:inode` for each of the test process's namespaces (the host's).
fn host_ns() -> String {
    ["pid", "net", "mnt", "ipc", "uts", "user", "cgroup", "time"]
        .iter()
        .filter_map(|k| {
            let l = fs::read_link(format!("/proc/self/ns/{k}")).ok()?;
            let l = l.to_string_lossy();
            let ino = l.rsplit_once('[')?.1.trim_end_matches(']').to_string();
            Some(format!("{k}:{ino}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A bundle whose program is the checker, with the host's namespaces in its
/// environment.
fn check_bundle(h: &Hullc) -> Bundle {
    let mut b = Bundle::new(h);
    let dst = b.rootfs().join("hull-check");
    fs::copy(checker(), &dst).expect("copy hull-check into the rootfs");
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod hull-check");
    b.args(&["/hull-check"]);
    b.config["process"]["env"]
        .as_array_mut()
        .expect("process.env")
        .push(json!(format!("HULL_CHECK_HOST_NS={}", host_ns())));
    b
}

fn push_env(b: &mut Bundle, kv: String) {
    b.config["process"]["env"]
        .as_array_mut()
        .expect("process.env")
        .push(json!(kv));
}

/// One result line of hull-check.
#[derive(Debug)]
struct Field {
    field: String,
    ok: bool,
    line: String,
}

/// Saves the config, copies it into the rootfs, runs the checker and
/// asserts every field is ok and every name in `expect` was checked (a
/// prefix match, so that a checker that silently skips an area fails too).
/// Then nothing of the container may be left.
#[track_caller]
fn conform(h: &Hullc, b: &Bundle, name: &str, expect: &[&str]) -> Vec<Field> {
    b.save();
    fs::copy(b.path().join("config.json"), b.rootfs().join("config.json")).expect("copy config");
    let id = h.id(name);
    let out = h.run(b, &id, &[]);
    out.assert_no_panic();
    let fields: Vec<Field> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            Field {
                field: v["field"].as_str().unwrap_or("?").to_string(),
                ok: v["ok"].as_bool().unwrap_or(false),
                line: l.to_string(),
            }
        })
        .collect();
    let bad: Vec<&str> = fields
        .iter()
        .filter(|f| !f.ok)
        .map(|f| f.line.as_str())
        .collect();
    assert!(
        bad.is_empty() && out.code() == Some(0),
        "{name}: {} of {} fields not applied (exit {:?}):\n{}\nstderr: {}",
        bad.len(),
        fields.len(),
        out.code(),
        bad.join("\n"),
        out.stderr
    );
    let missing: Vec<&&str> = expect
        .iter()
        .filter(|e| !fields.iter().any(|f| f.field.starts_with(**e)))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: not checked: {missing:?}\n{}",
        out.stdout
    );
    common::assert_clean(h, b, &[&id]);
    eprintln!("{name}: {} fields ok", fields.len());
    fields
}

#[test]
fn default_spec() {
    let h = Hullc::new();
    let b = check_bundle(&h);
    conform(
        &h,
        &b,
        "default",
        &[
            "hostname",
            "root.readonly",
            "mounts[/proc].type",
            "mounts[/dev].options.mode",
            "mounts[/dev/pts].options.ptmxmode",
            "mounts[/dev/shm].options.size",
            "mounts[/sys].options.ro",
            "mounts[/sys/fs/cgroup].type",
            "mounts[/sys/fs/cgroup]/memory.options.ro",
            "linux.maskedPaths[/proc/keys]",
            "linux.readonlyPaths[/proc/sys]",
            "linux.devices.default[/dev/null]",
            "linux.devices.default[/dev/ptmx]",
            "process.user.uid",
            "process.user.additionalGids",
            "process.rlimits[RLIMIT_NOFILE].soft",
            "process.capabilities.bounding",
            "process.capabilities.ambient",
            "process.noNewPrivileges",
            "process.args",
            "linux.namespaces[pid]",
            "linux.namespaces[network]",
            "linux.namespaces[user]",
        ],
    );
}

/// Read-only root, a non-root user with extra groups, a umask, ambient
/// capabilities and no no_new_privs.
#[test]
fn non_root_user() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    b.config["root"]["readonly"] = json!(true);
    b.config["process"]["cwd"] = json!("/tmp");
    b.config["process"]["user"] = json!({
        "uid": 1000, "gid": 1000, "additionalGids": [10, 20, 1000], "umask": 0o027
    });
    let caps = json!(["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": caps, "permitted": caps, "effective": caps,
        "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["hostname"] = json!("conf-user");
    conform(
        &h,
        &b,
        "user",
        &[
            "root.readonly",
            "process.user.gid",
            "process.user.additionalGids",
            "process.user.umask",
            "process.capabilities.effective",
            "process.capabilities.ambient",
            "process.noNewPrivileges",
            "process.cwd",
        ],
    );
}

/// root with a wide capability set, rlimits of several kinds and an
/// oom_score_adj, with no_new_privs on and then off.
#[test]
fn root_caps_rlimits_oom() {
    let h = Hullc::new();
    for nnp in [true, false] {
        let mut b = check_bundle(&h);
        let caps = json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_SYS_CHROOT",
            "CAP_MKNOD",
            "CAP_AUDIT_WRITE",
            "CAP_SETFCAP",
            "CAP_SYS_ADMIN"
        ]);
        b.config["process"]["capabilities"] = json!({
            "bounding": caps, "effective": ["CAP_KILL"], "permitted": caps,
            "inheritable": ["CAP_KILL", "CAP_CHOWN"], "ambient": ["CAP_KILL"]
        });
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["process"]["oomScoreAdj"] = json!(if nnp { 500 } else { 250 });
        // (Hard limits stay below the test's own: the sandbox may lack
        // CAP_SYS_RESOURCE, and then no runtime can raise them.)
        b.config["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": u64::MAX},
            {"type": "RLIMIT_MEMLOCK", "soft": 65536, "hard": 65536},
            {"type": "RLIMIT_STACK", "soft": 8 << 20, "hard": 16 << 20},
            {"type": "RLIMIT_MSGQUEUE", "soft": 1 << 18, "hard": 1 << 19}
        ]);
        conform(
            &h,
            &b,
            if nnp { "root-nnp" } else { "root" },
            &[
                "process.rlimits[RLIMIT_CORE].hard",
                "process.rlimits[RLIMIT_STACK].soft",
                "process.oomScoreAdj",
                "process.capabilities.permitted",
                "process.capabilities.inheritable",
                "process.noNewPrivileges",
            ],
        );
    }
}

/// Namespaced sysctls in new net and ipc namespaces, and a domainname.
#[test]
fn sysctls_and_uts() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    b.config["hostname"] = json!("conf-sysctl");
    b.config["domainname"] = json!("example.test");
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "net.ipv4.ip_local_port_range": "40000 50000",
        "net.ipv4.tcp_syncookies": "0",
        "net.core.somaxconn": "512",
        "kernel.shmmax": "68719476736",
        "kernel.msgmax": "16384",
        "kernel.sem": "250 32000 32 256",
        "fs.mqueue.msg_max": "64"
    });
    conform(
        &h,
        &b,
        "sysctl",
        &[
            "domainname",
            "linux.sysctl[net.ipv4.ip_local_port_range]",
            "linux.sysctl[kernel.sem]",
            "linux.sysctl[fs.mqueue.msg_max]",
        ],
    );
}

/// tmpfs and bind mounts with options and propagation, more masked and
/// read-only paths, a private rootfs.
#[test]
fn mounts_and_paths() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    let src = h.scratch().join("bind-src");
    fs::create_dir_all(src.join("sub")).expect("bind source");
    fs::write(src.join("file"), "x").expect("bind file");
    let src = src.to_str().expect("utf-8").to_string();
    for d in ["scratch", "data", "data-rw", "etc/conf", "secret"] {
        fs::create_dir_all(b.rootfs().join(d)).expect("mkdir");
    }
    fs::write(b.rootfs().join("etc/conf/app.conf"), "k=v").expect("conf");
    fs::write(b.rootfs().join("etc/token"), "secret").expect("token");
    fs::write(b.rootfs().join("secret/key"), "secret").expect("key");
    fs::write(b.rootfs().join("file-target"), "").expect("file target");
    b.config["linux"]["rootfsPropagation"] = json!("private");
    b.add_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "noatime", "size=16m", "mode=1770", "uid=1000", "gid=1000"]
    }));
    b.add_mount(json!({
        "destination": "/data", "type": "bind", "source": src,
        "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]
    }));
    b.add_mount(json!({
        "destination": "/data-rw", "type": "none", "source": format!("{src}/sub"),
        "options": ["bind", "rw", "noexec", "relatime", "rslave"]
    }));
    b.add_mount(json!({
        "destination": "/file-target", "type": "bind", "source": format!("{src}/file"),
        "options": ["bind", "ro"]
    }));
    b.add_mount(json!({
        "destination": "/run", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=1m"]
    }));
    for p in ["/secret", "/etc/token", "/does/not/exist"] {
        b.config["linux"]["maskedPaths"]
            .as_array_mut()
            .expect("maskedPaths")
            .push(json!(p));
    }
    for p in ["/etc/conf", "/data-rw/../etc"] {
        b.config["linux"]["readonlyPaths"]
            .as_array_mut()
            .expect("readonlyPaths")
            .push(json!(p));
    }
    conform(
        &h,
        &b,
        "mounts",
        &[
            "linux.rootfsPropagation",
            "mounts[/scratch].options.size",
            "mounts[/scratch].options.mode",
            "mounts[/scratch].options.uid",
            "mounts[/scratch].options.noatime",
            "mounts[/data].source",
            "mounts[/data].options.ro",
            "mounts[/data].options.rprivate",
            "mounts[/data-rw].options.rslave",
            "mounts[/data-rw].options.noexec",
            "mounts[/file-target].options.ro",
            "mounts[/run].options.strictatime",
            "linux.maskedPaths[/secret]",
            "linux.maskedPaths[/etc/token]",
            "linux.readonlyPaths[/etc/conf]",
        ],
    );
}

/// Extra device nodes of each type, with modes and owners.
#[test]
fn devices() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o660, "uid": 0, "gid": 6},
        {"path": "/dev/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o600},
        {"path": "/dev/sub/dir/ttyS9", "type": "c", "major": 4, "minor": 73, "fileMode": 0o620, "uid": 1000, "gid": 5},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640}
    ]);
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"}
    ]);
    conform(
        &h,
        &b,
        "devices",
        &[
            "linux.devices[/dev/fuse].minor",
            "linux.devices[/dev/loop-control].gid",
            "linux.devices[/dev/loop7].type",
            "linux.devices[/dev/sub/dir/ttyS9].uid",
            "linux.devices[/dev/myfifo].fileMode",
            "linux.devices.default[/dev/urandom]",
        ],
    );
}

/// Memory, pids, cpu and cpuset limits as the container sees its cgroup.
#[test]
fn cgroup_limits() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    let mut memory = json!({
        "limit": 96 << 20, "reservation": 32 << 20
    });
    let mut expect = vec![
        "linux.resources.memory.limit",
        "linux.resources.memory.reservation",
        "linux.resources.pids.limit",
        "linux.resources.cpu.shares",
        "linux.resources.cpu.quota",
        "linux.resources.cpu.period",
        "linux.resources.cpu.cpus",
        "linux.resources.cpu.mems",
    ];
    let v1_mem = Path::new("/sys/fs/cgroup/memory").is_dir();
    if v1_mem && Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        memory["swap"] = json!(128 << 20);
        expect.push("linux.resources.memory.swap");
    }
    if v1_mem {
        memory["swappiness"] = json!(10);
        expect.push("linux.resources.memory.swappiness");
    }
    b.config["linux"]["resources"]["memory"] = memory;
    b.config["linux"]["resources"]["pids"] = json!({"limit": 64});
    b.config["linux"]["resources"]["cpu"] = json!({
        "shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"
    });
    conform(&h, &b, "cgroups", &expect);
}

/// Shared, joined and new namespaces: no network namespace (the host's),
/// a network namespace joined by path, a new time namespace, and a user
/// namespace with mappings.
#[test]
fn namespaces() {
    let h = Hullc::new();
    let mut b = check_bundle(&h);
    b.remove_namespace("network");
    b.remove_namespace("cgroup");
    b.set_namespace("time", None);
    conform(
        &h,
        &b,
        "ns-host",
        &[
            "linux.namespaces[network]",
            "linux.namespaces[cgroup]",
            "linux.namespaces[time]",
        ],
    );

    let mut c = Command::new("unshare");
    c.args(["--net", "sleep", "1000"]);
    let helper = Helper::spawn(c);
    let pid = helper.pid();
    let host_net = common::ns_of("self", "net");
    common::wait_until("helper's netns", Duration::from_secs(10), || {
        fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_string_lossy() != host_net)
    });
    let path = format!("/proc/{pid}/ns/net");
    let ino = fs::metadata(&path).expect("helper netns").ino();
    let mut b = check_bundle(&h);
    b.set_namespace("network", Some(&path));
    push_env(&mut b, format!("HULL_CHECK_JOINED_NS=net:{ino}"));
    conform(&h, &b, "ns-joined", &["linux.namespaces[network]"]);
    drop(helper);

    let mut b = check_bundle(&h);
    b.set_namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    conform(
        &h,
        &b,
        "ns-user",
        &[
            "linux.namespaces[user]",
            "process.user.uid",
            "process.capabilities.permitted",
        ],
    );
}

/// additionalGids in a new user namespace. hull-runtime decides whether init
/// may call setgroups(2) with geteuid() *in the cloned child*, which reads
/// the overflow uid until the parent has written uid_map: a race that drops
/// the groups silently in most runs (reported; un-ignore once fixed).
#[test]
fn user_namespace_additional_gids() {
    let h = Hullc::new();
    for i in 0..10 {
        let mut b = check_bundle(&h);
        b.set_namespace("user", None);
        b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7]});
        conform(
            &h,
            &b,
            &format!("ns-user-groups-{i}"),
            &["process.user.additionalGids"],
        );
    }
}

/// The checker itself catches a config that was not applied: it is shown a
/// config claiming another hostname, uid and rlimit than the container got,
/// and must name exactly those fields.
#[test]
fn the_checker_fails_on_a_wrong_config() {
    let h = Hullc::new();
    let b = check_bundle(&h);
    b.save();
    let mut lie = b.config.clone();
    lie["hostname"] = json!("not-the-hostname");
    lie["process"]["user"]["uid"] = json!(4242);
    lie["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 7, "hard": 7}]);
    fs::write(b.rootfs().join("config.json"), lie.to_string()).expect("write lie");
    let id = h.id("lie");
    let out = h.run(&b, &id, &[]);
    assert_eq!(out.code(), Some(1), "{out:?}");
    let bad: BTreeSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["ok"] == false)
        .filter_map(|v| v["field"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = [
        "hostname",
        "process.user.uid",
        "process.rlimits[RLIMIT_NOFILE].soft",
        "process.rlimits[RLIMIT_NOFILE].hard",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(bad, want, "{}", out.stdout);
    common::assert_clean(&h, &b, &[&id]);
}
