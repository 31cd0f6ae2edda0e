//! ttrpc glue: containerd's Task service on top of [`crate::tasks::Tasks`],
//! and the events containerd expects.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use containerd_shim::event::Event as ShimEvent;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{self, MessageField};
use containerd_shim::protos::shim::oci::Options;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::{ProcessInfo, Status as PbStatus};
use containerd_shim::{api, ExitSignal, TtrpcContext, TtrpcResult};
use log::info;

use crate::events::Publisher;
use crate::hullc::Hullc;
use crate::metrics;
use crate::mount::Mount;
use crate::process::Status;
use crate::reaper::Reaper;
use crate::stdio::StdioPaths;
use crate::supervise::Supervisor;
use crate::tasks::{self, CreateOpts, Event, Tasks};

/// Where hullc keeps state when containerd passes no `Root` option
/// (runc's shim uses /run/containerd/runc the same way), per namespace.
pub const DEFAULT_ROOT: &str = "/run/containerd/hull";

pub struct Service {
    namespace: String,
    publisher: Arc<Publisher>,
    reaper: Arc<Reaper>,
    exit: Arc<ExitSignal>,
    tasks: OnceLock<Arc<Tasks>>,
    /// Restart policies and healthchecks of hull's containers.
    supervisor: Arc<Supervisor>,
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

fn rpc_err(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn to_rpc(e: tasks::Error) -> ttrpc::Error {
    use tasks::Error as E;
    let code = match e {
        E::NoContainer(_) | E::NoProcess(..) | E::Finished => Code::NOT_FOUND,
        E::Exists(_) => Code::ALREADY_EXISTS,
        E::Running | E::NoSpec(_) => Code::FAILED_PRECONDITION,
        _ => Code::UNKNOWN,
    };
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    rpc_err(code, msg)
}

fn pb_status(s: Status) -> PbStatus {
    match s {
        Status::Created => PbStatus::CREATED,
        Status::Running => PbStatus::RUNNING,
        Status::Paused => PbStatus::PAUSED,
        Status::Stopped => PbStatus::STOPPED,
    }
}

/// The hullc binary: `HULLC`, else `hullc` next to the shim, else on PATH.
pub fn default_hullc() -> PathBuf {
    if let Some(p) = std::env::var_os("HULLC") {
        return p.into();
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        let p = dir.join("hullc");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("hullc")
}

/// containerd's `SystemdCgroup` runtime option (runc's `options.SystemdCgroup`,
/// kubeadm's default on systemd hosts): hullc then runs with `--systemd-cgroup`.
pub fn systemd_cgroup_from_options(o: Option<&Options>) -> bool {
    o.is_some_and(|o| o.systemd_cgroup)
}

/// hullc binary and root from the runc-style runtime options, if any.
pub fn runtime_from_options(o: Option<&Options>, namespace: &str) -> (PathBuf, PathBuf) {
    let bin = o
        .map(|o| o.binary_name.clone())
        .filter(|b| !b.is_empty())
        .map_or_else(default_hullc, PathBuf::from);
    let root = o
        .map(|o| o.root.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_ROOT.into());
    (bin, PathBuf::from(root).join(namespace))
}

impl Service {
    pub fn new(
        namespace: String,
        publisher: Publisher,
        reaper: Arc<Reaper>,
        exit: Arc<ExitSignal>,
    ) -> Self {
        Service {
            namespace,
            publisher: Arc::new(publisher),
            supervisor: Arc::new(Supervisor::new(Arc::clone(&reaper))),
            reaper,
            exit,
            tasks: OnceLock::new(),
        }
    }

    fn emit<E: ShimEvent + protobuf::Message>(&self, ev: E) {
        self.publisher.publish(&self.namespace, ev);
    }

    fn tasks(&self) -> TtrpcResult<&Arc<Tasks>> {
        let t = self
            .tasks
            .get()
            .ok_or_else(|| rpc_err(Code::NOT_FOUND, "no container in this shim"))?;
        t.note_activity();
        Ok(t)
    }

    /// The lifecycle core, built at the first Create (which carries the
    /// runtime options that choose the hullc binary and root).
    fn tasks_for(&self, options: Option<&Options>) -> TtrpcResult<&Arc<Tasks>> {
        if let Some(t) = self.tasks.get() {
            return Ok(t);
        }
        let (bin, root) = runtime_from_options(options, &self.namespace);
        let hullc = Hullc::new(bin, root, Arc::clone(&self.reaper))
            .with_systemd_cgroup(systemd_cgroup_from_options(options));
        let (publisher, ns) = (Arc::clone(&self.publisher), self.namespace.clone());
        let supervisor = Arc::clone(&self.supervisor);
        let sink = Box::new(move |ev: Event| match ev {
            Event::Exit {
                id,
                exec_id,
                exit,
                started,
            } => {
                // A container created but never started is not restarted when a delete
                // (`hull rm`) kills its init: docker never restarts a removed container.
                if exec_id.is_empty() && started {
                    supervisor.exited(&id, exit.status);
                }
                publisher.publish(
                    &ns,
                    TaskExit {
                        container_id: id.clone(),
                        id: if exec_id.is_empty() { id } else { exec_id },
                        pid: exit.pid as u32,
                        exit_status: exit.status,
                        exited_at: MessageField::some(timestamp(exit.at)),
                        ..Default::default()
                    },
                )
            }
            Event::Oom { id } => publisher.publish(
                &ns,
                TaskOOM {
                    container_id: id,
                    ..Default::default()
                },
            ),
        });
        let t = Tasks::new(hullc, Arc::clone(&self.reaper), sink).map_err(to_rpc)?;
        Ok(self.tasks.get_or_init(|| t))
    }
}

fn parse_options(any: &MessageField<Any>) -> Option<Options> {
    use containerd_shim::protos::protobuf::Message;
    let a = any.as_ref()?;
    Options::parse_from_bytes(&a.value).ok()
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        info!("create {}", req.id);
        let options = parse_options(&req.options);
        if let Some(o) = &options {
            // `delete` (a separate process, after a crash) needs them too.
            let _ = containerd_shim::util::write_options(&req.bundle, o);
        }
        let tasks = self.tasks_for(options.as_ref())?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let rootfs = req
            .rootfs
            .iter()
            .map(|m| Mount {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let pid = tasks
            .create(CreateOpts {
                id: req.id.clone(),
                bundle: PathBuf::from(&req.bundle),
                rootfs,
                stdio,
            })
            .map_err(to_rpc)?;
        self.supervisor.created(&req.id, Path::new(&req.bundle));
        self.emit(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
                ..Default::default()
            }),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let tasks = self.tasks()?;
        let pid = tasks.start(&req.id, &req.exec_id).map_err(to_rpc)?;
        if req.exec_id.is_empty() {
            self.supervisor.started(&req.id, tasks);
            self.emit(TaskStart {
                container_id: req.id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
        } else {
            self.emit(TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let p = self
            .tasks()?
            .delete(&req.id, &req.exec_id)
            .map_err(to_rpc)?;
        let (status, at) = p.exit.map_or((0, SystemTime::now()), |e| (e.status, e.at));
        if req.exec_id.is_empty() {
            self.emit(TaskDelete {
                container_id: req.id.clone(),
                pid: p.pid as u32,
                exit_status: status,
                exited_at: MessageField::some(timestamp(at)),
                ..Default::default()
            });
        }
        Ok(api::DeleteResponse {
            pid: p.pid as u32,
            exit_status: status,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        self.tasks()?
            .add_exec(&req.id, &req.exec_id, spec, stdio)
            .map_err(to_rpc)?;
        self.emit(TaskExecAdded {
            container_id: req.id,
            exec_id: req.exec_id,
            ..Default::default()
        });
        Ok(api::Empty::new())
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (bundle, p) = self.tasks()?.state(&req.id, &req.exec_id).map_err(to_rpc)?;
        let mut r = api::StateResponse {
            id: req.id,
            exec_id: req.exec_id,
            bundle: bundle.to_string_lossy().into(),
            pid: p.pid as u32,
            stdin: p.stdio.stdin,
            stdout: p.stdio.stdout,
            stderr: p.stdio.stderr,
            terminal: p.stdio.terminal,
            ..Default::default()
        };
        r.set_status(pb_status(p.status));
        if let Some(e) = p.exit {
            r.exit_status = e.status;
            r.exited_at = MessageField::some(timestamp(e.at));
        }
        Ok(r)
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        self.tasks()?
            .kill(&req.id, &req.exec_id, req.signal, req.all)
            .map_err(to_rpc)?;
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let e = self.tasks()?.wait(&req.id, &req.exec_id).map_err(to_rpc)?;
        Ok(api::WaitResponse {
            exit_status: e.status,
            exited_at: MessageField::some(timestamp(e.at)),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let pids = self.tasks()?.pids(&req.id).map_err(to_rpc)?;
        let processes = pids
            .into_iter()
            .map(|(pid, _exec)| ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.tasks()?.set_paused(&req.id, true).map_err(to_rpc)?;
        self.emit(TaskPaused {
            container_id: req.id,
            ..Default::default()
        });
        Ok(api::Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.tasks()?.set_paused(&req.id, false).map_err(to_rpc)?;
        self.emit(TaskResumed {
            container_id: req.id,
            ..Default::default()
        });
        Ok(api::Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        self.tasks()?
            .close_io(&req.id, &req.exec_id)
            .map_err(to_rpc)?;
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        self.tasks()?
            .resize_pty(&req.id, &req.exec_id, req.width, req.height)
            .map_err(to_rpc)?;
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let res = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let tasks = self.tasks()?;
        tasks
            .hullc()
            .update(&req.id, &res)
            .map_err(|e| to_rpc(e.into()))?;
        Ok(api::Empty::new())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let v = self
            .tasks()?
            .hullc()
            .stats(&req.id)
            .map_err(|e| to_rpc(e.into()))?;
        let any =
            metrics::v1_metrics_any(&v).map_err(|e| rpc_err(Code::INTERNAL, e.to_string()))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self
            .tasks
            .get()
            .and_then(|t| t.state(&req.id, "").ok())
            .map_or(0, |(_, p)| p.pid as u32);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    /// The trait's default answers NOT_FOUND, which containerd reports as a missing task;
    /// UNIMPLEMENTED maps to errdefs.ErrNotImplemented, the truth: hullc has no CRIU support.
    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(rpc_err(
            Code::UNIMPLEMENTED,
            "checkpoint is not implemented by containerd-shim-hull-v2 (hullc has no CRIU support)",
        ))
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.tasks.get().is_none() || self.tasks.get().is_some_and(|t| t.is_empty()) {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
