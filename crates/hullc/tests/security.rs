//! Security (issue 5): seccomp profiles applied to init and to exec'd
//! processes, the NOTIFY listener handed to an agent, unknown capabilities.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::{Bundle, Hullc};
use serde_json::json;

fn deny_mkdir(action: &str) -> serde_json::Value {
    let mut rule = json!({"names": ["mkdir", "mkdirat"], "action": action});
    if action == "SCMP_ACT_ERRNO" {
        rule["errnoRet"] = json!(1);
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": [rule]})
}

#[test]
fn seccomp_errno_rule_applies_to_init_and_exec() {
    for nnp in [false, true] {
        let h = Hullc::new();
        let mut b = Bundle::new(&h);
        b.config["linux"]["seccomp"] = deny_mkdir("SCMP_ACT_ERRNO");
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        let out = h.sh(
            &mut b,
            "mkdir /tmp/x 2>&1; echo mkdir=$?; touch /tmp/y; echo touch=$?",
        );
        assert!(
            out.contains("Operation not permitted")
                && out.contains("mkdir=1")
                && out.contains("touch=0"),
            "nnp={nnp}: {out}"
        );
        b.args(&["sleep", "1000"]);
        let id = h.id("scexec");
        h.run(&b, &id, &["--detach"]).ok();
        let o = h.cmd(&["exec", &id, "mkdir", "/tmp/z"]);
        assert_eq!(
            o.code(),
            Some(1),
            "nnp={nnp}: exec'd processes get the filter too: {o:?}"
        );
        assert!(!b.rootfs().join("tmp/z").exists());
    }
}

#[test]
fn seccomp_kill_process_ends_with_sigsys() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["linux"]["seccomp"] = deny_mkdir("SCMP_ACT_KILL_PROCESS");
    b.args(&["mkdir", "/tmp/x"]);
    let id = h.id("sckill");
    let o = h.run(&b, &id, &[]);
    assert_eq!(o.code(), Some(128 + libc::SIGSYS), "{o:?}");
}

#[test]
fn seccomp_bad_profiles_fail_create_naming_the_field() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let mut p = deny_mkdir("SCMP_ACT_KILL");
    p["syscalls"][0]["errnoRet"] = json!(5);
    b.config["linux"]["seccomp"] = p;
    let id = h.id("scbad");
    h.create(&b, &id, &[])
        .fails_with(&["linux.seccomp.syscalls[0].errnoRet"]);
    b.config["linux"]["seccomp"]["syscalls"][0]["action"] = json!("SCMP_ACT_EXPLODE");
    h.create(&b, &id, &[])
        .fails_with(&["linux.seccomp.syscalls[0].action"]);
    common::assert_clean(&h, &b, &[&id]);
}

/// runc's NOTIFY protocol: the runtime connects to listenerPath and sends
/// the listener fd with a ContainerProcessState JSON; the agent decides.
#[test]
fn seccomp_notify_listener_reaches_the_agent() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let sock = h.scratch().join("agent.sock");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "hello-agent",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.args(&["sh", "-c", "mkdir /tmp/notified; echo status=$?"]);
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        let (msg, fd) = common::recv_fd(&conn);
        // Answer the one notification: fail mkdir with EACCES.
        answer_one(&fd, libc::EACCES);
        msg
    });
    let id = h.id("notify");
    let o = h.run(&b, &id, &[]).ok();
    assert_eq!(o.stdout.trim(), "status=1", "{o:?}");
    let msg: serde_json::Value = serde_json::from_str(&agent.join().expect("agent")).expect("json");
    assert_eq!(msg["fds"], json!(["seccompFd"]));
    assert_eq!(msg["metadata"], "hello-agent");
    assert_eq!(msg["state"]["id"], json!(id));
    assert!(!b.rootfs().join("tmp/notified").exists());
}

/// struct seccomp_notif / seccomp_notif_resp (linux/seccomp.h).
#[repr(C)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

fn answer_one(fd: &OwnedFd, errno: i32) {
    const RECV: libc::c_ulong = 0xc050_2100; // _IOWR('!', 0, struct seccomp_notif)
    const SEND: libc::c_ulong = 0xc018_2101; // _IOWR('!', 1, struct seccomp_notif_resp)
                                             // SAFETY: Notif is plain data; the kernel requires it zeroed for RECV.
    let mut n: Notif = unsafe { std::mem::zeroed() };
    // SAFETY: RECV fills one struct seccomp_notif of the right size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &mut n) };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
    let r = Resp {
        id: n.id,
        val: 0,
        error: -errno,
        flags: 0,
    };
    // SAFETY: SEND reads one struct seccomp_notif_resp.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &r) };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
}

