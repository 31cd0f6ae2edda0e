//! Image endpoints without transfers: list, inspect, history, tag, remove, prune (the
//! registry and tarball ones are in [`crate::image_xfer`]).

use std::sync::Arc;

use hull_image::{CreateError, ImageRecord, Store, StoreError};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::routes::blocking;
use crate::server::App;

/// docker's status and words for the store's errors (compose matches "No such image").
pub(crate) fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(n) => ApiError::not_found(format!("No such image: {n}")),
        e @ (StoreError::InUse { .. } | StoreError::MultipleNames(_)) => {
            ApiError::conflict(format!("conflict: unable to remove image: {}", chain(&e)))
        }
        e @ StoreError::Ambiguous(_) => ApiError::bad(chain(&e)),
        e => ApiError::internal(chain(&e)),
    }
}

fn create_err(e: CreateError) -> ApiError {
    match e {
        CreateError::Store(s) => store_err(s),
        e @ (CreateError::Reference(_) | CreateError::DigestName(_)) => ApiError::bad(chain(&e)),
        e => ApiError::internal(chain(&e)),
    }
}

pub(crate) fn open(app: &App) -> Result<Store, ApiError> {
    Store::open(&app.root).map_err(store_err)
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

/// Whether `i` passes docker's image filters (`dangling`, `label`, `reference`).
fn keep(i: &ImageRecord, f: &std::collections::HashMap<String, Vec<String>>) -> bool {
    f.iter().all(|(k, want)| match k.as_str() {
        "dangling" => {
            let dangling = i.tags().next().is_none();
            want.iter().all(|w| (w == "true" || w == "1") == dangling)
        }
        "label" => {
            let labels: Vec<(String, String)> = i
                .config
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            crate::containers::labels_match(&labels, want)
        }
        "reference" => want
            .iter()
            .any(|w| i.tags().any(|t| t.contains(w.as_str()))),
        _ => true,
    })
}

pub(crate) async fn list(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let f = crate::containers::filters(req)?;
    let a = app.clone();
    let v = blocking(app, move |_| {
        let store = open(&a)?;
        let images = store.images().map_err(store_err)?;
        Ok(images
            .iter()
            .filter(|i| keep(i, &f))
            .map(summary)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(http::ok_json(&v))
}

pub(crate) async fn inspect(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let name = name.to_string();
    let a = app.clone();
    let v = blocking(app, move |_| {
        let store = open(&a)?;
        let img = store.lookup(&name).map_err(store_err)?;
        let raw = store.config_raw(&img).map_err(store_err)?;
        let raw: Value = serde_json::from_slice(&raw)
            .map_err(|e| ApiError::internal(format!("config of {name}: {e}")))?;
        Ok(inspect_json(&img, &raw))
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// `GET /images/{name}/history`: newest first; only the top row carries the image id.
pub(crate) async fn history(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let name = name.to_string();
    let a = app.clone();
    let v = blocking(app, move |_| {
        let store = open(&a)?;
        let img = store.lookup(&name).map_err(store_err)?;
        let rows = store.history(&img).map_err(create_err)?;
        let tags: Vec<&str> = img.tags().collect();
        Ok(rows
            .iter()
            .enumerate()
            .map(|(n, h)| {
                let created = h.created.as_deref().and_then(unix_secs).unwrap_or(0);
                json!({
                    "Id": if n == 0 { img.id.to_string() } else { "<missing>".into() },
                    "Created": created, "CreatedBy": h.created_by,
                    "Tags": if n == 0 { tags.clone() } else { Vec::new() },
                    "Size": h.size, "Comment": h.comment.clone().unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// `POST /images/{name}/tag?repo=R&tag=T`.
pub(crate) async fn tag(app: &Arc<App>, name: &str, req: &Req) -> Result<Resp, ApiError> {
    let repo = req.q("repo").unwrap_or("").to_string();
    if repo.is_empty() {
        return Err(ApiError::bad("repository name (repo) is required"));
    }
    let target = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    };
    let name = name.to_string();
    let a = app.clone();
    blocking(app, move |_| {
        let mut store = open(&a)?;
        store.tag(&name, &target).map_err(create_err)?;
        let id = store
            .lookup(&target)
            .map(|i| i.id.to_string())
            .unwrap_or_default();
        crate::events::emit(&a, "image", "tag", &id, &[("name", &target)]);
        Ok(())
    })
    .await?;
    Ok(http::empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=`: docker's list of what was untagged and deleted.
pub(crate) async fn remove(app: &Arc<App>, name: &str, req: &Req) -> Result<Resp, ApiError> {
    let force = req.flag("force");
    let name = name.to_string();
    let a = app.clone();
    let v = blocking(app, move |e| {
        let mut store = open(&a)?;
        let img = store.lookup(&name).map_err(store_err)?;
        // A container of the image (running or not) holds it, as in docker, unless forced.
        if !force {
            let users: Vec<String> = e
                .containers
                .list()?
                .into_iter()
                .filter(|r| r.image_id == img.id.to_string())
                .map(|r| r.id.chars().take(12).collect())
                .collect();
            if !users.is_empty() && img.tags().count() <= 1 {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - \
                     container {} is using its referenced image {}",
                    users[0],
                    &img.id.hex()[..12]
                )));
            }
        }
        let r = store.remove_image(&name, force).map_err(store_err)?;
        let id = img.id.to_string();
        for t in &r.untagged {
            crate::events::emit(&a, "image", "untag", &id, &[("name", t)]);
        }
        if r.deleted.is_some() {
            crate::events::emit(&a, "image", "delete", &id, &[("name", &name)]);
        }
        let mut out: Vec<Value> = r.untagged.iter().map(|t| json!({"Untagged": t})).collect();
        out.extend(r.deleted.iter().map(|d| json!({"Deleted": d})));
        Ok(out)
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// `POST /images/prune`: dangling images, or with `filters={"dangling":["false"]}` all
/// unused ones (what `docker image prune -a` sends).
pub(crate) async fn prune(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let f = crate::containers::filters(req)?;
    let all = f
        .get("dangling")
        .is_some_and(|d| d.iter().any(|v| v == "false" || v == "0"));
    let a = app.clone();
    let v = blocking(app, move |_| {
        let mut store = open(&a)?;
        let r = store.prune_images(all).map_err(store_err)?;
        let mut del = Vec::new();
        for img in &r.deleted {
            del.extend(img.tags().map(|t| json!({"Untagged": t})));
            del.push(json!({"Deleted": img.id}));
        }
        Ok(json!({"ImagesDeleted": del, "SpaceReclaimed": r.reclaimed}))
    })
    .await?;
    Ok(http::ok_json(&v))
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05...Z`; the zone and
/// fractions ignored: history's `Created` is only shown as an age).
fn unix_secs(t: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_secs() {
        assert_eq!(super::unix_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::unix_secs("2024-03-01T12:00:00.5Z"),
            Some(1_709_294_400)
        );
        assert_eq!(super::unix_secs("bad"), None);
    }
}
