//! `linux.seccomp`: compiles the OCI seccomp profile into a classic-BPF
//! filter (pure Rust, no libseccomp) and installs it with seccomp(2).
//!
//! * [`compile`] is pure computation: the parent runs it before clone, so a
//!   bad profile fails `create` before anything exists.
//! * [`install`] runs in init as the last step before execve. It returns the
//!   user-notification listener when the profile uses `SCMP_ACT_NOTIFY`; the
//!   caller sends it to `listenerPath`.
//!
//! Semantics follow runc on libseccomp, where the spec leaves room:
//! * the native architecture is always in the filter, next to the listed ones
//!   (libseccomp's `seccomp_init` adds it); a syscall from any other
//!   architecture gets `SECCOMP_RET_KILL_PROCESS`;
//! * a rule whose action equals the default action is dropped;
//! * conditions on distinct arguments are ANDed; when one argument is named
//!   twice, every condition becomes a rule of its own (ORed), as runc does;
//! * rules of one syscall are tried in profile order, the first match wins;
//! * unknown syscall names, and names an architecture lacks, are skipped.
//!
//! Architectures with tables: x86_64, x32, x86 (i386), aarch64, arm; others
//! listed in `architectures` are skipped (they cannot run on these hosts).
//!
//! * runc's -ENOSYS stub: a syscall numbered above every syscall the
//!   profile names (per architecture) is newer than the profile and gets
//!   ENOSYS instead of a refusing default action (see [`enosys_above`]).
//!
//! Not done: i386's socketcall/ipc multiplexers are matched as themselves
//! only.

mod bpf;
mod codegen;
mod install;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

pub(crate) use install::install;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{field}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {action}")]
    ErrnoNotSupported { field: String, action: Act },
    #[error("{field}: {value} does not fit the 16-bit seccomp return data")]
    ErrnoRange { field: String, value: u32 },
    #[error("{field}: syscalls have 6 arguments, index {index} is out of range")]
    ArgIndex { field: String, index: usize },
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action (every syscall of init would wait for an agent that is not connected yet)")]
    NotifyDefault,
    #[error("{field}: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NotifyWithoutListener { field: String },
    /// runc's words (seccomp-notify.bats matches them).
    #[error("{field}: SCMP_ACT_NOTIFY cannot be used for the write syscall (the runtime writes after the filter is in, and would wait for the agent)")]
    NotifyWrite { field: String },
    #[error("linux.seccomp.listenerMetadata: set without linux.seccomp.listenerPath")]
    MetadataWithoutPath,
    #[error("linux.seccomp: seccomp filters are not supported on this host architecture")]
    UnsupportedHost,
    #[error("linux.seccomp: the filter needs {0} BPF instructions, the kernel allows 4096")]
    TooLarge(usize),
    #[error("linux.seccomp: internal error: {0}")]
    Internal(&'static str),
    #[error("linux.seccomp: loading the filter needs process.noNewPrivileges or CAP_SYS_ADMIN")]
    NeedsNoNewPrivs(#[source] std::io::Error),
    #[error("linux.seccomp: loading the filter with seccomp(2), flags {flags:#x}")]
    Install {
        flags: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A compiled filter, ready for [`install`].
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    prog: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2).
    flags: u32,
}

impl Filter {
    /// Whether installing returns a listener fd (the profile uses NOTIFY).
    pub(crate) fn has_listener(&self) -> bool {
        self.flags & FLAG_NEW_LISTENER != 0
    }

    /// Number of BPF instructions.
    #[allow(dead_code)] // diagnostics
    pub(crate) fn len(&self) -> usize {
        self.prog.len()
    }
}

// seccomp(2) flags, as u32 (libc has them as c_ulong).
const FLAG_TSYNC: u32 = 1 << 0;
const FLAG_LOG: u32 = 1 << 1;
const FLAG_SPEC_ALLOW: u32 = 1 << 2;
const FLAG_NEW_LISTENER: u32 = 1 << 3;
const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// An architecture the filter can cover, with its syscall table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ArchId {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

// AUDIT_ARCH_* from <linux/audit.h>: EM_* | __AUDIT_ARCH_64BIT (0x80000000)
// | __AUDIT_ARCH_LE (0x40000000). x32 has no value of its own: its tasks
// report AUDIT_ARCH_X86_64 and set bit 30 in the syscall number instead.
pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(super) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(super) const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub(super) const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
/// __X32_SYSCALL_BIT.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl ArchId {
    pub(super) fn audit(self) -> u32 {
        match self {
            ArchId::X86_64 | ArchId::X32 => AUDIT_ARCH_X86_64,
            ArchId::X86 => AUDIT_ARCH_I386,
            ArchId::Aarch64 => AUDIT_ARCH_AARCH64,
            ArchId::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// Whether syscall arguments are 64-bit registers. On i386 and arm the
    /// kernel zero-extends 32-bit registers into `seccomp_data.args`, so only
    /// the low half is compared (values truncated, as libseccomp does). x32
    /// passes full 64-bit registers, so it is compared like x86_64 (where
    /// libseccomp compares only 32 bits and lets the high half through).
    pub(super) fn wide(self) -> bool {
        matches!(self, ArchId::X86_64 | ArchId::X32 | ArchId::Aarch64)
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            ArchId::X86_64 => tables::X86_64,
            ArchId::X32 => tables::X32,
            ArchId::X86 => tables::X86,
            ArchId::Aarch64 => tables::AARCH64,
            ArchId::Arm => tables::ARM,
        }
    }

    pub(super) fn syscall(self, name: &str) -> Option<u32> {
        let t = self.table();
        t.binary_search_by(|(n, _)| n.cmp(&name))
            .ok()
            .map(|i| t[i].1)
    }

    fn native() -> Option<ArchId> {
        if cfg!(target_arch = "x86_64") {
            Some(ArchId::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(ArchId::Aarch64)
        } else {
            None
        }
    }

    fn from_spec(a: Arch) -> Option<ArchId> {
        match a {
            Arch::ScmpArchNative => ArchId::native(),
            Arch::ScmpArchX86_64 => Some(ArchId::X86_64),
            Arch::ScmpArchX32 => Some(ArchId::X32),
            Arch::ScmpArchX86 => Some(ArchId::X86),
            Arch::ScmpArchAarch64 => Some(ArchId::Aarch64),
            Arch::ScmpArchArm => Some(ArchId::Arm),
            _ => None,
        }
    }
}

/// Argument comparison, `seccomp_data.args[index] <op> value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cond {
    pub(super) index: u8,
    pub(super) op: LinuxSeccompOperator,
    pub(super) value: u64,
    /// The compared value of MASKED_EQ (`value` is then the mask).
    pub(super) value_two: u64,
}

/// One rule of one syscall: the action when all conditions hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rule {
    pub(super) action: u32,
    pub(super) conds: Vec<Cond>,
}

