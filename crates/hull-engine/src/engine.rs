//! Container lifecycle over the image store, the container store and one
//! shim per container: state, start, signals, stop, wait, remove (the create
//! path is in `create.rs`, networking in `net.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hull_image::Store;

use crate::opts::MountSpec;
use crate::record::{self, Containers, ExitInfo, Record, StoreLock};
use crate::restart::RunLock;
use crate::shim::{self, Shim, TaskStatus};
use crate::volume::{self, Volumes};
use crate::{binaries, net, spec};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to find image {0:?} locally: pull it first with `hull pull {0}`")]
    NoImage(String),
    #[error("image store")]
    Store(#[from] hull_image::StoreError),
    #[error("cannot prepare the root filesystem")]
    Rootfs(#[from] hull_image::RootfsError),
    #[error(transparent)]
    Record(#[from] record::Error),
    #[error(transparent)]
    Spec(#[from] spec::Error),
    #[error(transparent)]
    Volume(#[from] volume::Error),
    #[error(transparent)]
    Shim(#[from] shim::Error),
    #[error(transparent)]
    Net(#[from] net::Error),
    #[error(transparent)]
    Plug(#[from] crate::net_plug::Error),
    #[error(transparent)]
    Opts(#[from] crate::opts::Error),
    #[error(transparent)]
    Policy(#[from] crate::policy::Error),
    #[error("bind source path does not exist: {0}")]
    BindSource(PathBuf),
    #[error("{0}")]
    Binary(#[from] binaries::Error),
    #[error("container {0} is running: stop it first, or remove it with rm -f")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is paused: unpause it first")]
    Paused(String),
    #[error("container {0} is already running")]
    AlreadyStarted(String),
    #[error(
        "container {0} is dead (its shim is gone and its state unknown): remove it with rm -f"
    )]
    Dead(String),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exec failed: the command was not found")]
    ExecNotFound(#[source] shim::Error),
    #[error("exec failed: the command cannot be executed")]
    ExecNotExecutable(#[source] shim::Error),
    #[error("{what}: {msg}")]
    Hullc { what: &'static str, msg: String },
    #[error(transparent)]
    Cdi(#[from] hull_cdi::ApplyError),
    #[error(transparent)]
    Cp(#[from] crate::cp::Error),
    #[error(transparent)]
    Extra(#[from] crate::extra::Error),
    #[error("cannot make the image")]
    Create(#[from] hull_image::CreateError),
    #[error("cannot write the container's filesystem")]
    Tar(#[source] hull_image::tarball::TarError),
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.into(),
        source,
    }
}

/// The state of a container as `ps`/`inspect` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running {
        pid: u32,
    },
    Paused {
        pid: u32,
    },
    Exited(ExitInfo),
    /// The shim is gone and no exit status was ever learnt.
    Dead,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running { .. } => "running",
            State::Paused { .. } => "paused",
            State::Exited(_) => "exited",
            State::Dead => "dead",
        }
    }
    pub fn is_live(&self) -> bool {
        matches!(self, State::Running { .. } | State::Paused { .. })
    }
}

pub struct Engine {
    pub root: PathBuf,
    pub containers: Containers,
    pub volumes: Volumes,
    /// Found on first use: `ps`, `inspect`, `network` work without them.
    hullc: OnceLock<PathBuf>,
    shim: OnceLock<PathBuf>,
    /// One ttrpc connection per shim for the whole command: each new one
    /// costs a connect and client threads here and reader and worker
    /// threads in the shim.
    shims: Mutex<HashMap<String, Shim>>,
}

fn find_once<'a>(
    cell: &'a OnceLock<PathBuf>,
    name: &'static str,
    env: &'static str,
) -> Result<&'a Path, Error> {
    if let Some(p) = cell.get() {
        return Ok(p);
    }
    let found = binaries::find(name, env)?;
    Ok(cell.get_or_init(|| found))
}

impl Engine {
    pub fn open(root: &Path) -> Result<Engine, Error> {
        Ok(Engine {
            root: root.into(),
            containers: Containers::open(root)?,
            volumes: Volumes::open(root),
            hullc: OnceLock::new(),
            shim: OnceLock::new(),
            shims: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn hullc(&self) -> Result<&Path, Error> {
        find_once(&self.hullc, "hullc", "HULLC")
    }

    pub(crate) fn shim_bin(&self) -> Result<&Path, Error> {
        find_once(&self.shim, "containerd-shim-hull-v2", "HULL_SHIM")
    }

    pub(crate) fn hullc_root(&self) -> PathBuf {
        self.root.join("hullc")
    }

    pub fn dir(&self, r: &Record) -> PathBuf {
        self.containers.dir_of(&r.id)
    }

    pub fn find(&self, key: &str) -> Result<Record, Error> {
        Ok(self.containers.find(key)?)
    }

    /// The client of `r`'s shim: the connection this engine already has, else a new one.
    pub fn shim(&self, r: &Record) -> Result<Shim, Error> {
        self.shim_for(&r.id)
    }

    pub(crate) fn shim_for(&self, id: &str) -> Result<Shim, Error> {
        let mut shims = self.shims.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = shims.get(id) {
            return Ok(s.clone());
        }
        let s = Shim::connect(&self.containers.dir_of(id), id)?;
        shims.insert(id.into(), s.clone());
        Ok(s)
    }

    /// Drops the connection to `id`'s shim (it is going away, or failed).
    pub(crate) fn forget_shim(&self, id: &str) {
        self.shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The container's state; once it is known to have exited, its network is released.
    ///
    /// Only a positive `Exited` releases: `Dead` means no more than that the shim did not
    /// answer and hullc could not be asked (missing binary, transient failure), and the
    /// container may well still run. Tearing its veth and lease down from a read-only command
    /// such as `ps` or `inspect` would cut a live container off; a dead one is released by
    /// `rm` or `system reset` instead.
    pub fn state(&self, r: &Record) -> State {
        let st = self.task_state(r);
        if let State::Exited(e) = st {
            if r.exit != Some(e) || r.holds_network() {
                self.settle_exit(&r.id, e);
            }
        }
        st
    }

    fn task_state(&self, r: &Record) -> State {
        let live = self.shim(r).and_then(|s| Ok(s.state("")?));
        if live.is_err() {
            self.forget_shim(&r.id);
        }
        match live {
            Ok(t) => match t.status {
                TaskStatus::Created => State::Created,
                TaskStatus::Running => State::Running { pid: t.pid },
                TaskStatus::Paused => State::Paused { pid: t.pid },
                TaskStatus::Stopped { code, at_ns } => State::Exited(ExitInfo::of(r, code, at_ns)),
                TaskStatus::Unknown => State::Dead,
            },
            Err(_) => r
                .exit
                .map_or_else(|| self.orphan_state(&r.id), State::Exited),
        }
    }

    /// The shim is gone (killed) and never told us an exit: ask hullc
    /// whether the container outlived it (it can: init is not the shim's).
    fn orphan_state(&self, id: &str) -> State {
        let Ok(hullc) = self.hullc() else {
            return State::Dead;
        };
        let out = std::process::Command::new(hullc)
            .arg("--root")
            .arg(self.hullc_root().join(shim::NAMESPACE))
            .args(["state", id])
            .output();
        let v: serde_json::Value = match out {
            Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap_or_default(),
            _ => return State::Dead,
        };
        let pid = v["pid"].as_u64().unwrap_or(0) as u32;
        match v["status"].as_str() {
            Some("running") => State::Running { pid },
            Some("paused") => State::Paused { pid },
            Some("created") => State::Created,
            _ => State::Dead,
        }
    }

    /// Starts a created container, or an exited one again (its task made anew, see
    /// [`Engine::recreate`]).
    ///
    /// A user's start: it clears the stop mark and the `RestartCount` (docker resets both).
    pub fn start(&self, r: &Record) -> Result<u32, Error> {
        let dir = self.dir(r);
        crate::policy::set_manual_stop(&dir, false);
        self.start_task(r, || {
            let _ = std::fs::remove_file(dir.join(crate::policy::RESTART_STATE));
        })
    }

    /// [`Engine::start`] without touching the stop mark, under the run lock; `prepare` runs
    /// under it too, once the start is sure to be tried (the task made, not running).
    pub(crate) fn start_task(&self, r: &Record, prepare: impl FnOnce()) -> Result<u32, Error> {
        let run = self.run_lock(&r.id, true)?;
        self.start_locked(r, &run, prepare)
    }

    /// [`Engine::start_task`] for a caller holding the run lock; a container whose shim is
    /// gone (killed, or the host rebooted) is made anew under a new shim.
    pub(crate) fn start_locked(
        &self,
        r: &Record,
        _run: &RunLock,
        prepare: impl FnOnce(),
    ) -> Result<u32, Error> {
        let st = self.state(r);
        let r = match st {
            _ if self.orphaned(r, &st) => self.recreate(r)?,
            State::Created => r.clone(),
            State::Exited(_) => self.recreate(r)?,
            State::Running { .. } | State::Paused { .. } => {
                return Err(Error::AlreadyStarted(r.name.clone()))
            }
            State::Dead => return Err(Error::Dead(r.name.clone())),
        };
        prepare();
        // Journaled before the start: a container that exits at once has its `die` journaled
        // by its shim as it happens, which may well be before the start call returns here.
        self.emit_mounts(&r);
        self.emit(&r, "start", &[]);
        let pid = self.shim(&r)?.start("")?;
        let mut r = r.clone();
        r.started_ns = Some(record::now_ns());
        // Asked while the process lives: hull learns of an exit only after it is gone.
        r.oom_counter = hull_cgroups::oom_counter_file(pid);
        self.containers.save(&r)?;
        Ok(pid)
    }

    /// docker's volume `mount` events, one per volume of a starting container.
    fn emit_mounts(&self, r: &Record) {
        let named = r.options.mounts.iter().filter_map(|m| match m {
            MountSpec::Volume {
                name,
                target,
                readonly,
            } => Some((name.as_str(), target.as_str(), !readonly)),
            _ => None,
        });
        let anon = r
            .anon_volumes
            .iter()
            .map(|v| (v.name.as_str(), v.target.as_str(), true));
        for (name, target, rw) in named.chain(anon) {
            let rw = if rw { "true" } else { "false" };
            self.volumes.emit(
                "mount",
                name,
                &[
                    ("container", &r.id),
                    ("destination", target),
                    ("read/write", rw),
                    ("propagation", ""),
                ],
            );
        }
    }

    /// `restart`: [`Engine::stop`] when it runs, then [`Engine::start`].
    pub fn restart(&self, r: &Record, timeout: Duration) -> Result<u32, Error> {
        self.stop(r, timeout)?;
        let pid = self.start(&self.containers.find(&r.id)?)?;
        self.emit(r, "restart", &[]);
        Ok(pid)
    }

    pub fn kill(&self, r: &Record, signal: u32) -> Result<(), Error> {
        match self.state(r) {
            State::Running { .. } | State::Paused { .. } => {
                // Before the signal: the shim must see the mark when the container exits.
                self.mark_stopped(r);
                self.shim(r)?.kill("", signal, false)?;
                self.emit(r, "kill", &[("signal", signal.to_string())]);
                Ok(())
            }
            _ => Err(Error::NotRunning(r.name.clone())),
        }
    }

    /// Blocks until the container exits; its exit status.
    pub fn wait(&self, r: &Record) -> Result<u32, Error> {
        if let State::Exited(e) = self.state(r) {
            return Ok(e.code);
        }
        match self.shim(r) {
            Ok(s) => {
                let (code, at_ns) = s.wait("", None)?.unwrap_or((137, record::now_ns()));
                self.remember_exit(r, code, at_ns);
                Ok(code)
            }
            Err(_) => Ok(r.exit.map_or(137, |e| e.code)),
        }
    }

    /// Saves an exit learnt from the shim's Wait and releases the network.
    pub fn remember_exit(&self, r: &Record, code: u32, at_ns: i128) {
        if let Ok(r) = self.containers.find(&r.id) {
            self.settle_exit(&r.id, ExitInfo::of(&r, code, at_ns));
        }
    }

    /// The stop signal (the image's `StopSignal`, else SIGTERM), then
    /// SIGKILL to every process after `timeout`.
    pub fn stop(&self, r: &Record, timeout: Duration) -> Result<(), Error> {
        // Also when it does not run: its shim may be waiting out a restart's back-off, which
        // a stop cancels (docker's stop of a `restarting` container).
        self.mark_stopped(r);
        let st = self.state(r);
        if !st.is_live() {
            return Ok(());
        }
        let s = self.shim(r)?;
        if matches!(st, State::Paused { .. }) {
            s.resume()?;
        }
        let sig = r
            .stop_signal
            .as_deref()
            .and_then(crate::signal::parse)
            .unwrap_or(libc::SIGTERM as u32);
        s.kill("", sig, false)?;
        // docker's order: `kill` (the stop signal, then SIGKILL after the timeout), the
        // shim's `die`, `stop`.
        self.emit(r, "kill", &[("signal", sig.to_string())]);
        let done = s.wait("", Some(timeout))?;
        let (code, at) = match done {
            Some(d) => d,
            None => {
                s.kill("", libc::SIGKILL as u32, true)?;
                self.emit(r, "kill", &[("signal", libc::SIGKILL.to_string())]);
                s.wait("", None)?.unwrap_or((137, record::now_ns()))
            }
        };
        self.remember_exit(r, code, at);
        self.emit(r, "stop", &[]);
        Ok(())
    }

    pub fn pause(&self, r: &Record, pause: bool) -> Result<(), Error> {
        match (self.state(r), pause) {
            (State::Running { .. }, true) => self.shim(r)?.pause()?,
            (State::Paused { .. }, false) => self.shim(r)?.resume()?,
            (State::Paused { .. }, true) => return Err(Error::Paused(r.name.clone())),
            _ => return Err(Error::NotRunning(r.name.clone())),
        }
        self.emit(r, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// Removes a container; a live one only with `force` (killed first); with `volumes`,
    /// its anonymous volumes too (`rm -v`, `--rm`).
    pub fn remove(&self, r: &Record, force: bool, volumes: bool) -> Result<(), Error> {
        self.kill_for_remove(r, force, false)?;
        let _lock = self.containers.lock()?;
        self.cleanup(r, volumes)?;
        self.emit(r, "destroy", &[]);
        Ok(())
    }

    /// [`Engine::remove`] for a caller that already holds the store lock (`system reset`):
    /// the lock is an flock, which belongs to the open file, so taking it again from this
    /// process would wait for the caller's own lock forever.
    pub(crate) fn remove_locked(
        &self,
        r: &Record,
        force: bool,
        volumes: bool,
        _held: &StoreLock,
    ) -> Result<(), Error> {
        self.kill_for_remove(r, force, true)?;
        self.cleanup(r, volumes)?;
        self.emit(r, "destroy", &[]);
        Ok(())
    }

    /// The part of a remove done before the store lock: a live container is refused, or with
    /// `force` killed (and waited for, up to 10 s).
    ///
    /// With `store_held` the stop mark is set without the run lock: a policy's start holds
    /// that lock while it waits for the store lock (to make the task anew), and waiting for
    /// it here, store lock held, would deadlock. That start then finds the container gone.
    fn kill_for_remove(&self, r: &Record, force: bool, store_held: bool) -> Result<(), Error> {
        let st = self.task_state(r);
        if st.is_live() {
            if !force {
                return Err(Error::Running(r.name.clone()));
            }
            if store_held {
                crate::policy::set_manual_stop(&self.dir(r), true);
            } else {
                self.mark_stopped(r);
            }
            if let Ok(s) = self.shim(r) {
                if matches!(st, State::Paused { .. }) {
                    let _ = s.resume();
                }
                if s.kill("", libc::SIGKILL as u32, true).is_ok() {
                    self.emit(r, "kill", &[("signal", libc::SIGKILL.to_string())]);
                }
                let _ = s.wait("", Some(Duration::from_secs(10)));
            }
        }
        Ok(())
    }

    /// Tears everything of `r` down: the task (through its shim, or hullc
    /// directly when the shim is gone), the shim, its network, the rootfs, the
    /// directory, and with `volumes` its anonymous volumes; the first error is
    /// returned. When the task could not be deleted only the shim goes: network,
    /// rootfs and directory stay, so that `rm` can be tried again.
    pub(crate) fn cleanup(&self, r: &Record, volumes: bool) -> Result<(), Error> {
        let mut first: Option<Error> = None;
        let task = match self.shim(r) {
            Ok(s) => {
                let d = match s.delete("") {
                    Ok(_) => Ok(()),
                    Err(_) => self.hullc_delete(&r.id),
                };
                s.shutdown();
                d
            }
            Err(_) => self.hullc_delete(&r.id),
        };
        self.forget_shim(&r.id);
        let task_gone = task.is_ok();
        if let Err(e) = task {
            first.get_or_insert(e);
        }
        // A task that could not be deleted may still run: its network and rootfs stay with
        // it (unmounting the rootfs or deleting the veth of a live container breaks it), and
        // so does the directory, so that `rm` can be tried again and finish the job.
        // `system reset` goes on to hullc, the rootfs and the networks itself.
        if task_gone {
            // The saved record: `r` may be older than the release at its exit.
            let held = self.containers.find(&r.id).ok().and_then(|r| r.net);
            match self.release_network(&r.id) {
                Err(e) => {
                    first.get_or_insert(e.into());
                }
                Ok(()) => {
                    if let Some(n) = held {
                        self.emit_network("disconnect", &n.network, &[("container", &r.id)]);
                    }
                }
            }
            let torn =
                Store::open(&self.root)
                    .map_err(Error::from)
                    .and_then(|mut store| match store.teardown_rootfs(&r.id) {
                        Ok(()) | Err(hull_image::RootfsError::NotFound(_)) => Ok(()),
                        Err(e) => Err(e.into()),
                    });
            if let Err(e) = torn {
                first.get_or_insert(e);
            }
            // The shim removes its socket as it exits, but not when it was killed.
            shim::remove_socket(&self.dir(r));
            if let Err(e) = self.containers.remove_dir(&r.id) {
                first.get_or_insert(e.into());
            }
            if volumes {
                if let Some(e) = self.remove_anon_volumes(r) {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub(crate) fn hullc_delete(&self, id: &str) -> Result<(), Error> {
        // No state directory: hullc never made this container (or deleted it).
        if !self.hullc_root().join(shim::NAMESPACE).join(id).exists() {
            return Ok(());
        }
        let hullc = self.hullc()?;
        let out = std::process::Command::new(hullc)
            .arg("--root")
            .arg(self.hullc_root().join(shim::NAMESPACE))
            .args(["delete", "--force", id])
            .output()
            .map_err(io("cannot run", hullc))?;
        let msg = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || msg.contains("does not exist") || msg.contains("not found") {
            return Ok(());
        }
        Err(Error::Hullc {
            what: "hullc delete",
            msg: msg.trim().into(),
        })
    }

    /// Containers using volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .containers
            .list()?
            .into_iter()
            .filter(|r| {
                r.options
                    .mounts
                    .iter()
                    .any(|m| matches!(m, MountSpec::Volume { name: n, .. } if n == name))
                    || r.anon_volumes.iter().any(|v| v.name == name)
            })
            .map(|r| r.name)
            .collect())
    }
}
