//! `hull push`: a stored image to a registry, per the OCI distribution spec.
//!
//! For each blob (layers, then the config), on up to `parallel` threads:
//! 1. `HEAD /v2/<name>/blobs/<digest>`: 200 means the registry has it; nothing is sent.
//! 2. When the image is known under another repository of the same registry (a name it was
//!    pulled or pushed as), a cross-repository mount:
//!    `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`; 201 = mounted. A 202
//!    means the registry declined and opened an upload session instead, which is used.
//! 3. Otherwise `POST /v2/<name>/blobs/uploads/` (202 + `Location`), then either one
//!    `PUT <location>?digest=<digest>` with the whole blob (monolithic) or, with a chunk
//!    size, `PATCH <location>` per chunk (`Content-Range: start-end`, each answer giving
//!    the next `Location`) and a closing `PUT ...?digest=` with no body.
//!
//! Then `PUT /v2/<name>/manifests/<tag>` with the stored manifest bytes as they are (so the
//! digest is the one the image had) and its own media type as `Content-Type`. Tokens are
//! asked for `pull,push`. The pushed `name@digest` is recorded as a name of the image
//! (docker's RepoDigests).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::progress::{LayerAction, Progress};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Body, Registry, RegistryError, RegistryOptions};
use crate::store::{ImageRecord, Store, StoreError};

/// Errors of a push.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{0}: no destination: the image has no name to push to; give DEST (registry/name:tag)"
    )]
    NoDestination(String),
    #[error("blob {0} of the image is not in the store (its image was loaded without it?)")]
    MissingBlob(Digest),
    #[error("{what}: the registry answered without a Location header")]
    NoLocation { what: String },
    #[error("manifest: the registry stored digest {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: String },
}

/// Options of a push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub registry: RegistryOptions,
    /// Upload blobs larger than this in chunks of this size (None: one PUT per blob).
    pub chunk_size: Option<u64>,
    /// Blobs uploaded concurrently.
    pub parallel: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            registry: RegistryOptions::default(),
            chunk_size: None,
            parallel: 3,
        }
    }
}

/// What a push did.
#[derive(Debug)]
pub struct PushReport {
    /// Where it went (`registry/name:tag`).
    pub reference: Reference,
    /// Digest and size of the manifest pushed.
    pub digest: Digest,
    pub size: u64,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
}

/// The reference a push goes to: `dest` (an optional `docker://` prefix is dropped), else
/// the image's name as given.
pub fn destination(image: &str, dest: Option<&str>) -> Result<Reference, PushError> {
    let d = dest.unwrap_or(image);
    let d = d.strip_prefix("docker://").unwrap_or(d);
    if dest.is_none() && d.strip_prefix("sha256:").unwrap_or(d).len() >= 12 && is_hex(d) {
        return Err(PushError::NoDestination(image.to_string()));
    }
    Ok(d.parse()?)
}

fn is_hex(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .unwrap_or(s)
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
}

/// Pushes `image` (name or id) to `dest` (or its own name).
pub fn push(
    store: &mut Store,
    image: &str,
    dest: Option<&str>,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport, PushError> {
    let img = store.lookup(image)?;
    let r = destination(image, dest)?;
    let reg = Registry::new(&r, &opts.registry).for_push();
    let mut blobs: Vec<(Digest, u64)> = img
        .layers
        .iter()
        .map(|l| (l.blob.clone(), l.size))
        .collect();
    let config_len = store.read_blob(&img.id)?.len() as u64;
    blobs.push((img.id.clone(), config_len));
    let mut files = Vec::new();
    for (d, size) in &blobs {
        if !store.has_blob(d) {
            return Err(PushError::MissingBlob(d.clone()));
        }
        files.push((d.clone(), *size, store.blob_path(d)));
    }
    let sources = mount_sources(&img, &r);
    let counts = upload_all(&reg, &files, &sources, opts, progress)?;
    let manifest = store.read_blob(&img.manifest_digest)?;
    let what = format!("manifest {r}");
    let url = reg.url(&format!("manifests/{}", r.manifest_ref()));
    let mt = img.manifest_media_type.as_str();
    let resp = reg.call(
        "PUT",
        &url,
        &[("Content-Type", mt)],
        Body::Bytes(&manifest),
        &what,
    )?;
    if let Some(got) = resp.header("Docker-Content-Digest") {
        if got != img.manifest_digest.to_string() {
            return Err(PushError::DigestMismatch {
                expected: img.manifest_digest.clone(),
                actual: got.to_string(),
            });
        }
    }
    store.add_name(&img.id, &format!("{}@{}", r.name(), img.manifest_digest))?;
    Ok(PushReport {
        reference: r,
        digest: img.manifest_digest.clone(),
        size: manifest.len() as u64,
        blobs_uploaded: counts[0],
        blobs_present: counts[1],
        blobs_mounted: counts[2],
    })
}

/// Other repositories of the destination registry the image is known in.
fn mount_sources(img: &ImageRecord, dest: &Reference) -> Vec<String> {
    let mut v: Vec<String> = img
        .names
        .iter()
        .filter_map(|n| n.parse::<Reference>().ok())
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| r.repository)
        .collect();
    v.dedup();
    v
}