/// The profile resolved to numbers, input of the code generator.
pub(super) struct Profile {
    pub(super) default: u32,
    /// Per architecture, the number above which a syscall gets ENOSYS.
    pub(super) enosys_above: BTreeMap<ArchId, u32>,
    /// Sorted, so the x86_64 family is adjacent; native first is up to codegen.
    pub(super) arches: BTreeMap<ArchId, BTreeMap<u32, Vec<Rule>>>,
}

/// Compiles `linux.seccomp` into a BPF program. Pure computation.
pub(crate) fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let native = ArchId::native().ok_or(SeccompError::UnsupportedHost)?;
    if s.default_action() == Act::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    if s.listener_metadata().is_some() && s.listener_path().is_none() {
        return Err(SeccompError::MetadataWithoutPath);
    }
    let default = action(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut arches: BTreeMap<ArchId, BTreeMap<u32, Vec<Rule>>> = BTreeMap::new();
    arches.insert(native, BTreeMap::new());
    for a in s.architectures().iter().flatten() {
        match ArchId::from_spec(*a) {
            Some(id) => {
                arches.entry(id).or_default();
            }
            None => tracing::debug!(arch = %a, "seccomp: architecture not supported, skipped"),
        }
    }
    let mut notify = false;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
        if sc.action() == Act::ScmpActNotify {
            if s.listener_path().is_none() {
                return Err(SeccompError::NotifyWithoutListener {
                    field: format!("{field}.action"),
                });
            }
            // init writes errors to `start` and the trampoline its report
            // of a failed execve after the filter is in: a write waiting on
            // an agent that may never answer would hang them (runc refuses
            // it for its own sync pipe).
            if sc.names().iter().any(|n| n == "write") {
                return Err(SeccompError::NotifyWrite {
                    field: format!("{field}.names"),
                });
            }
            notify = true;
        }
        let groups = cond_groups(sc.args().as_deref().unwrap_or_default(), &field)?;
        // As runc: libseccomp refuses a rule that repeats the default action.
        if act == default {
            continue;
        }
        for name in sc.names() {
            add_rules(&mut arches, name, act, &groups);
        }
    }
    let enosys_above = enosys_above(s, default, arches.keys().copied());
    let p = Profile {
        default,
        enosys_above,
        arches,
    };
    let prog = codegen::generate(&p, native)?;
    Ok(Filter {
        prog,
        flags: flags(s.flags().as_deref().unwrap_or_default(), notify),
    })
}

