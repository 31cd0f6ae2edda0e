//! Progress callbacks, so the library stays free of any terminal code; the
//! `hull` binary renders them with indicatif when stderr is a terminal.

use crate::digest::Digest;

/// What happens to a layer during a pull, load or push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerAction {
    /// Downloaded, verified and unpacked while streaming.
    Download,
    /// Blob already present: only unpacked from the local copy.
    UnpackLocal,
    /// Snapshot present: only the blob is fetched (and verified).
    FetchBlob,
    /// Blob and snapshot both present.
    Skip,
    /// Push: the blob is being uploaded.
    Upload,
    /// Push: the registry already has the blob.
    Present,
    /// Push: mounted from another repository of the registry.
    Mounted,
}

/// Receives pull/load progress. All methods may be called from several
/// layer threads at once.
pub trait Progress: Send + Sync {
    /// A layer is about to be processed; `size` is its blob size in bytes.
    fn layer_start(&self, _blob: &Digest, _size: u64, _action: LayerAction) {}
    /// `n` more bytes of the blob were consumed.
    fn layer_bytes(&self, _blob: &Digest, _n: u64) {}
    /// The layer finished (`ok == false` on error).
    fn layer_done(&self, _blob: &Digest, _ok: bool) {}
    /// A free-form status line (resolved digest, platform...).
    fn message(&self, _msg: &str) {}
}

/// Ignores all progress.
pub struct NoProgress;

impl Progress for NoProgress {}
