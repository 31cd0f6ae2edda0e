//! The seccomp profiles engines hand the runtime, loaded by the real
//! kernel (issue 17): docker's default, podman's (containers/common), the
//! one containerd generates, and profiles older than the syscalls hullc's
//! init may use (close_range, clone3, faccessat2, openat2, execveat,
//! pidfd_*) with a default of ERRNO or KILL_PROCESS. Under each, with the
//! filter installed early (noNewPrivileges false: before the capability
//! drop, so that init's last steps run under it) and late, a container runs
//! `/bin/true` and a shell pipeline, and a syscall the profile denies is
//! denied inside; a startContainer hook, which init spawns under the filter,
//! runs. runc runs the old profiles too, as the reference.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::{Bundle, Hullc};
use serde_json::{json, Value};

/// docker's default profile in the OCI form dockerd hands the runtime.
const DOCKER: &str = include_str!("../../hull-engine/src/seccomp-default.json");
/// What containerd 1.6 (`ctr run --seccomp`, contrib/seccomp's
/// DefaultProfile) puts in linux.seccomp for the default capabilities:
/// taken from `ctr containers info` of such a container.
const CONTAINERD: &str = include_str!("fixtures/containerd-1.6-default-seccomp.json");
/// podman's profile (the podman/golang-github-containers-common package).
const PODMAN: &str = "/usr/share/containers/seccomp.json";

/// Syscalls newer than Linux 5.2 (and execveat), which profiles written
/// before them do not name.
const NEWER: &[&str] = &[
    "clone3",
    "close_range",
    "faccessat2",
    "openat2",
    "execveat",
    "pidfd_open",
    "pidfd_send_signal",
    "pidfd_getfd",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "set_mempolicy_home_node",
    "cachestat",
    "fchmodat2",
    "map_shadow_stack",
    "futex_wake",
    "futex_wait",
    "futex_requeue",
    "statmount",
    "listmount",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "mseal",
    "setxattrat",
    "getxattrat",
    "listxattrat",
    "removexattrat",
    "open_tree_attr",
    "file_getattr",
    "file_setattr",
    "uretprobe",
];

/// `profile` without the syscalls of [`NEWER`] (and without rules left
/// empty), with `default` as its default action.
fn old_profile(default: &str) -> Value {
    let mut p: Value = serde_json::from_str(DOCKER).unwrap();
    p["defaultAction"] = json!(default);
    if default != "SCMP_ACT_ERRNO" {
        p.as_object_mut().unwrap().remove("defaultErrnoRet");
    }
    let rules = p["syscalls"].as_array_mut().unwrap();
    for r in rules.iter_mut() {
        let names = r["names"].as_array_mut().unwrap();
        names.retain(|n| !NEWER.contains(&n.as_str().unwrap()));
    }
    rules.retain(|r| !r["names"].as_array().unwrap().is_empty());
    p
}

/// The host kernel's (major, minor).
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(['.', '-']).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A profile in docker's file format (archMap, includes/excludes by
/// capability, architecture and kernel) resolved as the engines do for an
/// amd64 host and a container with `caps`: the linux.seccomp they write.
fn resolve(p: &Value, caps: &[String]) -> Value {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let has_cap = |c: &String| caps.contains(c);
    let arch_map = p["archMap"].as_array().unwrap();
    let native = arch_map
        .iter()
        .find(|m| m["architecture"] == "SCMP_ARCH_X86_64")
        .unwrap();
    let mut arches = vec![json!("SCMP_ARCH_X86_64")];
    arches.extend(
        list(&native["subArchitectures"])
            .into_iter()
            .map(Value::from),
    );
    let mut rules = Vec::new();
    for s in p["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let inc_arches = list(&inc["arches"]);
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == "amd64") {
            continue;
        }
        if !list(&inc["caps"]).iter().all(has_cap) {
            continue;
        }
        if let Some(k) = inc["minKernel"].as_str() {
            let mut it = k.split('.').map(|s| s.parse::<u32>().unwrap_or(0));
            if kernel() < (it.next().unwrap_or(0), it.next().unwrap_or(0)) {
                continue;
            }
        }
        if list(&exc["arches"]).iter().any(|a| a == "amd64")
            || list(&exc["caps"]).iter().any(has_cap)
        {
            continue;
        }
        let mut r = json!({"names": s["names"], "action": s["action"]});
        for k in ["args", "errnoRet"] {
            if !s[k].is_null() {
                r[k] = s[k].clone();
            }
        }
        rules.push(r);
    }
    let mut out =
        json!({"defaultAction": p["defaultAction"], "architectures": arches, "syscalls": rules});
    if !p["defaultErrnoRet"].is_null() {
        out["defaultErrnoRet"] = p["defaultErrnoRet"].clone();
    }
    out
}

/// A profile, the shell command that makes a syscall it denies, and the
/// capability that syscall needs besides (given to the container, left out
/// when the profile was resolved).
struct Case {
    name: &'static str,
    profile: Value,
    probe: &'static str,
    extra_cap: Option<&'static str>,
}

