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
    #[error("invalid --log-opt {opt:?}: {why}")]
    Opt { opt: String, why: &'static str },
}

pub const LOG: &str = "container.log";

mod follow;
pub use follow::Follower;

/// The output path to give the shim for both streams, with the rotation of `--log-opt`
/// (`max_size` bytes, `max_file` files) in its query (the shim's `jsonlog::Target`).
pub fn shim_path(dir: &Path, max_size: Option<u64>, max_file: Option<u32>) -> String {
    let mut p = format!("jsonfile://{}", dir.join(LOG).display());
    if let Some(m) = max_size {
        p.push_str(&format!("?max-size={m}&max-file={}", max_file.unwrap_or(1)));
    }
    p
}

/// docker's json-file `--log-opt`s: `max-size` (bytes, or with a k/m/g unit of 1024s;
/// -1 for none) and `max-file` (≥ 1, and more than 1 only with a `max-size`).
pub fn parse_opts(opts: &[String]) -> Result<(Option<u64>, Option<u32>), Error> {
    let (mut size, mut files) = (None, None);
    for o in opts {
        let bad = |why| Error::Opt {
            opt: o.clone(),
            why,
        };
        match o.split_once('=') {
            Some(("max-size", v)) => {
                size =
                    match v.trim() {
                        "-1" => None,
                        v => Some(parse_size(v).ok_or_else(|| {
                            bad("expected a positive size such as 10k, 10m or 1g")
                        })?),
                    }
            }
            Some(("max-file", v)) => {
                let n: u32 = v
                    .trim()
                    .parse()
                    .map_err(|_| bad("expected a number of files"))?;
                if n == 0 {
                    return Err(bad("must be at least 1"));
                }
                files = Some(n);
            }
            Some(_) => {
                return Err(bad(
                    "unknown option of the json-file log driver (max-size, max-file)",
                ))
            }
            None => return Err(bad("expected KEY=VALUE")),
        }
    }
    if files.is_some_and(|n| n > 1) && size.is_none() {
        return Err(Error::Opt {
            opt: opts.join(","),
            why: "max-file can only be set with max-size",
        });
    }
    Ok((size, files))
}

/// `10`, `10k`, `1.5m`, `1g`, `10kb`, `10KiB` (docker's units.RAMInBytes).
fn parse_size(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    let bytes = (n * mult as f64) as u64;
    (n.is_finite() && bytes > 0).then_some(bytes)
}

/// The rotated logs (`container.log.N`, oldest first), then the current one.
fn generations(dir: &Path) -> Vec<PathBuf> {
    let log = dir.join(LOG);
    let mut out: Vec<PathBuf> = (1..)
        .map(|n| numbered(&log, n))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    out.push(log);
    out
}

fn numbered(p: &Path, n: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(p).ok().map(|m| m.ino())
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
    match File::open(path) {
        Ok(f) => read_file(f, path, offset),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(e)),
    }
}

/// The whole lines of `f` (at `path`) from `offset` on.
fn read_file(mut f: File, path: &Path, offset: u64) -> Result<Vec<u8>, Error> {
    let err = |source| Error::Read {
        path: path.into(),
        source,
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
    let mut data = Vec::new();
    let mut current = 0;
    for p in generations(dir) {
        let d = read_from(&p, 0)?;
        current = d.len();
        data.extend_from_slice(&d);
    }
    let all: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let skip = lines.map_or(0, |n| all.len().saturating_sub(n));
    for l in &all[skip..] {
        sink.write(l)?;
    }
    sink.flush()?;
    Ok(current as u64)
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
/// oldest is closed, on a thread of its own: in a long-lived process that follows
/// one container after another (the API service) some watch was always removed
/// lately, so the close waits a grace period however old the descriptor is (measured:
/// 13 ms between an API attach's exit and its end). A one-shot CLI never gets there.
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
        // The directory, not the file: a rotation renames the file away and the shim goes
        // on in a new one, whose writes the directory's watch still reports.
        let (target, mask) = (
            log.parent()?,
            libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO,
        );
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
        // Closed on a thread of its own: the close waits for fsnotify's mark reaper, which
        // waits an SRCU grace period whenever any watch was removed lately (13-16 ms here,
        // every time in a service that follows one container after another). The follower
        // that drops the watch, and whoever waits for it (an API attach that ends, then an
        // `AutoRemove`), has no need to wait for that.
        // Without a thread to be had, spawn drops the closure, and the descriptors, here.
        if !old.is_empty() {
            let _ = std::thread::Builder::new()
                .name("inotify-close".into())
                .spawn(move || drop(old));
        }
    }
}

