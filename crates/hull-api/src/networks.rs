//! Network endpoints over hull-net's bridges: list, inspect, create, connect, disconnect,
//! remove, prune. docker's predefined `host` and `none` are listed; `bridge` is hull's
//! default network. Labels (compose finds its networks by them) are kept beside the network
//! in `api-networks/NAME.json`, as hull-net has no place for them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use hull_engine::Engine;
use hull_net::{NetworkSpec, Subnet, DEFAULT_NETWORK};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{chain, ApiError};
use crate::events;
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    check_duplicate: bool,
    internal: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct EndpointConfig {
    pub aliases: Option<Vec<String>>,
}

fn net_err(e: hull_net::NetError) -> ApiError {
    match e {
        hull_net::NetError::NotFound(n) => ApiError::not_found(format!("network {n} not found")),
        e @ hull_net::NetError::Exists(_) => ApiError::conflict(chain(&e)),
        e => ApiError::internal(chain(&e)),
    }
}

fn labels_path(e: &Engine, name: &str) -> PathBuf {
    e.root.join("api-networks").join(format!("{name}.json"))
}

fn labels(e: &Engine, name: &str) -> BTreeMap<String, String> {
    std::fs::read(labels_path(e, name))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default()
}

/// A stable 64-hex id from the name (hull's networks are keyed by name).
fn net_id(name: &str) -> String {
    hull_image::Digest::of(format!("hull-network:{name}").as_bytes())
        .hex()
        .to_string()
}

fn predefined(name: &str, driver: &str) -> Value {
    json!({"Name": name, "Id": net_id(name), "Created": "0001-01-01T00:00:00Z",
        "Scope": "local", "Driver": driver, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {}})
}

fn network_json(e: &Engine, info: &hull_net::NetworkInfo) -> Value {
    let c = &info.config;
    let containers: serde_json::Map<String, Value> = info
        .containers
        .iter()
        .map(|l| {
            let name = e.find(&l.container_id).map(|r| r.name).unwrap_or_default();
            let v = json!({"Name": name, "EndpointID": net_id(&l.host_veth),
                "MacAddress": hull_net::format_mac(hull_net::mac_for(l.ip)),
                "IPv4Address": format!("{}/{}", l.ip, c.subnet.prefix()), "IPv6Address": ""});
            (l.container_id.clone(), v)
        })
        .collect();
    json!({"Name": c.name, "Id": net_id(&c.name),
        "Created": hull_engine::time::rfc3339(c.created as i128 * 1_000_000_000),
        "Scope": "local", "Driver": "bridge", "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null,
            "Config": [{"Subnet": c.subnet.to_string(), "Gateway": c.gateway.to_string()}]},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": c.bridge,
            "com.docker.network.driver.mtu": c.mtu.to_string()},
        "Labels": labels(e, &c.name)})
}

/// `bridge` exists before its first container, like docker's predefined network.
fn ensure_default(nets: &hull_net::Networks) {
    // Rootless, `bridge` is the user-mode network (pasta), not one of hull-net's.
    if hull_engine::rootless::active() {
        return;
    }
    if nets.inspect(DEFAULT_NETWORK).is_err() {
        let spec = NetworkSpec {
            name: DEFAULT_NETWORK.into(),
            ..NetworkSpec::default()
        };
        let _ = nets.create(&spec);
    }
}

/// Every network in docker's shape, `host` and `none` included.
fn all(e: &Engine) -> Result<Vec<Value>, ApiError> {
    let nets = e.networks()?;
    ensure_default(&nets);
    let mut out = Vec::new();
    for c in nets.list().map_err(net_err)? {
        if let Ok(info) = nets.inspect(&c.name) {
            out.push(network_json(e, &info));
        }
    }
    out.push(predefined("host", "host"));
    out.push(predefined("none", "null"));
    Ok(out)
}

/// The network named, or whose id starts with, `key`.
fn find(e: &Engine, key: &str) -> Result<Value, ApiError> {
    let list = all(e)?;
    let hit = |v: &&Value| v["Name"] == key;
    if let Some(v) = list.iter().find(hit) {
        return Ok(v.clone());
    }
    let by_id: Vec<&Value> = list
        .iter()
        .filter(|v| !key.is_empty() && v["Id"].as_str().is_some_and(|i| i.starts_with(key)))
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::not_found(format!("network {key} not found"))),
        _ => Err(ApiError::bad(format!("network {key} is ambiguous"))),
    }
}

fn keep(v: &Value, f: &HashMap<String, Vec<String>>) -> bool {
    f.iter().all(|(k, want)| match k.as_str() {
        "name" => want
            .iter()
            .any(|w| v["Name"].as_str().is_some_and(|n| n.contains(w.as_str()))),
        "id" => want
            .iter()
            .any(|w| v["Id"].as_str().is_some_and(|n| n.starts_with(w.as_str()))),
        "driver" => want.iter().any(|w| v["Driver"] == w.as_str()),
        "label" => {
            let l: Vec<(String, String)> = v["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").into()))
                        .collect()
                })
                .unwrap_or_default();
            crate::containers::labels_match(&l, want)
        }
        "type" => want.iter().any(|w| {
            let builtin = matches!(v["Name"].as_str(), Some("host" | "none" | DEFAULT_NETWORK));
            (w == "builtin") == builtin
        }),
        _ => true,
    })
}

