//! Reading the journal: its past events, then (following) those appended later.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Error, Event, Journal, Query};

/// How often a follower looks for new lines: new events show within this.
const POLL: Duration = Duration::from_millis(200);

/// What [`Events::poll`] found.
#[derive(Debug)]
pub enum Next {
    Event(Box<Event>),
    /// Nothing new within the wait; the stream goes on.
    Idle,
    /// The stream is over: past `until`.
    End,
}

/// The events of a [`Query`], oldest first.
///
/// Past events come first (when the query has `since` or `until`), then, while `until` is
/// not past, those appended later: the reader keeps the journal open and polls it every
/// 200 ms, and on a rotation (the path names a new file) reads the old file to its end
/// before going on with the new one, so nothing appended meanwhile is lost.
///
/// As an [`Iterator`] it blocks until the next event and ends after `until` (never without
/// it). [`Events::poll`] waits at most a given time instead, which a server streaming to a
/// client uses to notice the client has gone between events:
///
/// ```no_run
/// use hull_engine::events::{Filters, Journal, Next, Query};
/// # fn main() -> Result<(), hull_engine::events::Error> {
/// let q = Query { since: None, until: None, filters: Filters::parse(&["type=container"])? };
/// let mut events = Journal::open("/var/lib/hull".as_ref()).read(q);
/// loop {
///     match events.poll(std::time::Duration::from_secs(1))? {
///         Next::Event(e) => println!("{}", serde_json::to_string(&e).unwrap_or_default()),
///         Next::Idle => { /* still connected? */ }
///         Next::End => break,
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Events {
    query: Query,
    path: PathBuf,
    /// Past events not yet handed out.
    backlog: VecDeque<Event>,
    /// The journal file being followed, its inode and the part of a line read so far.
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    started: bool,
}

impl Events {
    pub(crate) fn new(j: &Journal, query: Query) -> Events {
        Events {
            query,
            path: j.path.clone(),
            backlog: VecDeque::new(),
            file: None,
            partial: Vec::new(),
            started: false,
        }
    }

    /// The next event, waiting for one up to `wait` when the past ones are all out.
    pub fn poll(&mut self, wait: Duration) -> Result<Next, Error> {
        if !self.started {
            self.start()?;
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Some(e) = self.backlog.pop_front() {
                // Writers' clocks are read before their appends, so lines are only nearly in
                // time order: one past `until` is skipped, not taken as the end.
                if self.query.matches(&e) {
                    return Ok(Next::Event(Box::new(e)));
                }
                continue;
            }
            if self
                .query
                .until
                .is_some_and(|u| crate::record::now_ns() > u)
            {
                return Ok(Next::End);
            }
            self.read_new()?;
            if !self.backlog.is_empty() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Next::Idle);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }

    /// Loads the past events the query wants, and opens the journal where following starts.
    fn start(&mut self) -> Result<(), Error> {
        self.started = true;
        let past = self.query.since.is_some() || self.query.until.is_some();
        let [old, _] = Journal {
            path: self.path.clone(),
        }
        .files();
        if past {
            if let Some((mut f, _)) = open(&old)? {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)
                    .map_err(|e| Error::Read(old.clone(), e))?;
                self.push_lines(&buf);
                self.partial.clear();
            }
        }
        self.file = open(&self.path)?;
        if let Some((f, _)) = self.file.as_mut() {
            if !past {
                f.seek(SeekFrom::End(0))
                    .map_err(|e| Error::Read(self.path.clone(), e))?;
            }
        }
        self.read_new()
    }

    /// Reads what was appended since the last look, across a rotation.
    ///
    /// The path is looked at before the read: when it names a new file, the rename came
    /// before this read, and every line of the old file before the rename (writers hold
    /// the journal's lock shared from their open to their write, the rotation holds it
    /// exclusive), so the old file read to its end now is complete and is left for good.
    fn read_new(&mut self) -> Result<(), Error> {
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if let Some((f, ino)) = self.file.as_mut() {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)
                .map_err(|e| Error::Read(self.path.clone(), e))?;
            let rotated = current != Some(*ino);
            self.push_lines(&buf);
            if !rotated {
                return Ok(());
            }
            // The old file was read to its end: go on with the new one from its start.
            self.partial.clear();
            self.file = None;
        }
        if current.is_some() {
            self.file = open(&self.path)?;
            if self.file.is_some() {
                return self.read_new();
            }
        }
        Ok(())
    }

    fn push_lines(&mut self, buf: &[u8]) {
        self.partial.extend_from_slice(buf);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let rest = self.partial.split_off(end + 1);
        for line in self.partial.split(|b| *b == b'\n') {
            // A line that is not an event (torn by a full disk) is skipped.
            if let Ok(e) = serde_json::from_slice::<Event>(line) {
                self.backlog.push_back(e);
            }
        }
        self.partial = rest;
    }
}

fn open(p: &Path) -> Result<Option<(File, u64)>, Error> {
    match File::open(p) {
        Ok(f) => {
            let ino = f.metadata().map_err(|e| Error::Read(p.into(), e))?.ino();
            Ok(Some((f, ino)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Read(p.into(), e)),
    }
}

impl Iterator for Events {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.poll(Duration::from_secs(3600)) {
                Ok(Next::Event(e)) => return Some(Ok(*e)),
                Ok(Next::Idle) => continue,
                Ok(Next::End) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
