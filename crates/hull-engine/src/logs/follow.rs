//! `logs -f`: following the log the shim appends to, across its rotations.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{inode, numbered, wait, Error, Exited, Sink, Watch, LOG};

/// Copies what the shim appends to the log, as it comes, across rotations.
///
/// It keeps the file it reads open: a rotation renames that file away (the shim then writes
/// to a new one at the path), and the open file is read to its end, then the one rotated
/// after it, and so on up to the current one, each found by its inode. Nothing is read twice,
/// and a file rotated out of `max-file` (unlinked) while it was being read is still read to
/// its end through the open descriptor. `max-file=1` empties the file in place (docker's
/// truncation): that is seen by a shorter file or a new first line, and reading starts over
/// at 0; what was written before the truncation and not yet read is gone, as with docker.
pub struct Follower {
    path: PathBuf,
    /// The file being read and its inode; `None` until the log exists.
    file: Option<(File, u64)>,
    offset: u64,
    /// The file's first line as first read: another one means it was emptied and refilled.
    head: Vec<u8>,
}

/// Longest first line kept to recognise a truncation (the shim's lines are ≤ 16 KiB of
/// output, escaped).
const MAX_HEAD: usize = 128 * 1024;

fn open_ino(p: &Path) -> Result<Option<(File, u64)>, Error> {
    use std::os::unix::fs::MetadataExt as _;
    let err = |source| Error::Read {
        path: p.into(),
        source,
    };
    match File::open(p) {
        Ok(f) => {
            let ino = f.metadata().map_err(err)?.ino();
            Ok(Some((f, ino)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// The whole lines of `f` from `offset` on (through pread: the descriptor's position is
/// not used).
fn read_lines_at(f: &File, path: &Path, offset: u64) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match f.read_at(&mut chunk, offset + buf.len() as u64) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(Error::Read {
                    path: path.into(),
                    source,
                })
            }
        }
    }
    // Only whole lines: the shim may be in the middle of one.
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(end);
    Ok(buf)
}

/// The first line of `f` if it ends within `offset` and [`MAX_HEAD`]; empty otherwise (as
/// when unreadable: the follower then learns no head). Reads only that much, not the log.
fn first_line(f: &File, offset: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt as _;
    let want = usize::try_from(offset).map_or(MAX_HEAD, |o| o.min(MAX_HEAD));
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Vec::new(),
        }
    }
    let end = buf[..got]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    buf.truncate(end);
    buf
}

impl Follower {
    /// From `offset` of the current log.
    pub fn from(dir: &Path, offset: u64) -> Follower {
        let path = dir.join(LOG);
        let file = open_ino(&path).ok().flatten();
        // The first line, if it was read (`offset` is past it): a truncation is known by it.
        let head = match &file {
            Some((f, _)) if offset > 0 => first_line(f, offset),
            _ => Vec::new(),
        };
        Follower {
            file,
            path,
            offset,
            head,
        }
    }

