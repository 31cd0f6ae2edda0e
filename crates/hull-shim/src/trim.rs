//! Dropping the shim's clean file-backed pages from its page tables.
//!
//! A shim spends its life blocked in a handful of syscalls, but starting it
//! and serving the first RPCs fault in (with the kernel's 64 KiB
//! fault-around) most of the binary's text and a good part of libc's: ~3 MiB
//! of `RssFile` per shim. Those pages live in the page cache, shared by every
//! shim, so they cost nothing per container — yet they count in each shim's
//! RSS. After a burst of activity the shim asks the kernel to unmap them
//! (`MADV_DONTNEED`); what the idle shim touches later is faulted back in from
//! the page cache.
//!
//! Only mappings that are file-backed, not writable and hold no anonymous
//! (copy-on-write) pages are dropped: for those, `MADV_DONTNEED` loses
//! nothing, as the next access maps the same file page again. RELRO and data
//! segments (relocated, so anonymous) are never touched.

use std::fs::File;
use std::io::{BufRead, BufReader};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read /proc/self/smaps")]
    Smaps(#[source] std::io::Error),
}

/// `HULL_SHIM_NO_TRIM=1` turns trimming off.
pub const NO_TRIM_ENV: &str = "HULL_SHIM_NO_TRIM";

pub fn enabled() -> bool {
    std::env::var_os(NO_TRIM_ENV).is_none_or(|v| v.is_empty() || v == "0")
}

struct Vma {
    start: usize,
    end: usize,
    droppable: bool,
    rss_kib: u64,
    anon_kib: u64,
}

impl Vma {
    /// `start-end perms offset dev inode [path]`.
    fn parse_header(line: &str) -> Option<Vma> {
        let mut f = line.split_ascii_whitespace();
        let (range, perms) = (f.next()?, f.next()?);
        let (start, end) = range.split_once('-')?;
        let inode = f.nth(2)?;
        let path = f.next().unwrap_or("");
        let perms = perms.as_bytes();
        let droppable = perms.get(1) == Some(&b'-')
            && perms.get(3) == Some(&b'p')
            && inode != "0"
            && path.starts_with('/');
        Some(Vma {
            start: usize::from_str_radix(start, 16).ok()?,
            end: usize::from_str_radix(end, 16).ok()?,
            droppable,
            rss_kib: 0,
            anon_kib: 0,
        })
    }

    /// Returns the KiB dropped.
    fn drop_pages(&self) -> u64 {
        if !self.droppable || self.anon_kib != 0 || self.rss_kib == 0 || self.end <= self.start {
            return 0;
        }
        // SAFETY: the range is one of our own mappings, file-backed, read-only
        // and without anonymous pages: MADV_DONTNEED only removes page-table
        // entries that the next access re-creates from the same file pages.
        let r = unsafe {
            libc::madvise(
                self.start as *mut libc::c_void,
                self.end - self.start,
                libc::MADV_DONTNEED,
            )
        };
        if r == 0 {
            self.rss_kib
        } else {
            0
        }
    }
}

/// `   12 kB` (after the field name).
fn kib(rest: &str) -> u64 {
    rest.split_ascii_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Gives free heap memory back to the kernel (requests leave freed
/// buffers behind in the malloc arena).
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe { libc::malloc_trim(0) };
}

/// Drops the clean file-backed pages of this process; returns the KiB.
pub fn trim_file_pages() -> Result<u64, Error> {
    let f = File::open("/proc/self/smaps").map_err(Error::Smaps)?;
    let mut dropped = 0;
    let mut cur: Option<Vma> = None;
    for line in BufReader::with_capacity(4096, f).lines() {
        let line = line.map_err(Error::Smaps)?;
        if let Some(rest) = line.strip_prefix("Rss:") {
            if let Some(v) = cur.as_mut() {
                v.rss_kib = kib(rest);
            }
        } else if let Some(rest) = line.strip_prefix("Anonymous:") {
            if let Some(v) = cur.as_mut() {
                v.anon_kib = kib(rest);
            }
        } else if line
            .split_ascii_whitespace()
            .next()
            .is_some_and(|t| !t.ends_with(':'))
        {
            if let Some(v) = cur.take() {
                dropped += v.drop_pages();
            }
            cur = Vma::parse_header(&line);
        }
    }
    if let Some(v) = cur.take() {
        dropped += v.drop_pages();
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        let v = Vma::parse_header(
            "7f00-7f10 r-xp 00001000 fd:01 1234   /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .expect("header");
        assert!(v.droppable);
        assert_eq!((v.start, v.end), (0x7f00, 0x7f10));
        let w = Vma::parse_header("7f00-7f10 rw-p 00001000 fd:01 1234 /usr/lib/libc.so.6")
            .expect("header");
        assert!(!w.droppable);
        let anon = Vma::parse_header("7f00-7f10 r--p 00000000 00:00 0 ").expect("header");
        assert!(!anon.droppable);
        let heap = Vma::parse_header("5500-5600 rw-p 00000000 00:00 0   [heap]").expect("header");
        assert!(!heap.droppable);
    }

    #[test]
    fn trimming_keeps_the_process_working() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("RssFile"))
                .map(String::from)
        };
        eprintln!("before: {:?}", rss());
        let before = trim_file_pages().expect("trim");
        eprintln!("after: {:?} (dropped {before} KiB)", rss());
        // Code and read-only data are faulted back in as they are used.
        let s: String = (0..1000).map(|i| i.to_string()).collect();
        assert!(s.len() > 1000);
        assert!(before > 0, "some file pages were mapped");
        trim_file_pages().expect("trim again");
    }
}
