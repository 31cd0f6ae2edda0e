//! Container output as the shim writes it: docker json-file lines
//! (`{"log","stream","time"}`) appended to `container.log` in the
//! container's directory, by the shim itself (`jsonfile://` output paths),
//! so output is kept whether or not anyone is attached.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read log {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write output")]
    Write(#[source] std::io::Error),
    #[error("cannot create an eventfd")]
    Wake(#[source] std::io::Error),
}

pub const LOG: &str = "container.log";

/// The output path to give the shim for both streams.
pub fn shim_path(dir: &Path) -> String {
    format!("jsonfile://{}", dir.join(LOG).display())
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// Where entries go: stdout/stderr, with the time in front or not.
pub struct Sink<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub timestamps: bool,
}

impl Sink<'_> {
    fn write(&mut self, line: &[u8]) -> Result<(), Error> {
        // A line that is not JSON (torn by a crash) is skipped, not fatal.
        let Ok(e) = serde_json::from_slice::<Entry>(line) else {
            return Ok(());
        };
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut *self.err
        } else {
            &mut *self.out
        };
        if self.timestamps {
            write!(w, "{} ", e.time).map_err(Error::Write)?;
        }
        w.write_all(e.log.as_bytes()).map_err(Error::Write)
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(Error::Write)?;
        self.err.flush().map_err(Error::Write)
    }
}

fn read_from(path: &Path, offset: u64) -> Result<Vec<u8>, Error> {
    let err = |source| Error::Read {
        path: path.into(),
        source,
    };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    f.seek(SeekFrom::Start(offset)).map_err(err)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    // Only whole lines: the shim may be in the middle of one.
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(end);
    Ok(buf)
}

/// Writes the last `lines` entries (all for `None`); returns the offset
/// reached, for [`Follower::from`].
pub fn print(dir: &Path, lines: Option<usize>, sink: &mut Sink<'_>) -> Result<u64, Error> {
    let data = read_from(&dir.join(LOG), 0)?;
    let all: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let skip = lines.map_or(0, |n| all.len().saturating_sub(n));
    for l in &all[skip..] {
        sink.write(l)?;
    }
    sink.flush()?;
    Ok(data.len() as u64)
}

/// Set once the container is known to have exited (the shim's Wait
/// answered); wakes a [`Follower`] blocked waiting for output. Clones share it.
#[derive(Clone)]
pub struct Exited(Arc<ExitedInner>);

struct ExitedInner {
    set: AtomicBool,
    /// An eventfd, readable once set: polled together with the log's inotify.
    fd: OwnedFd,
}

impl Exited {
    pub fn new() -> Result<Exited, Error> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::Wake(std::io::Error::last_os_error()));
        }
        Ok(Exited(Arc::new(ExitedInner {
            set: AtomicBool::new(false),
            // SAFETY: eventfd returned a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })))
    }

    pub fn set(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own.
        unsafe { libc::write(self.0.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }
}

/// An inotify watch on the log (or its directory while the log does not
/// exist yet): readable when the shim appends.
struct Watch {
    fd: Option<OwnedFd>,
    wd: i32,
}

/// Inotify descriptors whose watch is gone, left for the process exit to close.
///
/// Closing an inotify descriptor waits for its marks to be destroyed, an SRCU
/// grace period: 13–16 ms measured here, a third of a whole `run --rm true`.
/// Removing the watch only queues that destruction, so the watch is removed
/// as soon as following ends and the descriptor is closed by `exit`, by which
/// time the removal has long completed.
///
/// At most [`LINGER_MAX`] are kept: a long-lived library user follows again and
/// again, and unbounded it would run out of inotify instances (128 per user by
/// default, `fs.inotify.max_user_instances`) and descriptors. Beyond that the
/// oldest is closed, the one whose removal was queued longest ago and so most
/// likely done: its close is cheap. A one-shot CLI never gets there.
static LINGER: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// How many descriptors [`LINGER`] keeps.
const LINGER_MAX: usize = 4;

impl Watch {
    /// `None` when inotify is unavailable (out of watches): then the
    /// follower falls back to looking every [`POLL_FALLBACK`].
    fn new(log: &Path) -> Option<Watch> {
        // SAFETY: plain syscall, no pointers.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: inotify_init1 returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (target, mask) = if log.exists() {
            (log, libc::IN_MODIFY)
        } else {
            (log.parent()?, libc::IN_MODIFY | libc::IN_CREATE)
        };
        let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: c is a valid NUL-terminated path for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            // No mark was made: closing is cheap.
            return None;
        }
        Some(Watch { fd: Some(fd), wd })
    }

    fn raw(&self) -> i32 {
        self.fd.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Discards the queued events (the follower reads the file anyway).
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a valid buffer of its length; the fd is non-blocking.
        while unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        // SAFETY: removes our own watch from our own inotify descriptor.
        unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), self.wd) };
        let old = {
            let mut linger = LINGER.lock().unwrap_or_else(|p| p.into_inner());
            linger.push(fd);
            let over = linger.len().saturating_sub(LINGER_MAX);
            linger.drain(..over).collect::<Vec<_>>()
        };
        // Closed here, outside the lock: a close that does wait for a grace period
        // holds up no other follower's drop.
        drop(old);
    }
}

