//! Making images locally (`commit`, `import`, and `build` in hull-build): new layers from a
//! tar stream or a directory tree, and an [`ImageDraft`] (config, layers, history) that
//! becomes an ordinary stored image.
//!
//! A layer is stored in one pass over its tar stream:
//!
//! ```text
//! tar ─► sha256 (DiffID) ─► tee ─► gzip ─► sha256 (blob) ─► tmp blob file
//!                            └──► unpack into a staged snapshot
//! ```
//!
//! then blob and snapshot land by rename, as for a pull. Until the draft is committed nothing
//! references them, so a draft holds the store lock shared, like a pull: a concurrent
//! `rmi`/`prune` (whose garbage collection takes it exclusively) waits instead of deleting
//! them.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::changes::{self, ChangeError};
use crate::digest::Digest;
use crate::reference::{Reference, ReferenceError};
use crate::spec::{self, Descriptor, Manifest, Platform};
use crate::store::{ImageRecord, LayerRecord, NewImage, RootLock, Store, StoreError};
use crate::tarball::{self, TarError, Whiteouts};
use crate::unpack::{unpack_layer, UnpackError};

/// Errors making layers and images.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("the layer's tar stream is unusable")]
    Layer(#[source] UnpackError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{0}: a digest cannot name a new image; give name[:tag]")]
    DigestName(String),
    #[error("i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image config of {what}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which family of media types a new image uses: the base image's, so that a commit of a
/// Docker schema 2 image stays one (registries and docker expect one family per manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTypes {
    Oci,
    Docker,
}

impl MediaTypes {
    fn layer(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_LAYER_GZIP,
            MediaTypes::Docker => spec::DOCKER_LAYER_GZIP,
        }
    }
    fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_CONFIG,
            MediaTypes::Docker => spec::DOCKER_CONFIG,
        }
    }
    fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => spec::OCI_MANIFEST,
            MediaTypes::Docker => spec::DOCKER_MANIFEST,
        }
    }
}

/// One `history` entry of an image config.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub created_by: String,
    pub comment: Option<String>,
    pub author: Option<String>,
}

/// An image being made: the full config JSON (unknown fields of the base kept), its layers
/// and media types. Holds the store lock shared until committed or dropped.
pub struct ImageDraft {
    config: Value,
    layers: Vec<LayerRecord>,
    types: MediaTypes,
    _lock: RootLock,
}

impl ImageDraft {
    /// The execution config (`config` of the image config), created if absent: keys in
    /// docker's spelling (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `Labels`,
    /// `ExposedPorts`, `Volumes`, `StopSignal`, `Shell`, `Healthcheck`, `OnBuild`).
    pub fn config_mut(&mut self) -> &mut Map<String, Value> {
        let root = obj(&mut self.config);
        let c = root.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        obj(c)
    }

    /// The whole image config (architecture, os, author, history, rootfs, config...).
    pub fn image_config_mut(&mut self) -> &mut Map<String, Value> {
        obj(&mut self.config)
    }

    /// Applies a Dockerfile-style change (`CMD ["sh"]`, `ENV A=1`, `WORKDIR /x`, ...), as
    /// `docker commit --change` / `docker import --change` take them.
    pub fn apply_change(&mut self, change: &str) -> Result<(), ChangeError> {
        changes::apply(self.config_mut(), change)
    }

