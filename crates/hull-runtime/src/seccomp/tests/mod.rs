//! Unit tests: compile profiles and run the programs through `interp`.

mod interp;
mod kernel;
mod ops;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use super::bpf::{BPF_JA, BPF_JMP};
use super::*;
use interp::Data;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const fn errno(e: u32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e
}

pub(super) fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile JSON")
}

pub(super) fn build(v: serde_json::Value) -> Filter {
    compile(&profile(v)).expect("compile")
}

pub(super) fn docker() -> LinuxSeccomp {
    serde_json::from_str(include_str!("docker-default.json")).expect("fixture")
}

pub(super) fn eval_nr(f: &Filter, audit: u32, nr: u32, args: [u64; 6]) -> u32 {
    interp::run(
        &f.prog,
        &Data {
            nr,
            arch: audit,
            args,
        },
    )
}

pub(super) fn eval(f: &Filter, arch: ArchId, name: &str, args: [u64; 6]) -> u32 {
    let nr = arch
        .syscall(name)
        .unwrap_or_else(|| panic!("{name} on {arch:?}"));
    eval_nr(f, arch.audit(), nr, args)
}

fn err(v: serde_json::Value) -> String {
    compile(&profile(v)).expect_err("should fail").to_string()
}

#[test]
fn tables_resolve_names() {
    assert_eq!(ArchId::X86_64.syscall("mkdir"), Some(83));
    assert_eq!(ArchId::X86_64.syscall("read"), Some(0));
    assert_eq!(ArchId::X32.syscall("read"), Some(X32_SYSCALL_BIT));
    // x32 has its own compat entry point for rt_sigaction.
    assert_eq!(
        ArchId::X32.syscall("rt_sigaction"),
        Some(X32_SYSCALL_BIT | 512)
    );
    assert_eq!(ArchId::X86.syscall("mkdir"), Some(39));
    assert_eq!(ArchId::Aarch64.syscall("mkdirat"), Some(34));
    assert_eq!(ArchId::Aarch64.syscall("mkdir"), None);
    assert_eq!(ArchId::Arm.syscall("set_tls"), Some(0x0f0005));
    assert_eq!(ArchId::X86_64.syscall("no_such_call"), None);
    for t in [
        tables::X86_64,
        tables::X32,
        tables::X86,
        tables::AARCH64,
        tables::ARM,
    ] {
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "sorted, unique");
    }
}

#[test]
fn allow_list_and_errno() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]
    }));
    let a = ArchId::X86_64;
    assert_eq!(eval(&f, a, "read", [0; 6]), ALLOW);
    assert_eq!(eval(&f, a, "write", [0; 6]), ALLOW);
    assert_eq!(eval(&f, a, "mkdir", [0; 6]), errno(38));
    // Default errno is EPERM.
    assert_eq!(eval(&f, a, "open", [0; 6]), errno(1));
    // Above the last named syscall (mkdir): runc's -ENOSYS stub.
    assert_eq!(eval_nr(&f, a.audit(), 9999, [0; 6]), errno(38));
    // Structure: arch load first, bad-arch kill and the stub's ENOSYS last.
    assert_eq!((f.prog[0].code, f.prog[0].k), (0x20, 4));
    let n = f.prog.len();
    assert_eq!(f.prog[n - 2].k, KILL_PROCESS);
    assert_eq!(f.prog[n - 1].k, errno(38));
    assert!(!f.has_listener());
}

#[test]
fn default_errno_ret_and_every_action() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["gettid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 5},
            {"names": ["geteuid"], "action": "SCMP_ACT_TRACE"},
            {"names": ["getegid"], "action": "SCMP_ACT_LOG"},
            {"names": ["sync"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        ],
        "listenerPath": "/run/agent.sock"
    }));
    let a = ArchId::X86_64;
    let cases = [
        ("getpid", libc::SECCOMP_RET_KILL_THREAD),
        ("getppid", libc::SECCOMP_RET_KILL_THREAD),
        ("gettid", KILL_PROCESS),
        ("getuid", libc::SECCOMP_RET_TRAP),
        ("getgid", libc::SECCOMP_RET_TRACE | 5),
        ("geteuid", libc::SECCOMP_RET_TRACE | 1),
        ("getegid", libc::SECCOMP_RET_LOG),
        ("sync", libc::SECCOMP_RET_USER_NOTIF),
        ("read", ALLOW),
        ("write", errno(13)),
    ];
    for (name, want) in cases {
        assert_eq!(eval(&f, a, name, [0; 6]), want, "{name}");
    }
    assert!(f.has_listener());
    assert_eq!(f.flags, FLAG_NEW_LISTENER);
}

