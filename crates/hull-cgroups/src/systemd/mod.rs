//! The systemd cgroup driver (runc's `--systemd-cgroup`): the container's
//! cgroup is a transient scope unit that systemd creates, owns and removes,
//! so that systemd's own bookkeeping (a `daemon-reload` re-applying unit
//! properties, `systemctl status`, slices' limits) agrees with what runs.
//! `linux.cgroupsPath` then reads `slice:prefix:name` instead of a path.
//!
//! This module parses and expands those names (runc's ExpandSlice and
//! getUnitName); `props` turns resources into unit properties and `dbus`
//! talks to systemd's manager over the system bus.

mod dbus;
mod props;

pub use dbus::Manager;
pub use props::{properties, Property, Value};

use std::path::Path;

/// Errors of the systemd driver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The words a caller (and hullc's test) sees on a host without systemd.
    #[error("systemd is not running (no /run/systemd/system)")]
    NotRunning,
    #[error("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {0:?} instead")]
    Format(String),
    #[error("invalid slice name {0:?}")]
    Slice(String),
    #[error("invalid unit name {0:?}: {1}")]
    UnitName(String, &'static str),
    /// zbus's errors are large (a whole reply message): boxed.
    #[error("connecting to the system bus at {address}")]
    Connect {
        address: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("systemd: {call} {unit}")]
    Call {
        call: &'static str,
        unit: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("systemd: job for {unit} ended with result {result:?}")]
    Job { unit: String, result: String },
    #[error("systemd: timed out after {secs}s waiting for the job of {unit}")]
    Timeout { unit: String, secs: u64 },
    #[error("invalid {resource}: {reason}")]
    Resource {
        resource: &'static str,
        reason: String,
    },
}

/// Where systemd's units live when it runs as init: sd_booted()'s test.
const BOOTED: &str = "/run/systemd/system";

/// Whether systemd is the init of this host (sd_booted()).
pub fn running() -> bool {
    Path::new(BOOTED).is_dir()
}

/// A container's unit: its name and the slice it goes into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// `prefix-name.scope`, or `name` itself when it names a slice.
    pub name: String,
    /// The parent slice, e.g. `system.slice`.
    pub slice: String,
}

impl Unit {
    /// runc's reading of `linux.cgroupsPath` under systemd: `slice:prefix:name`
    /// (an empty slice is the default one: `system.slice`, or `user.slice`
    /// rootless), or nothing at all for `<default slice>:hull:<id>`.
    pub fn parse(cgroups_path: Option<&str>, id: &str, rootless: bool) -> Result<Unit, Error> {
        let (slice, prefix, name) = match cgroups_path.filter(|p| !p.is_empty()) {
            None => ("", "hull", id),
            Some(p) => match p.split(':').collect::<Vec<_>>()[..] {
                [s, p, n] => (s, p, n),
                _ => return Err(Error::Format(p.to_string())),
            },
        };
        let slice = match slice {
            "" if rootless => "user.slice",
            "" => "system.slice",
            s => s,
        };
        // Validated now: a bad slice should fail before anything is made.
        expand_slice(slice)?;
        Ok(Unit {
            name: unit_name(prefix, name)?,
            slice: slice.to_string(),
        })
    }

    /// The unit's cgroup below the cgroup root: the expanded slice, then the
    /// unit (`/system.slice/hull-c1.scope`).
    pub fn cgroup_path(&self) -> Result<String, Error> {
        let parent = expand_slice(&self.slice)?;
        Ok(format!("{}/{}", parent.trim_end_matches('/'), self.name))
    }

    /// A slice unit rather than a scope: it cannot be given processes at
    /// creation (systemd refuses PIDs= for slices), nor delegation.
    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }
}

