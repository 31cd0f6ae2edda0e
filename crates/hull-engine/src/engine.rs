//! Container lifecycle over the image store, the container store and one
//! shim per container: create (rootfs, bundle, shim), start, state, signals,
//! stop, wait, remove.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hull_image::{RootfsMode, Store};

use crate::opts::{ContainerOptions, MountSpec, Network};
use crate::record::{self, Containers, ExitInfo, Record};
use crate::shim::{self, Io, Shim, TaskStatus};
use crate::spec::{self, Inputs, ResolvedMount};
use crate::volume::{self, Volumes};
use crate::{binaries, logs};

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
    #[error("container {0} was already started")]
    AlreadyStarted(String),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {msg}")]
    Hullc { what: &'static str, msg: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
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
    hullc: PathBuf,
    shim: PathBuf,
}

impl Engine {
    pub fn open(root: &Path) -> Result<Engine, Error> {
        Ok(Engine {
            root: root.into(),
            containers: Containers::open(root)?,
            volumes: Volumes::open(root),
            hullc: binaries::find("hullc", "HULLC")?,
            shim: binaries::find("containerd-shim-hull-v2", "HULL_SHIM")?,
        })
    }

    fn hullc_root(&self) -> PathBuf {
        self.root.join("hullc")
    }

    pub fn dir(&self, r: &Record) -> PathBuf {
        self.containers.dir_of(&r.id)
    }

    pub fn find(&self, key: &str) -> Result<Record, Error> {
        Ok(self.containers.find(key)?)
    }

