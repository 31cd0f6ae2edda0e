//! The on-disk store under the hull root:
//!
//! ```text
//! <root>/hull.db                 SQLite: names, images, layers, snapshots, rootfs
//! <root>/blobs/sha256/<hex>      content-addressed blobs (manifests, configs, layers)
//! <root>/snapshots/<chainid>/    one unpacked layer, usable as an overlay lowerdir
//! <root>/containers/<id>/        per-container upper/work/merged (see rootfs.rs)
//! <root>/tmp/stage-XXXXXX/       staging, one flocked dir per pull, load or gc;
//!                                everything lands by rename(2)
//! ```
//!
//! Everything is written to a stage directory first and renamed into place
//! only after its digest is verified, so an interrupted or failed pull leaves
//! nothing half-written under `blobs/` or `snapshots/`; what a killed one
//! left in `tmp/` goes at the next open of the store (see stage.rs).

mod db;
mod gc;
mod stage;
pub use gc::{PruneReport, RemoveReport};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) use db::NewImage;
pub use db::{ImageRecord, LayerRecord};
pub(crate) use stage::Stage;

use crate::digest::Digest;
use crate::limits::{LayerLimits, LimitError};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image metadata database")]
    Db(#[from] rusqlite::Error),
    #[error("corrupt metadata for {what}")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image not known: {0}")]
    NotFound(String),
    #[error("{0:?} matches more than one image; give more of the id")]
    Ambiguous(String),
    #[error("image {image} is in use by containers {containers:?} (use -f to untag anyway)")]
    InUse {
        image: String,
        containers: Vec<String>,
    },
    #[error("image {0} has several names; remove them one by one or use -f")]
    MultipleNames(String),
    #[error(transparent)]
    Limits(#[from] LimitError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Handle on a hull image store. Cheap to open; several processes may use
/// the same root at once (SQLite WAL with a busy timeout, plus a root-wide
/// flock that only garbage collection takes exclusively).
pub struct Store {
    root: PathBuf,
    db: rusqlite::Connection,
    limits: LayerLimits,
}

/// Shared or exclusive flock on `<root>/lock`; released on drop (close).
pub(crate) struct RootLock {
    _file: fs::File,
}

/// Directories of a hull root that only root may enter. Snapshots and container rootfs hold
/// what images ship, setuid-root files and device nodes included, and `ctr/` every
/// container's `config.json` (its `-e` secrets) and logs: reachable by other users they
/// would hand out root (docker CVE-2021-41091, containerd CVE-2021-41103). podman keeps its
/// root 0700 too; a per-user (rootless) root gets the same modes, owned by its user.
const PRIVATE_DIRS: &[&str] = &[
    "",
    "blobs",
    "snapshots",
    "containers",
    "tmp",
    "ctr",
    "volumes",
];

/// The metadata database and SQLite's companions (which copy the database's mode when made).
const DB_FILES: &[&str] = &["hull.db", "hull.db-wal", "hull.db-shm"];

/// Creates `dir` (and parents) if needed and makes it mode 0700, also when it existed with a
/// wider mode (stores made before hull kept them private get fixed on their next use).
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Makes the root `root` private: the root itself and every directory of [`PRIVATE_DIRS`]
/// that exists 0700, the database files that exist 0600.
pub fn make_private(root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    private_dir(root)?;
    for d in PRIVATE_DIRS.iter().filter(|d| !d.is_empty()) {
        let p = root.join(d);
        if p.is_dir() {
            private_dir(&p)?;
        }
    }
    for f in DB_FILES {
        let p = root.join(f);
        match fs::set_permissions(&p, fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Creates the database file 0600 before SQLite opens it (SQLite would make it 0644).
fn create_db_file(p: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(p)
        .map(drop)
        .map_err(io_err(p))
}

impl Store {
    /// Opens (creating if needed) the store at `root`, e.g. `/var/lib/hull`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        make_private(root)?;
        for sub in ["blobs/sha256", "snapshots", "containers", "tmp"] {
            private_dir(&root.join(sub))?;
        }
        create_db_file(&root.join("hull.db"))?;
        let db = db::open(&root.join("hull.db"))?;
        let store = Store {
            root: root.to_path_buf(),
            db,
            limits: LayerLimits::from_env()?,
        };
        store.clean_tmp()?;
        Ok(store)
    }

    /// Removes what killed pulls and loads left in `tmp/`: stage directories whose owner is
    /// gone and, when no pull or load holds the store lock, anything else there.
    pub(crate) fn clean_tmp(&self) -> Result<usize, StoreError> {
        let idle = self.try_lock_exclusive()?;
        stage::clean_stale(&self.root.join("tmp"), idle.is_some())
    }

    /// The limits every layer unpacked into this store obeys.
    pub fn layer_limits(&self) -> LayerLimits {
        self.limits
    }

    /// Replaces the layer limits (the default: [`LayerLimits::from_env`]).
    pub fn set_layer_limits(&mut self, limits: LayerLimits) {
        self.limits = limits;
    }

    /// The root directory of this store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Directory of the unpacked snapshot with ChainID `chain` (an overlay
    /// lowerdir: whiteouts are 0/0 char devices, opaque dirs carry
    /// `trusted.overlay.opaque=y`).
    pub fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.snapshot_path(chain)
    }

    pub(crate) fn snapshot_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain.hex())
    }

    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// A private staging directory under `tmp/`, locked and then removed with the guard.
    pub(crate) fn stage(&self) -> Result<stage::Stage, StoreError> {
        stage::Stage::create(&self.root.join("tmp"))
    }

    pub(crate) fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub(crate) fn has_snapshot(&self, chain: &Digest) -> bool {
        self.snapshot_path(chain).is_dir()
    }

    /// Reads a whole (small) blob such as a manifest or config.
    pub(crate) fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(io_err(&p))
    }

    /// Stores a small blob, verifying nothing: callers pass bytes whose
    /// digest they computed (`Digest::of`).
    pub(crate) fn write_blob(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(data);
        if self.has_blob(&d) {
            return Ok(d);
        }
        let stage = self.stage()?;
        let tmp = stage.path();
        let mut f = tempfile::NamedTempFile::new_in(tmp).map_err(io_err(tmp))?;
        io::Write::write_all(&mut f, data).map_err(io_err(tmp))?;
        let dest = self.blob_path(&d);
        f.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(d)
    }

    fn lock(&self, op: libc::c_int) -> Result<RootLock, StoreError> {
        self.lock_op(op)?
            .ok_or_else(|| io_err(&self.root.join("lock"))(io::ErrorKind::WouldBlock.into()))
    }

    /// The root lock, exclusively, if nobody holds it now.
    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<RootLock>, StoreError> {
        self.lock_op(libc::LOCK_EX | libc::LOCK_NB)
    }

    fn lock_op(&self, op: libc::c_int) -> Result<Option<RootLock>, StoreError> {
        let p = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: fd is a valid open descriptor owned by `file` for this call.
        let rc = unsafe { libc::flock(fd, op) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(io_err(&p)(e));
        }
        Ok(Some(RootLock { _file: file }))
    }

    /// Taken by writers that add content (pull, load, rootfs prepare), so a
    /// concurrent garbage collection cannot delete what they just staged.
    pub(crate) fn lock_shared(&self) -> Result<RootLock, StoreError> {
        self.lock(libc::LOCK_SH)
    }

    pub(crate) fn lock_exclusive(&self) -> Result<RootLock, StoreError> {
        self.lock(libc::LOCK_EX)
    }

    /// All images, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        db::list_images(&self.db)
    }

    /// Looks an image up by name (`busybox`, `host/repo:tag`, `repo@digest`),
    /// full id (`sha256:...`) or an unambiguous id prefix (≥ 3 hex chars).
    pub fn lookup(&self, name_or_id: &str) -> Result<ImageRecord, StoreError> {
        db::lookup(&self.db, name_or_id)
    }

    pub(crate) fn commit_image(&mut self, img: &NewImage) -> Result<(), StoreError> {
        db::insert_image(&mut self.db, img)
    }

    /// Points `name` (normalised, e.g. `docker.io/library/x:1` or `host/r@sha256:..`) at
    /// image `id`.
    pub(crate) fn add_name(&mut self, id: &Digest, name: &str) -> Result<(), StoreError> {
        db::add_name(&mut self.db, &id.to_string(), name)
    }

    /// Container rootfs (and image mounts) using image `id`.
    pub fn containers_using(&self, id: &Digest) -> Result<Vec<String>, StoreError> {
        db::containers_using(&self.db, &id.to_string())
    }

    pub(crate) fn record_snapshot(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
    ) -> Result<(), StoreError> {
        db::record_snapshot(&self.db, chain, parent, diff_id)
    }

    pub(crate) fn db(&self) -> &rusqlite::Connection {
        &self.db
    }

    pub(crate) fn db_mut(&mut self) -> &mut rusqlite::Connection {
        &mut self.db
    }
}
