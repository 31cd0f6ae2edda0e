//! Starting `containerd-shim-hull-v2` without containerd and driving it over
//! ttrpc with the Task API client. One shim per container; it outlives hull
//! and keeps the container's stdio, exit status and reaping.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::ttrpc::{self, context};
use containerd_shim_protos::types::task::Status as PbStatus;
use containerd_shim_protos::{Client, TaskClient};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the shim {bin}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the shim exited before serving (see {log})")]
    NotServing { log: PathBuf },
    #[error("cannot connect to the shim at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: ttrpc::Error,
    },
    #[error("shim {call}: {msg}")]
    Rpc { call: &'static str, msg: String },
}

/// Namespace the shim is told (it names hullc's state directory).
pub const NAMESPACE: &str = "hull";

/// What a task is doing, as the shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped { code: u32, at_ns: i128 },
    Unknown,
}

pub struct TaskState {
    pub pid: u32,
    pub status: TaskStatus,
}

/// I/O paths handed to the shim for a process.
#[derive(Default, Clone)]
pub struct Io {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Where shim sockets live unless `HULL_SHIM_SOCKET_DIR` says otherwise.
pub const SOCKET_DIR: &str = "/run/hull/s";

/// The shim's socket for the container directory `dir`:
/// `SOCKET_DIR/<sha256(canonical dir)>.sock`, as containerd does. Not in the
/// directory itself: sun_path holds 108 bytes and `--root` may be long. The
/// directory's path names both the root and the id, so two roots never share
/// a socket; hashing its canonical form makes every spelling of the root agree.
pub fn socket_path(dir: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let hash = hull_image::Digest::of(canon.as_os_str().as_encoded_bytes());
    let base = std::env::var_os("HULL_SHIM_SOCKET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(SOCKET_DIR), PathBuf::from);
    base.join(format!("{}.sock", hash.hex()))
}

/// Removes the socket of a shim that is gone without doing it itself (killed).
pub fn remove_socket(dir: &Path) {
    let _ = std::fs::remove_file(socket_path(dir));
}

/// Starts the long-lived shim for container `id` with its bundle in `dir`,
/// returning once it serves.
///
/// The shim is run directly in its serving mode (`-socket`, see
/// [`socket_path`]; it removes the socket when it exits) rather than through
/// `start`, which would fork once more. No `TTRPC_ADDRESS`: the shim's
/// standalone mode, events are dropped.
pub fn spawn(bin: &Path, dir: &Path, id: &str) -> Result<(), Error> {
    let log = dir.join("shim.log");
    let stderr = std::fs::File::create(&log).map_err(|source| Error::Spawn {
        bin: bin.into(),
        source,
    })?;
    let socket = format!("unix://{}", socket_path(dir).display());
    let mut child = Command::new(bin)
        .args(["-namespace", NAMESPACE, "-id", id, "-address", ""])
        .args(["-socket", &socket])
        .env_remove("TTRPC_ADDRESS")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|source| Error::Spawn {
            bin: bin.into(),
            source,
        })?;
    // The shim closes its stdout once its server is up.
    let mut out = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_end(&mut out);
    }
    if let Ok(Some(_)) = child.try_wait() {
        return Err(Error::NotServing { log });
    }
    // The shim setsid()s and outlives us; whoever is init reaps it.
    Ok(())
}

/// A request context; ttrpc reads a timeout of 0 as none, so a zero deadline
/// (`stop -t 0`) becomes the shortest real one.
fn ctx(timeout: Option<Duration>) -> context::Context {
    context::with_timeout(timeout.map_or(0, |d| (d.as_nanos() as i64).max(1)))
}

fn ts_ns(
    t: &MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) -> i128 {
    t.as_ref()
        .map_or(0, |t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128)
}

#[derive(Clone)]
pub struct Shim {
    client: TaskClient,
    id: String,
}

macro_rules! rpc {
    ($name:literal, $e:expr) => {
        $e.map_err(|e| Error::Rpc {
            call: $name,
            msg: match e {
                ttrpc::Error::RpcStatus(s) => s.message().to_string(),
                other => other.to_string(),
            },
        })
    };
}

impl Shim {
    pub fn connect(dir: &Path, id: &str) -> Result<Shim, Error> {
        let path = socket_path(dir);
        let c = Client::connect(&format!("unix://{}", path.display()))
            .map_err(|source| Error::Connect { path, source })?;
        Ok(Shim {
            client: TaskClient::new(c),
            id: id.into(),
        })
    }