/// How often the log is looked at when inotify is unavailable.
const POLL_FALLBACK: Duration = Duration::from_millis(25);

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
    fn dropping_a_watch_waits_for_no_grace_period() {
        // Past LINGER_MAX each drop closes an old descriptor, and the close waits for
        // fsnotify's reaper (an SRCU grace period, 13-16 ms here) since the drop before it
        // had just removed a watch. A follower's end must not wait for that.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG);
        std::fs::write(&log, b"").unwrap();
        let mut took: Vec<std::time::Duration> = (0..(LINGER_MAX + 9))
            .map(|_| {
                let w = Watch::new(&log).unwrap();
                let t = std::time::Instant::now();
                drop(w);
                t.elapsed()
            })
            .skip(LINGER_MAX)
            .collect();
        took.sort();
        let median = took[took.len() / 2];
        assert!(
            median < std::time::Duration::from_millis(4),
            "a watch's drop took {median:?} (median; all: {took:?})"
        );
    }

    #[test]
    fn log_opts_like_docker() {
        let o = |v: &[&str]| parse_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            o(&["max-size=10k", "max-file=3"]).unwrap(),
            (Some(10240), Some(3))
        );
        assert_eq!(o(&["max-size=1.5m"]).unwrap(), (Some(3 << 19), None));
        assert_eq!(o(&["max-size=7"]).unwrap(), (Some(7), None));
        assert_eq!(o(&["max-size=2KiB"]).unwrap(), (Some(2048), None));
        assert_eq!(o(&["max-size=-1"]).unwrap(), (None, None));
        for bad in [
            &["max-size=abc"][..],
            &["max-file=0"],
            &["colour=red"],
            &["max-file=2"],
            &["max-size"],
        ] {
            let e = o(bad).unwrap_err().to_string();
            assert!(e.contains("--log-opt"), "{e}");
        }
    }

    #[test]
    fn follows_and_prints_across_rotations() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG);
        let line =
            |s: &str| format!("{{\"log\":\"{s}\\n\",\"stream\":\"stdout\",\"time\":\"T\"}}\n");
        std::fs::write(&log, line("a")).unwrap();
        let mut f = Follower::from(d.path(), 0);
        let mut out = Vec::new();
        let pump = |f: &mut Follower, out: &mut Vec<u8>| {
            f.pump(&mut Sink {
                out,
                err: &mut Vec::new(),
                timestamps: false,
            })
            .unwrap()
        };
        assert!(pump(&mut f, &mut out));
        // The shim writes `b`, rotates, then writes `c` to a new file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(line("b").as_bytes())
            .unwrap();
        std::fs::rename(&log, d.path().join("container.log.1")).unwrap();
        std::fs::write(&log, line("c")).unwrap();
        assert!(pump(&mut f, &mut out));
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nc\n");
        std::fs::rename(
            d.path().join("container.log.1"),
            d.path().join("container.log.2"),
        )
        .unwrap();
        std::fs::write(d.path().join("container.log.1"), line("x")).unwrap();
        let mut o = Vec::new();
        print(
            d.path(),
            Some(3),
            &mut Sink {
                out: &mut o,
                err: &mut Vec::new(),
                timestamps: false,
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8(o).unwrap(), "b\nx\nc\n");
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