    /// Creates a container (rootfs, bundle, shim, `hullc create`) ready to
    /// start. Nothing is left behind when it fails.
    pub fn create(&self, image: &str, o: &ContainerOptions) -> Result<Record, Error> {
        let _lock = self.containers.lock()?;
        let mut store = Store::open(&self.root)?;
        let img = match store.lookup(image) {
            Ok(i) => i,
            Err(hull_image::StoreError::NotFound(_)) => return Err(Error::NoImage(image.into())),
            Err(e) => return Err(e.into()),
        };
        if let Some(n) = &o.name {
            self.containers.check_name(n)?;
        }
        let id = record::new_id()?;
        let name = match &o.name {
            Some(n) => n.clone(),
            None => {
                let names: Vec<String> = self
                    .containers
                    .list()?
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                record::name_for(&id, |c| names.iter().any(|n| n == c))
            }
        };
        let rootfs = store.prepare_rootfs(image, &id, RootfsMode::Auto)?;
        let dir = self.containers.dir_of(&id);
        let cfg = img.config.config.clone().unwrap_or_default();
        let rec = Record {
            id: id.clone(),
            name,
            image: image.into(),
            image_id: img.id.to_string(),
            created_ns: record::now_ns(),
            args: spec::args(&cfg, o).unwrap_or_default(),
            hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
            rootfs: rootfs.path.clone(),
            stop_signal: cfg.stop_signal.clone(),
            options: o.clone(),
            started_ns: None,
            exit: None,
        };
        let made = std::fs::create_dir(&dir)
            .map_err(io("cannot create container directory", &dir))
            .and_then(|()| self.containers.save(&rec).map_err(Error::from))
            .and_then(|()| self.build(&rec, &cfg, &dir));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = store.teardown_rootfs(&id);
            return Err(e);
        }
        drop(store);
        if let Err(e) = self.launch(&rec, &dir) {
            let _ = self.cleanup(&rec);
            return Err(e);
        }
        Ok(rec)
    }

    fn resolve_mounts(&self, o: &ContainerOptions) -> Result<Vec<ResolvedMount>, Error> {
        let mut out = Vec::new();
        for m in &o.mounts {
            let (source, readonly, tmpfs) = match m {
                MountSpec::Bind {
                    source, readonly, ..
                } => {
                    if !source.exists() {
                        return Err(Error::BindSource(source.clone()));
                    }
                    (source.clone(), *readonly, false)
                }
                MountSpec::Volume { name, readonly, .. } => {
                    (self.volumes.ensure(name)?, *readonly, false)
                }
                MountSpec::Tmpfs { .. } => (PathBuf::new(), false, true),
            };
            out.push(ResolvedMount {
                source,
                target: m.target().into(),
                readonly,
                tmpfs,
            });
        }
        Ok(out)
    }

    /// Writes the bundle: etc files, log files, `config.json`.
    fn build(
        &self,
        rec: &Record,
        cfg: &hull_image::ContainerConfig,
        dir: &Path,
    ) -> Result<(), Error> {
        let o = &rec.options;
        let mounts = self.resolve_mounts(o)?;
        write_etc(dir, &rec.hostname, o.network)?;
        let config = spec::build(
            &Inputs {
                id: &rec.id,
                image: cfg,
                rootfs: &rec.rootfs,
                mounts: &mounts,
                etc_dir: dir,
                hostname: &rec.hostname,
            },
            o,
        )?;
        let p = dir.join("config.json");
        let data = serde_json::to_vec_pretty(&config).unwrap_or_default();
        std::fs::write(&p, data).map_err(io("cannot write", &p))?;
        if o.stdin {
            make_fifo(&dir.join("stdin"))?;
        }
        Ok(())
    }

    fn launch(&self, rec: &Record, dir: &Path) -> Result<(), Error> {
        shim::spawn(&self.shim, dir, &rec.id)?;
        let s = Shim::connect(dir, &rec.id)?;
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let io = Io {
            stdin: if rec.options.stdin {
                path("stdin")
            } else {
                String::new()
            },
            stdout: logs::shim_path(dir),
            // A terminal has one stream.
            stderr: if rec.options.tty {
                String::new()
            } else {
                logs::shim_path(dir)
            },
            terminal: rec.options.tty,
        };
        s.create(dir, &io, &self.hullc, &self.hullc_root())?;
        Ok(())
    }

    pub fn shim(&self, r: &Record) -> Result<Shim, Error> {
        Ok(Shim::connect(&self.dir(r), &r.id)?)
    }

    pub fn state(&self, r: &Record) -> State {
        let live = self.shim(r).and_then(|s| Ok(s.state("")?));
        match live {
            Ok(t) => match t.status {
                TaskStatus::Created => State::Created,
                TaskStatus::Running => State::Running { pid: t.pid },
                TaskStatus::Paused => State::Paused { pid: t.pid },
                TaskStatus::Stopped { code, at_ns } => {
                    let e = ExitInfo { code, at_ns };
                    if r.exit != Some(e) {
                        let mut r = r.clone();
                        r.exit = Some(e);
                        let _ = self.containers.save(&r);
                    }
                    State::Exited(e)
                }
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
        let out = std::process::Command::new(&self.hullc)
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

    pub fn start(&self, r: &Record) -> Result<u32, Error> {
        match self.state(r) {
            State::Created => {}
            State::Running { .. } | State::Paused { .. } => {
                return Err(Error::AlreadyStarted(r.name.clone()))
            }
            _ => return Err(Error::AlreadyStarted(r.name.clone())),
        }
        let pid = self.shim(r)?.start("")?;
        let mut r = r.clone();
        r.started_ns = Some(record::now_ns());
        self.containers.save(&r)?;
        Ok(pid)
    }

    pub fn kill(&self, r: &Record, signal: u32) -> Result<(), Error> {
        match self.state(r) {
            State::Running { .. } | State::Paused { .. } => {
                Ok(self.shim(r)?.kill("", signal, false)?)
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

    fn remember_exit(&self, r: &Record, code: u32, at_ns: i128) {
        if let Ok(mut r) = self.containers.find(&r.id) {
            r.exit = Some(ExitInfo { code, at_ns });
            let _ = self.containers.save(&r);
        }
    }

    /// The stop signal (the image's `StopSignal`, else SIGTERM), then
    /// SIGKILL to every process after `timeout`.
    pub fn stop(&self, r: &Record, timeout: Duration) -> Result<(), Error> {
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
        let done = s.wait("", Some(timeout))?;
        let (code, at) = match done {
            Some(d) => d,
            None => {
                s.kill("", libc::SIGKILL as u32, true)?;
                s.wait("", None)?.unwrap_or((137, record::now_ns()))
            }
        };
        self.remember_exit(r, code, at);
        Ok(())
    }

    pub fn pause(&self, r: &Record, pause: bool) -> Result<(), Error> {
        match (self.state(r), pause) {
            (State::Running { .. }, true) => Ok(self.shim(r)?.pause()?),
            (State::Paused { .. }, false) => Ok(self.shim(r)?.resume()?),
            (State::Paused { .. }, true) => Err(Error::Paused(r.name.clone())),
            _ => Err(Error::NotRunning(r.name.clone())),
        }
    }

    /// Removes a container; a live one only with `force` (killed first).
    pub fn remove(&self, r: &Record, force: bool) -> Result<(), Error> {
        let st = self.state(r);
        if st.is_live() {
            if !force {
                return Err(Error::Running(r.name.clone()));
            }
            if let Ok(s) = self.shim(r) {
                if matches!(st, State::Paused { .. }) {
                    let _ = s.resume();
                }
                let _ = s.kill("", libc::SIGKILL as u32, true);
                let _ = s.wait("", Some(Duration::from_secs(10)));
            }
        }
        let _lock = self.containers.lock()?;
        self.cleanup(r)
    }

    /// Tears everything of `r` down: the task (through its shim, or hullc
    /// directly when the shim is gone), the shim, the rootfs, the directory.
    fn cleanup(&self, r: &Record) -> Result<(), Error> {
        match self.shim(r) {
            Ok(s) => {
                if s.delete("").is_err() {
                    self.hullc_delete(&r.id)?;
                }
                s.shutdown();
            }
            Err(_) => self.hullc_delete(&r.id)?,
        }
        let mut store = Store::open(&self.root)?;
        match store.teardown_rootfs(&r.id) {
            Ok(()) | Err(hull_image::RootfsError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.containers.remove_dir(&r.id)?;
        Ok(())
    }

    fn hullc_delete(&self, id: &str) -> Result<(), Error> {
        let out = std::process::Command::new(&self.hullc)
            .arg("--root")
            .arg(self.hullc_root().join(shim::NAMESPACE))
            .args(["delete", "--force", id])
            .output()
            .map_err(io("cannot run", &self.hullc))?;
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
            })
            .map(|r| r.name)
            .collect())
    }
}

pub(crate) fn make_fifo(p: &Path) -> Result<(), Error> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Error::Io {
        what: "bad path",
        path: p.into(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io("cannot create fifo", p)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `hostname`, `hosts` and `resolv.conf` for the container.
fn write_etc(dir: &Path, hostname: &str, net: Network) -> Result<(), Error> {
    let write = |f: &str, s: String| {
        let p = dir.join(f);
        std::fs::write(&p, s).map_err(io("cannot write", &p))
    };
    write("hostname", format!("{hostname}\n"))?;
    let hosts = match net {
        Network::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
    };
    write("hosts", format!("{hosts}127.0.1.1\t{hostname}\n"))?;
    // Without a network only the host's resolver config makes sense to copy
    // (docker does the same); loopback resolvers are useless in a netns.
    let resolv: String = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            net == Network::Host
                || !(l.starts_with("nameserver 127.") || l.starts_with("nameserver ::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write("resolv.conf", resolv)
}