/// How often the log is looked at when inotify is unavailable.
const POLL_FALLBACK: Duration = Duration::from_millis(25);

/// Copies what the shim appends to the log, as it comes.
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    pub fn from(dir: &Path, offset: u64) -> Follower {
        Follower {
            path: dir.join(LOG),
            offset,
        }
    }

    /// Copies new entries; returns whether there were any.
    pub fn pump(&mut self, sink: &mut Sink<'_>) -> Result<bool, Error> {
        let data = read_from(&self.path, self.offset)?;
        if data.is_empty() {
            return Ok(false);
        }
        self.offset += data.len() as u64;
        for l in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            sink.write(l)?;
        }
        sink.flush()?;
        Ok(true)
    }

    /// Copies until `exited` is set, then what is left (the shim finishes
    /// copying before it reports the exit). Sleeps in poll(2) on the log's
    /// inotify watch and `exited`, so output and the exit are seen at once.
    pub fn follow(&mut self, sink: &mut Sink<'_>, exited: &Exited) -> Result<(), Error> {
        // Watching before the first read: nothing appended after it is missed.
        let watch = Watch::new(&self.path);
        loop {
            let finished = exited.is_set();
            let any = self.pump(sink)?;
            if finished {
                return Ok(());
            }
            if !any {
                wait(watch.as_ref(), exited);
            }
        }
    }
}

/// Blocks until the log changes or the container exited (or, without inotify,
/// for [`POLL_FALLBACK`]).
fn wait(watch: Option<&Watch>, exited: &Exited) {
    let ev = |fd: i32| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = vec![ev(exited.0.fd.as_raw_fd())];
    if let Some(w) = watch {
        fds.push(ev(w.raw()));
    }
    let timeout = if watch.is_some() {
        -1
    } else {
        POLL_FALLBACK.as_millis() as i32
    };
    // SAFETY: fds is a valid slice of pollfd for its whole length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if let Some(w) = watch {
        w.drain();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lingering_inotify_descriptors_are_bounded() {
        // A library user follows many times: more than the default 128 inotify instances
        // per user, were every descriptor kept.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG);
        std::fs::write(&log, b"").unwrap();
        for _ in 0..(3 * LINGER_MAX + 1) {
            drop(Watch::new(&log));
            let kept = LINGER.lock().unwrap_or_else(|p| p.into_inner()).len();
            assert!(kept <= LINGER_MAX, "{kept} inotify descriptors kept");
        }
    }

    #[test]
    fn tail_streams_and_timestamps() {
        let d = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"log":"a\n","stream":"stdout","time":"T1"}"#,
            r#"{"log":"b\n","stream":"stderr","time":"T2"}"#,
            r#"{"log":"c\n","stream":"stdout","time":"T3"}"#,
            r#"{"log":"partial"#,
        ];
        std::fs::write(d.path().join(LOG), lines.join("\n")).unwrap();
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let off = print(
            d.path(),
            Some(2),
            &mut Sink {
                out: &mut o,
                err: &mut e,
                timestamps: true,
            },
        )
        .unwrap();
        assert_eq!(
            (o.as_slice(), e.as_slice()),
            (&b"T3 c\n"[..], &b"T2 b\n"[..])
        );
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let mut f = Follower::from(d.path(), off);
        assert!(!f
            .pump(&mut Sink {
                out: &mut o,
                err: &mut e,
                timestamps: false
            })
            .unwrap());
    }
}
