//! Volume endpoints: list, create, inspect, remove (hull-engine's named volumes).

use std::sync::Arc;

use hull_engine::volume::Error as VolError;
use hull_engine::Engine;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
}

fn vol_err(e: VolError) -> ApiError {
    match &e {
        VolError::NotFound(n) => ApiError::not_found(format!("get {n}: no such volume")),
        VolError::InUse(n, c) => {
            ApiError::conflict(format!("remove {n}: volume is in use - [{c}]"))
        }
        VolError::BadName(_) => ApiError::bad(chain(&e)),
        _ => ApiError::internal(chain(&e)),
    }
}

fn volume_json(e: &Engine, name: &str) -> Value {
    json!({
        "Name": name, "Driver": "local", "Mountpoint": e.volumes.path(name),
        "Labels": {}, "Scope": "local", "Options": {},
    })
}

pub(crate) async fn list(app: &Arc<App>) -> Result<Resp, ApiError> {
    let v = blocking(app, |e| {
        let names = e.volumes.list().map_err(vol_err)?;
        let vols: Vec<Value> = names.iter().map(|n| volume_json(e, n)).collect();
        Ok(json!({"Volumes": vols, "Warnings": []}))
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn create(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let b: CreateBody = req.json().await?;
    if !matches!(b.driver.as_str(), "" | "local") {
        return Err(ApiError::bad(format!(
            "volume driver {:?} is not supported (local)",
            b.driver
        )));
    }
    let a = app.clone();
    let v = blocking(app, move |e| {
        let name = match b.name.as_str() {
            "" => hull_engine::record::new_id()?,
            n => n.to_string(),
        };
        e.volumes.ensure(&name).map_err(vol_err)?;
        crate::events::emit(&a, "volume", "create", &name, &[("driver", "local")]);
        Ok(volume_json(e, &name))
    })
    .await?;
    Ok(http::json(StatusCode::CREATED, &v))
}

pub(crate) async fn inspect(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let name = name.to_string();
    let v = blocking(app, move |e| {
        if !e.volumes.list().map_err(vol_err)?.contains(&name) {
            return Err(vol_err(VolError::NotFound(name)));
        }
        Ok(volume_json(e, &name))
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn remove(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let name = name.to_string();
    let a = app.clone();
    blocking(app, move |e| {
        let users = e.volume_users(&name)?;
        e.volumes.remove(&name, &users).map_err(vol_err)?;
        crate::events::emit(&a, "volume", "destroy", &name, &[("driver", "local")]);
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /volumes/prune`: every volume no container (running or not) uses.
pub(crate) async fn prune(app: &Arc<App>) -> Result<Resp, ApiError> {
    let a = app.clone();
    let v = blocking(app, move |e| {
        let mut gone = Vec::new();
        for name in e.volumes.list().map_err(vol_err)? {
            let users = e.volume_users(&name)?;
            if users.is_empty() && e.volumes.remove(&name, &users).is_ok() {
                crate::events::emit(&a, "volume", "destroy", &name, &[("driver", "local")]);
                gone.push(name);
            }
        }
        Ok(json!({"VolumesDeleted": gone, "SpaceReclaimed": 0}))
    })
    .await?;
    Ok(http::ok_json(&v))
}
