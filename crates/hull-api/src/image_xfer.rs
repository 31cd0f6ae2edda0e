//! Image transfers, answered as docker's streams: `images/create` (pull) and `push` with
//! the JSON progress lines docker's clients render, `images/get` and `images/load`
//! tarballs, and `build` from a tar context through hull-build.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hull_image::{Credentials, Digest, LayerAction, Progress, PullOptions, PushOptions};
use serde_json::json;

use crate::error::{chain, ApiError};
use crate::http::{self, JsonLines, Req, Resp};
use crate::images::{open, store_err};
use crate::routes::blocking;
use crate::server::App;

/// docker's progress lines for the layers of a pull or push: `id` is the short digest.
struct Lines {
    out: JsonLines,
    /// Bytes done and the size, per layer, and the last amount reported.
    layers: Mutex<HashMap<String, (u64, u64, u64)>>,
    push: bool,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

impl Progress for Lines {
    fn layer_start(&self, blob: &Digest, size: u64, action: LayerAction) {
        let id = short(blob);
        let status = match action {
            LayerAction::Skip => "Already exists",
            LayerAction::Present => "Layer already exists",
            LayerAction::Upload => "Pushing",
            _ => "Pulling fs layer",
        };
        self.out
            .send(&json!({"status": status, "progressDetail": {}, "id": id}));
        if matches!(action, LayerAction::Skip | LayerAction::Present) {
            return;
        }
        if let Ok(mut l) = self.layers.lock() {
            l.insert(id, (0, size, 0));
        }
    }

    fn layer_bytes(&self, blob: &Digest, n: u64) {
        let id = short(blob);
        let Ok(mut l) = self.layers.lock() else {
            return;
        };
        let Some(e) = l.get_mut(&id) else { return };
        e.0 += n;
        // One line per 256 KiB: the client redraws a bar, not a line per read.
        if e.0 - e.2 < 256 << 10 && e.0 < e.1 {
            return;
        }
        e.2 = e.0;
        let (cur, total) = (e.0, e.1);
        drop(l);
        let status = if self.push { "Pushing" } else { "Downloading" };
        self.out.send(&json!({"status": status, "id": id,
            "progressDetail": {"current": cur, "total": total}}));
    }

    fn layer_done(&self, blob: &Digest, ok: bool) {
        let id = short(blob);
        let was = self.layers.lock().ok().and_then(|mut l| l.remove(&id));
        if !ok || was.is_none() {
            return;
        }
        let status = if self.push { "Pushed" } else { "Pull complete" };
        self.out
            .send(&json!({"status": status, "progressDetail": {}, "id": id}));
    }
}

/// Credentials from `X-Registry-Auth` (base64url JSON `{"username", "password"}`), else the
/// login files hull and docker write.
fn credentials(req: &Req, registry: &str) -> Option<Credentials> {
    use base64::Engine as _;
    let from_header = req.header("X-Registry-Auth").and_then(|h| {
        let data = base64::engine::general_purpose::URL_SAFE
            .decode(h.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h.trim()))
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&data).ok()?;
        let user = v["username"].as_str().filter(|u| !u.is_empty())?;
        Some(Credentials {
            username: user.into(),
            password: v["password"].as_str().unwrap_or("").into(),
        })
    });
    from_header.or_else(|| hull_image::auth::lookup(registry, None).ok().flatten())
}

/// `fromImage` and `tag` as one reference (`tag` may be a digest).
fn reference(from: &str, tag: Option<&str>) -> String {
    match tag.filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    }
}

