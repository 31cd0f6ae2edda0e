//! `hull pull`: resolve a reference to a platform manifest, fetch the config,
//! then stream every layer in parallel through verify + inflate + unpack.

mod layer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub(crate) use layer::{process, LayerJob};

use crate::digest::{chain_ids, Digest};
use crate::progress::{LayerAction, Progress};
use crate::reference::{Reference, ReferenceError};
use crate::registry::{Registry, RegistryError, RegistryOptions};
use crate::spec::{self, ImageConfig, Index, Manifest, Platform};
use crate::store::{ImageRecord, LayerRecord, NewImage, Store, StoreError};
use crate::unpack::UnpackError;

/// Image configs above this size are refused.
const MAX_CONFIG: u64 = 16 << 20;

/// Errors of pull and load.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: String,
    },
    #[error("layer {blob}: uncompressed digest {actual} does not match DiffID {expected} in the image config")]
    DiffIdMismatch {
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {blob} is corrupt or unsafe")]
    Layer {
        blob: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("{what}: unsupported media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("{reference}: no manifest for platform {platform} (available: {available})")]
    Platform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("parsing {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: the manifest has {layers} layers but the config lists {diff_ids} DiffIDs")]
    LayerCount {
        what: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Options of a pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    pub registry: RegistryOptions,
    /// Platform to select from an index; the host's when None.
    pub platform: Option<Platform>,
    /// Layers fetched concurrently (docker uses 3).
    pub parallel: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            registry: RegistryOptions::default(),
            platform: None,
            parallel: 3,
        }
    }
}

/// What a pull did.
#[derive(Debug)]
pub struct PullReport {
    pub image: ImageRecord,
    /// Layers whose blob was downloaded.
    pub layers_fetched: usize,
    /// Layers already fully present (nothing downloaded or unpacked).
    pub layers_skipped: usize,
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    data: &[u8],
) -> Result<T, PullError> {
    serde_json::from_slice(data).map_err(|source| PullError::Json {
        what: what.to_string(),
        source,
    })
}

