//! Container endpoints without streams: list, inspect, start, stop/restart, kill,
//! pause/unpause, top, resize, remove.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hull_engine::{inspect, record, Engine, Record, State};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

/// docker's `filters` query: `{"label": ["k=v"], "status": ["running"]}`; the older
/// `{"label": {"k=v": true}}` form too.
pub(crate) fn filters(req: &Req) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = req.q("filters").filter(|f| !f.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: HashMap<String, Value> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad(format!("invalid filters {raw:?}: {e}")))?;
    let mut out = HashMap::new();
    for (k, v) in v {
        let list = match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Value::Object(o) => o
                .into_iter()
                .filter(|(_, b)| b.as_bool() == Some(true))
                .map(|(k, _)| k)
                .collect(),
            _ => return Err(ApiError::bad(format!("invalid filter {k:?}"))),
        };
        out.insert(k, list);
    }
    Ok(out)
}

/// Whether `r`'s labels satisfy every `key` or `key=value` of `want`.
pub(crate) fn labels_match(labels: &[(String, String)], want: &[String]) -> bool {
    want.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.iter().any(|(lk, lv)| lk == k && lv == v),
        None => labels.iter().any(|(lk, _)| lk == w),
    })
}

fn keep(r: &Record, st: &State, f: &HashMap<String, Vec<String>>) -> Result<bool, ApiError> {
    for (k, want) in f {
        let ok = match k.as_str() {
            "label" => labels_match(&r.options.labels, want),
            "name" => want
                .iter()
                .any(|n| r.name.contains(n.trim_start_matches('/'))),
            "id" => want.iter().any(|i| r.id.starts_with(i.as_str())),
            "status" => want.iter().any(|s| s == st.name()),
            "ancestor" => want
                .iter()
                .any(|a| &r.image == a || r.image_id.contains(a.as_str())),
            "exited" => match st {
                State::Exited(e) => want.iter().any(|c| c == &e.code.to_string()),
                _ => false,
            },
            "network" => want.iter().any(|n| inspect::network_name(r) == *n),
            other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One entry of `GET /containers/json` (docker's `types.Container`).
fn summary(e: &Engine, r: &Record, st: &State, now: i128) -> Value {
    let live = st.is_live();
    let ports: Vec<Value> = match (&r.net, live) {
        (Some(n), true) => n
            .ports
            .iter()
            .map(|p| {
                json!({"IP": p.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                    "PrivatePort": p.container_port, "PublicPort": p.host_port,
                    "Type": p.protocol.as_str()})
            })
            .collect(),
        _ => Vec::new(),
    };
    let settings = hull_engine::net_plug::settings_json(r, None);
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": r.args.join(" "),
        "Created": (r.created_ns / 1_000_000_000) as i64,
        "Ports": ports,
        "Labels": inspect::labels(r),
        "State": st.name(),
        "Status": inspect::status_with_health(e, st, r, now),
        "HostConfig": {"NetworkMode": inspect::network_name(r)},
        "NetworkSettings": {"Networks": settings["Networks"]},
        "Mounts": inspect::mounts_json(e, r),
    })
}

pub(crate) async fn list(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let f = filters(req)?;
    let all = req.flag("all");
    let limit = req.int("limit")?.filter(|l| *l > 0);
    let v = blocking(app, move |e| {
        let now = record::now_ns();
        let mut out = Vec::new();
        // Newest first, as docker lists them.
        for r in e.containers.list()?.into_iter().rev() {
            let st = e.state(&r);
            if (!all && !st.is_live() && !f.contains_key("status")) || !keep(&r, &st, &f)? {
                continue;
            }
            // state() may have released the network of a container found exited.
            let r = e.find(&r.id).unwrap_or(r);
            out.push(summary(e, &r, &st, now));
            if limit.is_some_and(|l| out.len() as i64 >= l) {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn inspect(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let id = id.to_string();
    let v = blocking(app, move |e| {
        let r = e.find(&id)?;
        let mut v = inspect::inspect(e, &r);
        // docker's HostConfig also carries what the API was given to store.
        if let Some(hc) = v["HostConfig"].as_object_mut() {
            if let Some(extra) = crate::create::stored_host_config(e, &r) {
                hc.extend(extra);
            }
            // docker-compose only shows the logs of containers with a log driver.
            let driver = if r.options.extra.no_log() {
                "none"
            } else {
                "json-file"
            };
            hc.entry("LogConfig")
                .or_insert_with(|| json!({"Type": driver, "Config": {}}));
        }
        // docker lists an endpoint's aliases with the container's short id on user-defined
        // networks; compose reconnects (disconnect + connect) a container without it.
        let net = inspect::network_name(&r);
        if net != hull_net::DEFAULT_NETWORK {
            if let Some(ep) = v["NetworkSettings"]["Networks"].get_mut(&net) {
                let mut aliases = r.options.net_opts.aliases.clone();
                aliases.push(r.id.chars().take(12).collect());
                ep["Aliases"] = json!(aliases);
            }
        }
        Ok(v)
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// Starts `r`; with `AutoRemove` the service removes it once it exits (as dockerd does:
/// the client only waits for `condition=removed`).
pub(crate) fn start_record(app: &Arc<App>, e: &Engine, r: &Record) -> Result<(), ApiError> {
    e.start(r)?;
    if r.options.auto_remove {
        let app = app.clone();
        let id = r.id.clone();
        std::thread::spawn(move || {
            let e = &app.engine;
            if let Ok(r) = e.find(&id) {
                let _ = e.wait(&r);
                let _removing = app.removing();
                // The attached client reads the log, which the removal deletes.
                app.attached.wait_detached(&id, Duration::from_secs(10));
                // A removal that fails is tried again: a `wait?condition=removed` client
                // waits for it, and a failure is said on the service's stderr.
                for attempt in 1..=5 {
                    let res = e.remove(&r, true, true);
                    app.removals.ended();
                    match res {
                        Ok(()) => break,
                        Err(err) if attempt == 5 => {
                            eprintln!("hull system service: auto-remove of {id}: {err}");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(200 * attempt)),
                    }
                }
            }
        });
    }
    Ok(())
}

pub(crate) async fn start(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let id = id.to_string();
    let a = app.clone();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        start_record(&a, e, &r)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `stop` (304 when it was not running) and `restart`; `t` is the grace period.
pub(crate) async fn stop(
    app: &Arc<App>,
    id: &str,
    req: &Req,
    restart: bool,
) -> Result<Resp, ApiError> {
    let t = req.int("t")?.unwrap_or(10).max(0) as u64;
    let id = id.to_string();
    let a = app.clone();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        let live = e.state(&r).is_live();
        if !restart && !live {
            return Err(ApiError::new(StatusCode::NOT_MODIFIED, ""));
        }
        e.stop(&r, Duration::from_secs(t))?;
        if restart {
            let r = e.find(&r.id)?;
            // An AutoRemove container is gone once stopped: docker cannot restart it either.
            start_record(&a, e, &r)?;
        }
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn kill(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let sig = match req.q("signal").filter(|s| !s.is_empty()) {
        None => libc::SIGKILL as u32,
        Some(s) => hull_engine::signal::parse(s)
            .ok_or_else(|| ApiError::bad(format!("invalid signal: {s}")))?,
    };
    let id = id.to_string();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        if !e.state(&r).is_live() {
            return Err(ApiError::conflict(format!(
                "Cannot kill container: {id}: Container {} is not running",
                r.id
            )));
        }
        Ok(e.kill(&r, sig)?)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn pause(app: &Arc<App>, id: &str, on: bool) -> Result<Resp, ApiError> {
    let id = id.to_string();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        Ok(e.pause(&r, on)?)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn top(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let id = id.to_string();
    let v = blocking(app, move |e| {
        let r = e.find(&id)?;
        if !e.state(&r).is_live() {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = e.shim(&r)?.pids()?;
        let procs: Vec<Vec<String>> = pids.into_iter().map(proc_row).collect();
        Ok(
            json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            "Processes": procs}),
        )
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// A `ps -ef` row from /proc.
fn proc_row(pid: u32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string()
    };
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let uid = field("Uid:");
    let ppid = field("PPid:");
    [
        uid,
        pid.to_string(),
        ppid,
        "0".into(),
        String::new(),
        "?".into(),
        String::new(),
        cmd,
    ]
    .to_vec()
}

pub(crate) async fn resize(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let (h, w) = (req.int("h")?.unwrap_or(0), req.int("w")?.unwrap_or(0));
    let id = id.to_string();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        if !r.options.tty {
            return Ok(());
        }
        if !e.state(&r).is_live() {
            return Err(ApiError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        Ok(e.shim(&r)?.resize("", w.max(0) as u32, h.max(0) as u32)?)
    })
    .await?;
    Ok(http::empty(StatusCode::OK))
}

pub(crate) async fn remove(app: &Arc<App>, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let (force, volumes) = (req.flag("force"), req.flag("v"));
    let id = id.to_string();
    let a = app.clone();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        if !force && e.state(&r).is_live() {
            return Err(ApiError::conflict(format!(
                "You cannot remove a running container {}. Stop the container before \
                 attempting removal or force remove",
                r.id
            )));
        }
        let res = e.remove(&r, force, volumes);
        a.removals.ended();
        Ok(res?)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}
