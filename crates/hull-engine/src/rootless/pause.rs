//! The user's pause process (podman's design): a process that does nothing but hold a user
//! namespace (the user as root, plus the subordinate ranges) and a mount namespace made in
//! it. Every hull command of the user joins both with setns, so all of the user's containers
//! share one id mapping (files keep their owners from one command to the next) and the
//! overlay mounts made by one command are there for the next. Its pid is in
//! `<run dir>/pause.pid`; `<run dir>/pause.lock` serialises starting it.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::idmap;

/// The pause process's name (`comm`): how a pid file's pid is told from a reused pid.
const COMM: &str = "hull-pause";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the pause process: {0}")]
    Start(&'static str, #[source] std::io::Error),
    #[error("the pause process could not make a user namespace (are unprivileged user namespaces allowed? see docs/rootless.md)")]
    Unshare,
    #[error("setting up the pause process's id maps")]
    Map(#[source] idmap::Error),
    #[error("joining the {0} namespace of the pause process (pid {1})")]
    Join(&'static str, i32, #[source] std::io::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.into(),
        source,
    }
}

/// Joins the user's pause process, starting it first when there is none.
pub(crate) fn join_or_start(run: &Path, uid: u32) -> Result<(), Error> {
    let lock_path = run.join("pause.lock");
    let lock = File::create(&lock_path).map_err(io("creating", &lock_path))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("locking", &lock_path)(std::io::Error::last_os_error()));
    }
    let pid_file = run.join("pause.pid");
    let pid = match running(&pid_file, uid) {
        Some(pid) => pid,
        None => {
            let pid = start(uid)?;
            std::fs::write(&pid_file, format!("{pid}\n")).map_err(io("writing", &pid_file))?;
            pid
        }
    };
    join(pid)
    // `lock` closes here: the next hull finds the pid file written.
}

/// The pid in `pid_file` when it is still our pause process.
fn running(pid_file: &Path, uid: u32) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let comm = std::fs::read_to_string(proc.join("comm")).ok()?;
    let owner = std::fs::metadata(&proc).ok()?.uid();
    // A killed pause process not reaped yet (a zombie) still has its comm but no
    // namespaces: it is gone for us.
    let alive = std::fs::metadata(proc.join("ns/mnt")).is_ok();
    (comm.trim_end() == COMM && owner == uid && alive).then_some(pid)
}

/// Ends the pause process named by `<run>/pause.pid`, if it is still ours.
pub(crate) fn stop(run: &Path) {
    let pid_file = run.join("pause.pid");
    // Inside the namespace our uid reads as 0, the pause process's owner as its host uid
    // mapped the same way: compare with what /proc shows for ourselves.
    let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if let Some(pid) = running(&pid_file, me) {
        // SAFETY: kill touches no memory; the pid was checked to be our pause process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(pid_file);
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Start("pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both fds are new and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks the pause process, maps its ids and lets it go on; returns its pid.
fn start(uid: u32) -> Result<i32, Error> {
    let (sub_u, sub_g) = idmap::subids(uid);
    let single = sub_u.is_empty() || sub_g.is_empty();
    if single {
        let name = idmap::user_name(uid).unwrap_or_else(|| uid.to_string());
        eprintln!(
            "WARN: no subordinate ids for {name} in /etc/subuid and /etc/subgid: only your own \
             uid and gid are mapped (as root inside). Images whose files belong to other users \
             get them as root, and a container cannot switch to another user. Ask an \
             administrator to run `usermod --add-subuids 100000-165535 --add-subgids \
             100000-165535 {name}` (ranges of 65536 that no one else has), then `hull system \
             reset` or `kill` the hull-pause process."
        );
    }
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SAFETY: hull is single-threaded here (enter runs first thing); the child only makes
    // async-signal-safe calls before it pauses forever or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Start("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        pause_child(ready_w.as_raw_fd(), go_r.as_raw_fd());
    }
    drop((ready_w, go_r));
    let abort = |e: Error| {
        // SAFETY: our own child, killed and reaped so no zombie is left.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        e
    };
    let mut b = [0u8; 1];
    match File::from(ready_r).read(&mut b) {
        Ok(1) if b[0] == b'r' => {}
        _ => return Err(abort(Error::Unshare)),
    }
    // SAFETY: getgid cannot fail.
    let gid = unsafe { libc::getgid() };
    let mapped = if single {
        idmap::write_single(pid, uid, gid)
    } else {
        idmap::write_helper("newuidmap", pid, uid, &sub_u)
            .and_then(|()| idmap::write_helper("newgidmap", pid, gid, &sub_g))
    };
    mapped.map_err(|e| abort(Error::Map(e)))?;
    // SAFETY: writing one byte from a valid buffer to our pipe end.
    if unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) } != 1 {
        return Err(abort(Error::Start("go", std::io::Error::last_os_error())));
    }
    Ok(pid)
}

/// The forked child: new user and mount namespaces, wait for the maps, then hold them.
fn pause_child(ready: i32, go: i32) -> ! {
    // SAFETY: async-signal-safe calls only (we were forked from a process that may have had
    // other state); every buffer is a static or on this stack.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            libc::_exit(1);
        }
        libc::write(ready, b"r".as_ptr().cast(), 1);
        let mut b = 0u8;
        if libc::read(go, (&mut b as *mut u8).cast(), 1) != 1 {
            // The parent failed to map us (or died): nothing to hold.
            libc::_exit(1);
        }
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"hull-pause".as_ptr(), 0, 0, 0);
        libc::chdir(c"/".as_ptr());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        // Hold no descriptor of the hull that started us (its pipes, the pause lock).
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        for sig in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        loop {
            libc::pause();
        }
    }
}

fn same_ns(pid: i32, kind: &str) -> bool {
    let ino = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let theirs = ino(format!("/proc/{pid}/ns/{kind}"));
    theirs.is_some() && theirs == ino(format!("/proc/self/ns/{kind}"))
}

/// Joins `pid`'s user namespace, then its mount namespace; keeps the working directory.
fn join(pid: i32) -> Result<(), Error> {
    let cwd = std::env::current_dir().ok();
    let cwd_fd = File::open(".").ok();
    for (kind, flag, what) in [
        ("user", libc::CLONE_NEWUSER, "user"),
        ("mnt", libc::CLONE_NEWNS, "mount"),
    ] {
        if same_ns(pid, kind) {
            continue;
        }
        let path = format!("/proc/{pid}/ns/{kind}");
        let f = File::open(&path).map_err(|e| Error::Join(what, pid, e))?;
        // SAFETY: setns on an fd we own; hull is single-threaded here (the kernel refuses a
        // user namespace change otherwise, EINVAL).
        if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
            return Err(Error::Join(what, pid, std::io::Error::last_os_error()));
        }
    }
    // setns(CLONE_NEWNS) moves us to the namespace's root: back to where the user was, so
    // relative paths (`-v ./data:/data`, `load -i img.tar`) mean what they meant.
    let back = cwd.is_some_and(|c| std::env::set_current_dir(c).is_ok());
    if !back {
        if let Some(f) = cwd_fd {
            // SAFETY: fchdir on an fd we own.
            unsafe { libc::fchdir(f.as_raw_fd()) };
        }
    }
    Ok(())
}
