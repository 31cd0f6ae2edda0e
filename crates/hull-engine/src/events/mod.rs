//! hull's event journal: what `hull events` (and the API's `/events`) report.
//!
//! docker keeps events in its daemon's memory; hull has no daemon, so each root keeps an
//! append-only journal, `ROOT/events.jsonl`: one docker-format event (`Type`, `Action`,
//! `Actor`, `scope`, `time`, `timeNano`, and the legacy `status`/`id`/`from` docker 20.10
//! still emits) per line. Writers are the `hull` commands (create, start, stop, image pull,
//! network create, ...) and each container's shim, which writes the `die` of its container
//! even when no `hull` runs then: the engine names the journal in the annotation
//! [`LOG_ANNOTATION`] of the bundle, and the container's attributes in [`ATTRS_ANNOTATION`].
//!
//! A line is appended with one `write(2)` to a file opened `O_APPEND`, which Linux places at
//! the end atomically, so concurrent writers never interleave. The journal is bounded: once
//! past [`MAX_BYTES`] it is renamed to `events.jsonl.1` (replacing the previous one) under the
//! exclusive flock of `events.jsonl.lock`, which writers hold shared from their open to their
//! write, so that no line goes to a file already rotated (a follower would miss it). A root
//! keeps between one and two generations (some 5000-10000 events; docker's daemon keeps its
//! last 1000).
//!
//! Reading is [`Journal::read`] with a [`Query`]: an iterator of [`Event`]s, following the
//! file for new ones when asked (see [`Events`]).

mod query;
mod read;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use query::{parse_time, Filters, Query};
pub use read::{Events, Next};

/// The journal's file name under the root.
pub const JOURNAL: &str = "events.jsonl";
/// The OCI annotation naming the journal for the container's shim.
pub const LOG_ANNOTATION: &str = "org.hull.events-log";
/// The OCI annotation with the attributes (a JSON object) of the container's events.
pub const ATTRS_ANNOTATION: &str = "org.hull.events-attributes";
/// Size past which the journal is rotated (the shim's `journal::MAX_BYTES` is the same).
pub const MAX_BYTES: u64 = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the event journal {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("cannot append to the event journal {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("invalid filter {0:?}: expected KEY=VALUE")]
    FilterSyntax(String),
    #[error(
        "invalid filter {0:?}: unknown key (container, image, event, type, label, network, volume)"
    )]
    FilterKey(String),
    #[error("invalid filter {0:?}: unknown type (container, image, network, volume)")]
    FilterType(String),
    #[error(
        "invalid {flag} value {value:?}: expected an RFC 3339 time, unix seconds or a duration such as 10m"
    )]
    Time { flag: &'static str, value: String },
    #[error(
        "invalid {flag} value {value:?}: out of range (unix seconds up to 9223372036854775807, durations up to 2562047h)"
    )]
    TimeRange { flag: &'static str, value: String },
}

/// Who an event is about: a container's or image's ID, a network's ID, a volume's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    /// docker's: `name`, `image`, the container's labels, `exitCode`, `signal`, ...
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, as docker's `/events` and `docker events --format '{{json .}}'` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Legacy fields (container and image events), kept because old clients read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `container`, `image`, `network` or `volume`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    #[serde(default)]
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    /// An event of now, with docker 20.10's legacy fields for containers and images.
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let ns = crate::record::now_ns() as i64;
        let legacy = matches!(kind, "container" | "image");
        Event {
            status: legacy.then(|| action.into()),
            id: legacy.then(|| id.into()),
            from: (kind == "container")
                .then(|| attributes.get("image").cloned().unwrap_or_default()),
            kind: kind.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes,
            },
            scope: "local".into(),
            time: ns.div_euclid(1_000_000_000),
            time_nano: ns,
        }
    }
}

