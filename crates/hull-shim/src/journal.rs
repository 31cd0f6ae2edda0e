//! The shim's side of hull's event journal (`hull events`).
//!
//! hull has no daemon, so events are lines of JSON appended to one file per root (the
//! engine's `hull_engine::events` owns the format and reads it). Most events are written by
//! the `hull` command that caused them; the shim writes those that happen while no `hull`
//! runs: a container's `die` (and restarts and health changes). The engine tells the shim
//! where the journal is, and what to say about the container, through two annotations of the
//! bundle's `config.json`, read again at each event so that a `rename` (which rewrites them)
//! is seen. A bundle without them (containerd's) journals nothing.
//!
//! Each event is one `write(2)` of one whole line to a file opened `O_APPEND`: the kernel
//! places every such write at the end of the file under the inode lock, so lines from the
//! shims and `hull` commands of a root never interleave. The file is bounded the same way
//! the engine bounds it: once it passes [`MAX_BYTES`] the writer takes the flock of
//! `PATH.lock` exclusive and renames it to `PATH.1` (replacing the older generation);
//! writers hold that flock shared from their open to their write, so no line goes to a file
//! already renamed away (where a follower of the journal would miss it).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The journal's path (`org.hull.events-log`).
pub(crate) const LOG_ANNOTATION: &str = "org.hull.events-log";
/// A JSON object of the attributes every event of the container carries (its name, image and
/// labels; `org.hull.events-attributes`).
pub(crate) const ATTRS_ANNOTATION: &str = "org.hull.events-attributes";
/// Size past which the journal is rotated (must match the engine's `events::MAX_BYTES`).
pub(crate) const MAX_BYTES: u64 = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("cannot open the event journal {0}")]
    Open(PathBuf, #[source] std::io::Error),
    #[error("cannot append to the event journal {0}")]
    Write(PathBuf, #[source] std::io::Error),
}

/// Appends `event` to the journal at `path` as one line, in one `write(2)`; rotates the
/// journal when it has grown past [`MAX_BYTES`].
pub(crate) fn append(path: &Path, event: &Value) -> Result<(), Error> {
    let mut line = event.to_string().into_bytes();
    line.push(b'\n');
    // Shared from before the open to after the write, as the engine's writers: a rotation
    // (exclusive) never renames the file between the two, so a follower that sees the
    // rename and reads the old file to its end misses no line. Best effort.
    let lock = lock(path, libc::LOCK_SH);
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::Open(path.into(), e))?;
    // One write: a short write (only on a full disk) is an error rather than a second write
    // that another writer's line could land in front of.
    match f.write(&line) {
        Ok(n) if n == line.len() => {}
        Ok(_) => {
            return Err(Error::Write(
                path.into(),
                std::io::Error::from(std::io::ErrorKind::WriteZero),
            ))
        }
        Err(e) => return Err(Error::Write(path.into(), e)),
    }
    if f.metadata().is_ok_and(|m| m.len() > MAX_BYTES) {
        drop(f);
        rotate(path, lock);
    }
    Ok(())
}

/// The flock `op` of `PATH.lock`; `None` when it cannot be had.
fn lock(path: &Path, op: libc::c_int) -> Option<File> {
    let l = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(with_suffix(path, ".lock"))
        .ok()?;
    // SAFETY: flock on a descriptor we own; released when it is closed.
    (unsafe { libc::flock(l.as_raw_fd(), op) } == 0).then_some(l)
}

/// Renames a journal past [`MAX_BYTES`] to `PATH.1`, under the exclusive flock of
/// `PATH.lock` (`held`: the writer's shared one, converted; flock drops it first, so two
/// writers converting at once do not deadlock), so that two writers passing the bound
/// together rotate once and no writer is between its open and its write. Best effort: a
/// journal that cannot be rotated only grows.
fn rotate(path: &Path, held: Option<File>) {
    let _lock = match held {
        // SAFETY: flock on a descriptor we own; released when it is closed.
        Some(l) if unsafe { libc::flock(l.as_raw_fd(), libc::LOCK_EX) } == 0 => l,
        Some(_) => return,
        None => match lock(path, libc::LOCK_EX) {
            Some(l) => l,
            None => return,
        },
    };
    // Looked at again under the lock: another writer may have rotated it already.
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_BYTES) {
        let _ = std::fs::rename(path, with_suffix(path, ".1"));
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// A docker-format container event (docker 20.10 also fills the legacy `status`, `id` and
/// `from` fields of container events, which old clients still read).
pub(crate) fn container_event(id: &str, action: &str, attributes: Map<String, Value>) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let image = attributes.get("image").cloned().unwrap_or(Value::from(""));
    json!({
        "status": action,
        "id": id,
        "from": image,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": id, "Attributes": attributes},
        "scope": "local",
        "time": now.as_secs(),
        "timeNano": now.as_nanos() as u64,
    })
}

/// Where a bundle's container journals its events, from its `config.json` annotations.
pub(crate) struct Target {
    pub(crate) path: PathBuf,
    pub(crate) attributes: Map<String, Value>,
}

/// The journal target of `bundle`; `None` when its config names none (or cannot be read).
pub(crate) fn target(bundle: &Path) -> Option<Target> {
    let data = std::fs::read(bundle.join("config.json")).ok()?;
    let config: Value = serde_json::from_slice(&data).ok()?;
    let ann = config.get("annotations")?;
    let path = ann.get(LOG_ANNOTATION)?.as_str()?;
    let attributes = ann
        .get(ATTRS_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    Some(Target {
        path: path.into(),
        attributes,
    })
}

impl Target {
    /// Appends a container event of `id` with the container's attributes and `extra`; a
    /// failure is logged, never fatal (the container matters more than its journal).
    pub(crate) fn emit(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        let mut attrs = self.attributes.clone();
        for (k, v) in extra {
            attrs.insert((*k).into(), Value::from(v.as_str()));
        }
        if let Err(e) = append(&self.path, &container_event(id, action, attrs)) {
            log::warn!("{e}");
        }
    }
}

/// The `die` of a container's init, with its exit code (docker's `exitCode` attribute).
pub(crate) fn died(bundle: &Path, id: &str, code: u32) {
    if let Some(t) = target(bundle) {
        t.emit(id, "die", &[("exitCode", code.to_string())]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn die_is_one_line_with_exit_code() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("events.jsonl");
        let attrs = json!({"name": "web", "image": "busybox", "l": "v"}).to_string();
        let cfg = json!({"annotations": {LOG_ANNOTATION: log, ATTRS_ANNOTATION: attrs}});
        std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
        died(d.path(), "abc", 3);
        died(d.path(), "abc", 4);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["Action"], "die");
        assert_eq!(lines[0]["status"], "die");
        assert_eq!(lines[0]["from"], "busybox");
        assert_eq!(lines[0]["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(lines[0]["Actor"]["Attributes"]["name"], "web");
        assert_eq!(lines[1]["Actor"]["Attributes"]["exitCode"], "4");
    }

    #[test]
    fn no_annotation_no_journal() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        assert!(target(d.path()).is_none());
    }

    #[test]
    fn rotates_past_the_bound() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("events.jsonl");
        std::fs::write(&log, vec![b'x'; MAX_BYTES as usize]).unwrap();
        append(&log, &json!({"a": 1})).unwrap();
        assert!(d.path().join("events.jsonl.1").exists());
        append(&log, &json!({"a": 2})).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "{\"a\":2}\n");
    }
}