#[test]
fn wrong_arch_is_killed() {
    let f = build(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
    assert_eq!(eval(&f, ArchId::X86_64, "mkdir", [0; 6]), errno(1));
    for audit in [
        AUDIT_ARCH_I386,
        AUDIT_ARCH_AARCH64,
        AUDIT_ARCH_ARM,
        0,
        u32::MAX,
    ] {
        assert_eq!(eval_nr(&f, audit, 83, [0; 6]), KILL_PROCESS, "{audit:#x}");
    }
    // x32 numbers on an x86_64-only filter: bad arch too.
    let x32 = ArchId::X32.syscall("mkdir").expect("x32 mkdir");
    assert_eq!(eval_nr(&f, AUDIT_ARCH_X86_64, x32, [0; 6]), KILL_PROCESS);
    assert_eq!(
        eval_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT, [0; 6]),
        KILL_PROCESS
    );
}

#[test]
fn listed_architectures_use_their_own_numbers() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
                          "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]
    }));
    for arch in [ArchId::X86_64, ArchId::X32, ArchId::X86, ArchId::Arm] {
        assert_eq!(eval(&f, arch, "mkdir", [0; 6]), errno(2), "{arch:?}");
        assert_eq!(eval(&f, arch, "mkdirat", [0; 6]), errno(2), "{arch:?}");
        assert_eq!(eval(&f, arch, "getpid", [0; 6]), ALLOW, "{arch:?}");
    }
    assert_eq!(eval(&f, ArchId::Aarch64, "mkdirat", [0; 6]), errno(2));
    // aarch64 39 is umount2; x86_64's getpid number means nothing there.
    assert_eq!(eval_nr(&f, AUDIT_ARCH_AARCH64, 39, [0; 6]), ALLOW);
    // i386 mkdir is 39: with the x86_64 number it is another syscall.
    assert_eq!(eval_nr(&f, AUDIT_ARCH_I386, 83, [0; 6]), ALLOW);
    // x32 numbers without the bit are x86_64 calls, and the reverse.
    assert_eq!(
        eval_nr(&f, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 83, [0; 6]),
        errno(2)
    );
    // MIPS is skipped, so its audit value is an unknown architecture.
    assert_eq!(eval_nr(&f, 0x0000_0008, 39, [0; 6]), KILL_PROCESS);
}