/// runc's getUnitName: a scope `prefix-name.scope` unless `name` asks for a
/// slice; a name already ending in `.scope` keeps it.
fn unit_name(prefix: &str, name: &str) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::UnitName(name.into(), "empty name"));
    }
    if name.contains('/') || prefix.contains('/') {
        return Err(Error::UnitName(name.into(), "contains '/'"));
    }
    if name.ends_with(".slice") {
        expand_slice(name)?;
        return Ok(name.to_string());
    }
    let mut unit = match prefix {
        "" => name.to_string(),
        p => format!("{p}-{name}"),
    };
    if !unit.ends_with(".scope") {
        unit.push_str(".scope");
    }
    Ok(unit)
}

/// runc's ExpandSlice: systemd nests slices by their dashes, so
/// `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`, and `-.slice` is the
/// root. Empty components (`a--b.slice`, `-a.slice`) and `/` are invalid.
pub fn expand_slice(slice: &str) -> Result<String, Error> {
    let bad = || Error::Slice(slice.to_string());
    let stem = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if stem.is_empty() || slice.contains('/') {
        return Err(bad());
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_slice_as_runc() {
        // runc's TestExpandSlice table.
        let ok = [
            ("-.slice", "/"),
            ("system.slice", "/system.slice"),
            ("test.slice", "/test.slice"),
            ("test-a.slice", "/test.slice/test-a.slice"),
            ("test-a-b.slice", "/test.slice/test-a.slice/test-a-b.slice"),
            (
                "machine-a-b.slice",
                "/machine.slice/machine-a.slice/machine-a-b.slice",
            ),
        ];
        for (s, want) in ok {
            assert_eq!(expand_slice(s).expect(s), want);
        }
        for bad in [
            "test",
            ".slice",
            "test-.slice",
            "-test.slice",
            "test--a.slice",
            "a/b.slice",
            "",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_cgroups_path() {
        let u = Unit::parse(Some("system.slice:hull:test1"), "id", false).expect("parse");
        assert_eq!(u.name, "hull-test1.scope");
        assert_eq!(u.slice, "system.slice");
        assert_eq!(
            u.cgroup_path().expect("path"),
            "/system.slice/hull-test1.scope"
        );
        let u = Unit::parse(Some("machine-a-b.slice:hull:t2"), "id", false).expect("parse");
        assert_eq!(
            u.cgroup_path().expect("path"),
            "/machine.slice/machine-a.slice/machine-a-b.slice/hull-t2.scope"
        );
        // Empty slice: the default one; no path: hull-<id>.scope there.
        let u = Unit::parse(Some(":cri-containerd:abc"), "id", false).expect("parse");
        assert_eq!(
            u.cgroup_path().expect("path"),
            "/system.slice/cri-containerd-abc.scope"
        );
        let u = Unit::parse(None, "c1", true).expect("parse");
        assert_eq!(u.cgroup_path().expect("path"), "/user.slice/hull-c1.scope");
        let u = Unit::parse(Some("-.slice:p:x"), "id", false).expect("parse");
        assert_eq!(u.cgroup_path().expect("path"), "/p-x.scope");
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("docker", "abc").expect("ok"), "docker-abc.scope");
        assert_eq!(unit_name("", "abc").expect("ok"), "abc.scope");
        assert_eq!(unit_name("p", "x.scope").expect("ok"), "p-x.scope");
        let u = Unit::parse(Some("system.slice:p:my-x.slice"), "id", false).expect("parse");
        assert!(u.is_slice());
        assert_eq!(u.cgroup_path().expect("path"), "/system.slice/my-x.slice");
        assert!(unit_name("p", "").is_err());
        assert!(unit_name("p", "a/b").is_err());
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in [
            "/sys/fs/cgroup/x",
            "a:b",
            "a:b:c:d",
            "nope:p:n",
            "bad--x.slice:p:n",
        ] {
            assert!(Unit::parse(Some(p), "id", false).is_err(), "{p:?}");
        }
        let e = Unit::parse(Some("/hull/x"), "id", false).expect_err("a plain path");
        assert!(e.to_string().contains("slice:prefix:name"), "{e}");
    }
}
