//! More container endpoints: `rename`, `prune`, `stats` (docker's `StatsJSON`, streamed
//! or one-shot) and `archive` (GET/HEAD/PUT, what `docker cp` uses).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hull_engine::cp::{Owner, Side};
use hull_engine::stats::Sample;
use hull_engine::{Engine, Record};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

pub(crate) async fn rename(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let new = req
        .q("name")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    if new.is_empty() {
        return Err(ApiError::bad("the new name (name) is required"));
    }
    let id = id.to_string();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        Ok(e.rename(&r, &new)?)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /containers/prune`: every container that does not run.
pub(crate) async fn prune(app: &Arc<App>) -> Result<Resp, ApiError> {
    let a = app.clone();
    let v = blocking(app, move |e| {
        let (gone, err) = e.prune();
        a.removals.ended();
        if let Some(err) = err {
            return Err(err.into());
        }
        Ok(json!({"ContainersDeleted": gone, "SpaceReclaimed": 0}))
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// The host's CPU time in nanoseconds (`/proc/stat`), docker's `system_cpu_usage`: the
/// client divides the container's CPU time by its growth.
fn system_cpu_ns() -> u64 {
    // SAFETY: sysconf only reads a constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?;
            Some(
                line.split_whitespace()
                    .skip(1)
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>(),
            )
        })
        .map_or(0, |jiffies| jiffies * (1_000_000_000 / tick))
}

fn ncpu() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn cpu_json(s: &Sample, system: u64) -> Value {
    json!({"cpu_usage": {"total_usage": s.cpu_ns, "usage_in_kernelmode": 0,
        "usage_in_usermode": s.cpu_ns}, "system_cpu_usage": system,
        "online_cpus": ncpu(), "throttling_data": {}})
}

/// One `StatsJSON`: `pre` is the previous reading (zeros for the first).
fn stats_json(r: &Record, now: &(Sample, u64), pre: &(Sample, u64)) -> Value {
    let (s, p) = (&now.0, &pre.0);
    json!({
        "read": hull_engine::time::rfc3339(hull_engine::record::now_ns()),
        "preread": "0001-01-01T00:00:00Z",
        "id": r.id, "name": format!("/{}", r.name),
        "pids_stats": {"current": s.pids},
        "cpu_stats": cpu_json(s, now.1),
        "precpu_stats": cpu_json(p, pre.1),
        // The cache is already left out of the usage: no `inactive_file` to subtract.
        "memory_stats": {"usage": s.mem_usage, "limit": s.mem_limit, "stats": {}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": s.blk_read},
            {"major": 0, "minor": 0, "op": "write", "value": s.blk_write}]},
        "networks": {"eth0": {"rx_bytes": s.net_rx, "tx_bytes": s.net_tx,
            "rx_packets": 0, "tx_packets": 0, "rx_errors": 0, "tx_errors": 0,
            "rx_dropped": 0, "tx_dropped": 0}},
    })
}

fn reading(e: &Engine, r: &Record) -> Result<(Sample, u64), ApiError> {
    Ok((e.sample(r)?, system_cpu_ns()))
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: a line a second; `stream=false` one
/// answer with two readings a second apart (so the CPU share is known), `one-shot` one
/// reading.
pub(crate) async fn stats(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let stream = req
        .q("stream")
        .is_none_or(|s| matches!(s, "1" | "true" | "True"));
    let one_shot = req.flag("one-shot");
    let id = id.to_string();
    let r = blocking(app, move |e| Ok(e.find(&id)?)).await?;
    if !stream {
        let v = blocking(app, move |e| {
            let zero = (Sample::idle(), 0);
            let first = if one_shot { zero } else { reading(e, &r)? };
            if !one_shot {
                std::thread::sleep(Duration::from_secs(1));
            }
            let now = reading(e, &r)?;
            Ok(stats_json(&r, &now, &first))
        })
        .await?;
        return Ok(http::ok_json(&v));
    }
    let (tx, resp) = http::stream("application/json");
    let engine = app.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut pre = (Sample::idle(), 0);
        while let Ok(now) = reading(&engine, &r) {
            let mut line = serde_json::to_vec(&stats_json(&r, &now, &pre)).unwrap_or_default();
            line.push(b'\n');
            if tx.blocking_send(line.into()).is_err() {
                break;
            }
            pre = now;
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    Ok(resp)
}

/// `X-Docker-Container-Path-Stat`: base64 of docker's `PathStat`, the mode as Go's
/// `os.FileMode` (type bits at the top), which the client reads to choose how to copy.
fn path_stat(name: &str, md: &std::fs::Metadata, link: &str) -> String {
    use base64::Engine as _;
    use std::os::unix::fs::MetadataExt as _;
    let ft = md.file_type();
    let mut mode = md.mode() & 0o777;
    if ft.is_dir() {
        mode |= 1 << 31;
    } else if ft.is_symlink() {
        mode |= 1 << 27;
    }
    let mtime = hull_engine::time::rfc3339(md.mtime() as i128 * 1_000_000_000);
    let v = json!({"name": name, "size": md.len(), "mode": mode, "mtime": mtime,
        "linkTarget": link});
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// The last component of a container path (`/` for the root).
/// Never `..` or `.`: the staged copy is made at `DIR/NAME`, and `DIR/..` is hull's root.
fn base_name(path: &str) -> String {
    let t = path.trim_end_matches('/');
    let t = t.strip_suffix("/.").unwrap_or(t);
    match t.rsplit_once('/') {
        Some((_, n)) if !n.is_empty() && n != ".." && n != "." => n.into(),
        None if !t.is_empty() && t != ".." && t != "." => t.into(),
        _ => "/".into(),
    }
}

/// Copies `path` of `r` into a fresh temporary directory: (the directory, the copy).
fn copy_out(
    app: &App,
    e: &Engine,
    r: &Record,
    path: &str,
) -> Result<(tempfile::TempDir, std::path::PathBuf), ApiError> {
    let dir = tempfile::Builder::new()
        .prefix("archive-")
        .tempdir_in(&app.root)
        .map_err(|e| ApiError::internal(format!("cannot make a temporary directory: {e}")))?;
    let name = base_name(path);
    let dest = dir.path().join(if name == "/" { "root" } else { &name });
    e.copy(
        &Side::Container(r, path),
        &Side::Host(&dest),
        false,
        Owner::Keep,
    )?;
    Ok((dir, dest))
}

/// `HEAD` and `GET /containers/{id}/archive?path=P`: the stat header; with GET the
/// path as a tar of one entry named by its last component.
pub(crate) async fn archive_get(
    app: &Arc<App>,
    id: &str,
    req: &Req,
    head: bool,
) -> Result<Resp, ApiError> {
    let path = req
        .q("path")
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
        .to_string();
    let id = id.to_string();
    let a = app.clone();
    let (dir, copy, stat) = blocking(app, move |e| {
        let r = e.find(&id)?;
        let (dir, copy) = copy_out(&a, e, &r, &path).map_err(|err| match err.status {
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => ApiError::not_found(format!(
                "Could not find the file {path} in container {}",
                r.name
            )),
            _ => err,
        })?;
        let md = std::fs::symlink_metadata(&copy)
            .map_err(|e| ApiError::internal(format!("stat of the copy: {e}")))?;
        let link = std::fs::read_link(&copy).map_or(String::new(), |l| l.display().to_string());
        let stat = path_stat(&base_name(&path), &md, &link);
        Ok((dir, copy, stat))
    })
    .await?;
    let (tx, mut resp) = http::try_stream("application/x-tar");
    if let Ok(v) = hyper::header::HeaderValue::from_str(&stat) {
        resp.headers_mut().insert("X-Docker-Container-Path-Stat", v);
    }
    if head {
        return Ok(resp);
    }
    tokio::task::spawn_blocking(move || {
        let fail = tx.clone();
        let w = std::io::BufWriter::with_capacity(64 << 10, http::TryChanWriter(tx));
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let name = copy.file_name().map(|n| n.to_owned()).unwrap_or_default();
        // lstat: the staged copy of a container's symlink is that symlink, and `is_dir` (stat)
        // would have tar walk the host directory it points to.
        let is_dir = std::fs::symlink_metadata(&copy).is_ok_and(|m| m.is_dir());
        let res = if is_dir {
            b.append_dir_all(&name, &copy)
        } else {
            b.append_path_with_name(&copy, &name)
        };
        if let Err(e) = res.and_then(|()| b.finish()) {
            // Whatever is buffered goes first; the error then aborts the body.
            drop(b);
            http::TryChanWriter::fail(&fail, format!("archive of {}: {e}", name.to_string_lossy()));
        }
        drop(dir);
    });
    Ok(resp)
}

/// `PUT /containers/{id}/archive?path=DIR`: the tar in the body unpacked into `DIR` (an
/// existing directory: the client renames entries itself when the target is new).
pub(crate) async fn archive_put(app: &Arc<App>, id: &str, req: &mut Req) -> Result<Resp, ApiError> {
    let path = req
        .q("path")
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
        .to_string();
    let owner = if req.flag("copyUIDGID") {
        Owner::Keep
    } else {
        Owner::Fixed(0, 0)
    };
    let id = id.to_string();
    let r = blocking(app, move |e| Ok(e.find(&id)?)).await?;
    let tar = crate::body_file::to_temp_file(req, &app.root).await?;
    let root = app.root.clone();
    blocking(app, move |e| {
        let dir = crate::body_file::unpack_context(tar.path(), &root)?;
        let dest = format!("{}/", path.trim_end_matches('/'));
        let entries = std::fs::read_dir(dir.path())
            .map_err(|e| ApiError::internal(format!("reading the unpacked archive: {e}")))?;
        for ent in entries.flatten() {
            let src = ent.path();
            copy_in(e, &r, &src, &dest, owner)?;
        }
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::OK))
}

fn copy_in(e: &Engine, r: &Record, src: &Path, dest: &str, owner: Owner) -> Result<(), ApiError> {
    e.copy(&Side::Host(src), &Side::Container(r, dest), false, owner)
        .map_err(|err| match err {
            hull_engine::Error::Cp(hull_engine::cp::Error::NoDestDir(d)) => ApiError::not_found(
                format!("Could not find the file {d} in container {}", r.name),
            ),
            err => err.into(),
        })
}
