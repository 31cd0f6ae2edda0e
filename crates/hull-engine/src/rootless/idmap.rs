//! The user's subordinate ids (`/etc/subuid`, `/etc/subgid`, shadow-utils' format
//! `name-or-uid:start:count`) and writing the pause process's maps through the setuid
//! helpers `newuidmap`/`newgidmap` (Debian package `uidmap`), which check the ranges against
//! those files: an unprivileged process may only map its own id itself.

use std::ffi::CStr;
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {helper} (install Debian's `uidmap` package)")]
    Spawn {
        helper: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{helper} refused the map {map:?}: {msg}")]
    Helper {
        helper: &'static str,
        map: String,
        msg: String,
    },
    #[error("writing {path} for the single-id map")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One subordinate range: host ids `start..start+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges of `/etc/subuid`-format `text` that belong to the user `name` (or `uid`).
pub(crate) fn parse_ranges(text: &str, name: Option<&str>, uid: u32) -> Vec<IdRange> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let ours = Some(who) == name || who == uid;
            let r = IdRange {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            };
            (ours && r.count > 0).then_some(r)
        })
        .collect()
}

/// The login name of `uid`, from the passwd database.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid out-parameter (plain pointers and ints).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pw's strings.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name points to a NUL-terminated string inside buf.
    let name = unsafe { CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The user's subordinate uid and gid ranges (empty when the files lack them).
pub(crate) fn subids(uid: u32) -> (Vec<IdRange>, Vec<IdRange>) {
    let name = user_name(uid);
    let read = |f| std::fs::read_to_string(f).unwrap_or_default();
    (
        parse_ranges(&read("/etc/subuid"), name.as_deref(), uid),
        parse_ranges(&read("/etc/subgid"), name.as_deref(), uid),
    )
}

/// The map's triples: our own id as 0, then each range from 1 on (as podman: the ranges
/// follow each other inside).
pub(crate) fn map_args(own: u32, ranges: &[IdRange]) -> Vec<String> {
    let mut args = vec!["0".into(), own.to_string(), "1".into()];
    let mut inside = 1u32;
    for r in ranges {
        args.extend([inside.to_string(), r.start.to_string(), r.count.to_string()]);
        inside = inside.saturating_add(r.count);
    }
    args
}

/// Writes `pid`'s uid and gid maps through newuidmap/newgidmap.
pub(crate) fn write_helper(
    helper: &'static str,
    pid: i32,
    own: u32,
    ranges: &[IdRange],
) -> Result<(), Error> {
    let args = map_args(own, ranges);
    let out = Command::new(helper)
        .arg(pid.to_string())
        .args(&args)
        .output()
        .map_err(|source| Error::Spawn { helper, source })?;
    if !out.status.success() {
        return Err(Error::Helper {
            helper,
            map: args.join(" "),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The single-id fallback: our uid and gid as 0, written by ourselves (allowed for one's
/// own ids once `setgroups` is denied).
pub(crate) fn write_single(pid: i32, uid: u32, gid: u32) -> Result<(), Error> {
    let write = |file: &str, text: String| {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, text).map_err(|source| Error::Write { path, source })
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:10\nbob:300000:65536\n# x\nalice:1:0\n";
        let r = parse_ranges(text, Some("alice"), 1001);
        assert_eq!(
            r,
            vec![
                IdRange {
                    start: 100000,
                    count: 65536
                },
                IdRange {
                    start: 200000,
                    count: 10
                }
            ]
        );
        assert!(parse_ranges(text, Some("carol"), 7).is_empty());
    }

    #[test]
    fn maps_stack_ranges_after_own_id() {
        let r = [
            IdRange {
                start: 100000,
                count: 65536,
            },
            IdRange { start: 5, count: 2 },
        ];
        assert_eq!(
            map_args(1001, &r).join(" "),
            "0 1001 1 1 100000 65536 65537 5 2"
        );
    }
}