fn bounding(b: &Bundle) -> Vec<String> {
    b.config["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn cases(b: &Bundle) -> Vec<Case> {
    // A user namespace needs no capability: only the filter refuses it.
    let unshare = "unshare -U true";
    let mut v = vec![
        Case {
            name: "docker",
            profile: serde_json::from_str(DOCKER).unwrap(),
            probe: unshare,
            extra_cap: None,
        },
        Case {
            name: "containerd",
            profile: serde_json::from_str(CONTAINERD).unwrap(),
            probe: unshare,
            extra_cap: None,
        },
        Case {
            name: "old-errno",
            profile: old_profile("SCMP_ACT_ERRNO"),
            probe: unshare,
            extra_cap: None,
        },
        Case {
            name: "old-kill",
            profile: old_profile("SCMP_ACT_KILL_PROCESS"),
            probe: unshare,
            extra_cap: None,
        },
    ];
    match std::fs::read(PODMAN) {
        // podman's profile lets unshare through; without CAP_SYS_ADMIN it
        // refuses sethostname, which the container here may do otherwise.
        Ok(raw) => v.push(Case {
            name: "podman",
            profile: resolve(&serde_json::from_slice(&raw).unwrap(), &bounding(b)),
            probe: "hostname probe",
            extra_cap: Some("CAP_SYS_ADMIN"),
        }),
        Err(e) => eprintln!("skipping podman's profile: {PODMAN}: {e}"),
    }
    v
}

fn add_cap(b: &mut Bundle, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!(cap));
    }
}

/// `runc run` of the bundle: (exit code, stdout, stderr).
fn runc(h: &Hullc, b: &Bundle, id: &str) -> (Option<i32>, String, String) {
    b.save();
    let o = Command::new("runc")
        .arg("--root")
        .arg(h.scratch().join("runc"))
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc is installed (scripts/deps.sh)");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(h.scratch().join("runc"))
        .args(["delete", "--force", id])
        .output();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

const PIPELINE: &str = "echo one two three | tr ' ' '\\n' | sort -r | head -n 2 | wc -l";

#[test]
fn engine_and_old_profiles_load_and_deny() {
    let h = Hullc::new();
    let probe_b = Bundle::new(&h);
    for case in cases(&probe_b) {
        for nnp in [false, true] {
            let what = format!("{} profile, noNewPrivileges={nnp}", case.name);
            let mut b = Bundle::new(&h);
            if let Some(c) = case.extra_cap {
                add_cap(&mut b, c);
            }
            b.config["process"]["noNewPrivileges"] = json!(nnp);
            // Without a filter the probe succeeds: the filter is what denies it.
            let out = h.sh(&mut b, &format!("{} && echo probe=ok", case.probe));
            assert!(
                out.contains("probe=ok"),
                "{what}: probe without seccomp: {out}"
            );
            b.config["linux"]["seccomp"] = case.profile.clone();
            // init spawns startContainer hooks under an early filter: glibc's
            // posix_spawn tries clone3 first, which the old profiles lack
            // (runc's -ENOSYS stub makes it fall back to clone).
            b.config["hooks"] = json!({"startContainer": [{"path": "/bin/true"}]});
            // create + start of /bin/true.
            b.args(&["/bin/true"]);
            let id = h.id("sctrue");
            h.create(&b, &id, &[]).ok();
            h.cmd(&["start", &id]).ok();
            h.wait_status(&id, "stopped");
            h.cmd(&["delete", &id]).ok();
            let out = h.sh(&mut b, PIPELINE);
            assert_eq!(out.trim(), "2", "{what}: pipeline");
            let script = format!("{}; echo probe=$?", case.probe);
            let out = h.sh(&mut b, &script);
            let denied = if case.name == "old-kill" {
                "probe=159" // 128 + SIGSYS
            } else {
                "probe=1"
            };
            assert!(out.contains(denied), "{what}: probe under seccomp: {out}");
            if case.name.starts_with("old") {
                // runc on the same bundle: the same outcome.
                b.args(&["sh", "-c", &script]);
                let (code, rout, rerr) = runc(&h, &b, &format!("{}-runc", h.id("old")));
                assert_eq!(code, Some(0), "{what}: runc: {rerr}");
                assert_eq!(rout.trim(), out.trim(), "{what}: runc and hullc differ");
            }
        }
    }
}

/// A kernel without close_range (before 5.9), or a seccomp filter that
/// hullc itself runs under refusing it: init marks inherited fds
/// close-on-exec by walking /proc/self/fd instead, and the program still
/// sees none of them.
#[test]
fn inherited_fds_stay_out_without_close_range() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["ls", "/proc/self/fd"]);
    let id = h.id("nocr");
    b.save();
    h.track(&id);
    let bundle = b.path().to_str().unwrap().to_string();
    let leak = std::fs::File::open("/dev/null").unwrap();
    let leak_fd = std::os::fd::AsRawFd::as_raw_fd(&leak);
    let out = h.cmd_with(&["run", "--bundle", &bundle, &id], |c| {
        // SAFETY: between fork and exec only async-signal-safe calls: dup2
        // and prctl/seccomp on data prepared before the fork.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(leak_fd, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                enosys_for_close_range()
            });
        }
    });
    let out = out.ok();
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "fds the program sees: {}",
        out.stdout
    );
}

/// Installs a filter on the calling thread (inherited across fork and
/// exec) that answers close_range with ENOSYS, as a kernel before 5.9.
fn enosys_for_close_range() -> std::io::Result<()> {
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let prog = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == close_range: next, else skip one
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: libc::SYS_close_range as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(SECCOMP_MODE_FILTER) reads the program described by
    // fprog, which lives until the call returns (the kernel copies it).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