/// `POST /images/create?fromImage=NAME&tag=TAG`: a pull.
pub(crate) async fn pull(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let Some(from) = req.q("fromImage").filter(|f| !f.is_empty()) else {
        return Err(ApiError::bad(
            "fromImage is required for a pull (fromSrc for an import)",
        ));
    };
    let name = reference(from, req.q("tag"));
    let r: hull_image::Reference =
        name.parse()
            .map_err(|e: hull_image::reference::ReferenceError| {
                ApiError::bad(format!("invalid reference format: {name}: {}", chain(&e)))
            })?;
    let platform = match req.q("platform").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse()
                .map_err(|_| ApiError::bad(format!("invalid platform {p:?}")))?,
        ),
    };
    let opts = PullOptions {
        registry: hull_image::RegistryOptions {
            tls_verify: true,
            credentials: credentials(req, &r.registry),
        },
        platform,
        ..PullOptions::default()
    };
    let (tx, resp) = http::stream("application/json");
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        let lines = Lines {
            out: JsonLines(tx),
            layers: Mutex::default(),
            push: false,
        };
        let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
        lines
            .out
            .send(&json!({"status": format!("Pulling from {}", r.repository), "id": tag}));
        let res = open(&a).and_then(|mut s| {
            let had = s.lookup(&name).ok().map(|i| i.id);
            let rep = hull_image::pull(&mut s, &name, &opts, &lines)
                .map_err(|e| ApiError::internal(chain(&e)))?;
            Ok((had, rep))
        });
        match res {
            Ok((had, rep)) => {
                lines
                    .out
                    .status(&format!("Digest: {}", rep.image.manifest_digest));
                let what = if had.as_ref() == Some(&rep.image.id) {
                    "Image is up to date for"
                } else {
                    "Downloaded newer image for"
                };
                lines.out.status(&format!("Status: {what} {name}"));
                crate::events::emit(&a, "image", "pull", &name, &[("name", &name)]);
            }
            Err(e) => lines.out.error(&e.message),
        }
    });
    Ok(resp)
}

/// `POST /images/{name}/push?tag=TAG`.
pub(crate) async fn push(app: &Arc<App>, name: &str, req: &Req) -> Result<Resp, ApiError> {
    let image = reference(name, req.q("tag"));
    let a = app.clone();
    let img = image.clone();
    // A missing image is a 404 before the stream starts, as docker's.
    blocking(app, move |_| {
        open(&a)?.lookup(&img).map_err(|_| {
            ApiError::not_found(format!(
                "An image does not exist locally with the tag: {img}"
            ))
        })
    })
    .await?;
    let r: hull_image::Reference = image
        .parse()
        .map_err(|e: hull_image::reference::ReferenceError| ApiError::bad(chain(&e)))?;
    let opts = PushOptions {
        registry: hull_image::RegistryOptions {
            tls_verify: true,
            credentials: credentials(req, &r.registry),
        },
        ..PushOptions::default()
    };
    let (tx, resp) = http::stream("application/json");
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        let lines = Lines {
            out: JsonLines(tx),
            layers: Mutex::default(),
            push: true,
        };
        lines.out.status(&format!(
            "The push refers to repository [{}/{}]",
            r.registry, r.repository
        ));
        let res = open(&a).and_then(|mut s| {
            hull_image::push(&mut s, &image, None, &opts, &lines)
                .map_err(|e| ApiError::internal(chain(&e)))
        });
        match res {
            Ok(rep) => {
                let tag = rep.reference.tag.clone().unwrap_or_else(|| "latest".into());
                lines
                    .out
                    .status(&format!("{tag}: digest: {} size: {}", rep.digest, rep.size));
                let pushed = rep.reference.to_string();
                crate::events::emit(&a, "image", "push", &pushed, &[("name", &pushed)]);
                lines.out.send(&json!({"progressDetail": {}, "aux":
                    {"Tag": tag, "Digest": rep.digest, "Size": rep.size}}));
            }
            Err(e) => lines.out.error(&e.message),
        }
    });
    Ok(resp)
}

/// `GET /images/{name}/get` and `GET /images/get?names=NAME`: hull's archive (an OCI
/// layout with docker's `manifest.json`), streamed from a temporary file.
pub(crate) async fn get(app: &Arc<App>, name: &str) -> Result<Resp, ApiError> {
    let name = name.to_string();
    let a = app.clone();
    let dir = blocking(app, move |_| {
        let store = open(&a)?;
        store.lookup(&name).map_err(store_err)?;
        // A directory, not a file: save writes a temporary file and renames it onto the path.
        let dir = tempfile::Builder::new()
            .prefix("save-")
            .tempdir_in(&a.root)
            .map_err(|e| ApiError::internal(format!("cannot make a temporary directory: {e}")))?;
        hull_image::archive::save(&store, &name, &dir.path().join("image.tar"))
            .map_err(|e| ApiError::internal(chain(&e)))?;
        Ok(dir)
    })
    .await?;
    let (tx, resp) = http::try_stream("application/x-tar");
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let path = dir.path().join("image.tar");
        let res = std::fs::File::open(&path).and_then(|mut f| {
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0
                    || tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                {
                    return Ok(());
                }
            }
        });
        if let Err(e) = res {
            http::TryChanWriter::fail(&tx, format!("reading {}: {e}", path.display()));
        }
        drop(dir);
    });
    Ok(resp)
}

