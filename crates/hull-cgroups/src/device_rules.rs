//! The state a cgroup v1 devices controller reaches after an OCI
//! `linux.resources.devices` list: a default (allow or deny every device)
//! plus a list of exceptions, as the kernel keeps it (security/device_cgroup.c).
//!
//! cgroup v2 has no devices controller; a BPF program decides instead
//! (devices_bpf). We build that program from this reduced state, not from the
//! raw list, so that a container gets exactly the device access on v2 that
//! the same list gives it on v1 — v1 is the reference because every runtime
//! (runc's devices emulator for v2 likewise) and every config written for
//! runc assumes its semantics. The kernel's rules, replayed here:
//!
//! - Any rule of type `a` resets: allow → default allow, deny → default deny,
//!   and the exceptions are dropped. Its major, minor and access are ignored
//!   (the kernel only looks at the `a`).
//! - A `b`/`c` rule whose verdict differs from the default adds an exception,
//!   merging its access into an exception with the same type, major and minor.
//! - A `b`/`c` rule whose verdict equals the default removes its access bits
//!   from the exception with exactly the same type, major and minor (deleting
//!   it when none are left). Nothing else is touched: a wildcard exception
//!   such as `c *:* m` is not narrowed by a later deny of `c 1:3 m`. runc's
//!   emulator refuses such a "hole punch"; we follow the kernel (hull's v1
//!   path writes the rules as given, so v1 and v2 must agree) and log a
//!   warning.
//! - A check on default deny needs one exception that matches the device and
//!   holds every requested access bit; on default allow, any exception that
//!   matches the device and shares one requested bit denies (the kernel's
//!   match_exception / match_exception_partial; an O_RDWR open asks for both
//!   bits at once).
//!
//! Unlike the kernel there is no parent to consult: the container's parent
//! cgroup is the host's, which allows everything on v1 and has no program of
//! ours on v2.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::Error;

pub(crate) const ACC_MKNOD: u8 = 1;
pub(crate) const ACC_READ: u8 = 2;
pub(crate) const ACC_WRITE: u8 = 4;
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The device types an exception can name (the kernel's DEVCG_DEV_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DevType {
    Block,
    Char,
}

/// One entry of the kernel's exception list; `None` is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exception {
    pub(crate) typ: DevType,
    pub(crate) major: Option<u32>,
    pub(crate) minor: Option<u32>,
    pub(crate) access: u8,
}

impl Exception {
    fn same_node(&self, o: &Exception) -> bool {
        self.typ == o.typ && self.major == o.major && self.minor == o.minor
    }

    /// Whether this exception names the device (wildcards match any number).
    #[cfg(test)]
    fn covers(&self, typ: DevType, major: u32, minor: u32) -> bool {
        self.typ == typ
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
    }
}

/// Default verdict plus exceptions (all of the opposite verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DevState {
    pub(crate) default_allow: bool,
    pub(crate) exceptions: Vec<Exception>,
}

/// A parsed rule: `None` for type `a`.
type Parsed = (bool, Option<Exception>);