/// What the stub answers: ENOSYS, "this kernel has no such syscall".
pub(super) const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// runc's -ENOSYS stub (libcontainer/seccomp/patchbpf): per architecture,
/// the largest syscall number the profile names. A syscall above it is
/// newer than the profile, and answering ENOSYS instead of the default
/// lets the C library fall back to an older call (glibc's posix_spawn
/// tries clone3, then clone) rather than fail with EPERM or be killed. As
/// runc: every named syscall counts, also in rules dropped for repeating
/// the default; no stub when the default lets calls through (allow, log,
/// trace) or already answers ENOSYS.
fn enosys_above(
    s: &LinuxSeccomp,
    default: u32,
    arches: impl Iterator<Item = ArchId>,
) -> BTreeMap<ArchId, u32> {
    let action = default & libc::SECCOMP_RET_ACTION_FULL;
    let permissive = matches!(
        action,
        libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG | libc::SECCOMP_RET_TRACE
    );
    if permissive || default == RET_ENOSYS {
        return BTreeMap::new();
    }
    let names = || s.syscalls().iter().flatten().flat_map(|r| r.names());
    arches
        .filter_map(|a| Some((a, names().filter_map(|n| a.syscall(n)).max()?)))
        .collect()
}

fn add_rules(
    arches: &mut BTreeMap<ArchId, BTreeMap<u32, Vec<Rule>>>,
    name: &str,
    action: u32,
    groups: &[Vec<Cond>],
) {
    let mut known = false;
    for (arch, rules) in arches.iter_mut() {
        let Some(nr) = arch.syscall(name) else {
            continue;
        };
        known = true;
        let list = rules.entry(nr).or_default();
        list.extend(groups.iter().map(|conds| Rule {
            action,
            conds: conds.clone(),
        }));
    }
    if !known {
        tracing::debug!(syscall = name, "seccomp: unknown syscall name, skipped");
    }
}

/// The SECCOMP_RET_* value of an action; `errno` is its errnoRet field.
pub(crate) fn action(a: Act, errno: Option<u32>, field: &str) -> Result<u32, SeccompError> {
    let data = |errno: Option<u32>| -> Result<u32, SeccompError> {
        // The spec's default is EPERM.
        let v = errno.unwrap_or(libc::EPERM as u32);
        if v > libc::SECCOMP_RET_DATA {
            return Err(SeccompError::ErrnoRange {
                field: field.into(),
                value: v,
            });
        }
        Ok(v)
    };
    if errno.is_some() && !matches!(a, Act::ScmpActErrno | Act::ScmpActTrace) {
        return Err(SeccompError::ErrnoNotSupported {
            field: field.into(),
            action: a,
        });
    }
    Ok(match a {
        Act::ScmpActKill | Act::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Act::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Act::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Act::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(errno)?,
        Act::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(errno)?,
        Act::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
        Act::ScmpActLog => libc::SECCOMP_RET_LOG,
        Act::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
    })
}

/// The rules' condition sets for one `syscalls[]` entry: one set (ANDed)
/// normally; one set per condition when an argument index repeats (runc).
fn cond_groups(args: &[LinuxSeccompArg], field: &str) -> Result<Vec<Vec<Cond>>, SeccompError> {
    let mut conds = Vec::with_capacity(args.len());
    let mut seen = [false; 6];
    let mut repeated = false;
    for (j, a) in args.iter().enumerate() {
        let index = a.index();
        let slot = seen.get_mut(index).ok_or_else(|| SeccompError::ArgIndex {
            field: format!("{field}.args[{j}].index"),
            index,
        })?;
        repeated |= *slot;
        *slot = true;
        conds.push(Cond {
            index: index as u8, // < 6, checked above
            op: a.op(),
            value: a.value(),
            value_two: a.value_two().unwrap_or(0),
        });
    }
    Ok(if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

fn flags(spec: &[LinuxSeccompFilterFlag], notify: bool) -> u32 {
    use LinuxSeccompFilterFlag as F;
    let mut f = if notify { FLAG_NEW_LISTENER } else { 0 };
    for flag in spec {
        f |= match flag {
            F::SeccompFilterFlagLog => FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            // TSYNC reports a failing thread id as the return value, which
            // collides with the listener fd; TSYNC_ESRCH makes it an error.
            F::SeccompFilterFlagTsync if notify => FLAG_TSYNC | FLAG_TSYNC_ESRCH,
            F::SeccompFilterFlagTsync => FLAG_TSYNC,
            // The kernel rejects it (EINVAL) without a listener.
            F::SeccompFilterFlagWaitKillableRecv if !notify => {
                tracing::debug!("seccomp: WAIT_KILLABLE_RECV without NOTIFY rules, dropped");
                0
            }
            F::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    f
}
