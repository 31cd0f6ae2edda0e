//! `hull save` (OCI image layout in a tar, "oci-archive") and `hull load`
//! (oci-archive or docker-archive as written by `docker save`).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashReader};
use crate::progress::Progress;
use crate::pull::{install, parse_json, PullError};
use crate::reference::Reference;
use crate::spec::{self, Descriptor, Index, Manifest};
use crate::store::{ImageRecord, Store};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full image name in archives.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Errors of save and load.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: neither an OCI archive (index.json) nor a docker archive (manifest.json)")]
    Format { path: PathBuf },
    #[error("{path}: archive entry {entry:?} is unsafe")]
    Entry { path: PathBuf, entry: String },
    #[error("{path}: {what} is missing from the archive")]
    Missing { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `image` as an OCI archive to `out` (atomically: temp + rename).
pub fn save(store: &Store, image: &str, out: &Path) -> Result<(), ArchiveError> {
    let img = store.lookup(image)?;
    let manifest_raw = store.read_blob(&img.manifest_digest)?;
    let mut annotations = BTreeMap::new();
    if let Some(tag) = img.tags().next() {
        if let Ok(r) = tag.parse::<Reference>() {
            annotations.insert(CONTAINERD_NAME.to_string(), r.to_string());
            annotations.insert(REF_NAME.to_string(), r.tag.unwrap_or_default());
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(spec::OCI_INDEX.to_string()),
        manifests: vec![Descriptor {
            media_type: img.manifest_media_type.clone(),
            digest: img.manifest_digest.clone(),
            size: manifest_raw.len() as u64,
            platform: None,
            annotations,
        }],
        annotations: BTreeMap::new(),
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    let mut b = tar::Builder::new(io::BufWriter::new(tmp.reopen().map_err(io_err(out))?));
    let index_json = serde_json::to_vec(&index).map_err(|source| PullError::Json {
        what: "index.json".into(),
        source,
    })?;
    let add = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).map_err(io_err(out))
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add(&mut b, "index.json", &index_json)?;
    let mut blobs = vec![img.manifest_digest.clone(), img.id.clone()];
    blobs.extend(img.layers.iter().map(|l| l.blob.clone()));
    for d in &blobs {
        let p = store.blob_path(d);
        let mut f = fs::File::open(&p).map_err(io_err(&p))?;
        b.append_file(format!("blobs/sha256/{}", d.hex()), &mut f)
            .map_err(io_err(out))?;
    }
    let w = b.into_inner().map_err(io_err(out))?;
    w.into_inner()
        .map_err(|e| io_err(out)(e.into_error()))?
        .sync_all()
        .map_err(io_err(out))?;
    tmp.persist(out).map_err(|e| io_err(out)(e.error))?;
    Ok(())
}

/// Extracts regular files of the archive into `dest` (paths checked).
fn extract(input: &Path, dest: &Path) -> Result<(), ArchiveError> {
    let f = fs::File::open(input).map_err(io_err(input))?;
    let mut a = tar::Archive::new(io::BufReader::new(f));
    for e in a.entries().map_err(io_err(input))? {
        let mut e = e.map_err(io_err(input))?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let raw = e.path().map_err(io_err(input))?.into_owned();
        let bad = || ArchiveError::Entry {
            path: input.to_path_buf(),
            entry: raw.display().to_string(),
        };
        let rel = crate::unpack::safe_relative(&raw).map_err(|_| bad())?;
        if rel.as_os_str().is_empty() {
            return Err(bad());
        }
        let p = dest.join(&rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let mut out = fs::File::create(&p).map_err(io_err(&p))?;
        io::copy(&mut e, &mut out).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Loads every image of an OCI or docker archive; returns them.
pub fn load(
    store: &mut Store,
    input: &Path,
    progress: &dyn Progress,
) -> Result<Vec<ImageRecord>, ArchiveError> {
    let _lock = store.lock_shared()?;
    let stage = store.stage()?;
    let staging = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(stage.path())
        .map_err(io_err(stage.path()))?;
    extract(input, staging.path())?;
    let s = staging.path();
    let loaded = if s.join("index.json").is_file() {
        load_oci(store, input, s, progress)?
    } else if s.join("manifest.json").is_file() {
        load_docker(store, input, s, progress)?
    } else {
        return Err(ArchiveError::Format {
            path: input.to_path_buf(),
        });
    };
    loaded
        .iter()
        .map(|id| store.lookup(&id.to_string()).map_err(ArchiveError::from))
        .collect()
}

fn read_file(path: &Path, input: &Path, what: &str) -> Result<Vec<u8>, ArchiveError> {
    fs::read(path).map_err(|_| ArchiveError::Missing {
        path: input.to_path_buf(),
        what: what.to_string(),
    })
}

fn open_blob(dir: &Path, d: &Digest) -> Result<Box<dyn Read + Send + Sync>, PullError> {
    let p = dir.join("blobs/sha256").join(d.hex());
    let f = fs::File::open(&p).map_err(|source| PullError::Io { path: p, source })?;
    Ok(Box::new(io::BufReader::new(f)))
}

fn load_oci(
    store: &mut Store,
    input: &Path,
    s: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Digest>, ArchiveError> {
    let index: Index = parse_json(
        "index.json",
        &read_file(&s.join("index.json"), input, "index.json")?,
    )?;
    let mut ids = Vec::new();
    for desc in &index.manifests {
        let blob = |d: &Digest| {
            read_file(
                &s.join("blobs/sha256").join(d.hex()),
                input,
                &format!("blob {d}"),
            )
        };
        let (mut desc, mut raw) = (desc.clone(), blob(&desc.digest)?);
        if spec::is_index(&desc.media_type) {
            let inner: Index = parse_json(&format!("index {}", desc.digest), &raw)?;
            let Some(d) = spec::select_platform(&inner, &spec::host_platform()) else {
                continue;
            };
            let annotations = std::mem::take(&mut desc.annotations);
            desc = d.clone();
            desc.annotations.extend(annotations);
            raw = blob(&desc.digest)?;
        }
        if Digest::of(&raw) != desc.digest {
            return Err(PullError::DigestMismatch {
                what: format!("manifest in {}", input.display()),
                expected: desc.digest.clone(),
                actual: Digest::of(&raw),
            }
            .into());
        }
        let manifest: Manifest = parse_json(&format!("manifest {}", desc.digest), &raw)?;
        let config_raw = blob(&manifest.config.digest)?;
        let name = desc
            .annotations
            .get(CONTAINERD_NAME)
            .or_else(|| desc.annotations.get(REF_NAME))
            .and_then(|n| n.parse::<Reference>().ok())
            .filter(|r| r.tag.is_some());
        let names: Vec<String> = name.iter().map(ToString::to_string).collect();
        let fetch = |d: &Digest| open_blob(s, d);
        install(
            store,
            &manifest,
            &desc.media_type,
            &raw,
            config_raw,
            names,
            &fetch,
            3,
            progress,
        )?;
        ids.push(manifest.config.digest.clone());
    }
    Ok(ids)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Digest, size and compression (by magic bytes) of a file.
fn describe(path: &Path) -> Result<(Digest, u64, &'static str), ArchiveError> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_err(path))?;
    let media_type = match &magic[..n] {
        [0x1f, 0x8b, ..] => spec::DOCKER_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => spec::OCI_LAYER_ZSTD,
        _ => spec::DOCKER_LAYER_TAR,
    };
    let f = fs::File::open(path).map_err(io_err(path))?;
    let (d, size) = HashReader::new(io::BufReader::new(f))
        .finish()
        .map_err(io_err(path))?;
    Ok((d, size, media_type))
}

fn load_docker(
    store: &mut Store,
    input: &Path,
    s: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Digest>, ArchiveError> {
    let entries: Vec<DockerEntry> = parse_json(
        "manifest.json",
        &read_file(&s.join("manifest.json"), input, "manifest.json")?,
    )?;
    let mut ids = Vec::new();
    for e in entries {
        let safe = |p: &str| -> Result<PathBuf, ArchiveError> {
            let rel =
                crate::unpack::safe_relative(Path::new(p)).map_err(|_| ArchiveError::Entry {
                    path: input.to_path_buf(),
                    entry: p.to_string(),
                })?;
            Ok(s.join(rel))
        };
        let config_raw = read_file(&safe(&e.config)?, input, &e.config)?;
        let mut files = HashMap::new();
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = safe(l)?;
            let (digest, size, media_type) = describe(&p)?;
            files.insert(digest.clone(), p);
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        // docker-archive has no manifest: synthesise a schema 2 one.
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(spec::DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: spec::DOCKER_CONFIG.to_string(),
                digest: Digest::of(&config_raw),
                size: config_raw.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::new(),
        };
        let raw = serde_json::to_vec(&manifest).map_err(|source| PullError::Json {
            what: "synthesised manifest".into(),
            source,
        })?;
        let names: Vec<String> = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.parse::<Reference>().ok())
            .map(|r| r.to_string())
            .collect();
        let fetch = |d: &Digest| -> Result<Box<dyn Read + Send + Sync>, PullError> {
            let p = files.get(d).cloned().unwrap_or_default();
            let f = fs::File::open(&p).map_err(|source| PullError::Io { path: p, source })?;
            Ok(Box::new(io::BufReader::new(f)))
        };
        install(
            store,
            &manifest,
            spec::DOCKER_MANIFEST,
            &raw,
            config_raw,
            names,
            &fetch,
            3,
            progress,
        )?;
        ids.push(manifest.config.digest.clone());
    }
    Ok(ids)
}
