//! Capability names and the sets a process ends up with after `execve`.
//!
//! The runtime sets the five sets from the config just before it execs the
//! container's program; the kernel then transforms them (capabilities(7),
//! `cap_bprm_creds_from_file`). The checker *is* that program, so it compares
//! `/proc/self/status` with the transformed sets, for a program file without
//! file capabilities and without set-user/group-ID bits (hull-check's own):
//!
//! - bounding, inheritable: unchanged;
//! - ambient: unchanged, but only what is both permitted and inheritable can
//!   be ambient at all;
//! - uid 0: permitted' = bounding ∪ inheritable (limited to the old permitted
//!   set under no_new_privs) ∪ ambient, effective' = permitted';
//! - any other uid: permitted' = effective' = ambient.

/// Capability names by number (linux/capability.h, up to 6.x).
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability set as the kernel's 64-bit mask.
pub type CapSet = u64;

/// The mask of the named capabilities; unknown names are skipped, as
/// runtimes skip them (runtime-spec 1.1).
pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> CapSet {
    names
        .into_iter()
        .filter_map(|n| NAMES.iter().position(|k| *k == n))
        .fold(0, |m, bit| m | (1 << bit))
}

/// The names in a mask, by number; bits past [`NAMES`] as `CAP_<n>`.
pub fn to_names(set: CapSet) -> Vec<String> {
    (0..64)
        .filter(|bit| set & (1u64 << bit) != 0)
        .map(|bit| {
            NAMES
                .get(bit)
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("CAP_{bit}"))
        })
        .collect()
}

/// The five sets, in `/proc/self/status` order of interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sets {
    pub bounding: CapSet,
    pub effective: CapSet,
    pub inheritable: CapSet,
    pub permitted: CapSet,
    pub ambient: CapSet,
}

/// The sets after `execve` of a plain program (see the module docs), given
/// the sets the runtime installed before it, limited to the capabilities the
/// kernel knows (`supported`).
pub fn after_exec(before: Sets, root: bool, no_new_privs: bool, supported: CapSet) -> Sets {
    let b = before.bounding & supported;
    let i = before.inheritable & supported;
    let p = before.permitted & supported;
    let a = before.ambient & p & i;
    if root {
        let mut perm = b | i;
        if no_new_privs {
            perm &= p;
        }
        perm |= a;
        Sets {
            bounding: b,
            effective: perm,
            inheritable: i,
            permitted: perm,
            ambient: a,
        }
    } else {
        Sets {
            bounding: b,
            effective: a,
            inheritable: i,
            permitted: a,
            ambient: a,
        }
    }
}

/// The mask of every capability up to `cap_last_cap`.
pub fn supported(last_cap: u32) -> CapSet {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let m = from_names(["CAP_KILL", "CAP_CHOWN", "CAP_FROM_THE_FUTURE"]);
        assert_eq!(m, 0b100001);
        assert_eq!(to_names(m), ["CAP_CHOWN", "CAP_KILL"]);
        assert_eq!(to_names(1 << 50), ["CAP_50"]);
        assert_eq!(supported(40), (1 << 41) - 1);
    }

    #[test]
    fn exec_transform() {
        let all = supported(40);
        let kill = from_names(["CAP_KILL"]);
        let chown = from_names(["CAP_CHOWN"]);
        let before = Sets {
            bounding: kill | chown,
            effective: kill,
            inheritable: 0,
            permitted: kill,
            ambient: chown, // not permitted: cannot be ambient
        };
        // root gains the bounding set (without no_new_privs)...
        let r = after_exec(before, true, false, all);
        assert_eq!(
            (r.permitted, r.effective, r.ambient),
            (kill | chown, kill | chown, 0)
        );
        // ...but not beyond what it had under no_new_privs.
        let r = after_exec(before, true, true, all);
        assert_eq!((r.permitted, r.effective), (kill, kill));
        // Non-root keeps only its ambient set.
        let amb = Sets {
            inheritable: kill,
            ambient: kill,
            ..before
        };
        let n = after_exec(amb, false, true, all);
        assert_eq!((n.permitted, n.effective, n.ambient), (kill, kill, kill));
        let n = after_exec(before, false, false, all);
        assert_eq!((n.permitted, n.effective, n.bounding), (0, 0, kill | chown));
    }
}