/// A root's journal.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn open(root: &Path) -> Journal {
        Journal {
            path: root.join(JOURNAL),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `e` as one line in one `write(2)`, rotating the journal past [`MAX_BYTES`].
    pub fn append(&self, e: &Event) -> Result<(), Error> {
        let mut line = serde_json::to_vec(e).unwrap_or_default();
        line.push(b'\n');
        let err = |e| Error::Write(self.path.clone(), e);
        // Shared from before the open to after the write; the rotation takes it exclusive.
        // So no rename comes between a writer's open and its write: every line of a rotated
        // file is in it when it is renamed, and a follower that sees the rename and reads
        // the old file to its end misses none. Best effort: without it, append as before.
        let lock = lock(&self.path, libc::LOCK_SH);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
            .map_err(err)?;
        #[cfg(test)]
        tests::after_open();
        // A second write for the rest of a short one could land behind another writer's
        // line: a short write (a full disk) is an error instead.
        let n = f.write(&line).map_err(err)?;
        if n != line.len() {
            return Err(err(std::io::ErrorKind::WriteZero.into()));
        }
        if f.metadata().is_ok_and(|m| m.len() > MAX_BYTES) {
            drop(f);
            self.rotate(lock);
        }
        Ok(())
    }

    /// [`Journal::append`] of a new event; best effort, as a failed journal must not fail
    /// the operation it reports (docker's events are lost the same way with a slow reader).
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let _ = self.append(&Event::new(kind, action, id, attributes));
    }

    /// An image event: `id` is the reference (pull, push) or the image's id, `name` the
    /// reference it concerns, as docker's.
    pub fn emit_image(&self, action: &str, id: &str, name: &str) {
        self.emit("image", action, id, attrs([("name", name)]));
    }

    /// The journal's generations, oldest first.
    pub(crate) fn files(&self) -> [PathBuf; 2] {
        [suffixed(&self.path, ".1"), self.path.clone()]
    }

    /// Renames the journal to `.1` under the exclusive lock (`held`: the caller's shared
    /// one, converted; flock drops it first, so two writers converting at once do not
    /// deadlock).
    fn rotate(&self, held: Option<File>) {
        let lock = match held {
            // SAFETY: flock of a descriptor we own; released when `l` is closed.
            Some(l) if unsafe { libc::flock(l.as_raw_fd(), libc::LOCK_EX) } == 0 => l,
            Some(_) => return,
            None => match lock(&self.path, libc::LOCK_EX) {
                Some(l) => l,
                None => return,
            },
        };
        // Again under the lock: another writer may have rotated it meanwhile.
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() > MAX_BYTES) {
            let _ = std::fs::rename(&self.path, suffixed(&self.path, ".1"));
        }
        drop(lock);
    }

    /// The events `q` asks for; see [`Events`].
    pub fn read(&self, q: Query) -> Events {
        Events::new(self, q)
    }
}

/// The flock `op` of the journal's `PATH.lock` (shared by writers, exclusive for the
/// rotation; the shims take the same); `None` when it cannot be had.
fn lock(journal: &Path, op: libc::c_int) -> Option<File> {
    let l = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(suffixed(journal, ".lock"))
        .ok()?;
    // SAFETY: flock of a descriptor we own; released when `l` is closed.
    (unsafe { libc::flock(l.as_raw_fd(), op) } == 0).then_some(l)
}

fn suffixed(p: &Path, s: &str) -> PathBuf {
    let mut o = p.as_os_str().to_owned();
    o.push(s);
    o.into()
}

/// `k=v` pairs as event attributes.
pub fn attrs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A container's attributes in its events: its labels, `image` and `name` (docker's).
pub fn container_attrs(r: &crate::Record) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = r.options.labels.iter().cloned().collect();
    a.insert("image".into(), r.image.clone());
    a.insert("name".into(), r.name.clone());
    a
}

/// Names the journal and the container's attributes in the bundle's annotations, for its
/// shim's `die` (see the module's doc).
pub(crate) fn annotate(config: &mut serde_json::Value, j: &Journal, r: &crate::Record) {
    let attrs = serde_json::to_string(&container_attrs(r)).unwrap_or_default();
    let ann = &mut config["annotations"];
    // Absolute: the shim runs in the bundle, and `--root` may have been given relative.
    let path = std::path::absolute(&j.path).unwrap_or_else(|_| j.path.clone());
    ann[LOG_ANNOTATION] = path.to_string_lossy().into_owned().into();
    ann[ATTRS_ANNOTATION] = attrs.into();
}

/// [`annotate`] of an existing bundle's `config.json` (after a rename), replaced by a
/// rename so that a shim reading it at an exit never sees half of it.
pub(crate) fn reannotate(dir: &Path, j: &Journal, r: &crate::Record) -> std::io::Result<()> {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p)?).map_err(std::io::Error::other)?;
    if v.get("annotations")
        .and_then(|a| a.get(LOG_ANNOTATION))
        .is_none()
    {
        return Ok(());
    }
    annotate(&mut v, j, r);
    let tmp = dir.join("config.json.events-tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v).unwrap_or_default())?;
    std::fs::rename(&tmp, &p)
}

impl crate::Engine {
    /// The root's journal.
    pub fn journal(&self) -> Journal {
        Journal::open(&self.root)
    }

    /// Journals a container event of `r` with `extra` attributes.
    pub fn emit(&self, r: &crate::Record, action: &str, extra: &[(&str, String)]) {
        let mut a = container_attrs(r);
        for (k, v) in extra {
            a.insert((*k).into(), v.clone());
        }
        self.journal().emit("container", action, &r.id, a);
    }
}

#[cfg(test)]
mod tests;
