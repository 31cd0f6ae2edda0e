//! `POST /containers/create`: docker's `Config` + `HostConfig` + `NetworkingConfig` as
//! serde types, turned into hull-engine's `ContainerOptions`. What the engine has no
//! place for but docker's inspect shows (the restart policy, CPU shares) is kept in
//! `api.json` in the container's directory and merged into inspect's `HostConfig`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use hull_engine::opts::{self, ContainerOptions, MountSpec};
use hull_engine::{Engine, Record};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

/// docker's `strslice`: a string or a list of strings.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(crate) enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateBody {
    pub image: String,
    pub cmd: Option<StrSlice>,
    pub entrypoint: Option<StrSlice>,
    pub env: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub host_config: Option<HostConfig>,
    pub networking_config: Option<NetworkingConfig>,
    pub healthcheck: Option<hull_engine::policy::Healthcheck>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub mounts: Option<Vec<ApiMount>>,
    pub port_bindings: Option<HashMap<String, Option<Vec<PortBinding>>>>,
    pub memory: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
    pub network_mode: String,
    pub auto_remove: bool,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub tmpfs: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Serialize, Default, Debug, Clone)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ApiMount {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Value>>,
}

/// What the API keeps beside the engine's record (`ctr/<id>/api.json`).
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Stored {
    restart_policy: RestartPolicy,
    cpu_shares: i64,
}

const STORED: &str = "api.json";

fn bad(e: opts::Error) -> ApiError {
    ApiError::bad(chain(&e))
}

/// `HostPort` "" asks for any free port; the kernel picks one for a socket bound to 0.
fn free_port(udp: bool) -> Result<u16, ApiError> {
    let port = if udp {
        std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr())
    } else {
        std::net::TcpListener::bind("0.0.0.0:0").and_then(|s| s.local_addr())
    };
    port.map(|a| a.port())
        .map_err(|e| ApiError::internal(format!("cannot find a free host port: {e}")))
}

fn ports(
    o: &mut ContainerOptions,
    pb: &HashMap<String, Option<Vec<PortBinding>>>,
) -> Result<(), ApiError> {
    for (key, list) in pb {
        let (ctr, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        for b in list.iter().flatten() {
            let host = match b.host_port.as_str() {
                "" => free_port(proto == "udp")?.to_string(),
                p => p.to_string(),
            };
            o.publish.push(
                opts::parse_publish(&format!("{}:{host}:{ctr}/{proto}", b.host_ip)).map_err(bad)?,
            );
        }
    }
    Ok(())
}

fn mounts(o: &mut ContainerOptions, hc: &HostConfig) -> Result<(), ApiError> {
    for b in hc.binds.iter().flatten() {
        o.mounts.push(opts::parse_volume(b).map_err(bad)?);
    }
    for m in hc.mounts.iter().flatten() {
        let target = m.target.clone();
        if !target.starts_with('/') {
            return Err(ApiError::bad(format!(
                "invalid mount config: Target {target:?} must be an absolute path"
            )));
        }
        o.mounts.push(match m.kind.as_str() {
            "bind" => MountSpec::Bind {
                source: m.source.clone().into(),
                target,
                readonly: m.read_only,
            },
            "volume" => {
                // An anonymous volume: a fresh name, as docker gives one.
                let name = match m.source.as_str() {
                    "" => hull_engine::record::new_id()?,
                    s => s.to_string(),
                };
                MountSpec::Volume {
                    name,
                    target,
                    readonly: m.read_only,
                }
            }
            "tmpfs" => MountSpec::Tmpfs { target },
            other => {
                return Err(ApiError::bad(format!(
                "invalid mount config: mount type {other:?} is not supported (bind, volume, tmpfs)"
            )))
            }
        });
    }
    for t in hc.tmpfs.iter().flat_map(|m| m.keys()) {
        o.mounts.push(MountSpec::Tmpfs { target: t.clone() });
    }
    Ok(())
}

/// The network: `NetworkMode` (`default` is the bridge), else the one endpoint asked for.
fn network(b: &CreateBody, hc: &HostConfig) -> Result<String, ApiError> {
    let mode = match hc.network_mode.as_str() {
        "" | "default" => b
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref())
            .and_then(|e| e.keys().next().cloned())
            .unwrap_or_else(|| "bridge".into()),
        m => m.to_string(),
    };
    opts::parse_network(&mode).map_err(bad)
}