    /// ChainID of the top layer so far (the parent of the next layer); None for none.
    pub fn top_chain(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    /// The layers so far, bottom first.
    pub fn layers(&self) -> &[LayerRecord] {
        &self.layers
    }

    /// The media type family new layers of this draft must use.
    pub fn media_types(&self) -> MediaTypes {
        self.types
    }

    /// Adds a layer made with [`Store::add_layer`] / [`Store::add_layer_from_dir`] on
    /// [`ImageDraft::top_chain`], and its history entry.
    pub fn push_layer(&mut self, layer: LayerRecord, history: History) {
        let root = obj(&mut self.config);
        let rootfs = root
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        if let Some(ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
            ids.push(json!(layer.diff_id));
        }
        self.layers.push(layer);
        self.push_history(history, false);
    }

    /// A history entry of a step that made no layer (`ENV`, `CMD`, ...).
    pub fn push_history(&mut self, h: History, empty_layer: bool) {
        let mut e = json!({"created": now_rfc3339(), "created_by": h.created_by});
        if let Some(c) = h.comment.filter(|c| !c.is_empty()) {
            e["comment"] = json!(c);
        }
        if let Some(a) = h.author.filter(|a| !a.is_empty()) {
            e["author"] = json!(a);
        }
        if empty_layer {
            e["empty_layer"] = json!(true);
        }
        let root = obj(&mut self.config);
        let hist = root.entry("history").or_insert_with(|| json!([]));
        if !hist.is_array() {
            *hist = json!([]);
        }
        if let Some(a) = hist.as_array_mut() {
            a.push(e);
        }
    }
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        // Made an object just above.
        _ => unreachable!("value is an object"),
    }
}