pub(crate) async fn list(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let f = crate::containers::filters(req)?;
    let v = blocking(app, move |e| {
        Ok(all(e)?
            .into_iter()
            .filter(|v| keep(v, &f))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn inspect(app: &Arc<App>, key: &str) -> Result<Resp, ApiError> {
    let key = key.to_string();
    let v = blocking(app, move |e| find(e, &key)).await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn create(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let b: CreateBody = req.json().await?;
    if b.name.is_empty() {
        return Err(ApiError::bad("network name (Name) is required"));
    }
    if !matches!(b.driver.as_str(), "" | "bridge") {
        return Err(ApiError::bad(format!(
            "network driver {:?} is not supported by hull (bridge)",
            b.driver
        )));
    }
    if b.internal || b.enable_ipv6 {
        return Err(ApiError::bad(
            "internal and IPv6 networks are not supported by hull",
        ));
    }
    if ["none", "host", "default", DEFAULT_NETWORK].contains(&b.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} is a pre-defined network and cannot be created", b.name),
        ));
    }
    let subnet = match b.ipam.as_ref().and_then(|i| i.config.as_ref()) {
        Some(c) => match c.first().map(|c| c.subnet.as_str()) {
            Some("") | None => None,
            Some(s) => Some(
                s.parse::<Subnet>()
                    .map_err(|e| ApiError::bad(format!("invalid IPAM subnet {s:?}: {e}")))?,
            ),
        },
        None => None,
    };
    let _ = b.check_duplicate; // hull's names are unique: a duplicate is always refused.
    let a = app.clone();
    let v = blocking(app, move |e| {
        let spec = NetworkSpec {
            name: b.name.clone(),
            subnet,
            ..NetworkSpec::default()
        };
        e.networks()?.create(&spec).map_err(net_err)?;
        let labels = b.labels.unwrap_or_default();
        if !labels.is_empty() {
            let p = labels_path(e, &b.name);
            let res = p
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&p, serde_json::to_vec(&labels).unwrap_or_default()));
            if let Err(err) = res {
                let _ = e.remove_network(&b.name);
                return Err(ApiError::internal(format!(
                    "cannot write {}: {err}",
                    p.display()
                )));
            }
        }
        let id = net_id(&b.name);
        events::emit(
            &a,
            "network",
            "create",
            &id,
            &[("name", &b.name), ("type", "bridge")],
        );
        Ok(json!({"Id": id, "Warning": ""}))
    })
    .await?;
    Ok(http::json(StatusCode::CREATED, &v))
}

fn remove_one(app: &App, e: &Engine, name: &str) -> Result<(), ApiError> {
    e.remove_network(name)?;
    let _ = std::fs::remove_file(labels_path(e, name));
    let id = net_id(name);
    events::emit(
        app,
        "network",
        "destroy",
        &id,
        &[("name", name), ("type", "bridge")],
    );
    Ok(())
}

pub(crate) async fn remove(app: &Arc<App>, key: &str) -> Result<Resp, ApiError> {
    let key = key.to_string();
    let a = app.clone();
    blocking(app, move |e| {
        let v = find(e, &key)?;
        let name = v["Name"].as_str().unwrap_or("").to_string();
        if matches!(name.as_str(), "host" | "none" | DEFAULT_NETWORK) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{name} is a pre-defined network and cannot be removed"),
            ));
        }
        remove_one(&a, e, &name)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /networks/prune`: every user network without containers.
pub(crate) async fn prune(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let f = crate::containers::filters(req)?;
    let a = app.clone();
    let v = blocking(app, move |e| {
        let mut gone = Vec::new();
        for v in all(e)? {
            let name = v["Name"].as_str().unwrap_or("").to_string();
            let empty = v["Containers"].as_object().is_none_or(|c| c.is_empty());
            if matches!(name.as_str(), "host" | "none" | DEFAULT_NETWORK) || !empty || !keep(&v, &f)
            {
                continue;
            }
            if remove_one(&a, e, &name).is_ok() {
                gone.push(name);
            }
        }
        Ok(json!({ "NetworksDeleted": gone }))
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// `POST /networks/{id}/connect` and `disconnect`: hull-engine's `connect` (hot-plugged
/// into a running container; a created one without a network is moved, as docker-compose
/// does between create and start) and `disconnect`.
pub(crate) async fn connect(
    app: &Arc<App>,
    key: &str,
    req: &mut Req,
    on: bool,
) -> Result<Resp, ApiError> {
    let b: ConnectBody = req.json().await?;
    if b.container.is_empty() {
        return Err(ApiError::bad("the container (Container) is required"));
    }
    let key = key.to_string();
    blocking(app, move |e| {
        let net = find(e, &key)?;
        let net = net["Name"].as_str().unwrap_or("").to_string();
        let r = e.find(&b.container)?;
        if on {
            let aliases = b
                .endpoint_config
                .and_then(|c| c.aliases)
                .unwrap_or_default();
            e.connect(&r, &net, aliases)?;
        } else {
            e.disconnect(&r, &net)?;
        }
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::OK))
}
