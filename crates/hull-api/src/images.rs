//! Image endpoints: list and inspect in docker's shapes.

use std::sync::Arc;

use hull_image::{ImageRecord, Store, StoreError};
use serde_json::{json, Value};

use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(n) => ApiError::not_found(format!("No such image: {n}")),
        e => ApiError::internal(chain(&e)),
    }
}

fn summary(i: &ImageRecord) -> Value {
    let tags: Vec<&str> = i.tags().collect();
    let digests: Vec<&String> = i.names.iter().filter(|n| n.contains('@')).collect();
    json!({
        "Id": i.id, "ParentId": "", "RepoTags": tags, "RepoDigests": digests,
        "Created": i.created, "Size": i.size, "VirtualSize": i.size, "SharedSize": -1,
        "Labels": i.config.config.as_ref().and_then(|c| c.labels.clone()),
        "Containers": -1,
    })
}

/// docker's image inspect; `Config` is the stored config's object as it is (Healthcheck,
/// OnBuild, Shell... that hull's typed config does not model), `Author` and `Comment` too.
fn inspect_json(i: &ImageRecord, raw: &Value) -> Value {
    let config = match raw.get("config") {
        Some(c) if !c.is_null() => c.clone(),
        _ => json!(i.config.config),
    };
    let text = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    json!({
        "Id": i.id,
        "RepoTags": i.tags().collect::<Vec<_>>(),
        "RepoDigests": i.names.iter().filter(|n| n.contains('@')).collect::<Vec<_>>(),
        "Parent": "", "Comment": text("comment"),
        "Created": i.config.created.clone().unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        "Container": "", "DockerVersion": "", "Author": text("author"),
        "Config": config,
        "Architecture": i.config.architecture, "Os": i.config.os, "Variant": i.config.variant,
        "Size": i.size, "VirtualSize": i.size,
        "GraphDriver": {"Name": "overlay", "Data": {}},
        "RootFS": {"Type": i.config.rootfs.kind, "Layers": i.config.rootfs.diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

pub(crate) async fn list(app: &Arc<App>, _req: &Req) -> Result<Resp, ApiError> {
    let root = app.root.clone();
    let v = blocking(app, move |_| {
        let store = Store::open(&root).map_err(store_err)?;
        Ok(store
            .images()
            .map_err(store_err)?
            .iter()
            .map(summary)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn inspect(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let root = app.root.clone();
    let name = name.to_string();
    let v = blocking(app, move |_| {
        let store = Store::open(&root).map_err(store_err)?;
        let img = store.lookup(&name).map_err(store_err)?;
        let raw = store.config_raw(&img).map_err(store_err)?;
        let raw: Value = serde_json::from_slice(&raw)
            .map_err(|e| ApiError::internal(format!("config of {name}: {e}")))?;
        Ok(inspect_json(&img, &raw))
    })
    .await?;
    Ok(http::ok_json(&v))
}