/// The `Aliases` of the endpoint for `net` (compose gives each container its service name).
fn aliases(b: &CreateBody, net: &str) -> Vec<String> {
    b.networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.as_ref())
        .and_then(|e| e.get(net))
        .and_then(|e| e.get("Aliases"))
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn options(
    mut b: CreateBody,
    name: Option<String>,
) -> Result<ContainerOptions, ApiError> {
    let hc = b.host_config.take().unwrap_or_default();
    let mut cmd = b.cmd.take().map(StrSlice::into_vec).unwrap_or_default();
    // hull's options hold one entrypoint word, as `--entrypoint` does; the rest of a longer
    // one goes in front of the command, which gives the same argv.
    let entrypoint = match b.entrypoint.take().map(StrSlice::into_vec) {
        None => None,
        Some(e) if e.is_empty() => None,
        Some(mut e) => {
            let first = e.remove(0);
            e.append(&mut cmd);
            cmd = e;
            Some(first)
        }
    };
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut o = ContainerOptions {
        name: name
            .map(|n| n.trim_start_matches('/').to_string())
            .filter(|n| !n.is_empty()),
        cmd,
        entrypoint,
        env: b.env.take().unwrap_or_default(),
        workdir: nonempty(&b.working_dir),
        user: nonempty(&b.user),
        hostname: nonempty(&b.hostname),
        tty: b.tty,
        stdin: b.open_stdin,
        memory: (hc.memory > 0).then_some(hc.memory),
        cpus: (hc.nano_cpus > 0).then(|| hc.nano_cpus as f64 / 1e9),
        pids_limit: hc.pids_limit.filter(|p| *p > 0),
        read_only: hc.readonly_rootfs,
        cap_add: hc.cap_add.clone().unwrap_or_default(),
        cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        privileged: hc.privileged,
        labels: b.labels.take().unwrap_or_default().into_iter().collect(),
        network: network(&b, &hc)?,
        net_opts: hull_engine::net_opts::NetOptions {
            aliases: aliases(&b, &network(&b, &hc)?),
            ..Default::default()
        },
        auto_remove: hc.auto_remove,
        ..Default::default()
    };
    if o.memory.is_some_and(|m| m < opts::MIN_MEMORY) {
        return Err(ApiError::bad("Minimum memory limit allowed is 6MB"));
    }
    for s in hc.security_opt.iter().flatten() {
        opts::apply_security_opt(&mut o, s).map_err(bad)?;
    }
    mounts(&mut o, &hc)?;
    ports(&mut o, hc.port_bindings.as_ref().unwrap_or(&HashMap::new()))?;
    opts::check_publish(&o).map_err(bad)?;
    Ok(o)
}

pub(crate) async fn create(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let body: CreateBody = req.json().await?;
    if body.image.is_empty() {
        return Err(ApiError::bad("Config.Image is required"));
    }
    let image = body.image.clone();
    let stored = Stored {
        restart_policy: body
            .host_config
            .as_ref()
            .and_then(|h| h.restart_policy.clone())
            .unwrap_or_default(),
        cpu_shares: body.host_config.as_ref().map_or(0, |h| h.cpu_shares),
    };
    let health = body.healthcheck.clone();
    let mut o = options(body, req.q("name").map(String::from))?;
    o.restart = restart_policy(&stored.restart_policy)?;
    if let Some(h) = &health {
        o.health = hull_engine::policy::HealthFlags::from_api(h);
    }
    let id = blocking(app, move |e| {
        let r = e.create(&image, &o)?;
        let p = e.dir(&r).join(STORED);
        let data = serde_json::to_vec(&stored).unwrap_or_default();
        if let Err(err) = hull_engine::record::replace_file(&p, &data) {
            let _ = e.remove(&r, true, true);
            return Err(ApiError::internal(format!(
                "cannot write {}: {err}",
                p.display()
            )));
        }
        Ok(r.id)
    })
    .await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": id, "Warnings": []}),
    ))
}

/// `HostConfig.RestartPolicy` for the engine (which has the container's shim apply it).
pub(crate) fn restart_policy(
    p: &RestartPolicy,
) -> Result<hull_engine::policy::RestartPolicy, ApiError> {
    let spec = match (p.name.as_str(), p.maximum_retry_count) {
        ("on-failure", n) if n > 0 => format!("on-failure:{n}"),
        (name, _) => name.to_string(),
    };
    hull_engine::policy::parse_restart(&spec).map_err(|e| ApiError::bad(e.to_string()))
}

/// A new restart policy (`update`) in `api.json`, which inspect shows; a container made
/// by `hull` has none, and gets one.
pub(crate) fn store_restart_policy(
    e: &Engine,
    r: &Record,
    p: RestartPolicy,
) -> Result<(), ApiError> {
    let path = e.dir(r).join(STORED);
    let mut s: Stored = std::fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    s.restart_policy = p;
    // Atomic: inspect (and a service restarted mid-write) must never read half a file,
    // which would lose every stored field, not only the policy.
    hull_engine::record::replace_file(&path, &serde_json::to_vec(&s).unwrap_or_default())
        .map_err(|err| ApiError::internal(format!("cannot write {}: {err}", path.display())))
}

/// The `HostConfig` fields kept in `api.json`, for inspect.
pub(crate) fn stored_host_config(e: &Engine, r: &Record) -> Option<serde_json::Map<String, Value>> {
    let data = std::fs::read(e.dir(r).join(STORED)).ok()?;
    let s: Stored = serde_json::from_slice(&data).ok()?;
    let mut m = serde_json::Map::new();
    m.insert("RestartPolicy".into(), json!(s.restart_policy));
    m.insert("CpuShares".into(), json!(s.cpu_shares));
    Some(m)
}
