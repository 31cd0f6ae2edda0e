//! A container process's stdio: the FIFOs the engine gave us on one side,
//! pipes or a pty master on the other, and one small thread per direction
//! copying between them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::hullc::ChildStdio;
use crate::jsonlog::{self, JsonLog};

/// Copy threads need little stack; keeping it small keeps the shim small.
const COPY_STACK: usize = 64 * 1024;
const BUF: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create a pipe")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start a copy thread")]
    Thread(#[source] std::io::Error),
    #[error("console socket {path}")]
    Console {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime exited without sending the terminal")]
    NoConsole,
    #[error("cannot resize the terminal")]
    Resize(#[source] std::io::Error),
}

/// FIFO paths from the engine; empty means "not wanted".
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a running process's stdio.
pub struct ProcessIo {
    /// Wakes the stdin copier to drain and close (CloseIO).
    stdin_close: Option<OwnedFd>,
    copiers: Vec<JoinHandle<()>>,
    /// Output copiers started, and the channel each sends on when it is done:
    /// the exit waits on it instead of polling the threads.
    outputs: usize,
    out_done: (Sender<()>, Receiver<()>),
    /// The pty master, kept for ResizePty.
    console: Option<File>,
    /// The json-file log both output streams write, once opened.
    json_log: Option<Arc<Mutex<JsonLog>>>,
}

impl Default for ProcessIo {
    fn default() -> Self {
        ProcessIo {
            stdin_close: None,
            copiers: Vec::new(),
            outputs: 0,
            out_done: channel(),
            console: None,
            json_log: None,
        }
    }
}

fn open_fifo(path: &str, nonblock: bool) -> Result<File, Error> {
    // O_RDWR never blocks on open and never gets EPIPE when the engine's
    // reader goes away (ctr run -d, containerd restart); the engine opens
    // its ends before Create, so nothing is lost.
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if nonblock {
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path).map_err(|source| Error::Open {
        path: path.into(),
        source,
    })
}

fn pipe() -> Result<(File, File), Error> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Pipe(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn eventfd() -> Result<OwnedFd, Error> {
    // SAFETY: plain syscall, no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Pipe(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(COPY_STACK)
        .spawn(f)
        .map_err(Error::Thread)
}

/// Copies until EOF or EIO (a pty master once the slave side is gone), then
/// drops both ends, which is what tells the engine's reader the stream ended.
fn copy_out(mut from: File, mut to: File) {
    let mut buf = vec![0u8; BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// `jsonfile://PATH[?max-size=N&max-file=M]` as an output path: the shim appends docker
/// json-file lines (`{"log","stream","time"}`) to PATH itself, so `hull` keeps logs of
/// detached containers with no reader attached, and rotates it ([`crate::jsonlog`]).
pub const JSON_FILE: &str = "jsonfile://";

/// Starts the copier of one output stream to `path` (a FIFO, a regular
/// file, or `jsonfile://PATH`); it sends on `done` once everything is written.
fn out_copier(
    from: File,
    path: &str,
    stream: &'static str,
    done: Sender<()>,
    json: &mut Option<Arc<Mutex<JsonLog>>>,
) -> Result<JoinHandle<()>, Error> {
    if let Some(target) = path.strip_prefix(JSON_FILE) {
        // One log for both streams: stdout's and stderr's copiers must not both rotate it.
        let to = match json {
            Some(l) => l.clone(),
            None => {
                let t = jsonlog::Target::parse(target);
                let p = t.path.display().to_string();
                let l = JsonLog::open(t).map_err(|source| Error::Open { path: p, source })?;
                json.insert(l).clone()
            }
        };
        return spawn(stream, move || {
            jsonlog::copy(from, &to, stream);
            let _ = done.send(());
        });
    }
    let fifo = open_fifo(path, false)?;
    spawn(stream, move || {
        copy_out(from, fifo);
        let _ = done.send(());
    })
}

fn poll_in(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    // SAFETY: fds is a valid slice of pollfd for its whole length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    n > 0
}

/// stdin FIFO → container. The FIFO is ours O_RDWR (so it never reports EOF);
/// the end of input is CloseIO, signalled on `close`: the copier then drains
/// what the engine already wrote and drops `to`, closing the container's stdin.
fn copy_in(mut from: File, mut to: File, close: OwnedFd) {
    let mut buf = vec![0u8; BUF];
    let mut closing = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: close.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        poll_in(&mut fds, if closing { 0 } else { -1 });
        if fds[1].revents != 0 {
            closing = true;
        }
        if fds[0].revents & libc::POLLIN == 0 {
            if closing {
                return;
            }
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl ProcessIo {
    /// Pipes for a process without a terminal: returns the child's ends and
    /// starts the copiers.
    pub fn pipes(p: &StdioPaths) -> Result<(ProcessIo, ChildStdio), Error> {
        let mut io = ProcessIo::default();
        let mut child = ChildStdio::default();
        if !p.stdin.is_empty() {
            let fifo = open_fifo(&p.stdin, true)?;
            let (r, w) = pipe()?;
            let ev = eventfd()?;
            io.stdin_close = Some(ev.try_clone().map_err(Error::Pipe)?);
            io.copiers
                .push(spawn("stdin", move || copy_in(fifo, w, ev))?);
            child.stdin = Some(r);
        }
        for (path, slot, stream) in [
            (&p.stdout, &mut child.stdout, "stdout"),
            (&p.stderr, &mut child.stderr, "stderr"),
        ] {
            if path.is_empty() {
                continue;
            }
            let (r, w) = pipe()?;
            io.add_output(r, path, stream)?;
            *slot = Some(w);
        }
        Ok((io, child))
    }

    /// Starts copying between a pty master and the FIFOs.
    pub fn terminal(p: &StdioPaths, master: File) -> Result<ProcessIo, Error> {
        let mut io = ProcessIo::default();
        if !p.stdin.is_empty() {
            let fifo = open_fifo(&p.stdin, true)?;
            let w = master.try_clone().map_err(Error::Pipe)?;
            let ev = eventfd()?;
            io.stdin_close = Some(ev.try_clone().map_err(Error::Pipe)?);
            io.copiers
                .push(spawn("stdin", move || copy_in(fifo, w, ev))?);
        }
        if !p.stdout.is_empty() {
            let r = master.try_clone().map_err(Error::Pipe)?;
            io.add_output(r, &p.stdout, "stdout")?;
        }
        io.console = Some(master);
        Ok(io)
    }

    fn add_output(&mut self, from: File, path: &str, stream: &'static str) -> Result<(), Error> {
        let done = self.out_done.0.clone();
        self.copiers
            .push(out_copier(from, path, stream, done, &mut self.json_log)?);
        self.outputs += 1;
        Ok(())
    }

    /// CloseIO: the engine has no more input for this process.
    pub fn close_stdin(&mut self) {
        if let Some(ev) = self.stdin_close.take() {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to an eventfd we own.
            unsafe { libc::write(ev.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<(), Error> {
        let Some(c) = &self.console else {
            return Ok(());
        };
        let ws = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct from a valid pointer.
        if unsafe { libc::ioctl(c.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Error::Resize(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits (bounded) for the output copiers to finish, so all output is in
    /// the FIFOs before the exit is reported. Woken by each copier as it ends
    /// (a process's pipes usually reach EOF as it exits, before the reaper
    /// reports it), so the exit is reported without delay.
    pub fn wait_output(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.outputs > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.out_done.1.recv_timeout(left).is_err() {
                return;
            }
            self.outputs -= 1;
        }
        self.copiers.retain(|h| !h.is_finished());
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        // Let a stdin copier blocked in poll go away with the process.
        self.close_stdin();
    }
}

/// A listening console socket (hullc `--console-socket`), removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds a socket in `dir` (a short directory: sun_path is 108 bytes).
    pub fn new(dir: &Path) -> Result<Self, Error> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("hull-console-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let err = |source| Error::Console {
            path: path.clone(),
            source,
        };
        let listener = UnixListener::bind(&path).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master.
    /// `gone` says whether the runtime has exited (then it never will send).
    pub fn receive(&self, gone: impl Fn() -> bool) -> Result<File, Error> {
        let err = |source| Error::Console {
            path: self.path.clone(),
            source,
        };
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if gone() {
                        return Err(Error::NoConsole);
                    }
                    let mut fds = [libc::pollfd {
                        fd: self.listener.as_fd().as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    poll_in(&mut fds, 50);
                }
                Err(e) => return Err(err(e)),
            }
        };
        stream.set_nonblocking(false).map_err(err)?;
        recv_fd(stream.as_raw_fd()).map_err(err)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receives one fd sent with SCM_RIGHTS.
fn recv_fd(sock: i32) -> std::io::Result<File> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 array: cmsg buffers must be aligned for cmsghdr.
    let mut cbuf = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid "empty" header; we fill the pointers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers (data, cbuf) for the whole call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR only reads within it.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null()
        // SAFETY: a non-null cmsg points inside cbuf; the header fields are readable.
        || unsafe {
            (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        }
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no file descriptor received",
        ));
    }
    // SAFETY: an SCM_RIGHTS message carries at least one int after its header.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>()) };
    // SAFETY: the kernel installed this fd for us; nobody else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::zombie_processes)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn pipes_copy_and_close_stdin() {
        let d = tempfile::tempdir().unwrap();
        let (i, o) = (d.path().join("in"), d.path().join("out"));
        mkfifo(&i);
        mkfifo(&o);
        // The engine's ends, opened first as containerd does.
        let mut out_r = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&o)
            .unwrap();
        let paths = StdioPaths {
            stdin: i.to_string_lossy().into(),
            stdout: o.to_string_lossy().into(),
            ..Default::default()
        };
        let (mut io, child) = ProcessIo::pipes(&paths).unwrap();
        let mut in_w = OpenOptions::new().write(true).open(&i).unwrap();
        in_w.write_all(b"hello").unwrap();
        drop(in_w);
        io.close_stdin();
        // A "container": cat from its stdin to its stdout.
        let mut cat = std::process::Command::new("cat")
            .stdin(child.stdin.unwrap())
            .stdout(child.stdout.unwrap())
            .spawn()
            .unwrap();
        // The reaper test may reap cat first (same process), so do not insist.
        let _ = cat.wait();
        io.wait_output(Duration::from_secs(5));
        let mut s = String::new();
        let fd = out_r.as_raw_fd();
        // SAFETY: clear O_NONBLOCK on our own fd.
        unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
        out_r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