    /// Copies new entries; returns whether there were any.
    pub fn pump(&mut self, sink: &mut Sink<'_>) -> Result<bool, Error> {
        let mut data = Vec::new();
        loop {
            if self.file.is_none() {
                self.file = open_ino(&self.path)?;
                (self.offset, self.head) = (0, Vec::new());
            }
            let Some((f, ino)) = &self.file else { break };
            let ino = *ino;
            if self.truncated(f)? {
                (self.offset, self.head) = (0, Vec::new());
            }
            data.extend(self.read_on()?);
            if inode(&self.path) == Some(ino) {
                break;
            }
            // Rotated: the shim renamed our file away before it began the new one, so all
            // its writes to ours came before that rename. One more read gets any that landed
            // after the one above; then ours is complete.
            data.extend(self.read_on()?);
            self.file = self.next_after(ino)?;
            (self.offset, self.head) = (0, Vec::new());
        }
        if data.is_empty() {
            return Ok(false);
        }
        for l in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            sink.write(l)?;
        }
        sink.flush()?;
        Ok(true)
    }

    /// The held file's whole lines from the offset on; moves the offset past them.
    fn read_on(&mut self) -> Result<Vec<u8>, Error> {
        let Some((f, _)) = &self.file else {
            return Ok(Vec::new());
        };
        let new = read_lines_at(f, &self.path, self.offset)?;
        self.offset += new.len() as u64;
        if self.head.is_empty() && self.offset > 0 {
            let end = new.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
            // From the start of the file only: a read from the middle learns no head.
            if self.offset == new.len() as u64 && end <= MAX_HEAD {
                self.head = new[..end].to_vec();
            }
        }
        Ok(new)
    }

    /// Whether `f` was emptied in place since it was read (`max-file=1`).
    fn truncated(&self, f: &File) -> Result<bool, Error> {
        use std::os::unix::fs::FileExt as _;
        let err = |source| Error::Read {
            path: self.path.clone(),
            source,
        };
        let len = f.metadata().map_err(err)?.len();
        if len < self.offset {
            return Ok(true);
        }
        if self.head.is_empty() {
            return Ok(false);
        }
        let mut first = vec![0u8; self.head.len()];
        let n = f.read_at(&mut first, 0).map_err(err)?;
        Ok(first[..n] != self.head[..])
    }

    /// The file rotated after the one with inode `ino`: `container.log.(K-1)` when ours is
    /// `.K` now, the current log when ours is `.1`, and the oldest one left when ours was
    /// rotated out (then any between are lost, as with docker).
    fn next_after(&self, ino: u64) -> Result<Option<(File, u64)>, Error> {
        let mut rotated = Vec::new();
        for n in 1.. {
            match open_ino(&numbered(&self.path, n))? {
                Some(f) => rotated.push(f),
                None => break,
            }
        }
        let at = rotated.iter().position(|(_, i)| *i == ino);
        let next = match at {
            Some(0) => None,
            Some(k) => Some(k - 1),
            None => rotated.len().checked_sub(1),
        };
        match next {
            Some(k) => Ok(Some(rotated.swap_remove(k))),
            None => open_ino(&self.path),
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

    fn entry(s: &str) -> String {
        format!("{{\"log\":\"{s}\\n\",\"stream\":\"stdout\",\"time\":\"T\"}}\n")
    }

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .unwrap()
            .write_all(entry(s).as_bytes())
            .unwrap();
    }

    fn pumped(f: &mut Follower) -> String {
        let mut out = Vec::new();
        f.pump(&mut Sink {
            out: &mut out,
            err: &mut Vec::new(),
            timestamps: false,
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn follows_a_file_rotated_out_while_read() {
        // max-file=2 rotating twice between two looks: the file being read is unlinked (the
        // second rename replaces it), its rest and the next file are still read.
        let d = tempfile::tempdir().unwrap();
        let (log, log1) = (d.path().join(LOG), d.path().join("container.log.1"));
        append(&log, "a");
        let mut f = Follower::from(d.path(), 0);
        assert_eq!(pumped(&mut f), "a\n");
        append(&log, "b");
        std::fs::rename(&log, &log1).unwrap();
        append(&log, "c");
        std::fs::rename(&log, &log1).unwrap();
        append(&log, "d");
        assert_eq!(pumped(&mut f), "b\nc\nd\n");
        append(&log, "e");
        assert_eq!(pumped(&mut f), "e\n");
    }

    #[test]
    fn follows_a_truncation_in_place() {
        // max-file=1 (docker's): the file is emptied in place and refilled past where the
        // follower was before it looks again.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG);
        append(&log, "a");
        append(&log, "b");
        let mut f = Follower::from(d.path(), 0);
        assert_eq!(pumped(&mut f), "a\nb\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        for s in ["c", "d", "e"] {
            append(&log, s);
        }
        assert_eq!(pumped(&mut f), "c\nd\ne\n");
        // Also for a follower that began mid-file (after `logs` printed the start).
        let mut g = Follower::from(d.path(), entry("c").len() as u64);
        assert_eq!(pumped(&mut g), "d\ne\n");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        for s in ["x", "y", "z"] {
            append(&log, s);
        }
        assert_eq!(pumped(&mut g), "x\ny\nz\n");
    }

    /// Bytes this thread has read through syscalls (`rchar` of /proc/thread-self/io).
    fn rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn starting_mid_file_reads_only_the_first_line() {
        // `logs -f` after printing a big log starts at its end: learning the head must not
        // read the whole (up to max-size, or unbounded) file again.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(LOG);
        append(&log, "first");
        let line = entry(&"x".repeat(1000));
        let mut big = String::new();
        for _ in 0..16 * 1024 {
            big.push_str(&line);
        }
        let mut w = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        w.write_all(big.as_bytes()).unwrap();
        drop(w);
        let len = std::fs::metadata(&log).unwrap().len();
        let before = rchar();
        let mut f = Follower::from(d.path(), len);
        let read = rchar() - before;
        assert!(
            read <= MAX_HEAD as u64 + 4096,
            "read {read} bytes of a {len}-byte log"
        );
        assert_eq!(f.head, entry("first").as_bytes());
        append(&log, "next");
        assert_eq!(pumped(&mut f), "next\n");
        // A first line longer than the offset was never read: no head.
        assert!(Follower::from(d.path(), 10).head.is_empty());
    }
}