/// Now as RFC 3339 UTC with nanoseconds, as docker writes `created`.
pub(crate) fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Civil date from unix seconds (Howard Hinnant's days_from_civil inverse).
pub(crate) fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Hashes what is read (the DiffID) and copies it into a writer (the blob's encoder).
struct Tee<R, W> {
    inner: R,
    out: W,
    hasher: sha2::Sha256,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Hashes and counts what is written through it.
struct HashWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A bounded in-memory pipe between the thread writing a tree as tar and the layer writer.
struct ChanWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChanReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(v) => (self.cur, self.pos) = (v, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Store {
    /// A draft on top of `base` (its config, layers and media types).
    pub fn draft_from(&self, base: &ImageRecord) -> Result<ImageDraft, CreateError> {
        let lock = self.lock_shared()?;
        let raw = self.read_blob(&base.id)?;
        let config: Value = serde_json::from_slice(&raw).map_err(|source| CreateError::Json {
            what: base.id.to_string(),
            source,
        })?;
        let types = match base.manifest_media_type.as_str() {
            spec::DOCKER_MANIFEST => MediaTypes::Docker,
            _ => MediaTypes::Oci,
        };
        Ok(ImageDraft {
            config,
            layers: base.layers.clone(),
            types,
            _lock: lock,
        })
    }

    /// A draft with no layers (`FROM scratch`, `import`), for `platform` (the host's when
    /// None), OCI media types.
    pub fn draft_scratch(&self, platform: Option<&Platform>) -> Result<ImageDraft, CreateError> {
        let lock = self.lock_shared()?;
        let p = platform.cloned().unwrap_or_else(spec::host_platform);
        let mut config = json!({
            "architecture": p.architecture, "os": p.os,
            "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
        });
        if let Some(v) = p.variant {
            config["variant"] = json!(v);
        }
        Ok(ImageDraft {
            config,
            layers: Vec::new(),
            types: MediaTypes::Oci,
            _lock: lock,
        })
    }

    /// Stores an uncompressed tar stream as a layer on top of the layer `parent` (a ChainID,
    /// None for a base layer): gzip blob, DiffID, and the unpacked snapshot under its ChainID.
    pub fn add_layer(
        &self,
        parent: Option<&Digest>,
        tar: impl Read,
        types: MediaTypes,
    ) -> Result<LayerRecord, CreateError> {
        let stage = self.stage()?;
        let tmp = stage.path();
        let blob = tempfile::NamedTempFile::new_in(tmp).map_err(io_err(tmp))?;
        let snap = tempfile::Builder::new()
            .prefix("snap-")
            .tempdir_in(tmp)
            .map_err(io_err(tmp))?;
        let file = blob.reopen().map_err(io_err(blob.path()))?;
        let hashed = HashWriter {
            inner: io::BufWriter::new(file),
            hasher: sha2::Digest::new(),
            count: 0,
        };
        let gz = flate2::write::GzEncoder::new(hashed, flate2::Compression::default());
        let mut tee = Tee {
            inner: tar,
            out: gz,
            hasher: sha2::Digest::new(),
        };
        let limits = self.layer_limits();
        let read_err = |e| CreateError::Layer(UnpackError::Read(e));
        unpack_layer(&mut tee, snap.path(), &limits).map_err(CreateError::Layer)?;
        // The end-of-archive padding belongs to the DiffID and the blob too.
        io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
        let diff_id = Digest::from_hasher(tee.hasher);
        let hashed = tee.out.finish().map_err(io_err(blob.path()))?;
        let (blob_digest, size) = (Digest::from_hasher(hashed.hasher), hashed.count);
        let file = hashed
            .inner
            .into_inner()
            .map_err(|e| io_err(blob.path())(e.into_error()))?;
        file.sync_all().map_err(io_err(blob.path()))?;
        let chain_id = match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        };
        if !self.has_blob(&blob_digest) {
            let dest = self.blob_path(&blob_digest);
            blob.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        }
        if !self.has_snapshot(&chain_id) {
            let dest = self.snapshot_path(&chain_id);
            let staged = snap.keep();
            if let Err(e) = std::fs::rename(&staged, &dest) {
                // Landed meanwhile by another writer of the same content: keep theirs.
                let _ = crate::fsutil::remove_any(&staged);
                if !dest.is_dir() {
                    return Err(io_err(&dest)(e));
                }
            }
        }
        self.record_snapshot(&chain_id, parent, &diff_id)?;
        Ok(LayerRecord {
            blob: blob_digest,
            media_type: types.layer().to_string(),
            size,
            diff_id,
            chain_id,
        })
    }

    /// [`Store::add_layer`] of the tree under `dir` written as tar by [`tarball::write_tree`]
    /// (an overlay upper dir with [`Whiteouts::Overlay`]; paths in `skip` left out), streamed
    /// through a pipe.
    pub fn add_layer_from_dir(
        &self,
        parent: Option<&Digest>,
        dir: &Path,
        whiteouts: Whiteouts,
        skip: &[PathBuf],
        types: MediaTypes,
    ) -> Result<LayerRecord, CreateError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        std::thread::scope(|s| {
            let writer = s.spawn(move || {
                let w = io::BufWriter::with_capacity(256 << 10, ChanWriter(tx));
                tarball::write_tree(dir, w, whiteouts, skip).and_then(|mut w| {
                    w.flush().map_err(|source| TarError::Write {
                        path: dir.to_path_buf(),
                        source,
                    })
                })
            });
            let reader = ChanReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            let stored = self.add_layer(parent, reader, types);
            // The reader is gone once add_layer returns: a writer still sending sees a
            // broken pipe, which is the echo of add_layer's error, not a cause.
            let written = writer.join().unwrap_or_else(|_| {
                Err(TarError::Write {
                    path: dir.to_path_buf(),
                    source: io::Error::other("tar writer panicked"),
                })
            });
            match (stored, written) {
                (Ok(l), Ok(())) => Ok(l),
                (Err(e), Err(TarError::Write { source, .. }))
                    if source.kind() == io::ErrorKind::BrokenPipe =>
                {
                    Err(e)
                }
                (_, Err(t)) => Err(t.into()),
                (Err(e), Ok(())) => Err(e),
            }
        })
    }
}

/// `r` without its compression: gzip or zstd are recognised by their magic bytes, anything
/// else is passed on as it is (a plain tar).
pub fn decompressed(r: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    let mut r = io::BufReader::with_capacity(1 << 20, r);
    let magic = io::BufRead::fill_buf(&mut r)?;
    Ok(match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(r)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        _ => Box::new(r),
    })
}

/// One line of `history`, newest first.
#[derive(Clone, Debug, Default)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: Option<String>,
    /// Size of the layer the step made (its blob); 0 for a step without one.
    pub size: u64,
    pub empty_layer: bool,
}

