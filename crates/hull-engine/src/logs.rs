//! Container output as the shim writes it: docker json-file lines
//! (`{"log","stream","time"}`) appended to `container.log` in the
//! container's directory, by the shim itself (`jsonfile://` output paths),
//! so output is kept whether or not anyone is attached.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
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

    /// Copies until `done()` says the container exited, then what is left
    /// (the shim finishes copying before it reports the exit).
    pub fn follow(&mut self, sink: &mut Sink<'_>, done: &dyn Fn() -> bool) -> Result<(), Error> {
        loop {
            let finished = done();
            let any = self.pump(sink)?;
            if finished {
                self.pump(sink)?;
                return Ok(());
            }
            if !any {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
