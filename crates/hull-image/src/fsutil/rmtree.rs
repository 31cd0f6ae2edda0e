//! Fast, symlink-safe removal of whole trees (snapshots of 100k+ files).
//!
//! Every directory is opened relative to its parent's fd with
//! `O_NOFOLLOW|O_DIRECTORY`, and entries are removed with `unlinkat`, so a
//! symlink in a hostile image (or one swapped in meanwhile) is unlinked,
//! never followed out of the tree. The top levels are expanded first and the
//! subtrees below are then deleted by a few threads: unlink cost is per
//! inode in the kernel, and separate directories do not share the
//! directory lock, so this scales where one walker cannot (issue #24).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Stop expanding once this many subtrees per thread are queued.
const JOBS_PER_THREAD: usize = 8;
/// Never expand deeper than this before going parallel.
const MAX_EXPAND_DEPTH: usize = 4;
const MAX_THREADS: usize = 8;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens directory `name` under `parent` without following a symlink.
fn open_dir(parent: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: name is a valid nul-terminated string; openat keeps no pointer.
    let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn unlink_at(parent: RawFd, name: &CStr, dir: bool) -> io::Result<()> {
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: name is a valid nul-terminated string.
    check(unsafe { libc::unlinkat(parent, name.as_ptr(), flags) })
}

/// Whether `name` under `parent` is a real directory (not a symlink to one).
fn is_dir_at(parent: RawFd, name: &CStr) -> io::Result<bool> {
    // SAFETY: an all-zero stat is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is a valid C string and st a writable stat.
    check(unsafe { libc::fstatat(parent, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Reads the entries of directory `fd` as (name, is a directory).
fn entries(fd: RawFd) -> io::Result<Vec<(CString, bool)>> {
    // fdopendir takes over the fd it is given, so give it a duplicate.
    // SAFETY: fd is an open descriptor; F_DUPFD_CLOEXEC returns a new one.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // The duplicate shares the file offset with `fd`: a directory listed
    // before (while expanding) must be read again from its start.
    // SAFETY: dup is an open fd; lseek only moves its offset.
    if unsafe { libc::lseek(dup, 0, libc::SEEK_SET) } < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: dup is ours and closed exactly once.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: dup is an open directory fd that the DIR now owns.
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so dup is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    let mut out = Vec::new();
    let res = loop {
        // readdir reports errors only through errno: clear it first.
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dir is a valid DIR* until closedir below.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: ent points to a dirent valid until the next readdir call,
        // and d_name is nul-terminated.
        let (name, kind) = unsafe { (CStr::from_ptr((*ent).d_name.as_ptr()), (*ent).d_type) };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        // d_type spares a stat per entry; filesystems that leave it
        // DT_UNKNOWN get an lstat-equivalent instead.
        let is_dir = match kind {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => match is_dir_at(fd, name) {
                Ok(d) => d,
                Err(e) => break Err(e),
            },
            _ => false,
        };
        out.push((name.to_owned(), is_dir));
    };
    // SAFETY: dir came from fdopendir and is closed exactly once.
    unsafe { libc::closedir(dir) };
    res.map(|()| out)
}

/// Empties directory `fd` depth-first (one thread).
fn remove_contents(fd: RawFd) -> io::Result<()> {
    for (name, is_dir) in entries(fd)? {
        remove_entry(fd, &name, is_dir)?;
    }
    Ok(())
}

fn remove_entry(parent: RawFd, name: &CStr, is_dir: bool) -> io::Result<()> {
    if is_dir {
        let sub = open_dir(parent, name)?;
        remove_contents(sub.as_raw_fd())?;
    }
    match unlink_at(parent, name, is_dir) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// Subtrees queued for the threads: (index of the parent in `dirs`, name).
struct Plan {
    dirs: Vec<OwnedFd>,
    jobs: Vec<(usize, CString)>,
}

/// Walks the top levels breadth-first, unlinking files met on the way,
/// until there are enough subdirectories to share out.
fn expand(root: OwnedFd, want: usize) -> io::Result<Plan> {
    let mut plan = Plan {
        dirs: vec![root],
        jobs: Vec::new(),
    };
    let mut level = vec![0];
    for _ in 0..MAX_EXPAND_DEPTH {
        plan.jobs.clear();
        for &i in &level {
            let fd = plan.dirs[i].as_raw_fd();
            for (name, is_dir) in entries(fd)? {
                if is_dir {
                    plan.jobs.push((i, name));
                } else {
                    remove_entry(fd, &name, false)?;
                }
            }
        }
        if plan.jobs.len() >= want || plan.jobs.is_empty() {
            break;
        }
        level.clear();
        for (p, name) in std::mem::take(&mut plan.jobs) {
            plan.dirs.push(open_dir(plan.dirs[p].as_raw_fd(), &name)?);
            level.push(plan.dirs.len() - 1);
        }
    }
    Ok(plan)
}

fn run_parallel(plan: &Plan, threads: usize) -> io::Result<()> {
    let threads = threads.min(plan.jobs.len());
    if threads <= 1 {
        // Small trees (most whiteouts during unpack): no threads to spawn.
        for (p, name) in &plan.jobs {
            remove_entry(plan.dirs[*p].as_raw_fd(), name, true)?;
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let first_err = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some((p, name)) = plan.jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = remove_entry(plan.dirs[*p].as_raw_fd(), name, true) {
                        let mut slot = first_err.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                        // Stop every worker: the caller reports the failure.
                        next.store(plan.jobs.len(), Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Removes directory `path` and everything below it, never following
/// symlinks. `path` itself must not be a symlink (callers pass trees they
/// created, renamed into the store's own tmp/).
pub(crate) fn remove_tree(path: &CStr) -> io::Result<()> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS);
    let root = open_dir(libc::AT_FDCWD, path)?;
    let plan = expand(root, threads * JOBS_PER_THREAD)?;
    run_parallel(&plan, threads)?;
    // Directories opened while expanding are empty now; a serial pass
    // removes them (and anything the expansion left) bottom-up.
    remove_contents(plan.dirs[0].as_raw_fd())?;
    drop(plan);
    // SAFETY: path is a valid nul-terminated string.
    check(unsafe { libc::rmdir(path.as_ptr()) })
}