    pub fn create(
        &self,
        bundle: &Path,
        io: &Io,
        hullc: &Path,
        hullc_root: &Path,
    ) -> Result<u32, Error> {
        let opts = Options {
            binary_name: hullc.to_string_lossy().into(),
            root: hullc_root.to_string_lossy().into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: opts.write_to_bytes().unwrap_or_default(),
            ..Default::default()
        };
        let req = api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: bundle.to_string_lossy().into(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            options: MessageField::some(any),
            ..Default::default()
        };
        Ok(rpc!("create", self.client.create(ctx(None), &req))?.pid)
    }

    pub fn start(&self, exec_id: &str) -> Result<u32, Error> {
        let req = api::StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        Ok(rpc!("start", self.client.start(ctx(None), &req))?.pid)
    }

    pub fn state(&self, exec_id: &str) -> Result<TaskState, Error> {
        let req = api::StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = rpc!(
            "state",
            self.client.state(ctx(Some(Duration::from_secs(10))), &req)
        )?;
        let status = match r.status.enum_value_or_default() {
            PbStatus::CREATED => TaskStatus::Created,
            PbStatus::RUNNING | PbStatus::PAUSING => TaskStatus::Running,
            PbStatus::PAUSED => TaskStatus::Paused,
            PbStatus::STOPPED => TaskStatus::Stopped {
                code: r.exit_status,
                at_ns: ts_ns(&r.exited_at),
            },
            PbStatus::UNKNOWN => TaskStatus::Unknown,
        };
        Ok(TaskState { pid: r.pid, status })
    }

    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), Error> {
        let req = api::KillRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            signal,
            all,
            ..Default::default()
        };
        rpc!("kill", self.client.kill(ctx(None), &req)).map(drop)
    }

    /// The exit status and time; `None` when `timeout` passed first.
    pub fn wait(
        &self,
        exec_id: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<(u32, i128)>, Error> {
        let req = api::WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        match self.client.wait(ctx(timeout), &req) {
            Ok(r) => Ok(Some((r.exit_status, ts_ns(&r.exited_at)))),
            Err(_) if timeout.is_some() => Ok(None),
            Err(e) => rpc!("wait", Err(e)),
        }
    }

    pub fn delete(&self, exec_id: &str) -> Result<(u32, i128), Error> {
        let req = api::DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = rpc!("delete", self.client.delete(ctx(None), &req))?;
        Ok((r.exit_status, ts_ns(&r.exited_at)))
    }

    /// Adds an exec process; `spec` is the runtime-spec process JSON.
    pub fn exec(&self, exec_id: &str, spec: &[u8], io: &Io) -> Result<(), Error> {
        let any = Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: spec.to_vec(),
            ..Default::default()
        };
        let req = api::ExecProcessRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            spec: MessageField::some(any),
            ..Default::default()
        };
        rpc!("exec", self.client.exec(ctx(None), &req)).map(drop)
    }

    pub fn pause(&self) -> Result<(), Error> {
        let req = api::PauseRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        rpc!("pause", self.client.pause(ctx(None), &req)).map(drop)
    }

    pub fn resume(&self) -> Result<(), Error> {
        let req = api::ResumeRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        rpc!("resume", self.client.resume(ctx(None), &req)).map(drop)
    }

    pub fn pids(&self) -> Result<Vec<u32>, Error> {
        let req = api::PidsRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let r = rpc!("pids", self.client.pids(ctx(None), &req))?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    pub fn resize(&self, exec_id: &str, width: u32, height: u32) -> Result<(), Error> {
        let req = api::ResizePtyRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            width,
            height,
            ..Default::default()
        };
        rpc!("resize", self.client.resize_pty(ctx(None), &req)).map(drop)
    }

    pub fn close_io(&self, exec_id: &str) -> Result<(), Error> {
        let req = api::CloseIORequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            stdin: true,
            ..Default::default()
        };
        rpc!("close_io", self.client.close_io(ctx(None), &req)).map(drop)
    }

    /// Asks the shim to exit (it does once no task is left).
    pub fn shutdown(&self) {
        let req = api::ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        // The shim may exit before answering; either way it is going.
        let _ = self
            .client
            .shutdown(ctx(Some(Duration::from_secs(5))), &req);
    }
}