#[test]
fn x86_64_and_x32_split_on_bit_30() {
    // The native x86_64 is always added next to the listed x32.
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X32"],
        // exit_group, above write, keeps write below runc's -ENOSYS stub.
        "syscalls": [{"names": ["read", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(eval(&f, ArchId::X32, "read", [0; 6]), ALLOW);
    assert_eq!(eval(&f, ArchId::X86_64, "read", [0; 6]), ALLOW);
    assert_eq!(eval(&f, ArchId::X32, "write", [0; 6]), errno(1));
}

#[test]
fn rule_semantics_follow_runc() {
    let f = build(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            // Same as the default action: dropped, so it shadows nothing.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            // Index 0 twice: each condition is its own rule (OR).
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            // Distinct indexes: AND.
            {"names": ["tkill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            // First match wins.
            {"names": ["dup"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
            {"names": ["dup"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["dup"], "action": "SCMP_ACT_KILL"},
        ]
    }));
    let a = ArchId::X86_64;
    assert_eq!(eval(&f, a, "personality", [8, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, a, "personality", [9, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(eval(&f, a, "kill", [1, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, a, "kill", [2, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, a, "kill", [3, 0, 0, 0, 0, 0]), errno(1));
    assert_eq!(eval(&f, a, "tkill", [1, 9, 0, 0, 0, 0]), ALLOW);
    assert_eq!(eval(&f, a, "tkill", [1, 8, 0, 0, 0, 0]), errno(1));
    assert_eq!(eval(&f, a, "tkill", [2, 9, 0, 0, 0, 0]), errno(1));
    assert_eq!(
        eval(&f, a, "dup", [3, 0, 0, 0, 0, 0]),
        libc::SECCOMP_RET_LOG
    );
    assert_eq!(eval(&f, a, "dup", [4, 0, 0, 0, 0, 0]), ALLOW);
}

#[test]
fn flags() {
    let base = |flags: serde_json::Value, notify: bool| {
        let mut v = json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags,
                           "listenerPath": "/x"});
        if notify {
            v["syscalls"] = json!([{"names": ["sync"], "action": "SCMP_ACT_NOTIFY"}]);
        }
        build(v).flags
    };
    let all = json!([
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    ]);
    assert_eq!(base(all.clone(), false), FLAG_LOG | FLAG_SPEC_ALLOW);
    assert_eq!(
        base(all, true),
        FLAG_LOG | FLAG_SPEC_ALLOW | FLAG_WAIT_KILLABLE_RECV | FLAG_NEW_LISTENER
    );
    assert_eq!(
        base(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), false),
        FLAG_TSYNC
    );
    assert_eq!(
        base(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), true),
        FLAG_TSYNC | FLAG_TSYNC_ESRCH | FLAG_NEW_LISTENER
    );
}

#[test]
fn errors_name_the_field() {
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["write"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[1].errnoRet: "), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 3}));
    assert!(e.starts_with("linux.seccomp.defaultErrnoRet: "), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert!(
        e.starts_with("linux.seccomp.defaultErrnoRet: 70000 "),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].args[1].index: "),
        "{e}"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
    assert!(e.starts_with("linux.seccomp.defaultAction: "), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["sync"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[1].action: "), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}));
    assert!(e.starts_with("linux.seccomp.listenerMetadata: "), "{e}");
}

/// Actions are typed in oci-spec, so an unknown one fails parsing config.json,
/// where serde_path_to_error names the field.
#[test]
fn unknown_action_names_the_field() {
    let spec = json!({"ociVersion": "1.0.2", "linux": {"seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["c"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["d"], "action": "SCMP_ACT_FROBNICATE"}]}}});
    let raw = serde_json::to_vec(&spec).expect("json");
    let e = crate::config::parse_spec(std::path::Path::new("config.json"), &raw)
        .expect_err("unknown action");
    let msg = e.to_string();
    assert!(msg.contains("linux.seccomp.syscalls[3].action"), "{msg}");
}

#[test]
fn too_large_is_an_error() {
    let args: Vec<_> = (0..1500)
        .map(|v| json!({"index": 0, "value": v, "op": "SCMP_CMP_EQ"}))
        .collect();
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": args}]}));
    assert!(e.contains("the kernel allows 4096"), "{e}");
}

#[test]
fn docker_profile() {
    let s = docker();
    let f = compile(&s).expect("compile");
    let names = s.syscalls().as_ref().expect("syscalls")[0].names().clone();
    assert!(names.len() > 380);
    for arch in [ArchId::X86_64, ArchId::X86, ArchId::X32] {
        let mut known = 0;
        for n in &names {
            if let Some(nr) = arch.syscall(n) {
                assert_eq!(eval_nr(&f, arch.audit(), nr, [0; 6]), ALLOW, "{arch:?} {n}");
                known += 1;
            }
        }
        assert!(known > 250, "{arch:?}: {known}");
        for denied in ["mount", "reboot", "unshare", "setns", "bpf", "keyctl"] {
            assert_eq!(
                eval(&f, arch, denied, [0; 6]),
                errno(1),
                "{arch:?} {denied}"
            );
        }
        assert_eq!(eval(&f, arch, "clone3", [0; 6]), errno(38), "{arch:?}");
        // personality: only the listed values.
        for (v, want) in [
            (0, ALLOW),
            (8, ALLOW),
            (0x20008, ALLOW),
            (0xffff_ffff, ALLOW),
            (1, errno(1)),
        ] {
            assert_eq!(
                eval(&f, arch, "personality", [v, 0, 0, 0, 0, 0]),
                want,
                "{arch:?} {v:#x}"
            );
        }
        // clone: no namespace flags (mask 0x7E020000 must be clear).
        let sigchld = 17 | 0x0100_0000 | 0x0020_0000; // SIGCHLD|CLONE_CHILD_SETTID|...
        assert_eq!(eval(&f, arch, "clone", [sigchld, 0, 0, 0, 0, 0]), ALLOW);
        for ns in [
            0x2_0000u64,
            0x1000_0000,
            0x2000_0000,
            0x4000_0000,
            0x0800_0000,
        ] {
            assert_eq!(
                eval(&f, arch, "clone", [sigchld | ns, 0, 0, 0, 0, 0]),
                errno(1)
            );
        }
        // socket: anything but AF_VSOCK (40).
        assert_eq!(eval(&f, arch, "socket", [1, 1, 0, 0, 0, 0]), ALLOW);
        assert_eq!(eval(&f, arch, "socket", [40, 1, 0, 0, 0, 0]), errno(1));
    }
    assert_eq!(eval_nr(&f, AUDIT_ARCH_AARCH64, 0, [0; 6]), KILL_PROCESS);
    // Long jumps were needed and resolved with `ja` trampolines.
    assert!(f.prog.len() > 3 * 256, "{}", f.prog.len());
    assert!(interp::count(&f.prog, BPF_JMP | BPF_JA) > 0);
}

/// Compile time of a docker-sized profile (run with --release --nocapture
/// for the figure quoted in ARCHITECTURE.md).
#[test]
fn bench_compile_docker_profile() {
    let s = docker();
    let runs = 200;
    let mut best = std::time::Duration::MAX;
    let start = std::time::Instant::now();
    let mut len = 0;
    for _ in 0..runs {
        let t = std::time::Instant::now();
        len = compile(&s).expect("compile").prog.len();
        best = best.min(t.elapsed());
    }
    let mean = start.elapsed() / runs;
    eprintln!("seccomp compile, docker-like profile (3 arches): {len} insns, mean {mean:?}, best {best:?}");
    assert!(mean < std::time::Duration::from_secs(1));
}

/// runc's -ENOSYS stub: a syscall above the last one the profile names
/// (per architecture) gets ENOSYS; one below it the default; none with a
/// default that lets calls through or already says ENOSYS.
#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    let p = |default: &str, action: &str| {
        json!({"defaultAction": default,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["read", "write", "openat", "exit_group"], "action": action}]})
    };
    let enosys = errno(libc::ENOSYS as u32);
    let none = [0; 6];
    let f = build(p("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW"));
    // openat, the last named, is 257 on x86_64 and 295 on i386.
    for arch in [ArchId::X86_64, ArchId::X86, ArchId::X32] {
        for newer in ["clone3", "close_range", "faccessat2"] {
            assert_eq!(eval(&f, arch, newer, none), enosys, "{arch:?} {newer}");
        }
        assert_eq!(eval(&f, arch, "openat", none), ALLOW, "{arch:?}");
        assert_eq!(eval(&f, arch, "mkdir", none), errno(1), "{arch:?}");
    }
    let f = build(p("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_ALLOW"));
    assert_eq!(eval(&f, ArchId::X86_64, "close_range", none), enosys);
    assert_eq!(eval(&f, ArchId::X86_64, "mkdir", none), KILL_PROCESS);
    for default in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG"] {
        let f = build(p(default, "SCMP_ACT_KILL_PROCESS"));
        let want = if default == "SCMP_ACT_LOG" {
            libc::SECCOMP_RET_LOG
        } else {
            ALLOW
        };
        assert_eq!(eval(&f, ArchId::X86_64, "close_range", none), want);
    }
    // Any default errno but ENOSYS itself gets the stub (runc).
    let mut v = p("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW");
    v["defaultErrnoRet"] = json!(13);
    let f = build(v);
    assert_eq!(eval(&f, ArchId::X86_64, "close_range", none), enosys);
    assert_eq!(eval(&f, ArchId::X86_64, "mkdir", none), errno(13));
    // A rule dropped for repeating the default still counts: nothing above
    // close_range is newer than this profile.
    let mut v = p("SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW");
    v["syscalls"]
        .as_array_mut()
        .expect("syscalls is an array")
        .push(json!({"names": ["close_range"], "action": "SCMP_ACT_ERRNO"}));
    let f = build(v);
    assert_eq!(eval(&f, ArchId::X86_64, "close_range", none), errno(1));
    assert_eq!(eval(&f, ArchId::X86_64, "clone3", none), errno(1));
}
