//! The streaming container endpoints: `wait` (headers at once, the body at the exit),
//! `logs` (json-file entries, docker's multiplexed framing unless the container has a
//! terminal) and `attach` (the connection hijacked: output as `logs -f` from the current
//! end, the client's input into the container's stdin FIFO).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hull_engine::logs::{self, Exited, Follower, Sink};
use hull_engine::{Engine, Record, State};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::http::{self, Body, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

/// Containers with an attached client, so that `AutoRemove` waits until the client has
/// had all of the output (the removal deletes the log).
#[derive(Default)]
pub(crate) struct Attached {
    count: Mutex<HashMap<String, usize>>,
    cv: Condvar,
}

pub(crate) struct AttachGuard<'a>(&'a Attached, String);

impl Attached {
    fn hold(&self, id: &str) -> AttachGuard<'_> {
        *self.lock().entry(id.into()).or_default() += 1;
        AttachGuard(self, id.into())
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Waits (at most `limit`) until no client is attached to `id`.
    pub(crate) fn wait_detached(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut m = self.lock();
        while m.get(id).is_some_and(|n| *n > 0) {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            m = self
                .cv
                .wait_timeout(m, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for AttachGuard<'_> {
    fn drop(&mut self) {
        let mut m = self.0.lock();
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
        self.0.cv.notify_all();
    }
}

/// Removals this service made, so that `wait?condition=removed` answers as one ends rather
/// than at its next look (docker's `run --rm` waits for that answer, so a look every 20 ms
/// cost it 10 ms on average). A removal by another process (`hull rm`) is still only seen
/// by looking.
#[derive(Default)]
pub(crate) struct Removals {
    done: Mutex<u64>,
    cv: Condvar,
}

impl Removals {
    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.done.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// How many removals have ended so far.
    pub(crate) fn count(&self) -> u64 {
        *self.lock()
    }
    /// A removal (successful or not) has ended.
    pub(crate) fn ended(&self) {
        *self.lock() += 1;
        self.cv.notify_all();
    }
    /// Waits until a removal after the `seen`-th has ended, at most `limit`.
    fn wait_after(&self, seen: u64, limit: Duration) {
        let m = self.lock();
        let _ = self.cv.wait_timeout_while(m, limit, |n| *n == seen);
    }
}

/// A `Write` that sends what it is given as docker stream frames (8-byte header: stream
/// 1 = stdout or 2 = stderr, 3 zero bytes, big-endian length), or raw for a terminal.
struct Frames {
    tx: Option<mpsc::Sender<Bytes>>,
    stream: u8,
    raw: bool,
}

impl Write for Frames {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(tx) = &self.tx else {
            return Ok(buf.len());
        };
        if buf.is_empty() {
            return Ok(0);
        }
        tx.blocking_send(frame(self.stream, self.raw, buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `buf` as one frame of `stream` (1 stdout, 2 stderr), or as it is when `raw`.
pub(crate) fn frame(stream: u8, raw: bool, buf: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(buf.len() + 8);
    if !raw {
        v.extend_from_slice(&[stream, 0, 0, 0]);
        v.extend_from_slice(&(buf.len() as u32).to_be_bytes());
    }
    v.extend_from_slice(buf);
    v.into()
}

/// The output writers for `r`: stdout/stderr as asked, both raw for a terminal.
fn frames(tx: &mpsc::Sender<Bytes>, r: &Record, out: bool, err: bool) -> (Frames, Frames) {
    let raw = r.options.tty;
    let f = |on: bool, stream| Frames {
        tx: on.then(|| tx.clone()),
        stream,
        raw,
    };
    (f(out, 1), f(err, 2))
}

fn stream_type(r: &Record) -> &'static str {
    if r.options.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Sets `exited` once the container of `id` has exited: `after_start` is the start time
/// it had when the client came; an exited container whose start time is still that one
/// has not been started again yet (`start -a` attaches before it starts).
fn watch_exit(e: Arc<Engine>, id: String, after_start: Option<i128>, exited: Exited) {
    std::thread::spawn(move || {
        while !exited.is_set() {
            let Ok(r) = e.find(&id) else { break };
            match e.state(&r) {
                State::Exited(_) | State::Dead if r.started_ns == after_start => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                State::Exited(_) | State::Dead => break,
                _ => {
                    let _ = e.wait(&r);
                    break;
                }
            }
        }
        exited.set();
    });
}

pub(crate) async fn wait(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let cond = req.q("condition").unwrap_or("not-running").to_string();
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!("invalid condition: {cond:?}")));
    }
    let key = id.to_string();
    let r = blocking(app, move |e| Ok(e.find(&key)?)).await?;
    let (tx, resp) = http::stream("application/json");
    let e = app.engine.clone();
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        // `next-exit` is taken as `not-running`: the client asks for it just before it
        // starts the container, and a fast container may be gone before we look.
        let mut code = r.exit.map_or(0, |x| x.code);
        if let Ok(cur) = e.find(&r.id) {
            code = e.wait(&cur).unwrap_or(code);
        }
        let mut error = serde_json::Value::Null;
        if cond == "removed" {
            // The directory goes last in a removal: its record may be unreadable before.
            // Bounded: a removal that failed must not hold the client forever (dockerd
            // answers with the removal's error then).
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                // Counted before the look: a removal that ends in between wakes the wait.
                let seen = app.removals.count();
                if !e.dir(&r).exists() || tx.is_closed() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    error = serde_json::json!({"Message": "the container was not removed"});
                    break;
                }
                app.removals.wait_after(seen, Duration::from_millis(20));
            }
        }
        let body = serde_json::json!({"StatusCode": code, "Error": error});
        let _ = tx.blocking_send(Bytes::from(format!("{body}\n")));
    });
    Ok(resp)
}

