//! Container output as the shim writes it: `stdout.log` and `stderr.log`
//! in the container's directory (regular files the shim appends to; the
//! shim copies the container's pipes or terminal into them).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

pub const STDOUT: &str = "stdout.log";
pub const STDERR: &str = "stderr.log";

/// The last `n` lines of `data` (all of it for `None`).
fn tail(data: &[u8], n: Option<usize>) -> &[u8] {
    let Some(n) = n else { return data };
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

fn read_all(path: &Path) -> Result<Vec<u8>, Error> {
    match std::fs::read(path) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::Read {
            path: path.into(),
            source,
        }),
    }
}

/// Reads the logs so far into `out`/`err`; returns the offsets reached
/// (for [`Follower::from`]).
pub fn print(
    dir: &Path,
    lines: Option<usize>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(u64, u64), Error> {
    let o = read_all(&dir.join(STDOUT))?;
    let e = read_all(&dir.join(STDERR))?;
    out.write_all(tail(&o, lines)).map_err(Error::Write)?;
    err.write_all(tail(&e, lines)).map_err(Error::Write)?;
    out.flush().map_err(Error::Write)?;
    Ok((o.len() as u64, e.len() as u64))
}

/// Copies what the shim appends to the logs, as it comes.
pub struct Follower {
    files: Vec<(PathBuf, u64)>,
}

impl Follower {
    pub fn from(dir: &Path, offsets: (u64, u64)) -> Follower {
        Follower {
            files: vec![(dir.join(STDOUT), offsets.0), (dir.join(STDERR), offsets.1)],
        }
    }

    /// Copies new bytes; returns whether there were any.
    pub fn pump(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, Error> {
        let mut any = false;
        for (i, (path, off)) in self.files.iter_mut().enumerate() {
            let mut f = match File::open(&*path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(Error::Read {
                        path: path.clone(),
                        source,
                    })
                }
            };
            let read_err = |source| Error::Read {
                path: path.clone(),
                source,
            };
            f.seek(SeekFrom::Start(*off)).map_err(read_err)?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            if buf.is_empty() {
                continue;
            }
            any = true;
            *off += buf.len() as u64;
            let w: &mut dyn Write = if i == 0 { &mut *out } else { &mut *err };
            w.write_all(&buf).map_err(Error::Write)?;
            w.flush().map_err(Error::Write)?;
        }
        Ok(any)
    }

    /// Copies until `done()` says the writer is finished, then once more.
    pub fn follow(
        &mut self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        done: &dyn Fn() -> bool,
    ) -> Result<(), Error> {
        loop {
            let finished = done();
            let any = self.pump(out, err)?;
            if finished {
                // The shim may still be copying the last bytes out of the pipe.
                std::thread::sleep(Duration::from_millis(20));
                self.pump(out, err)?;
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
    use super::tail;

    #[test]
    fn tails() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\n", Some(5)), b"a\n");
        assert_eq!(tail(b"a\n", Some(0)), b"");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
    }
}