#[test]
fn unknown_capabilities_are_ignored() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["capabilities"]["bounding"] =
        json!(["CAP_KILL", "CAP_FROM_A_FUTURE_KERNEL"]);
    b.config["process"]["capabilities"]["effective"] = json!(["CAP_KILL"]);
    b.config["process"]["capabilities"]["permitted"] = json!(["CAP_KILL"]);
    b.config["process"]["capabilities"]["ambient"] = json!([]);
    b.config["process"]["capabilities"]["inheritable"] = json!([]);
    b.args(&["grep", "CapBnd", "/proc/self/status"]);
    let id = h.id("capunk");
    let o = h.run(&b, &id, &[]).ok();
    assert!(
        o.stdout.trim().ends_with("0000000000000020"),
        "only CAP_KILL (bit 5): {}",
        o.stdout
    );
    assert!(
        o.stderr.contains("CAP_FROM_A_FUTURE_KERNEL"),
        "a warning names it: {}",
        o.stderr
    );
}

/// Until its execve, init is a copy of hullc and non-dumpable: another
/// process of the container cannot reach its /proc/1/exe (the handle that
/// CVE-2019-5736 used to overwrite the runtime's binary). The exec'd process
/// has init's uid and capabilities, so only the dumpable flag decides (the
/// kernel keeps a uid-changing init non-dumpable by itself; root does not
/// change uid, so this is the case the explicit flag covers).
#[test]
fn init_is_non_dumpable_until_exec() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("dump");
    h.create(&b, &id, &[]).ok();
    assert_eq!(h.status(&id), "created");
    let o = h
        .cmd(&[
            "exec",
            &id,
            "sh",
            "-c",
            "readlink /proc/1/exe || echo exe-denied",
        ])
        .ok();
    assert_eq!(
        o.stdout.trim(),
        "exe-denied",
        "hullc's init is reachable: {o:?}"
    );
    h.cmd(&["start", &id]).ok();
    // After execve the program is an ordinary, dumpable process again.
    let o = h.cmd(&["exec", &id, "readlink", "/proc/1/exe"]).ok();
    assert_eq!(o.stdout.trim(), "/bin/busybox");
}

/// A user-namespaced container with a 65536-wide mapping: root inside is
/// an unprivileged id outside, devices are bind-mounted (mknod is refused
/// in a user namespace), and the cgroup mount works in its cgroup namespace.
#[test]
fn user_namespace_with_a_wide_mapping() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let out = h.sh(&mut b, "id -u; cat /proc/self/uid_map; echo x > /dev/null && echo devnull-ok; ls /sys/fs/cgroup | grep -c .; readlink /proc/self/ns/user");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"],
        "{out}"
    );
    assert_eq!(lines[2], "devnull-ok");
    assert!(
        lines[3].parse::<u32>().is_ok_and(|n| n > 0),
        "cgroup hierarchies mounted: {out}"
    );
    let host_user = std::fs::read_link("/proc/self/ns/user").expect("own user ns");
    assert_ne!(
        lines[4],
        host_user.to_string_lossy(),
        "a new user namespace"
    );
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N must never land on a host
/// directory that leaked into the container. Every N either fails cleanly or
/// leaves the process inside its root.
#[test]
fn cwd_through_proc_self_fd_cannot_reach_the_host() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "pwd; ls"]);
    for n in 3..12 {
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let id = h.id("cve21626");
        let o = h.run(&b, &id, &[]);
        o.assert_no_panic();
        if o.status.success() {
            panic!("cwd /proc/self/fd/{n} was accepted: {o:?}");
        }
        assert!(o.stderr.contains("process.cwd"), "fd {n}: {}", o.stderr);
        common::assert_clean(&h, &b, &[&id]);
    }
}

/// Only 0, 1, 2 (and --preserve-fds) reach the program: nothing of hullc's
/// own (sync socket, start socket, cgroup or state dir fds).
#[test]
fn no_host_fd_leaks_into_the_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "ls /proc/self/fd"]);
    let id = h.id("fds");
    let o = h.run(&b, &id, &[]).ok();
    let fds: Vec<&str> = o.stdout.split_whitespace().collect();
    // ls itself opens one fd for the directory it lists.
    assert!(
        fds.len() <= 4 && ["0", "1", "2"].iter().all(|f| fds.contains(f)),
        "{fds:?}"
    );
    b.args(&["sleep", "1000"]);
    let id = h.id("execfds");
    h.run(&b, &id, &["--detach"]).ok();
    let o = h.cmd(&["exec", &id, "ls", "/proc/self/fd"]).ok();
    assert!(
        o.stdout.split_whitespace().count() <= 4,
        "exec: {}",
        o.stdout
    );
}

