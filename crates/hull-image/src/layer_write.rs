//! Making layers and images out of files (written for `hull build`; `commit` and `import`
//! need the same): a gzip'd tar written once while both digests are computed (the blob
//! digest over the compressed bytes, the DiffID over the tar), a directory walked into such
//! a tar (an overlay upper dir's whiteouts turned back into `.wh.` entries), and an image
//! committed from a base image's layers plus new layer files.
//!
//! The new image goes through the same path as a load ([`crate::pull::install`]): every
//! layer file is verified against its digest, unpacked into a snapshot in a stage directory
//! and renamed into place, then the image is committed in one transaction; an interrupted
//! commit leaves nothing half-written.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::pull::{install, PullError};
use crate::spec::{self, Descriptor, Manifest};
use crate::store::{ImageRecord, LayerRecord, Stage, Store, StoreError};

pub use crate::layer_stack::{resolve_in_layers, stat_in_layers};

/// Errors of layer writing and image commits.
#[derive(Debug, thiserror::Error)]
pub enum LayerWriteError {
    #[error("writing layer from {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Install(#[from] PullError),
    #[error("image config: {0}")]
    Config(#[source] serde_json::Error),
    #[error(
        "{0}: a file whose name starts with .wh. cannot go into a layer (the OCI layer format \
         reads it as a whiteout or an opaque-directory marker): rename or remove it"
    )]
    WhiteoutName(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerWriteError + '_ {
    move |source| LayerWriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A private staging directory in the store's `tmp/`, flocked while it lives and removed
/// when dropped (what a killed builder leaves goes at the next open of the store).
pub struct Staging {
    stage: Stage,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.stage.path()
    }
}

impl Store {
    /// A fresh [`Staging`] directory for files that become blobs later.
    pub fn staging(&self) -> Result<Staging, StoreError> {
        Ok(Staging {
            stage: self.stage()?,
        })
    }

    /// The raw config JSON of a stored image (every field, also those [`crate::ImageConfig`]
    /// does not model: Healthcheck, Shell, history...).
    pub fn config_raw(&self, img: &ImageRecord) -> Result<Vec<u8>, StoreError> {
        self.read_blob(&img.id)
    }
}

/// Hashes what passes through to `inner` and counts it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> HashWriter<W> {
    HashWriter {
        inner,
        hasher: Sha256::new(),
        count: 0,
    }
}

/// Where a layer's tar goes: DiffID hash → gzip → blob hash → file.
pub type LayerSink = HashWriter<flate2::write::GzEncoder<HashWriter<BufWriter<fs::File>>>>;

/// A layer blob being written.
pub struct LayerWriter {
    tar: tar::Builder<LayerSink>,
    path: PathBuf,
}

/// A finished layer blob: a `.tar+gzip` file and its digests.
#[derive(Clone, Debug)]
pub struct LayerFile {
    pub path: PathBuf,
    /// Digest of the compressed blob.
    pub digest: Digest,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
}

impl LayerWriter {
    /// Starts a layer file in `dir` (a [`Staging`] directory).
    pub fn create(dir: &Path) -> Result<LayerWriter, LayerWriteError> {
        let f = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(dir)
            .map_err(io_err(dir))?;
        let (file, path) = f.keep().map_err(|e| io_err(dir)(e.error))?;
        // Level 1: layers are written on every build step, and fast deflate keeps the
        // compression well below the cost of the step itself.
        let gz = flate2::write::GzEncoder::new(
            hashing(BufWriter::new(file)),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(hashing(gz));
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        Ok(LayerWriter { tar, path })
    }

    /// The tar being written.
    pub fn tar(&mut self) -> &mut tar::Builder<LayerSink> {
        &mut self.tar
    }

    /// Ends the tar and the gzip stream; returns the file and its digests.
    pub fn finish(self) -> Result<LayerFile, LayerWriteError> {
        let p = self.path;
        let sink = self.tar.into_inner().map_err(io_err(&p))?;
        let diff_id = Digest::from_hasher(sink.hasher);
        let blob = sink.inner.finish().map_err(io_err(&p))?;
        let digest = Digest::from_hasher(blob.hasher);
        let size = blob.count;
        blob.inner
            .into_inner()
            .map_err(|e| io_err(&p)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&p))?;
        Ok(LayerFile {
            path: p,
            digest,
            size,
            diff_id,
        })
    }
}

/// How [`append_tree`] treats what it finds.
#[derive(Default)]
pub struct TreeOptions<'a> {
    /// The directory is an overlayfs upper dir: 0/0 character devices are whiteouts and
    /// `trusted.overlay.opaque=y` (`user.overlay.opaque` rootless, `user.fuseoverlayfs.opaque`
    /// from fuse-overlayfs) marks an opaque directory (written as `.wh.` entries).
    pub overlay: bool,
    /// The upper dir is fuse-overlayfs's (rootfs mode `overlay-fuse`): its `.wh..wh..opq`
    /// file marks an opaque directory too and is no content. On the kernel's overlay such a
    /// file is one the container made, and is written as it is.
    pub fuse: bool,
    /// Paths (relative, no leading `/`) left out with everything below them.
    pub skip: &'a [PathBuf],
}

