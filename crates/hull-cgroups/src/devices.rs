//! Device access rules: v1 devices.allow/deny, v2 eBPF (see devices_bpf).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::device_rules::DevState;
use crate::fs::write_each;
use crate::{devices_bpf, Cgroup, Error, Mode};

/// Both paths check the list first (device_rules), so a rule the kernel
/// would refuse on v1 is refused, naming its index, on v2 as well.
pub(crate) fn apply(cg: &Cgroup, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let state = DevState::from_rules(rules)?;
    if let Some(d) = cg.v1.get("devices") {
        return v1(&d.path, rules);
    }
    match (&cg.unified, cg.mode) {
        (Some(u), Mode::V2) => match devices_bpf::apply(&u.path, &state) {
            Err(e @ Error::Bpf { .. }) if can_skip_bpf_error(rules, in_user_ns()) => {
                tracing::warn!(
                    "device rules not enforced: {e:#} (skipped in a user namespace, or the rules allow everything they name, as runc does)"
                );
                Ok(())
            }
            r => r,
        },
        _ => Err(Error::ControllerMissing {
            resource: "devices",
            controller: "devices",
        }),
    }
}

/// runc's canSkipEBPFError (fs2/devices.go, after crun): in a user namespace
/// bpf(2) is usually refused (cgroup device programs need CAP_SYS_ADMIN in
/// the initial namespace), and such containers usually cannot mknod nor
/// reach host devices anyway; outside one, only when every rule allows all
/// of "rwm" (runc's test, literal: an empty access does not count).
pub(crate) fn can_skip_bpf_error(rules: &[LinuxDeviceCgroup], in_userns: bool) -> bool {
    in_userns
        || rules.iter().all(|r| {
            let a = r.access().as_deref().unwrap_or("");
            r.allow() && ['r', 'w', 'm'].iter().all(|c| a.contains(*c))
        })
}

/// runc's userns.RunningInUserNS: anything but the identity map of all
/// 2^32-1 uids (the initial namespace) means a user namespace; no uid_map
/// (kernel without user namespaces) means none.
fn in_user_ns() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| !is_initial_uid_map(&m))
    })
}

fn is_initial_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [f] if f.as_slice() == ["0", "0", "4294967295"])
}

/// runc: deny everything first, then replay the rules in order; later rules
/// override earlier ones, exactly as the kernel applies successive writes.
/// A run of rules for the same file goes through one open file.
fn v1(d: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let file = |allow: bool| {
        if allow {
            "devices.allow"
        } else {
            "devices.deny"
        }
    };
    let mut runs: Vec<(bool, Vec<String>)> = vec![(false, vec!["a".to_string()])];
    for r in rules {
        match runs.last_mut() {
            Some((allow, rs)) if *allow == r.allow() => rs.push(v1_rule(r)),
            _ => runs.push((r.allow(), vec![v1_rule(r)])),
        }
    }
    for (allow, rs) in &runs {
        write_each(d, file(*allow), rs.iter().map(String::as_str))?;
    }
    Ok(())
}

/// "c 1:3 rwm" with "*" wildcards; an empty access means all of "rwm".
pub(crate) fn v1_rule(r: &LinuxDeviceCgroup) -> String {
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    // Only r, w and m reach the kernel (it refuses anything else with EINVAL); runc drops
    // other letters too (device_rules does the same for the v2 program).
    let access: String = r
        .access()
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| matches!(c, 'r' | 'w' | 'm'))
        .collect();
    let access = if access.is_empty() { "rwm" } else { &access };
    let typ = r.typ().unwrap_or(LinuxDeviceType::A);
    format!(
        "{} {}:{} {access}",
        typ.as_str(),
        num(r.major()),
        num(r.minor())
    )
}

/// The device rules runc always grants to a container (after the spec's own
/// rules in libcontainer/specconv): /dev/null, zero, full, tty, random,
/// urandom, /dev/pts/*, /dev/ptmx, /dev/net/tun, and mknod of any c/b device.
/// A runtime wanting runc's behaviour passes `spec rules + these` to `apply`.
pub fn default_allowed_devices() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        rule(C, None, None, "m"),
        rule(B, None, None, "m"),
        rule(C, Some(1), Some(3), "rwm"),    // /dev/null
        rule(C, Some(1), Some(8), "rwm"),    // /dev/random
        rule(C, Some(1), Some(7), "rwm"),    // /dev/full
        rule(C, Some(5), Some(0), "rwm"),    // /dev/tty
        rule(C, Some(1), Some(5), "rwm"),    // /dev/zero
        rule(C, Some(1), Some(9), "rwm"),    // /dev/urandom
        rule(C, Some(136), None, "rwm"),     // /dev/pts/*
        rule(C, Some(5), Some(2), "rwm"),    // /dev/ptmx
        rule(C, Some(10), Some(200), "rwm"), // /dev/net/tun
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn rule_format() {
        let r = default_allowed_devices();
        assert_eq!(v1_rule(&r[0]), "c *:* m");
        assert_eq!(v1_rule(&r[2]), "c 1:3 rwm");
        assert_eq!(v1_rule(&r[8]), "c 136:* rwm");
        assert_eq!(v1_rule(&LinuxDeviceCgroup::default()), "a *:* rwm");
    }

    #[test]
    fn bpf_errors_skipped_like_runc() {
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        assert!(!is_initial_uid_map("0 1000 1\n"));
        assert!(!is_initial_uid_map("0 0 4294967295\n1 1 1\n"));
        assert!(
            !is_initial_uid_map(""),
            "no mapping yet: a new user namespace"
        );
        let all = |access: &str| {
            let mut r = LinuxDeviceCgroup::default();
            r.set_allow(true);
            r.set_access(Some(access.into()));
            r
        };
        let runtime = default_allowed_devices();
        assert!(can_skip_bpf_error(&runtime, true), "in a user namespace");
        assert!(
            !can_skip_bpf_error(&runtime, false),
            "\"c *:* m\" is not rwm"
        );
        assert!(can_skip_bpf_error(&[all("mrw")], false));
        assert!(can_skip_bpf_error(&[], false));
        assert!(
            !can_skip_bpf_error(&[all("")], false),
            "runc: empty is not rwm"
        );
        assert!(!can_skip_bpf_error(&[LinuxDeviceCgroup::default()], false));
    }

    #[test]
    fn v1_writes_deny_all_first() {
        let f = Fake::v1();
        let cg = f.cgroup(&["devices:devices.allow", "devices:devices.deny"]);
        let mut deny = LinuxDeviceCgroup::default();
        deny.set_typ(Some(LinuxDeviceType::C));
        deny.set_major(Some(1));
        deny.set_minor(Some(3));
        deny.set_access(Some("w".into()));
        apply(&cg, &[deny]).expect("apply");
        let d = cg.v1_path("devices").expect("devices");
        // One open file per run of rules: the deny-all and the spec's deny.
        assert_eq!(read(&d.join("devices.deny")), "a\nc 1:3 w");
        apply(&cg, &default_allowed_devices()).expect("apply");
        let allowed = read(&d.join("devices.allow"));
        assert_eq!(allowed.lines().next(), Some("c *:* m"));
        assert_eq!(allowed.lines().last(), Some("c 10:200 rwm"));
        assert_eq!(allowed.lines().count(), default_allowed_devices().len());
        assert_eq!(read(&d.join("devices.deny")), "a");
    }
}