fn verify(what: &str, data: &[u8], expected: &Digest) -> Result<(), PullError> {
    let actual = Digest::of(data);
    if &actual != expected {
        return Err(PullError::DigestMismatch {
            what: what.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// Media type from the Content-Type header, else from the document itself.
fn media_type_of(header: &str, body: &[u8]) -> String {
    let h = header.split(';').next().unwrap_or("").trim();
    if spec::is_index(h) || spec::is_manifest(h) {
        return h.to_string();
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => spec::OCI_INDEX.to_string(),
        _ => spec::OCI_MANIFEST.to_string(),
    }
}

/// A single-platform manifest and the digest of what the reference named.
struct Resolved {
    top: Digest,
    digest: Digest,
    media_type: String,
    body: Vec<u8>,
}

/// Resolves a reference to a single-platform manifest.
fn resolve_manifest(
    reg: &Registry,
    r: &Reference,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<Resolved, PullError> {
    let (body, header) = reg.manifest(&r.manifest_ref())?;
    let top = Digest::of(&body);
    if let Some(d) = &r.digest {
        verify(&format!("manifest {r}"), &body, d)?;
    }
    let mt = media_type_of(&header, &body);
    if spec::is_manifest(&mt) {
        return Ok(Resolved {
            digest: top.clone(),
            top,
            media_type: mt,
            body,
        });
    }
    if !spec::is_index(&mt) {
        return Err(PullError::MediaType {
            what: format!("manifest {r}"),
            media_type: mt,
        });
    }
    let index: Index = parse_json(&format!("index {r}"), &body)?;
    let desc = select_nested(reg, r, index, platform)?;
    progress.message(&format!(
        "{r}: selected {platform} manifest {}",
        desc.digest
    ));
    let (body, header) = reg.manifest(&desc.digest.to_string())?;
    verify(
        &format!("manifest {} of {r}", desc.digest),
        &body,
        &desc.digest,
    )?;
    Ok(Resolved {
        top,
        digest: desc.digest.clone(),
        media_type: media_type_of(&header, &body),
        body,
    })
}

/// How deep indexes may nest (an index of indexes, as some tools write, is one level).
const MAX_NESTING: usize = 4;

/// The manifest for `platform` in `index`, following entries that are indexes themselves
/// (for the platform, or without one) up to [`MAX_NESTING`] levels.
fn select_nested(
    reg: &Registry,
    r: &Reference,
    mut index: Index,
    platform: &Platform,
) -> Result<spec::Descriptor, PullError> {
    for _ in 0..MAX_NESTING {
        if let Some(d) = spec::select_platform(&index, platform) {
            return Ok(d.clone());
        }
        let nested = index.manifests.iter().find(|d| {
            spec::is_index(&d.media_type)
                && d.platform
                    .as_ref()
                    .is_none_or(|p| p.os == platform.os && p.architecture == platform.architecture)
        });
        let Some(nested) = nested else { break };
        let (body, _) = reg.manifest(&nested.digest.to_string())?;
        let what = format!("index {} of {r}", nested.digest);
        verify(&what, &body, &nested.digest)?;
        index = parse_json(&what, &body)?;
    }
    // Only image manifests can be pulled: name the others for what they are.
    let available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| {
            let p = d.platform.as_ref()?.to_string();
            match spec::is_manifest(&d.media_type) {
                true => Some(p),
                false => Some(format!("{p} ({})", d.media_type)),
            }
        })
        .collect();
    Err(PullError::Platform {
        reference: r.to_string(),
        platform: platform.to_string(),
        available: available.join(", "),
    })
}

/// Pulls `reference` into `store`.
pub fn pull(
    store: &mut Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport, PullError> {
    let res = pull_locked(store, reference, opts, progress);
    if res.is_err() {
        // Layers of a failed pull that did verify stay as snapshots nothing
        // references; sweep them now if no other pull or build holds the store (gc
        // takes the lock exclusively and never removes their content).
        if let Err(e) = store.gc_if_idle() {
            tracing::warn!("cleanup after failed pull of {reference}: {e}");
        }
    }
    res
}

fn pull_locked(
    store: &mut Store,
    reference: &str,
    opts: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport, PullError> {
    let r: Reference = reference.parse()?;
    let reg = Registry::new(&r, &opts.registry);
    let platform = opts.platform.clone().unwrap_or_else(spec::host_platform);
    let _lock = store.lock_shared()?;
    let res = resolve_manifest(&reg, &r, &platform, progress)?;
    let manifest: Manifest = parse_json(&format!("manifest {}", res.digest), &res.body)?;
    let config_raw = if store.has_blob(&manifest.config.digest) {
        store.read_blob(&manifest.config.digest)?
    } else {
        // Read no more than the descriptor declares (a registry may stream on).
        let limit = manifest.config.size.min(MAX_CONFIG);
        let raw = reg.small_blob(&manifest.config.digest, limit)?;
        verify(&format!("config of {r}"), &raw, &manifest.config.digest)?;
        raw
    };
    let mut names: Vec<String> = r.tag.iter().map(|t| format!("{}:{t}", r.name())).collect();
    // Also record the digest one can pull by (the index's, if any), as
    // docker's RepoDigests.
    names.push(format!("{}@{}", r.name(), res.top));
    let fetch = |d: &Digest| reg.blob(d).map_err(PullError::from);
    let counts = install(
        store,
        &manifest,
        &res.media_type,
        &res.body,
        config_raw,
        names,
        &fetch,
        opts.parallel,
        progress,
    )?;
    let image = store.lookup(&manifest.config.digest.to_string())?;
    Ok(PullReport {
        image,
        layers_fetched: counts.0,
        layers_skipped: counts.1,
    })
}

type Fetch<'a> =
    dyn Fn(&Digest) -> Result<Box<dyn std::io::Read + Send + Sync>, PullError> + Sync + 'a;

/// Shared by pull and load: verifies and stores config, layers and manifest,
/// then commits the image. Returns (layers fetched, layers skipped).
#[allow(clippy::too_many_arguments)]
pub(crate) fn install(
    store: &mut Store,
    manifest: &Manifest,
    media_type: &str,
    manifest_raw: &[u8],
    config_raw: Vec<u8>,
    names: Vec<String>,
    fetch: &Fetch<'_>,
    parallel: usize,
    progress: &dyn Progress,
) -> Result<(usize, usize), PullError> {
    let what = format!("image config {}", manifest.config.digest);
    // Artifacts (helm charts, signatures...) use other config types.
    let cmt = manifest.config.media_type.as_str();
    if cmt != spec::OCI_CONFIG && cmt != spec::DOCKER_CONFIG {
        return Err(PullError::MediaType {
            what,
            media_type: cmt.to_string(),
        });
    }
    verify(&what, &config_raw, &manifest.config.digest)?;
    let config: ImageConfig = parse_json(&what, &config_raw)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            what,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(diff_ids);
    let mut jobs = Vec::new();
    let mut records = Vec::new();
    for (i, l) in manifest.layers.iter().enumerate() {
        let compression =
            spec::layer_compression(&l.media_type).ok_or_else(|| PullError::MediaType {
                what: format!("layer {}", l.digest),
                media_type: l.media_type.clone(),
            })?;
        let job = LayerJob {
            blob: l.digest.clone(),
            size: l.size,
            compression,
            diff_id: diff_ids[i].clone(),
            blob_dest: (!store.has_blob(&l.digest)).then(|| store.blob_path(&l.digest)),
            snapshot_dest: (!store.has_snapshot(&chains[i]))
                .then(|| store.snapshot_path(&chains[i])),
        };
        records.push(LayerRecord {
            blob: l.digest.clone(),
            media_type: l.media_type.clone(),
            size: l.size,
            diff_id: diff_ids[i].clone(),
            chain_id: chains[i].clone(),
        });
        jobs.push(job);
    }
    let fetched = jobs.iter().filter(|j| j.blob_dest.is_some()).count();
    let skipped = jobs
        .iter()
        .filter(|j| j.blob_dest.is_none() && j.snapshot_dest.is_none())
        .count();
    run_jobs(store, &jobs, fetch, parallel, progress)?;
    for (i, rec) in records.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| &chains[p]);
        store.record_snapshot(&rec.chain_id, parent, &rec.diff_id)?;
    }
    store.write_blob(&config_raw)?;
    let manifest_digest = store.write_blob(manifest_raw)?;
    store.commit_image(&NewImage {
        id: manifest.config.digest.clone(),
        names,
        manifest_digest,
        manifest_media_type: media_type.to_string(),
        config_raw,
        layers: records,
    })?;
    Ok((fetched, skipped))
}

/// Runs layer jobs on `parallel` threads; the first failure aborts the rest.
fn run_jobs(
    store: &Store,
    jobs: &[LayerJob],
    fetch: &Fetch<'_>,
    parallel: usize,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let stage = store.stage()?;
    let tmp = stage.path();
    let limits = store.layer_limits();
    let blob_path = |d: &Digest| store.root().join("blobs/sha256").join(d.hex());
    let blob_paths: Vec<PathBuf> = jobs.iter().map(|j| blob_path(&j.blob)).collect();
    let first_error = std::sync::Mutex::new(None);
    let worker = || loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some(job) = jobs.get(i) else { return };
        if abort.load(Ordering::Relaxed) {
            return;
        }
        let action = match (&job.blob_dest, &job.snapshot_dest) {
            (None, None) => LayerAction::Skip,
            (None, Some(_)) => LayerAction::UnpackLocal,
            (Some(_), None) => LayerAction::FetchBlob,
            (Some(_), Some(_)) => LayerAction::Download,
        };
        progress.layer_start(&job.blob, job.size, action);
        let result = match action {
            LayerAction::Skip => Ok(()),
            LayerAction::UnpackLocal => {
                let p = blob_paths[i].clone();
                std::fs::File::open(&p)
                    .map_err(|source| PullError::Io { path: p, source })
                    .and_then(|f| {
                        let src = std::io::BufReader::new(f);
                        process(job, src, tmp, &limits, progress, &abort)
                    })
            }
            _ => fetch(&job.blob).and_then(|src| process(job, src, tmp, &limits, progress, &abort)),
        };
        progress.layer_done(&job.blob, result.is_ok());
        if let Err(e) = result {
            // Keep only the first failure: the others are its echo.
            if !abort.swap(true, Ordering::SeqCst) {
                if let Ok(mut slot) = first_error.lock() {
                    *slot = Some(e);
                }
            }
            return;
        }
    };
    let threads = parallel.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(worker);
        }
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}