impl Store {
    /// The image's history (config `history`), newest first, with the layer sizes; one row
    /// per layer when the config has no usable history.
    pub fn history(&self, img: &ImageRecord) -> Result<Vec<HistoryRow>, CreateError> {
        #[derive(serde::Deserialize)]
        struct H {
            created: Option<String>,
            created_by: Option<String>,
            comment: Option<String>,
            #[serde(default)]
            empty_layer: bool,
        }
        #[derive(serde::Deserialize)]
        struct C {
            #[serde(default)]
            history: Vec<H>,
        }
        let raw = self.read_blob(&img.id)?;
        let c: C = serde_json::from_slice(&raw).map_err(|source| CreateError::Json {
            what: img.id.to_string(),
            source,
        })?;
        let with_layers = c.history.iter().filter(|h| !h.empty_layer).count();
        // Layers the history does not account for (a base made without one) come first,
        // one row each.
        let missing = img.layers.len().saturating_sub(with_layers);
        let synth = |l: &LayerRecord| HistoryRow {
            created: img.config.created.clone(),
            size: l.size,
            ..Default::default()
        };
        let mut rows: Vec<HistoryRow> = img.layers[..missing].iter().map(synth).collect();
        if with_layers > img.layers.len() {
            rows = img.layers.iter().map(synth).collect();
        } else {
            let mut layers = img.layers[missing..].iter();
            for h in c.history {
                let size = match h.empty_layer {
                    true => 0,
                    false => layers.next().map_or(0, |l| l.size),
                };
                rows.push(HistoryRow {
                    created: h.created,
                    created_by: h.created_by.unwrap_or_default(),
                    comment: h.comment,
                    size,
                    empty_layer: h.empty_layer,
                });
            }
        }
        rows.reverse();
        Ok(rows)
    }
}

/// Parses a name for a new image: `name[:tag]` (tag `latest` by default), no digest.
pub fn parse_new_name(name: &str) -> Result<Reference, CreateError> {
    let r: Reference = name.parse()?;
    if r.digest.is_some() {
        return Err(CreateError::DigestName(name.to_string()));
    }
    Ok(r)
}

impl Store {
    /// Stores the draft as an image: config (with `created`) and manifest blobs, the image
    /// row, and `names` (each `name[:tag]`) pointing at it. Returns the stored image.
    pub fn commit_draft(
        &mut self,
        mut draft: ImageDraft,
        names: &[String],
    ) -> Result<ImageRecord, CreateError> {
        let names = names
            .iter()
            .map(|n| parse_new_name(n).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        draft
            .image_config_mut()
            .insert("created".into(), json!(now_rfc3339()));
        let config_raw = serde_json::to_vec(&draft.config).map_err(|source| CreateError::Json {
            what: "the new image".into(),
            source,
        })?;
        let config_digest = self.write_blob(&config_raw)?;
        let t = draft.types;
        let desc = |media_type: &str, digest: Digest, size: u64| Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        };
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(t.manifest().to_string()),
            config: desc(t.config(), config_digest.clone(), config_raw.len() as u64),
            layers: draft
                .layers
                .iter()
                .map(|l| desc(&l.media_type, l.blob.clone(), l.size))
                .collect(),
            annotations: Default::default(),
        };
        let manifest_raw = serde_json::to_vec(&manifest).map_err(|source| CreateError::Json {
            what: "the new manifest".into(),
            source,
        })?;
        let manifest_digest = self.write_blob(&manifest_raw)?;
        self.commit_image(&NewImage {
            id: config_digest.clone(),
            names,
            manifest_digest,
            manifest_media_type: t.manifest().to_string(),
            config_raw,
            layers: std::mem::take(&mut draft.layers),
        })?;
        drop(draft);
        Ok(self.lookup(&config_digest.to_string())?)
    }

    /// `hull tag`: `target` (`name[:tag]`) names the image `source` names; a tag that named
    /// another image moves (that one stays, untagged, as with docker).
    pub fn tag(&mut self, source: &str, target: &str) -> Result<Reference, CreateError> {
        let img = self.lookup(source)?;
        let r = parse_new_name(target)?;
        self.add_name(&img.id, &r.to_string())?;
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }
}