pub(crate) async fn logs(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let (out, err) = (req.flag("stdout"), req.flag("stderr"));
    if !out && !err {
        return Err(ApiError::bad("You must choose at least one stream"));
    }
    let follow = req.flag("follow");
    let timestamps = req.flag("timestamps");
    let tail = match req.q("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("invalid tail value {n:?}")))?,
        ),
    };
    let key = id.to_string();
    let (r, live) = blocking(app, move |e| {
        let r = e.find(&key)?;
        let live = e.state(&r).is_live();
        Ok((r, live))
    })
    .await?;
    let (tx, resp) = http::stream(stream_type(&r));
    let e = app.engine.clone();
    let exited = Exited::new().map_err(|x| ApiError::internal(x.to_string()))?;
    // Dropped when the copy ends: the watch below then lets its sender go too, which
    // ends the body.
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    if follow && live {
        watch_exit(e.clone(), r.id.clone(), None, exited.clone());
        // A client that goes away ends the follow.
        let (t, x) = (tx.clone(), exited.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = t.closed() => x.set(),
                _ = finished => {}
            }
        });
    }
    tokio::task::spawn_blocking(move || {
        let _done = done;
        let dir = e.dir(&r);
        let (mut o, mut er) = frames(&tx, &r, out, err);
        let mut sink = Sink {
            out: &mut o,
            err: &mut er,
            timestamps,
        };
        let Ok(offset) = logs::print(&dir, tail, &mut sink) else {
            return;
        };
        if follow && live {
            let _ = Follower::from(&dir, offset).follow(&mut sink, &exited);
        }
    });
    Ok(resp)
}

/// The 101 answer that hands the connection over.
pub(crate) fn upgraded(ctype: &str) -> Resp {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Content-Type", ctype)
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(Body::Full(None))
        .unwrap_or_else(|_| http::empty(StatusCode::INTERNAL_SERVER_ERROR))
}

pub(crate) async fn attach(app: &Arc<App>, id: &str, req: &mut Req) -> Result<Resp, ApiError> {
    let (out, err, stdin) = (req.flag("stdout"), req.flag("stderr"), req.flag("stdin"));
    let replay = req.flag("logs");
    let stream = req.flag("stream");
    let key = id.to_string();
    let (r, offset) = blocking(app, move |e| {
        let r = e.find(&key)?;
        let offset = std::fs::metadata(e.dir(&r).join(logs::LOG)).map_or(0, |m| m.len());
        Ok((r, offset))
    })
    .await?;
    let on_upgrade = req
        .upgrade
        .take()
        .ok_or_else(|| ApiError::bad("attach needs a connection upgrade (Upgrade: tcp)"))?;
    let app = app.clone();
    let resp = upgraded(stream_type(&r));
    tokio::spawn(async move {
        let Ok(conn) = on_upgrade.await else { return };
        let _busy = app.busy();
        let io = hyper_util::rt::TokioIo::new(conn);
        let (rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let exited = match Exited::new() {
            Ok(x) => x,
            Err(_) => return,
        };
        if stdin && r.options.stdin {
            feed_stdin(app.engine.clone(), r.clone(), rd);
        }
        let offset = if replay { 0 } else { offset };
        if stream {
            watch_exit(
                app.engine.clone(),
                r.id.clone(),
                r.started_ns,
                exited.clone(),
            );
        } else {
            exited.set();
        }
        let pump = {
            let (app, r, exited) = (app.clone(), r.clone(), exited.clone());
            tokio::task::spawn_blocking(move || {
                let _held = app.attached.hold(&r.id);
                let (mut o, mut er) = frames(&tx, &r, out, err);
                let mut sink = Sink {
                    out: &mut o,
                    err: &mut er,
                    timestamps: false,
                };
                let dir = app.engine.dir(&r);
                let _ = Follower::from(&dir, offset).follow(&mut sink, &exited);
            })
        };
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                exited.set();
                break;
            }
        }
        let _ = pump.await;
        let _ = wr.shutdown().await;
    });
    Ok(resp)
}

/// Copies the client's input into the container's stdin FIFO until the client closes
/// its side, then tells the shim input ended (the program sees EOF).
/// Sends what the client writes on the hijacked connection, until its half-close.
pub(crate) fn read_into<R>(mut rd: R, tx: mpsc::Sender<Bytes>)
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
}

fn feed_stdin<R>(e: Arc<Engine>, r: Record, rd: R)
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    read_into(rd, tx);
    std::thread::spawn(move || {
        let path = e.dir(&r).join("stdin");
        let Ok(mut fifo) = open_fifo(&path) else {
            return;
        };
        while let Some(b) = rx.blocking_recv() {
            if fifo.write_all(&b).is_err() {
                break;
            }
        }
        drop(fifo);
        if let Ok(s) = e.shim(&r) {
            let _ = s.close_io("");
        }
    });
}

fn open_fifo(p: &Path) -> std::io::Result<std::fs::File> {
    // Read-write: an open never waits for a reader (fifo(7)), even once the shim let go.
    std::fs::OpenOptions::new().read(true).write(true).open(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_removal_wakes_its_waiter_at_once() {
        let r = Arc::new(Removals::default());
        let seen = r.count();
        let t = Instant::now();
        let ender = {
            let r = r.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                r.ended();
            })
        };
        r.wait_after(seen, Duration::from_secs(10));
        let took = t.elapsed();
        ender.join().unwrap();
        assert!(took < Duration::from_secs(5), "woken after {took:?}");
        assert_eq!(r.count(), seen + 1);
        // One that ended before the wait began is not waited for.
        let t = Instant::now();
        r.wait_after(seen, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
