//! docker's json-file log as the shim writes it (`jsonfile://PATH[?max-size=N&max-file=M]`
//! output paths): one `{"log","stream","time"}` line per line of output, and with
//! `max-size` docker's rotation: before a line is written to a file that has reached
//! `max-size` bytes, `PATH.(M-2)` → `PATH.(M-1)`, ..., `PATH` → `PATH.1` and a new `PATH`
//! is begun (with `max-file=1`, the default, `PATH` is emptied instead). A file thus ends
//! at most one line (≤ 16 KiB) past `max-size`, as docker's do.
//!
//! stdout and stderr of a process share one [`JsonLog`] (behind a mutex): the rotation
//! must not be done twice, and each line stays one `write(2)` to an `O_APPEND` file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Longest partial line kept before it is written out (docker's 16 KiB).
const MAX_LINE: usize = 16 * 1024;

/// A `jsonfile://` target: the path and its rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    /// Bytes; `None`: never rotated.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (≥ 1).
    pub max_file: u32,
}

impl Target {
    /// `PATH[?max-size=BYTES&max-file=N]` (what follows `jsonfile://`). Options the shim
    /// does not know, or bad values, are ignored: the engine checked them.
    pub fn parse(s: &str) -> Target {
        let (path, query) = s.split_once('?').unwrap_or((s, ""));
        let mut t = Target {
            path: path.into(),
            max_size: None,
            max_file: 1,
        };
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("max-size", v)) => t.max_size = v.parse().ok().filter(|n| *n > 0),
                Some(("max-file", v)) => {
                    t.max_file = v.parse().ok().filter(|n| *n > 0).unwrap_or(1)
                }
                _ => {}
            }
        }
        t
    }
}

/// The open log of one process.
pub struct JsonLog {
    target: Target,
    file: File,
    size: u64,
}

fn open(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(p)
}

fn numbered(p: &Path, n: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{n}"));
    s.into()
}

impl JsonLog {
    pub fn open(target: Target) -> std::io::Result<Arc<Mutex<JsonLog>>> {
        let file = open(&target.path)?;
        let size = file.metadata()?.len();
        Ok(Arc::new(Mutex::new(JsonLog { target, file, size })))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let p = &self.target.path;
        if self.target.max_file <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        // The oldest is overwritten by the rename below it.
        for n in (1..self.target.max_file - 1).rev() {
            let from = numbered(p, n);
            if from.exists() {
                std::fs::rename(&from, numbered(p, n + 1))?;
            }
        }
        std::fs::rename(p, numbered(p, 1))?;
        self.file = open(p)?;
        self.size = 0;
        Ok(())
    }

    /// Appends one entry of `stream`, rotating first when the file is full.
    pub fn line(&mut self, line: &[u8], stream: &str) -> std::io::Result<()> {
        let v = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": stream,
            "time": rfc3339(std::time::SystemTime::now()),
        });
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        if self.target.max_size.is_some_and(|m| self.size >= m) {
            self.rotate()?;
        }
        // One write per line: a reader never sees stdout's and stderr's lines interleaved
        // inside a line.
        self.file.write_all(&out)?;
        self.size += out.len() as u64;
        Ok(())
    }
}

/// RFC 3339 UTC with nanoseconds, as docker's json-file `time` and health log entries.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    // Days → civil date (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        t / 3600,
        t / 60 % 60,
        t % 60,
        d.subsec_nanos()
    )
}

/// Lines that could not be written (a full disk, EIO), reported once per run of failures.
#[derive(Default)]
struct Dropped {
    lines: u64,
    failing: bool,
}

impl Dropped {
    fn note(&mut self, res: std::io::Result<()>, path: &Path, stream: &str) {
        match res {
            Ok(()) if self.failing => {
                self.failing = false;
                log::warn!("{stream} log {} written again", path.display());
            }
            Ok(()) => {}
            Err(e) => {
                self.lines += 1;
                if !self.failing {
                    self.failing = true;
                    log::warn!(
                        "cannot write the {stream} log {}: {e}; its lines are dropped until it can",
                        path.display()
                    );
                }
            }
        }
    }
}

/// Copies `from` into `to` as json-file lines of `stream`, until EOF; returns how many
/// lines could not be written.
///
/// A failed write drops that line and the copy goes on: stopping would leave the pipe
/// undrained, and the container blocked in its next write once the pipe is full.
pub fn copy(mut from: File, to: &Mutex<JsonLog>, stream: &'static str) -> u64 {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut dropped = Dropped::default();
    let mut write = |line: &[u8]| {
        let mut log = to.lock().unwrap_or_else(|p| p.into_inner());
        let res = log.line(line, stream);
        dropped.note(res, &log.target.path, stream);
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            write(&line);
        }
        if pending.len() >= MAX_LINE {
            write(&pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        write(&pending);
    }
    if dropped.lines > 0 {
        log::warn!("{} {stream} lines not logged", dropped.lines);
    }
    dropped.lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("/a/b.log?max-size=10240&max-file=3"),
            Target {
                path: "/a/b.log".into(),
                max_size: Some(10240),
                max_file: 3
            }
        );
        assert_eq!(Target::parse("/a/b.log").max_size, None);
        assert_eq!(Target::parse("/a/b.log").max_file, 1);
    }

    #[test]
    fn a_failing_log_still_drains_the_pipe() {
        // /dev/full: every write fails with ENOSPC, as on a full disk.
        let log = JsonLog::open(Target::parse("/dev/full")).unwrap();
        let (rd, mut wr) = std::io::pipe().unwrap();
        // Far more than a pipe holds (64 KiB): the writer finishes only if the copy reads on.
        let writer = std::thread::spawn(move || {
            for i in 0..20_000 {
                writeln!(wr, "line {i:05}")?;
            }
            Ok::<(), std::io::Error>(())
        });
        let rd = File::from(std::os::fd::OwnedFd::from(rd));
        assert_eq!(copy(rd, &log, "stdout"), 20_000);
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn rotates_like_docker() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let log = JsonLog::open(Target::parse(&format!(
            "{}?max-size=1000&max-file=3",
            p.display()
        )))
        .unwrap();
        for i in 0..200 {
            log.lock()
                .unwrap()
                .line(format!("line {i:04}\n").as_bytes(), "stdout")
                .unwrap();
        }
        let files: Vec<PathBuf> = [numbered(&p, 2), numbered(&p, 1), p.clone()].into();
        let mut all = String::new();
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len < 1000 + 100, "{f:?}: {len}");
            all.push_str(&std::fs::read_to_string(f).unwrap());
        }
        assert!(!numbered(&p, 3).exists());
        // In order, and ending with the last line.
        let nums: Vec<u32> = all.lines().map(|l| l[13..17].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(nums.last(), Some(&199));
    }
}