impl DevState {
    /// Replay `rules` on a cgroup that starts as runc leaves it before the
    /// rules: deny everything.
    pub(crate) fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<DevState, Error> {
        let mut s = DevState {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for (i, r) in rules.iter().enumerate() {
            s.apply(parse(i, r)?);
        }
        Ok(s)
    }

    fn apply(&mut self, (allow, ex): Parsed) {
        let Some(ex) = ex else {
            self.default_allow = allow;
            self.exceptions.clear();
            return;
        };
        if allow != self.default_allow {
            match self.exceptions.iter_mut().find(|e| e.same_node(&ex)) {
                Some(e) => e.access |= ex.access,
                None => self.exceptions.push(ex),
            }
            return;
        }
        if let Some(pos) = self.exceptions.iter().position(|e| e.same_node(&ex)) {
            self.exceptions[pos].access &= !ex.access;
            if self.exceptions[pos].access == 0 {
                self.exceptions.remove(pos);
            }
        }
        let wider = self.exceptions.iter().any(|e| {
            !e.same_node(&ex)
                && e.typ == ex.typ
                && e.major.is_none_or(|m| ex.major == Some(m))
                && e.minor.is_none_or(|m| ex.minor == Some(m))
                && e.access & ex.access != 0
        });
        if wider {
            tracing::warn!(
                rule = ?ex,
                "device rule has no effect: a wider exception stays (cgroup v1 semantics)"
            );
        }
    }

    /// The verdict for one access, as the kernel computes it on v1.
    #[cfg(test)]
    pub(crate) fn allows(&self, typ: DevType, access: u8, major: u32, minor: u32) -> bool {
        let mut hits = self
            .exceptions
            .iter()
            .filter(|e| e.covers(typ, major, minor));
        if self.default_allow {
            !hits.any(|e| e.access & access != 0)
        } else {
            hits.any(|e| access & !e.access == 0)
        }
    }
}

fn parse(i: usize, r: &LinuxDeviceCgroup) -> Result<Parsed, Error> {
    let bad = |reason: String| Error::InvalidResource {
        resource: "devices",
        reason: format!("linux.resources.devices[{i}]: {reason}"),
    };
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Ok((r.allow(), None)),
        LinuxDeviceType::B => DevType::Block,
        LinuxDeviceType::C => DevType::Char,
        // The devices controller knows only a, b and c (runtime-spec too).
        t => {
            return Err(bad(format!(
                "type {:?} is not one of \"a\", \"b\", \"c\"",
                t.as_str()
            )))
        }
    };
    let num = |n: Option<i64>, what: &str| match n.filter(|n| *n >= 0) {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| bad(format!("{what} {n} is out of range"))),
    };
    let access = r.access().as_deref().unwrap_or("");
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            // runc ignores other letters (its Permissions.toSet), and configs in the field
            // carry them (runc's own update.bats uses "rwa"): drop them, as v1_rule does.
            _ => {
                tracing::warn!("linux.resources.devices: access {access:?}: ignoring {c:?}");
                0
            }
        };
    }
    let ex = Exception {
        typ,
        major: num(r.major(), "major")?,
        minor: num(r.minor(), "minor")?,
        // Unset or empty access means all of "rwm" (as hull's v1 path writes it).
        access: if bits == 0 { ACC_ALL } else { bits },
    };
    Ok((r.allow(), Some(ex)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::default_allowed_devices;

    pub(crate) fn rule(
        allow: bool,
        typ: &str,
        major: i64,
        minor: i64,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(match typ {
            "a" => LinuxDeviceType::A,
            "b" => LinuxDeviceType::B,
            "c" => LinuxDeviceType::C,
            "u" => LinuxDeviceType::U,
            _ => LinuxDeviceType::P,
        }));
        r.set_major(Some(major));
        r.set_minor(Some(minor));
        r.set_access(Some(acc.into()));
        r
    }

    fn state(rules: &[LinuxDeviceCgroup]) -> DevState {
        DevState::from_rules(rules).expect("valid rules")
    }

    #[test]
    fn type_a_resets_whatever_its_numbers() {
        let s = state(&[rule(true, "c", 1, 3, "r"), rule(true, "a", 1, 3, "r")]);
        assert_eq!(
            s,
            DevState {
                default_allow: true,
                exceptions: vec![]
            }
        );
        assert!(s.allows(DevType::Block, ACC_WRITE, 8, 0));
        let s = state(&[rule(false, "c", 1, 3, "r"), rule(false, "a", -1, -1, "")]);
        assert_eq!(
            s,
            DevState {
                default_allow: false,
                exceptions: vec![]
            }
        );
    }

    #[test]
    fn exceptions_merge_and_remove_only_exact_matches() {
        let s = state(&[
            rule(true, "c", 1, 3, "r"),
            rule(true, "c", 1, 3, "w"),
            rule(true, "c", -1, -1, "m"),
            rule(false, "c", 1, 5, "m"), // no exact match: c *:* m stays
        ]);
        assert_eq!(s.exceptions.len(), 2);
        assert_eq!(s.exceptions[0].access, ACC_READ | ACC_WRITE);
        assert!(s.allows(DevType::Char, ACC_MKNOD, 1, 5));
        assert!(s.allows(DevType::Char, ACC_READ | ACC_WRITE, 1, 3));
        assert!(!s.allows(DevType::Char, ACC_READ, 1, 5));
        let s = state(&[rule(true, "c", 1, 3, "rw"), rule(false, "c", 1, 3, "rwm")]);
        assert!(s.exceptions.is_empty());
    }

    #[test]
    fn default_allow_denies_on_any_shared_bit() {
        let s = state(&[rule(true, "a", -1, -1, "rwm"), rule(false, "c", 1, 3, "w")]);
        assert!(s.allows(DevType::Char, ACC_READ, 1, 3));
        assert!(!s.allows(DevType::Char, ACC_READ | ACC_WRITE, 1, 3));
        let s = state(&[rule(false, "a", -1, -1, ""), rule(true, "c", 1, 3, "r")]);
        assert!(!s.allows(DevType::Char, ACC_READ | ACC_WRITE, 1, 3));
    }

    #[test]
    fn runc_defaults_after_deny_all() {
        let mut rules = vec![rule(false, "a", -1, -1, "rwm")];
        rules.extend(default_allowed_devices());
        let s = state(&rules);
        assert!(!s.default_allow);
        assert_eq!(s.exceptions.len(), default_allowed_devices().len());
    }

    #[test]
    fn bad_rules_name_the_entry() {
        for (r, want) in [
            (rule(true, "p", 1, 3, "r"), "devices[1]: type \"p\""),
            (rule(true, "u", 1, 3, "r"), "devices[1]: type \"u\""),
            (
                rule(true, "c", 1 << 33, 3, "r"),
                "devices[1]: major 8589934592",
            ),
        ] {
            let e = DevState::from_rules(&[rule(true, "a", -1, -1, ""), r]).expect_err("bad rule");
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn letters_other_than_rwm_are_ignored_like_runc() {
        // runc's update.bats ("minimal transition rules") allows c 1:11 "rwa".
        let s =
            DevState::from_rules(&[rule(false, "a", -1, -1, ""), rule(true, "c", 1, 11, "rwa")])
                .expect("rwa is accepted");
        assert!(s.allows(DevType::Char, ACC_READ | ACC_WRITE, 1, 11));
        assert!(!s.allows(DevType::Char, ACC_MKNOD, 1, 11));
        assert_eq!(
            crate::devices::v1_rule(&rule(true, "c", 1, 11, "rwa")),
            "c 1:11 rw"
        );
    }
}
