//! Input files that must read the same twice: hullc may restart itself from
//! a protected copy of its binary (exeseal.rs, CVE-2019-5736) after parsing
//! its arguments, and the new image parses them again. A regular file reads
//! the same again; a pipe does not: `hullc exec -p <(echo '{...}')` (bash's
//! process substitution, runc's tty.bats) names `/dev/fd/63`, which the first
//! image drains, so the second read EOF. runc never re-reads it (its parent
//! parses once and re-execs only its child).
//!
//! So a pipe named through one of our own fds (`/dev/fd/N`,
//! `/proc/self/fd/N`, `/dev/stdin`) is read to the end and that fd is replaced with a
//! sealed memfd holding the same bytes: the argv stays valid, a re-exec'd
//! image opens `/dev/fd/N` afresh and reads them from the start, while the
//! fd itself, like the drained pipe, is at its end (a program inheriting it
//! reads EOF, as it would have). A named FIFO cannot be replaced and keeps
//! the old behaviour.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RereadError {
    #[error("{flag} {path}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: keeping its content for hullc's re-exec (CVE-2019-5736): {op}")]
    Keep {
        flag: &'static str,
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Reads `path` (given as `flag`, for errors) so that a re-exec'd hullc
/// reading the same path gets the same bytes (see the module docs).
pub fn read_stable(flag: &'static str, path: &Path) -> Result<Vec<u8>, RereadError> {
    let read_err = |source| RereadError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read_err)?;
    let fifo = f.metadata().map_err(read_err)?.file_type().is_fifo();
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(read_err)?;
    let Some(fd) = own_fd(path).filter(|_| fifo) else {
        return Ok(bytes);
    };
    keep(fd, &bytes).map_err(|(op, source)| RereadError::Keep {
        flag,
        path: path.to_path_buf(),
        op,
        source,
    })?;
    Ok(bytes)
}

/// The fd number `path` names in our own fd table, if it does.
fn own_fd(path: &Path) -> Option<libc::c_int> {
    let s = path.to_str()?;
    // A link to /proc/self/fd/0 (`echo '{...}' | hullc exec -p /dev/stdin`).
    if s == "/dev/stdin" {
        return Some(0);
    }
    let own = format!("/proc/{}/fd/", std::process::id());
    let n = ["/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/", &own]
        .iter()
        .find_map(|p| s.strip_prefix(p))?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

type OpError = (&'static str, std::io::Error);

/// Puts a sealed memfd holding `bytes` at fd `target` (not close-on-exec,
/// as the pipe there was inherited), its offset at the end.
fn keep(target: libc::c_int, bytes: &[u8]) -> Result<(), OpError> {
    let last = |op| move || (op, std::io::Error::last_os_error());
    // SAFETY: memfd_create reads a NUL-terminated name; returns a new fd or -1.
    let fd = unsafe {
        libc::memfd_create(
            c"hullc-input".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(last("memfd_create")());
    }
    // SAFETY: a fresh fd nobody else owns.
    let mut memfd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    memfd
        .write_all(bytes)
        .map_err(|e| ("writing the memfd", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl(F_ADD_SEALS) on our own memfd.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(last("sealing the memfd")());
    }
    // SAFETY: dup2 onto a number that names the drained pipe, which it
    // closes; dup2 leaves the new fd without FD_CLOEXEC. No Rust object owns
    // `target` (the pipe was inherited, and `File::open` made a new fd).
    if unsafe { libc::dup2(memfd.as_raw_fd(), target) } < 0 {
        return Err(last("dup2 of the memfd")());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_to_our_own_fds_are_fds() {
        let me = std::process::id();
        assert_eq!(own_fd(Path::new("/dev/fd/63")), Some(63));
        assert_eq!(own_fd(Path::new("/proc/self/fd/7")), Some(7));
        assert_eq!(own_fd(Path::new(&format!("/proc/{me}/fd/9"))), Some(9));
        assert_eq!(own_fd(Path::new("/dev/stdin")), Some(0));
        assert_eq!(own_fd(Path::new("/proc/1/fd/9")), None);
        assert_eq!(own_fd(Path::new("/dev/fd/")), None);
        assert_eq!(own_fd(Path::new("/dev/fd/6x")), None);
        assert_eq!(own_fd(Path::new("/tmp/process.json")), None);
    }

    #[test]
    fn a_pipe_reads_the_same_twice() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        std::fs::File::from(w)
            .write_all(b"{\"args\":[\"true\"]}")
            .expect("write");
        let fd = r.as_raw_fd();
        // Leak `r`: `keep` replaces the fd under that number.
        std::mem::forget(r);
        let path = PathBuf::from(format!("/dev/fd/{fd}"));
        let first = read_stable("--process", &path).expect("first read");
        let second = read_stable("--process", &path).expect("second read");
        assert_eq!(first, b"{\"args\":[\"true\"]}");
        assert_eq!(second, first);
        // The fd itself is at its end, like the drained pipe.
        // SAFETY: we own `fd` (leaked above); the File closes it.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).expect("read");
        assert!(rest.is_empty());
    }
}