/// `POST /images/load`: an OCI or docker archive in the body.
pub(crate) async fn load(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let tmp = crate::body_file::to_temp_file(req, &app.root).await?;
    let a = app.clone();
    let names = blocking(app, move |_| {
        let mut store = open(&a)?;
        let images = hull_image::archive::load(&mut store, tmp.path(), &hull_image::NoProgress)
            .map_err(|e| ApiError::bad(format!("loading the archive: {}", chain(&e))))?;
        let mut out = Vec::new();
        for img in images {
            let tags: Vec<String> = img.tags().map(String::from).collect();
            if tags.is_empty() {
                out.push(format!("Loaded image ID: {}", img.id));
            }
            out.extend(tags.into_iter().map(|t| format!("Loaded image: {t}")));
        }
        Ok(out)
    })
    .await?;
    let mut body = Vec::new();
    for n in names {
        let _ = serde_json::to_writer(&mut body, &json!({"stream": format!("{n}\n")}));
        body.push(b'\n');
    }
    let (tx, resp) = http::stream("application/json");
    let _ = tx.send(body.into()).await;
    Ok(resp)
}

/// A `Write` that turns hull-build's output into docker's `{"stream": ...}` lines.
struct BuildOut(JsonLines);

impl Write for BuildOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let s = String::from_utf8_lossy(b);
        if !self.0.send(&json!({ "stream": s })) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `POST /build`: the body is the context as a tar (maybe gzip/zstd compressed).
pub(crate) async fn build(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let mut opts = hull_build::BuildOptions {
        tags: req
            .q("t")
            .filter(|t| !t.is_empty())
            .map(String::from)
            .into_iter()
            .collect(),
        target: req.q("target").filter(|t| !t.is_empty()).map(String::from),
        no_cache: req.flag("nocache"),
        network: req
            .q("networkmode")
            .filter(|n| *n != "default")
            .unwrap_or("")
            .into(),
        platform: req
            .q("platform")
            .filter(|p| !p.is_empty())
            .map(String::from),
        quiet: req.flag("q"),
        ..Default::default()
    };
    if let Some(raw) = req.q("buildargs").filter(|b| !b.is_empty()) {
        let m: HashMap<String, Option<String>> = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad(format!("invalid buildargs {raw:?}: {e}")))?;
        opts.build_args = m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    }
    let dockerfile = req.q("dockerfile").unwrap_or("").to_string();
    if std::path::Path::new(&dockerfile).components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        return Err(ApiError::bad(format!(
            "dockerfile {dockerfile:?} must be a relative path inside the build context"
        )));
    }
    let tar = crate::body_file::to_temp_file(req, &app.root).await?;
    let root = app.root.clone();
    let (tx, resp) = http::stream("application/json");
    tokio::task::spawn_blocking(move || {
        let out = JsonLines(tx);
        let res = (|| -> Result<Digest, ApiError> {
            let ctx = crate::body_file::unpack_context(tar.path(), &root)?;
            opts.context = ctx.path().to_path_buf();
            if !dockerfile.is_empty() {
                opts.file = Some(ctx.path().join(&dockerfile));
            }
            let mut w = BuildOut(JsonLines(out.0.clone()));
            hull_build::build(&root, &opts, &mut w).map_err(|e| ApiError::bad(chain(&e)))
        })();
        match res {
            Ok(id) => {
                out.send(&json!({"aux": {"ID": id}}));
                if !opts.quiet {
                    out.send(&json!({"stream": format!("Successfully built {}\n", short(&id))}));
                    for t in &opts.tags {
                        out.send(&json!({"stream": format!("Successfully tagged {t}\n")}));
                    }
                }
            }
            Err(e) => out.error(&e.message),
        }
    });
    Ok(resp)
}
