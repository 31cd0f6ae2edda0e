//! The lifecycle core: containers and their processes, driven through hullc,
//! with exits recorded as the reaper reports them. Independent of ttrpc so
//! that `hull` can run the same shim logic without containerd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::hullc::{self, Hullc, Launch};
use crate::mount::{self, Mount};
use crate::process::{Proc, ProcInfo, Status};
use crate::reaper::{Exit, Reaper};
use crate::stdio::{self, ConsoleSocket, ProcessIo, StdioPaths};
use crate::trim;
use hull_cgroups::{oom_counter_file, oom_kills};

/// How often OOM counters are looked at (only while containers run).
const OOM_POLL: Duration = Duration::from_secs(1);
/// Bound on waiting for a dead process's output to reach the FIFOs.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} not found")]
    NoContainer(String),
    #[error("process {1} of container {0} not found")]
    NoProcess(String, String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("process already finished")]
    Finished,
    #[error("process is still running")]
    Running,
    #[error("process {0} has no spec")]
    NoSpec(String),
    #[error(transparent)]
    Hullc(#[from] hullc::Error),
    #[error(transparent)]
    Stdio(#[from] stdio::Error),
    #[error(transparent)]
    Mount(#[from] mount::Error),
    #[error("cannot write {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("cannot start the exit dispatcher")]
    Thread(#[source] std::io::Error),
    #[error("cannot signal pid {0}")]
    Signal(i32, #[source] std::io::Error),
}

/// What the lifecycle core reports on its own (the rest follows calls).
#[derive(Debug, Clone)]
pub enum Event {
    Exit {
        id: String,
        exec_id: String,
        exit: Exit,
        /// The process had been started (a created init killed by a delete had not).
        started: bool,
    },
    Oom {
        id: String,
    },
}

/// Everything Create needs.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
}

struct Container {
    bundle: PathBuf,
    init: Proc,
    execs: HashMap<String, Proc>,
    rootfs_mounted: bool,
    oom_file: Option<PathBuf>,
    oom_kills: u64,
}

impl Container {
    fn proc(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    fn proc_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

type Sink = Box<dyn Fn(Event) + Send + Sync>;

pub struct Tasks {
    hullc: Hullc,
    reaper: Arc<Reaper>,
    state: Mutex<HashMap<String, Container>>,
    cv: Condvar,
    exits: Sender<Exit>,
    sink: Sink,
    /// Short directory for console sockets (sun_path is 108 bytes).
    socket_dir: PathBuf,
    /// Set by every request; the dispatcher trims file pages at its next
    /// idle tick ([`crate::trim`]).
    activity: AtomicBool,
    trim: bool,
}

impl Tasks {
    /// Starts the exit dispatcher thread; `sink` receives exits and OOMs.
    pub fn new(hullc: Hullc, reaper: Arc<Reaper>, sink: Sink) -> Result<Arc<Tasks>, Error> {
        let (tx, rx) = channel();
        let tasks = Arc::new(Tasks {
            hullc,
            reaper,
            state: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
            exits: tx,
            sink,
            socket_dir: std::env::temp_dir(),
            activity: AtomicBool::new(true),
            trim: trim::enabled(),
        });
        let weak = Arc::downgrade(&tasks);
        std::thread::Builder::new()
            .name("exits".into())
            .stack_size(128 * 1024)
            .spawn(move || dispatch(weak, rx))
            .map_err(Error::Thread)?;
        Ok(tasks)
    }

    /// Notes a request: the shim trims its file pages once idle again.
    pub fn note_activity(&self) {
        self.activity.store(true, Ordering::Relaxed);
    }

    fn idle_tick(&self) {
        self.check_ooms();
        if self.trim && self.activity.swap(false, Ordering::Relaxed) {
            trim::trim_heap();
            match trim::trim_file_pages() {
                Ok(kib) => log::debug!("dropped {kib} KiB of file pages"),
                Err(e) => log::debug!("trim: {e}"),
            }
        }
    }

    pub fn hullc(&self) -> &Hullc {
        &self.hullc
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_proc<T>(
        &self,
        id: &str,
        exec_id: &str,
        f: impl FnOnce(&mut Proc) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut st = self.lock();
        let c = st
            .get_mut(id)
            .ok_or_else(|| Error::NoContainer(id.into()))?;
        let p = c
            .proc_mut(exec_id)
            .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()))?;
        f(p)
    }

    /// Mounts the rootfs and runs `hullc create`. Returns the init pid.
    pub fn create(&self, o: CreateOpts) -> Result<i32, Error> {
        let mut st = self.lock();
        if st.contains_key(&o.id) {
            return Err(Error::Exists(o.id));
        }
        let rootfs = o.bundle.join("rootfs");
        mount::mount_rootfs(&o.rootfs, &rootfs)?;
        let launched = self.launch(&o.stdio, &o.bundle, "init", |l| {
            self.hullc.create(&o.id, &o.bundle, l)
        });
        let (pid, io) = match launched {
            Ok(v) => v,
            Err(e) => {
                let _ = self.hullc.delete(&o.id, true);
                if !o.rootfs.is_empty() {
                    let _ = mount::unmount_all(&rootfs);
                }
                return Err(e);
            }
        };
        self.reaper.watch(pid, self.exits.clone());
        let mut init = Proc::new(o.stdio);
        init.pid = pid;
        init.io = Some(io);
        st.insert(
            o.id,
            Container {
                bundle: o.bundle,
                init,
                execs: HashMap::new(),
                rootfs_mounted: !o.rootfs.is_empty(),
                oom_file: u32::try_from(pid).ok().and_then(oom_counter_file),
                oom_kills: 0,
            },
        );
        Ok(pid)
    }

    /// Sets up stdio and runs a hullc create/exec. `name` names the pid/log
    /// files in the bundle.
    fn launch(
        &self,
        paths: &StdioPaths,
        bundle: &Path,
        name: &str,
        run: impl FnOnce(Launch<'_>) -> Result<i32, hullc::Error>,
    ) -> Result<(i32, ProcessIo), Error> {
        let pid_file = bundle.join(format!("{name}.pid"));
        let log = bundle.join(format!("{name}-log.json"));
        let _ = std::fs::remove_file(&log);
        if paths.terminal {
            let sock = ConsoleSocket::new(&self.socket_dir)?;
            let pid = run(Launch {
                pid_file: &pid_file,
                console_socket: Some(sock.path()),
                log: &log,
                stdio: Default::default(),
            })?;
            // hullc has exited; its connection waits in the backlog.
            let master = sock.receive(|| true)?;
            Ok((pid, ProcessIo::terminal(paths, master)?))
        } else {
            let (io, child) = ProcessIo::pipes(paths)?;
            let pid = run(Launch {
                pid_file: &pid_file,
                console_socket: None,
                log: &log,
                stdio: child,
            })?;
            Ok((pid, io))
        }
    }

    /// Starts init (`hullc start`) or an exec (`hullc exec`). Returns the pid.
    pub fn start(&self, id: &str, exec_id: &str) -> Result<i32, Error> {
        if exec_id.is_empty() {
            return self.with_proc(id, "", |p| {
                self.hullc.start(id)?;
                if p.status == Status::Created {
                    p.status = Status::Running;
                }
                Ok(p.pid)
            });
        }
        let mut st = self.lock();
        let c = st
            .get_mut(id)
            .ok_or_else(|| Error::NoContainer(id.into()))?;
        let bundle = c.bundle.clone();
        let p = c
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()))?;
        let spec = p.spec.take().ok_or_else(|| Error::NoSpec(exec_id.into()))?;
        let spec_file = bundle.join(format!("exec-{exec_id}.json"));
        std::fs::write(&spec_file, spec).map_err(|e| Error::Write(spec_file.clone(), e))?;
        let name = format!("exec-{exec_id}");
        let res = self.launch(&p.stdio, &bundle, &name, |l| {
            self.hullc.exec(id, &spec_file, l)
        });
        let _ = std::fs::remove_file(&spec_file);
        let (pid, io) = res?;
        self.reaper.watch(pid, self.exits.clone());
        p.pid = pid;
        p.io = Some(io);
        p.status = Status::Running;
        Ok(pid)
    }

    /// Registers an exec (started later by [`Tasks::start`]).
    pub fn add_exec(
        &self,
        id: &str,
        exec_id: &str,
        spec: Vec<u8>,
        stdio: StdioPaths,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        let c = st
            .get_mut(id)
            .ok_or_else(|| Error::NoContainer(id.into()))?;
        if c.execs.contains_key(exec_id) {
            return Err(Error::Exists(exec_id.into()));
        }
        let mut p = Proc::new(stdio);
        p.spec = Some(spec);
        c.execs.insert(exec_id.into(), p);
        Ok(())
    }

    pub fn state(&self, id: &str, exec_id: &str) -> Result<(PathBuf, ProcInfo), Error> {
        let st = self.lock();
        let c = st.get(id).ok_or_else(|| Error::NoContainer(id.into()))?;
        let p = c
            .proc(exec_id)
            .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()))?;
        Ok((c.bundle.clone(), p.into()))
    }

    pub fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), Error> {
        self.with_proc(id, exec_id, |p| {
            // An exited process is finished for every kill, `all` included (runc's
            // shim answers the same): containerd's exit handling (CRI's, `task
            // delete`'s WithProcessKill) kills with all=true first and goes on only
            // on NotFound or success; hullc's "not running" would be UNKNOWN and
            // abort it. Processes left in the cgroup (a container without its own
            // pid namespace) still get an `all` signal, best effort.
            if p.exit.is_some() {
                if all && exec_id.is_empty() {
                    let _ = self.hullc.kill(id, signal, true);
                }
                return Err(Error::Finished);
            }
            if exec_id.is_empty() {
                return Ok(self.hullc.kill(id, signal, all)?);
            }
            if p.pid == 0 {
                return Err(Error::NoProcess(id.into(), exec_id.into()));
            }
            // SAFETY: plain kill(2) of a child we reap ourselves (so the pid
            // cannot have been reused while it has no recorded exit).
            if unsafe { libc::kill(p.pid, signal as i32) } != 0 {
                return Err(Error::Signal(p.pid, std::io::Error::last_os_error()));
            }
            Ok(())
        })
    }

    /// Blocks until the process has exited.
    pub fn wait(&self, id: &str, exec_id: &str) -> Result<Exit, Error> {
        let mut st = self.lock();
        loop {
            let c = st.get(id).ok_or_else(|| Error::NoContainer(id.into()))?;
            let p = c
                .proc(exec_id)
                .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()))?;
            if let Some(e) = p.exit {
                return Ok(e);
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn wait_timeout(&self, id: &str, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        let mut st = self.lock();
        while let Some(c) = st.get(id) {
            let now = std::time::Instant::now();
            if c.init.exit.is_some() || now >= deadline {
                return;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Deletes an exec record, or the container (hullc delete, unmount).
    pub fn delete(&self, id: &str, exec_id: &str) -> Result<ProcInfo, Error> {
        if !exec_id.is_empty() {
            let mut st = self.lock();
            let c = st
                .get_mut(id)
                .ok_or_else(|| Error::NoContainer(id.into()))?;
            let p = c
                .execs
                .get(exec_id)
                .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()))?;
            if p.pid != 0 && p.exit.is_none() {
                return Err(Error::Running);
            }
            // The pid and log files `launch` made for it; left, they pile up per exec.
            for f in [
                format!("exec-{exec_id}.pid"),
                format!("exec-{exec_id}-log.json"),
            ] {
                let _ = std::fs::remove_file(c.bundle.join(f));
            }
            return c
                .execs
                .remove(exec_id)
                .as_ref()
                .map(ProcInfo::from)
                .ok_or_else(|| Error::NoProcess(id.into(), exec_id.into()));
        }
        let (created, running) = {
            let st = self.lock();
            let c = st.get(id).ok_or_else(|| Error::NoContainer(id.into()))?;
            let s = c.init.status;
            (
                s == Status::Created,
                c.init.exit.is_none() && s != Status::Created,
            )
        };
        if running {
            return Err(Error::Running);
        }
        self.hullc.delete(id, created)?;
        if created {
            // The never-started init was killed: record its exit if it comes.
            self.wait_timeout(id, Duration::from_secs(2));
        }
        let mut st = self.lock();
        let c = st.remove(id).ok_or_else(|| Error::NoContainer(id.into()))?;
        drop(st);
        self.cv.notify_all();
        if c.rootfs_mounted {
            mount::unmount_all(&c.bundle.join("rootfs"))?;
        }
        for f in ["init.pid", "init-log.json"] {
            let _ = std::fs::remove_file(c.bundle.join(f));
        }
        Ok((&c.init).into())
    }

    /// Pause or resume the container's processes.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<(), Error> {
        self.with_proc(id, "", |p| {
            if paused {
                self.hullc.pause(id)?;
                p.status = Status::Paused;
            } else {
                self.hullc.resume(id)?;
                p.status = Status::Running;
            }
            Ok(())
        })
    }

    pub fn close_io(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        self.with_proc(id, exec_id, |p| {
            if let Some(io) = p.io.as_mut() {
                io.close_stdin();
            }
            Ok(())
        })
    }

    pub fn resize_pty(&self, id: &str, exec_id: &str, w: u32, h: u32) -> Result<(), Error> {
        self.with_proc(id, exec_id, |p| match &p.io {
            Some(io) => Ok(io.resize(w, h)?),
            None => Ok(()),
        })
    }

    /// Pids of the container's processes (`hullc ps`), with the exec id of
    /// each exec process.
    pub fn pids(&self, id: &str) -> Result<Vec<(i32, String)>, Error> {
        let pids = self.hullc.ps(id)?;
        let st = self.lock();
        let c = st.get(id).ok_or_else(|| Error::NoContainer(id.into()))?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec = c.execs.iter().find(|(_, p)| p.pid == pid);
                (pid, exec.map(|(k, _)| k.clone()).unwrap_or_default())
            })
            .collect())
    }

    /// True when no container is left (the shim may exit).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Records an exit the reaper reported; drains output first so Wait
    /// returns only once everything the process wrote is in the FIFOs.
    fn on_exit(&self, exit: Exit) {
        let mut io = None;
        let mut owner = None;
        let mut bundle = PathBuf::new();
        let mut started = false;
        {
            let mut st = self.lock();
            'find: for (id, c) in st.iter_mut() {
                let procs = std::iter::once((String::new(), &mut c.init))
                    .chain(c.execs.iter_mut().map(|(k, p)| (k.clone(), p)));
                for (exec_id, p) in procs {
                    if p.pid == exit.pid && p.exit.is_none() {
                        io = p.io.take();
                        owner = Some((id.clone(), exec_id));
                        bundle = c.bundle.clone();
                        started = p.status != Status::Created;
                        break 'find;
                    }
                }
            }
        }
        let Some((id, exec_id)) = owner else {
            return;
        };
        if let Some(io) = io.as_mut() {
            io.wait_output(DRAIN);
        }
        drop(io);
        // Journaled by the shim, as no `hull` need be running when a container exits; and
        // before the exit is recorded, so that `die` precedes whatever a waiter does next
        // (`run --rm`'s `destroy`). A never-started init killed by a delete did not `die`
        // (docker's `rm` of a created container journals only `destroy`).
        if exec_id.is_empty() && started {
            crate::journal::died(&bundle, &id, exit.status);
        }
        if let Ok(()) = self.with_proc(&id, &exec_id, |p| {
            p.exit = Some(exit);
            p.status = Status::Stopped;
            Ok(())
        }) {
            self.cv.notify_all();
            (self.sink)(Event::Exit {
                id,
                exec_id,
                exit,
                started,
            });
        }
    }

    fn check_ooms(&self) {
        let mut ooms = Vec::new();
        {
            let mut st = self.lock();
            for (id, c) in st.iter_mut() {
                let Some(f) = &c.oom_file else { continue };
                if c.init.status != Status::Running {
                    continue;
                }
                let n = oom_kills(f);
                if n > c.oom_kills {
                    c.oom_kills = n;
                    ooms.push(id.clone());
                }
            }
        }
        for id in ooms {
            (self.sink)(Event::Oom { id });
        }
    }
}

fn dispatch(tasks: std::sync::Weak<Tasks>, rx: Receiver<Exit>) {
    loop {
        let r = rx.recv_timeout(OOM_POLL);
        let Some(t) = tasks.upgrade() else { return };
        match r {
            Ok(exit) => {
                t.note_activity();
                t.on_exit(exit);
            }
            Err(RecvTimeoutError::Timeout) => t.idle_tick(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