/// Extended attributes a layer carries: overlayfs's own (`trusted.overlay.*`, rootless
/// `user.overlay.*`: origin, impure, opaque) describe the upper dir, not the files, and
/// SELinux labels are the host's.
fn keep_xattr(name: &[u8]) -> bool {
    !crate::userns::is_overlay_xattr(name) && name != b"security.selinux"
}

/// Appends everything under `dir` to `tar` as entries below `prefix` (relative, may be
/// empty), in name order, with owners, modes, mtimes, xattrs, hardlinks and devices.
pub fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
    opts: &TreeOptions<'_>,
) -> Result<(), LayerWriteError> {
    let mut links = HashMap::new();
    walk(tar, dir, Path::new(""), prefix, opts, &mut links)
}

fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    prefix: &Path,
    opts: &TreeOptions<'_>,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), LayerWriteError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        // fuse-overlayfs's marker next to its opaque xattr (written below from the xattr).
        let fuse = opts.overlay && opts.fuse;
        if opts.skip.contains(&r) || (fuse && name == crate::userns::FUSE_OPAQUE_FILE) {
            continue;
        }
        let p = root.join(&r);
        let m = fs::symlink_metadata(&p).map_err(io_err(&p))?;
        let dest = prefix.join(&r);
        if opts.overlay && m.file_type().is_char_device() && m.rdev() == 0 {
            let wh = dest.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            let mut h = header(&m, tar::EntryType::Regular);
            h.set_mode(0);
            h.set_size(0);
            tar.append_data(&mut h, &wh, io::empty())
                .map_err(io_err(&p))?;
            continue;
        }
        // The kernel's overlay whites out with devices only: a `.wh.` file here is the
        // container's own, and written as it is it would delete or hide in the layer.
        // fuse-overlayfs writes `.wh.NAME` files itself where it cannot mknod: layer format.
        if opts.overlay && !fuse && name.as_encoded_bytes().starts_with(b".wh.") {
            return Err(LayerWriteError::WhiteoutName(dest));
        }
        append_entry(tar, &p, &dest, &m, links, None)?;
        if m.is_dir() {
            let opaque = opts.overlay
                && (crate::fsutil::lxattrs(&p)
                    .map_err(io_err(&p))?
                    .iter()
                    .any(|(k, v)| crate::userns::is_opaque_xattr(k) && v == b"y")
                    || (fuse && p.join(crate::userns::FUSE_OPAQUE_FILE).exists()));
            if opaque {
                let mut h = header(&m, tar::EntryType::Regular);
                h.set_mode(0);
                h.set_size(0);
                tar.append_data(&mut h, dest.join(".wh..wh..opq"), io::empty())
                    .map_err(io_err(&p))?;
            }
            walk(tar, root, &r, prefix, opts, links)?;
        }
    }
    Ok(())
}

fn header(m: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(u64::from(m.uid()));
    h.set_gid(u64::from(m.gid()));
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Owner and mode given to every entry (COPY's `--chown`/`--chmod`): `None` keeps the file's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Override {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
}

/// One filesystem object `p` as the tar entry `dest` (`links` remembers hardlinked inodes).
pub fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    p: &Path,
    dest: &Path,
    m: &fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
    over: Option<Override>,
) -> Result<(), LayerWriteError> {
    let header = |m: &fs::Metadata, kind| {
        let mut h = header(m, kind);
        if let Some(o) = over {
            if let Some((u, g)) = o.owner {
                h.set_uid(u64::from(u));
                h.set_gid(u64::from(g));
            }
            if let (Some(mode), false) = (o.mode, kind == tar::EntryType::Symlink) {
                h.set_mode(mode);
            }
        }
        h
    };
    let xattrs: Vec<(String, Vec<u8>)> = crate::fsutil::lxattrs(p)
        .map_err(io_err(p))?
        .into_iter()
        .filter(|(k, _)| keep_xattr(k))
        .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(&k)), v))
        .collect();
    if !xattrs.is_empty() {
        tar.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(io_err(p))?;
    }
    let ft = m.file_type();
    let err = io_err(p);
    if ft.is_dir() {
        let mut h = header(m, tar::EntryType::Directory);
        return tar.append_data(&mut h, dest, io::empty()).map_err(err);
    }
    if ft.is_symlink() {
        let target = fs::read_link(p).map_err(io_err(p))?;
        let mut h = header(m, tar::EntryType::Symlink);
        return tar.append_link(&mut h, dest, target).map_err(err);
    }
    if ft.is_file() {
        if m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            if let Some(first) = links.get(&key) {
                let mut h = header(m, tar::EntryType::Link);
                return tar.append_link(&mut h, dest, first).map_err(err);
            }
            links.insert(key, dest.to_path_buf());
        }
        let mut h = header(m, tar::EntryType::Regular);
        h.set_size(m.len());
        let f = fs::File::open(p).map_err(io_err(p))?;
        // A file that changes while it is read would make the header lie: cap it.
        return tar.append_data(&mut h, dest, f.take(m.len())).map_err(err);
    }
    let kind = if ft.is_char_device() {
        tar::EntryType::Char
    } else if ft.is_block_device() {
        tar::EntryType::Block
    } else if ft.is_fifo() {
        tar::EntryType::Fifo
    } else {
        // Sockets do not go into layers (docker skips them too).
        return Ok(());
    };
    let mut h = header(m, kind);
    let dev = m.rdev();
    h.set_device_major(libc::major(dev)).map_err(io_err(p))?;
    h.set_device_minor(libc::minor(dev)).map_err(io_err(p))?;
    tar.append_data(&mut h, dest, io::empty()).map_err(err)
}