/// Uploads every blob; returns [uploaded, present, mounted].
fn upload_all(
    reg: &Registry,
    blobs: &[(Digest, u64, PathBuf)],
    sources: &[String],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<[usize; 3], PushError> {
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let counts = Mutex::new([0usize; 3]);
    let first_error = Mutex::new(None);
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some((d, size, path)) = blobs.get(i) else {
            return;
        };
        if abort.load(Ordering::Relaxed) {
            return;
        }
        let res = push_blob(reg, (d, *size, path), sources, opts, progress);
        progress.layer_done(d, res.is_ok());
        match res {
            Ok(k) => {
                if let Ok(mut c) = counts.lock() {
                    c[k] += 1;
                }
            }
            Err(e) => {
                if !abort.swap(true, Ordering::SeqCst) {
                    if let Ok(mut slot) = first_error.lock() {
                        *slot = Some(e);
                    }
                }
                return;
            }
        }
    };
    let threads = opts.parallel.clamp(1, blobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(worker);
        }
    });
    if let Ok(Some(e)) = first_error.into_inner() {
        return Err(e);
    }
    Ok(counts.into_inner().unwrap_or_default())
}

/// One blob; returns 0 uploaded, 1 already present, 2 mounted.
fn push_blob(
    reg: &Registry,
    (d, size, path): (&Digest, u64, &Path),
    sources: &[String],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<usize, PushError> {
    let what = format!("blob {d} to {}/{}", reg.registry(), reg.repository());
    match reg.call(
        "HEAD",
        &reg.url(&format!("blobs/{d}")),
        &[],
        Body::Empty,
        &what,
    ) {
        Ok(_) => {
            progress.layer_start(d, size, LayerAction::Present);
            return Ok(1);
        }
        Err(RegistryError::Status { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let mut session = None;
    // One mount attempt: a declined mount already opened an upload session.
    if let Some(from) = sources.first() {
        let url = format!("{}?mount={d}&from={from}", reg.url("blobs/uploads/"));
        let resp = reg.call("POST", &url, &[], Body::Empty, &what)?;
        if resp.status() == 201 {
            progress.layer_start(d, size, LayerAction::Mounted);
            return Ok(2);
        }
        session = Some(location(&resp, reg, &what)?);
    }
    let mut loc = match session {
        Some(l) => l,
        None => {
            let resp = reg.call("POST", &reg.url("blobs/uploads/"), &[], Body::Empty, &what)?;
            location(&resp, reg, &what)?
        }
    };
    progress.layer_start(d, size, LayerAction::Upload);
    let on_bytes = |n: u64| progress.layer_bytes(d, n);
    let octet = [("Content-Type", "application/octet-stream")];
    let chunk = opts.chunk_size.filter(|c| *c > 0 && size > *c);
    let final_body = match chunk {
        None => Body::File {
            path,
            offset: 0,
            len: size,
            on_bytes: &on_bytes,
        },
        Some(c) => {
            let mut off = 0;
            while off < size {
                let len = c.min(size - off);
                let range = format!("{off}-{}", off + len - 1);
                let headers = [octet[0], ("Content-Range", range.as_str())];
                let body = Body::File {
                    path,
                    offset: off,
                    len,
                    on_bytes: &on_bytes,
                };
                let resp = reg.call("PATCH", &loc, &headers, body, &what)?;
                loc = location(&resp, reg, &what)?;
                off += len;
            }
            Body::Empty
        }
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = format!("{loc}{sep}digest={d}");
    reg.call("PUT", &url, &octet, final_body, &what)?;
    Ok(0)
}

fn location(resp: &ureq::Response, reg: &Registry, what: &str) -> Result<String, PushError> {
    resp.header("Location")
        .map(|l| reg.absolute(l))
        .ok_or_else(|| PushError::NoLocation {
            what: what.to_string(),
        })
}
