//! The per-layer streaming pipeline:
//!
//! ```text
//! source ─► count/abort/cap at the declared size ─► tee to tmp blob ─► sha256 (blob digest)
//!        ─► gzip | zstd | identity ─► sha256 (DiffID) ─► tar unpack into tmp snapshot
//! ```
//!
//! Nothing is buffered beyond the decoders' own windows, so inflate and
//! unpack overlap with the download. Only after both digests verify are the
//! blob and snapshot renamed into place.
//!
//! A registry that sends more than the descriptor's size is cut off after one byte too
//! many (not read to its end into `tmp/`); the uncompressed stream is capped by
//! [`LayerLimits`] whether or not it is unpacked.

use std::cell::Cell;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::PullError;
use crate::digest::{Digest, HashReader};
use crate::limits::LayerLimits;
use crate::progress::Progress;
use crate::spec::Compression;
use crate::unpack::{unpack_layer, UnpackError};

/// What to do with one layer.
pub(crate) struct LayerJob {
    pub blob: Digest,
    pub size: u64,
    pub compression: Compression,
    pub diff_id: Digest,
    /// Where the verified blob goes; None when it is already stored.
    pub blob_dest: Option<PathBuf>,
    /// Where the verified snapshot goes; None when it already exists.
    pub snapshot_dest: Option<PathBuf>,
}

/// How the bytes of a blob disagreed with its declared size.
#[derive(Debug, Clone, Copy)]
enum SizeFault {
    More,
    Fewer(u64),
}

/// Counts bytes for progress, aborts when a sibling layer failed, fails at the first byte
/// past the declared size, and notes an end before it (the decoders and the tar reader
/// wrap what we return, so `fault` tells the cause apart from its echo).
struct Watch<'a, R> {
    inner: R,
    blob: &'a Digest,
    progress: &'a dyn Progress,
    abort: &'a AtomicBool,
    size: u64,
    left: u64,
    fault: &'a Cell<Option<SizeFault>>,
}

impl<R: Read> Read for Watch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.abort.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: io::copy would retry that forever.
            return Err(io::Error::other("aborted: another layer failed"));
        }
        // One byte beyond the declared size is enough to know the blob is wrong.
        let want = buf.len().min(
            usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let n = self.inner.read(&mut buf[..want])?;
        let Some(left) = self.left.checked_sub(n as u64) else {
            self.fault.set(Some(SizeFault::More));
            return Err(io::Error::other("more bytes than the declared size"));
        };
        if n == 0 && left > 0 && !buf.is_empty() {
            self.fault.set(Some(SizeFault::Fewer(self.size - left)));
        }
        self.left = left;
        self.progress.layer_bytes(self.blob, n as u64);
        Ok(n)
    }
}

/// The uncompressed stream when it is only hashed (the snapshot exists): capped as an
/// unpack would cap it, so that a bomb costs bounded time here too.
fn drain_capped(r: impl Read, limits: &LayerLimits) -> Result<(), UnpackError> {
    let n = io::copy(
        &mut r.take(limits.max_size.saturating_add(1)),
        &mut io::sink(),
    )
    .map_err(UnpackError::Read)?;
    if n > limits.max_size {
        return Err(UnpackError::TooLarge {
            limit: limits.max_size,
        });
    }
    Ok(())
}

/// Copies everything read into a staging file.
struct Tee<R> {
    inner: R,
    out: Option<fs::File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(f) = &mut self.out {
            f.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

fn decoder<'r, R: Read + 'r>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match c {
        Compression::None => Box::new(r),
        // Multi-member: pigz and some builders emit concatenated gzip members.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs the pipeline for one layer from `source` (HTTP body or local blob).
pub(crate) fn process(
    job: &LayerJob,
    source: impl Read,
    tmp: &Path,
    limits: &LayerLimits,
    progress: &dyn Progress,
    abort: &AtomicBool,
) -> Result<(), PullError> {
    let staged_blob = match job.blob_dest {
        Some(_) => Some(tempfile::NamedTempFile::new_in(tmp).map_err(io_err(tmp))?),
        None => None,
    };
    let staged_snap = match job.snapshot_dest {
        Some(_) => Some(
            tempfile::Builder::new()
                .prefix("snap-")
                .tempdir_in(tmp)
                .map_err(io_err(tmp))?,
        ),
        None => None,
    };
    let out = match &staged_blob {
        Some(f) => Some(f.reopen().map_err(io_err(f.path()))?),
        None => None,
    };
    let fault = Cell::new(None);
    let watch = Watch {
        inner: source,
        blob: &job.blob,
        progress,
        abort,
        size: job.size,
        left: job.size,
        fault: &fault,
    };
    let mut compressed = HashReader::new(Tee { inner: watch, out });
    let size_err = |got: String| PullError::SizeMismatch {
        what: format!("layer blob {}", job.blob),
        expected: job.size,
        got,
    };
    // The decoder or the tar reader saw the cut or the early end: report the cause.
    let layer_err = |source| match fault.get() {
        Some(SizeFault::More) => size_err("more".to_string()),
        Some(SizeFault::Fewer(n)) => size_err(n.to_string()),
        None => PullError::Layer {
            blob: job.blob.clone(),
            source,
        },
    };
    let read_err = |e| layer_err(UnpackError::Read(e));
    let (diff_id, _) = {
        let dec = decoder(job.compression, &mut compressed).map_err(read_err)?;
        let mut diff = HashReader::new(dec);
        match &staged_snap {
            Some(dir) => unpack_layer(&mut diff, dir.path(), limits).map_err(layer_err)?,
            None => drain_capped(&mut diff, limits).map_err(layer_err)?,
        }
        // What follows the tar's end (or a hashed-only stream) is capped as well.
        drain_capped(&mut diff, limits).map_err(layer_err)?;
        diff.finish().map_err(read_err)?
    };
    let (blob_digest, blob_size) = compressed.finish().map_err(read_err)?;
    if blob_size != job.size {
        return Err(size_err(blob_size.to_string()));
    }
    if blob_digest != job.blob {
        return Err(PullError::DigestMismatch {
            what: format!("layer blob ({blob_size} bytes)"),
            expected: job.blob.clone(),
            actual: blob_digest,
        });
    }
    if diff_id != job.diff_id {
        return Err(PullError::DiffIdMismatch {
            blob: job.blob.clone(),
            expected: job.diff_id.clone(),
            actual: diff_id,
        });
    }
    if let (Some(f), Some(dest)) = (staged_blob, &job.blob_dest) {
        f.as_file().sync_all().map_err(io_err(dest))?;
        f.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    }
    if let (Some(dir), Some(dest)) = (staged_snap, &job.snapshot_dest) {
        let staged = dir.keep();
        if let Err(e) = fs::rename(&staged, dest) {
            // Another pull may have landed the same ChainID first; the
            // content is identical by construction, so keep theirs.
            let _ = crate::fsutil::remove_any(&staged);
            if !dest.is_dir() {
                return Err(io_err(dest)(e));
            }
        }
    }
    Ok(())
}