/// CVE-2025-52881 class: a mount over a /proc file must not turn hullc's
/// sysctl write into a write to whatever is mounted there.
#[test]
fn sysctl_writes_only_reach_real_procfs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let decoy = h.scratch().join("decoy");
    std::fs::write(&decoy, "untouched\n").expect("decoy");
    b.config["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/proc/sys/net/ipv4/ip_forward", "type": "bind", "source": decoy, "options": ["bind"]
    }));
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    let id = h.id("procfs");
    h.run(&b, &id, &[])
        .fails_with(&["linux.sysctl.net.ipv4.ip_forward", "procfs"]);
    assert_eq!(
        std::fs::read_to_string(&decoy).expect("decoy"),
        "untouched\n"
    );
    common::assert_clean(&h, &b, &[&id]);
}

/// A procfs file the config bind-mounts over the procfs file hullc writes.
/// The source is the harmless `kernel/domainname`: writes to it reach only
/// the container's own UTS namespace, yet it stands in for
/// `/proc/sysrq-trigger` or `kernel/core_pattern`, which also pass an
/// `fstatfs(PROC_SUPER_MAGIC)` check.
fn overmount_with_procfs(b: &mut Bundle, dest: &str) {
    b.config["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": dest, "type": "bind", "source": "/proc/sys/kernel/domainname", "options": ["bind"]
    }));
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).expect(path)
}

/// CVE-2025-52881: a *procfs* file mounted over a sysctl is on procfs too, so
/// only resolving the path with `RESOLVE_NO_XDEV` from the procfs root tells
/// the mount apart from the sysctl.
#[test]
fn sysctl_writes_refuse_an_overmounted_procfs_file() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let (domain, forward) = (
        read("/proc/sys/kernel/domainname"),
        read("/proc/sys/net/ipv4/ip_forward"),
    );
    overmount_with_procfs(&mut b, "/proc/sys/net/ipv4/ip_forward");
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    let id = h.id("procxdev");
    h.run(&b, &id, &[]).fails_with(&[
        "linux.sysctl.net.ipv4.ip_forward",
        "/proc/sys/net/ipv4/ip_forward is overmounted or not on procfs",
    ]);
    assert_eq!(read("/proc/sys/kernel/domainname"), domain);
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), forward);
    common::assert_clean(&h, &b, &[&id]);
}

/// The same for the LSM attribute hullc writes just before execve
/// (`apparmorProfile`). This host may lack AppArmor, so the file is the
/// older shared `attr/exec` when `attr/apparmor/exec` is absent; init
/// resolves `thread-self` for the mount as it does for the write.
#[test]
fn lsm_attr_writes_refuse_an_overmounted_procfs_file() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let domain = read("/proc/sys/kernel/domainname");
    let attr = if std::path::Path::new("/proc/thread-self/attr/apparmor/exec").exists() {
        "/proc/thread-self/attr/apparmor/exec"
    } else {
        "/proc/thread-self/attr/exec"
    };
    overmount_with_procfs(&mut b, attr);
    b.config["process"]["apparmorProfile"] = json!("hull-test-profile");
    let id = h.id("lsmxdev");
    let overmounted = format!("{attr} is overmounted or not on procfs");
    h.run(&b, &id, &[])
        .fails_with(&["apparmor failed to apply profile", &overmounted]);
    assert_eq!(read("/proc/sys/kernel/domainname"), domain);
    common::assert_clean(&h, &b, &[&id]);
}

/// CVE-2021-30465 class: a symlink planted in the rootfs cannot redirect a
/// mount outside it. Both an absolute and a `..` link resolve as if the
/// rootfs were `/`, so the tmpfs shows up inside the container at /target.
#[test]
fn mount_destinations_resolve_inside_the_rootfs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    std::os::unix::fs::symlink("/", b.rootfs().join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../../../../..", b.rootfs().join("rel")).expect("symlink");
    for dest in ["/abs/target-a", "/rel/target-r"] {
        b.config["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({
                "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
            }));
    }
    let out = h.sh(
        &mut b,
        "grep -E ' /target-(a|r) ' /proc/self/mountinfo | awk '{print $5}' | sort",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/target-a", "/target-r"],
        "{out}"
    );
    assert!(
        !std::path::Path::new("/target-a").exists() && !std::path::Path::new("/target-r").exists()
    );
}