/// Commits an image made of `base`'s layers (none for `scratch`) plus `new` layer files,
/// with `config` (whose `rootfs.diff_ids` this sets) and the given names. Returns the
/// stored image.
pub fn commit_image(
    store: &mut Store,
    base: &[LayerRecord],
    new: &[LayerFile],
    mut config: serde_json::Value,
    names: Vec<String>,
) -> Result<ImageRecord, LayerWriteError> {
    let _lock = store.lock_shared()?;
    let mut diff_ids: Vec<String> = base.iter().map(|l| l.diff_id.to_string()).collect();
    diff_ids.extend(new.iter().map(|l| l.diff_id.to_string()));
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let config_raw = serde_json::to_vec(&config).map_err(LayerWriteError::Config)?;
    let descriptor = |media_type: &str, digest: &Digest, size: u64| Descriptor {
        media_type: media_type.to_string(),
        digest: digest.clone(),
        size,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let mut layers: Vec<Descriptor> = base
        .iter()
        .map(|l| descriptor(&l.media_type, &l.blob, l.size))
        .collect();
    layers.extend(
        new.iter()
            .map(|l| descriptor(spec::OCI_LAYER_GZIP, &l.digest, l.size)),
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::OCI_MANIFEST.to_string()),
        config: descriptor(
            spec::OCI_CONFIG,
            &Digest::of(&config_raw),
            config_raw.len() as u64,
        ),
        layers,
        annotations: BTreeMap::new(),
    };
    let manifest_raw = serde_json::to_vec(&manifest).map_err(LayerWriteError::Config)?;
    let files: HashMap<&Digest, &Path> =
        new.iter().map(|l| (&l.digest, l.path.as_path())).collect();
    let fetch = |d: &Digest| -> Result<Box<dyn Read + Send + Sync>, PullError> {
        let p = files.get(d).map(|p| p.to_path_buf()).unwrap_or_default();
        let f = fs::File::open(&p).map_err(|source| PullError::Io { path: p, source })?;
        Ok(Box::new(io::BufReader::new(f)))
    };
    install(
        store,
        &manifest,
        spec::OCI_MANIFEST,
        &manifest_raw,
        config_raw,
        names,
        &fetch,
        3,
        &crate::progress::NoProgress,
    )?;
    Ok(store.lookup(&manifest.config.digest.to_string())?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An upper dir with `d/.wh..wh..opq` as a plain file and `d/f`; the tar's entry names.
    fn names_of(fuse: bool) -> Result<Vec<String>, LayerWriteError> {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/.wh..wh..opq"), "").unwrap();
        fs::write(t.path().join("d/f"), "x").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let opts = TreeOptions {
            overlay: true,
            fuse,
            skip: &[],
        };
        append_tree(&mut tar, t.path(), Path::new(""), &opts)?;
        let data = tar.into_inner().unwrap();
        let mut a = tar::Archive::new(&data[..]);
        Ok(a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect())
    }

    #[test]
    fn opaque_marker_file_is_honoured_on_fuse_overlayfs_only() {
        // fuse-overlayfs: the file marks `d` opaque, written once as the layer's marker.
        assert_eq!(names_of(true).unwrap(), ["d", "d/.wh..wh..opq", "d/f"]);
        // The kernel's overlay: the container made that file; it cannot go into a layer.
        let e = names_of(false).unwrap_err().to_string();
        assert!(
            e.starts_with("d/.wh..wh..opq: a file whose name starts with .wh."),
            "{e}"
        );
    }
}
