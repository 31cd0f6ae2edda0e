//! `exec`: create (kept in memory until the service exits), start on the hijacked
//! connection (or detached), resize, inspect for the exit code.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hull_engine::exec::ExecOptions;
use hull_engine::shim::Shim;
use hull_engine::{exec_io, Engine, Error as EngineError};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::create::StrSlice;
use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;
use crate::streams;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecConfig {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    cmd: Option<StrSlice>,
    env: Option<Vec<String>>,
    user: String,
    working_dir: String,
    privileged: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartConfig {
    detach: bool,
}

struct Entry {
    container: String,
    opts: ExecOptions,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    privileged: bool,
    started: bool,
    running: bool,
    pid: u32,
    exit: Option<u32>,
    /// The shim and its exec id once started (for resize).
    shim: Option<(Shim, String)>,
}

/// The execs made through this service.
#[derive(Default)]
pub(crate) struct Execs(Mutex<HashMap<String, Entry>>);

impl Execs {
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Entry) -> T) -> Result<T, ApiError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get_mut(id)
            .map(f)
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }
}

pub(crate) async fn create(app: &Arc<App>, id: &str, req: &mut Req) -> Result<Resp, ApiError> {
    let c: ExecConfig = req.json().await?;
    let cmd = c.cmd.map(StrSlice::into_vec).unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    let key = id.to_string();
    let r = blocking(app, move |e| {
        let r = e.find(&key)?;
        if !matches!(e.state(&r), hull_engine::State::Running { .. }) {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        Ok(r)
    })
    .await?;
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    let entry = Entry {
        container: r.id,
        opts: ExecOptions {
            cmd,
            env: c.env.unwrap_or_default(),
            user: nonempty(c.user),
            workdir: nonempty(c.working_dir),
            stdin: c.attach_stdin,
            tty: c.tty,
            console_size: None,
        },
        stdin: c.attach_stdin,
        stdout: c.attach_stdout,
        stderr: c.attach_stderr,
        privileged: c.privileged,
        started: false,
        running: false,
        pid: 0,
        exit: None,
        shim: None,
    };
    let exec_id = hull_engine::record::new_id()?;
    app.execs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(exec_id.clone(), entry);
    Ok(http::json(StatusCode::CREATED, &json!({"Id": exec_id})))
}

pub(crate) async fn inspect(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let v = app.execs.with(id, |x| {
        json!({
            "ID": id, "Running": x.running, "ExitCode": x.exit, "Pid": x.pid,
            "ContainerID": x.container, "OpenStdin": x.stdin, "OpenStdout": x.stdout,
            "OpenStderr": x.stderr, "CanRemove": false, "DetachKeys": "",
            "ProcessConfig": {"tty": x.opts.tty, "entrypoint": x.opts.cmd.first(),
                "arguments": x.opts.cmd.get(1..).unwrap_or_default(),
                "privileged": x.privileged, "user": x.opts.user.clone().unwrap_or_default()},
        })
    })?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn resize(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let (h, w) = (req.int("h")?.unwrap_or(0), req.int("w")?.unwrap_or(0));
    let (h, w) = (
        h.clamp(0, u16::MAX as i64) as u16,
        w.clamp(0, u16::MAX as i64) as u16,
    );
    // Before the start (the client sends its size at once) the size is used at the start.
    let shim = app.execs.with(id, |x| {
        x.opts.console_size = Some((h, w));
        x.shim.clone()
    })?;
    if let Some((s, exec_id)) = shim {
        blocking(app, move |_| Ok(s.resize(&exec_id, w.into(), h.into())?)).await?;
    }
    Ok(http::empty(StatusCode::OK))
}

/// Starts the exec (taking the entry's options as they are now); the exit code of a
/// start failure as docker gives it (127 not found, 126 not executable).
fn launch(e: &Engine, app: &App, id: &str) -> Result<exec_io::Started, (u32, String)> {
    let (container, opts) = app
        .execs
        .with(id, |x| (x.container.clone(), x.opts.clone()))
        .map_err(|x| (126, x.message))?;
    let r = e.find(&container).map_err(|x| (126, chain(&x)))?;
    match exec_io::start(e, &r, &opts) {
        Ok(s) => {
            let _ = app.execs.with(id, |x| {
                x.running = true;
                x.pid = s.pid;
                x.shim = Some((s.shim.clone(), s.exec_id.clone()));
            });
            Ok(s)
        }
        Err(err) => {
            let code = match err {
                EngineError::ExecNotFound(_) => 127,
                _ => 126,
            };
            Err((
                code,
                format!("OCI runtime exec failed: {}\r\n", chain(&err)),
            ))
        }
    }
}

/// Copies the exec's output into `tx` as frames, its input from `rx`; waits for the
/// exit, records it and deletes the exec from the shim.
fn run(
    app: &App,
    id: &str,
    s: exec_io::Started,
    tx: Option<mpsc::Sender<Bytes>>,
    rx: Option<mpsc::Receiver<Bytes>>,
) {
    let tty = app.execs.with(id, |x| x.opts.tty).unwrap_or(false);
    let send = |stream: u8, b: &[u8]| {
        if let Some(tx) = &tx {
            let _ = tx.blocking_send(streams::frame(stream, tty, b));
        }
    };
    if let (Some(mut fifo), Some(mut rx)) = (s.stdin, rx) {
        let (shim, exec_id) = (s.shim.clone(), s.exec_id.clone());
        std::thread::spawn(move || {
            while let Some(b) = rx.blocking_recv() {
                if fifo.write_all(&b).is_err() {
                    break;
                }
            }
            drop(fifo);
            let _ = shim.close_io(&exec_id);
        });
    }
    std::thread::scope(|sc| {
        if let Some(mut err) = s.stderr {
            let send = &send;
            sc.spawn(move || copy(&mut err, |b| send(2, b)));
        }
        let mut out = s.stdout;
        copy(&mut out, |b| send(1, b));
    });
    let code = s
        .shim
        .wait(&s.exec_id, None)
        .ok()
        .flatten()
        .map_or(137, |(c, _)| c);
    let _ = s.shim.delete(&s.exec_id);
    let _ = app.execs.with(id, |x| {
        x.running = false;
        x.exit = Some(code);
        x.shim = None;
    });
}

fn copy(from: &mut std::fs::File, mut to: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        to(&buf[..n]);
    }
}

pub(crate) async fn start(app: &Arc<App>, id: &str, req: &mut Req) -> Result<Resp, ApiError> {
    let c: StartConfig = req.json().await?;
    let id = id.to_string();
    let tty = app.execs.with(&id, |x| {
        let was = x.started;
        x.started = true;
        (was, x.opts.tty)
    })?;
    let (already, tty) = tty;
    if already {
        return Err(ApiError::conflict(format!("Exec {id} has already run")));
    }
    if c.detach {
        let a = app.clone();
        blocking(app, move |e| {
            let s =
                launch(e, &a, &id).map_err(|(_, m)| ApiError::internal(m.trim().to_string()))?;
            std::thread::spawn(move || run(&a, &id, s, None, None));
            Ok(())
        })
        .await?;
        return Ok(http::empty(StatusCode::OK));
    }
    let on_upgrade = req
        .upgrade
        .take()
        .ok_or_else(|| ApiError::bad("exec start needs a connection upgrade (Upgrade: tcp)"))?;
    let app = app.clone();
    tokio::spawn(async move {
        let Ok(conn) = on_upgrade.await else { return };
        let _busy = app.busy();
        let (rd, mut wr) = tokio::io::split(hyper_util::rt::TokioIo::new(conn));
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let (in_tx, in_rx) = mpsc::channel::<Bytes>(16);
        streams::read_into(rd, in_tx);
        let a = app.clone();
        let worker = tokio::task::spawn_blocking(move || match launch(&a.engine, &a, &id) {
            Ok(s) => run(&a, &id, s, Some(tx), Some(in_rx)),
            Err((code, msg)) => {
                let _ = tx.blocking_send(streams::frame(1, tty, msg.as_bytes()));
                let _ = a.execs.with(&id, |x| x.exit = Some(code));
            }
        });
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = worker.await;
        let _ = wr.shutdown().await;
    });
    Ok(streams::upgraded(if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }))
}
