//! Image removal and garbage collection of unreferenced snapshots and blobs.

use std::collections::HashSet;
use std::fs;

use super::{db, io_err, Store, StoreError};

/// Outcome of [`Store::remove_image`].
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// Names removed from the store.
    pub untagged: Vec<String>,
    /// Id of the image deleted, if the last name went (or an id was given).
    pub deleted: Option<String>,
    /// Snapshots (ChainIDs) no longer used by any image or container.
    pub snapshots_removed: usize,
    /// Blobs no longer referenced.
    pub blobs_removed: usize,
}

/// Outcome of [`Store::prune_images`].
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Images deleted (as they were: id and names).
    pub deleted: Vec<super::ImageRecord>,
    pub snapshots_removed: usize,
    pub blobs_removed: usize,
    /// Bytes of blobs freed.
    pub reclaimed: u64,
}

/// Total size of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl Store {
    /// `hull image prune`: deletes dangling images (no tag), with `all` every image no
    /// container uses, then snapshots and blobs nothing references (also those left by
    /// failed pulls or builds).
    pub fn prune_images(&mut self, all: bool) -> Result<PruneReport, StoreError> {
        self.prune_images_keeping(all, &HashSet::new())
    }

    /// [`Store::prune_images`], but an untagged image in `keep` is not dangling (hull
    /// build's step cache: those images serve later builds, as docker's build cache that
    /// `image prune` leaves alone); `all` deletes them too.
    pub fn prune_images_keeping(
        &mut self,
        all: bool,
        keep: &HashSet<crate::Digest>,
    ) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        for img in self.images()? {
            let dangling = img.tags().next().is_none() && !keep.contains(&img.id);
            if (dangling || all) && db::delete_unused(self.db_mut(), &img.id.to_string())? {
                report.deleted.push(img);
            }
        }
        let blobs = self.root.join("blobs/sha256");
        let before = dir_bytes(&blobs);
        (report.snapshots_removed, report.blobs_removed) = self.gc()?;
        report.reclaimed = before.saturating_sub(dir_bytes(&blobs));
        Ok(report)
    }

    /// `hull rmi`: untags a name, deleting the image when its last tag goes
    /// (or when given by id), then removes snapshots and blobs nothing uses.
    pub fn remove_image(
        &mut self,
        name_or_id: &str,
        force: bool,
    ) -> Result<RemoveReport, StoreError> {
        let (untagged, deleted) = db::remove(self.db_mut(), name_or_id, force)?;
        let mut report = RemoveReport {
            untagged,
            deleted,
            ..Default::default()
        };
        if report.deleted.is_some() {
            (report.snapshots_removed, report.blobs_removed) = self.gc()?;
        }
        Ok(report)
    }

    /// Deletes snapshots and blobs referenced by no image and no container
    /// rootfs, and leftovers in `tmp/`. Holds the root lock exclusively so
    /// no pull is staging content meanwhile.
    pub(crate) fn gc(&self) -> Result<(usize, usize), StoreError> {
        let lock = self.lock_exclusive()?;
        self.gc_locked(lock)
    }

    /// [`Store::gc`] only when nobody holds the store lock (cleanup after a failed pull or a
    /// teardown: the next gc catches what this one skips). Never waits: the caller's own
    /// process may hold it shared (an [`crate::ImageDraft`] of a build), and a flock taken
    /// exclusively through another descriptor would wait for it forever.
    pub(crate) fn gc_if_idle(&self) -> Result<(usize, usize), StoreError> {
        match self.try_lock_exclusive()? {
            Some(lock) => self.gc_locked(lock),
            None => Ok((0, 0)),
        }
    }

    fn gc_locked(&self, _lock: super::RootLock) -> Result<(usize, usize), StoreError> {
        let mut chains = HashSet::new();
        let mut blobs = HashSet::new();
        for img in self.images()? {
            blobs.insert(img.id.hex().to_string());
            blobs.insert(img.manifest_digest.hex().to_string());
            for l in img.layers {
                blobs.insert(l.blob.hex().to_string());
                chains.insert(l.chain_id.hex().to_string());
            }
        }
        let rootfs_chains = self
            .db()
            .prepare("SELECT chains FROM rootfs")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for c in rootfs_chains {
            let list: Vec<String> =
                serde_json::from_str(&c).map_err(|source| StoreError::Corrupt {
                    what: "rootfs chains".into(),
                    source,
                })?;
            chains.extend(
                list.into_iter()
                    .map(|s| s.trim_start_matches("sha256:").to_string()),
            );
        }
        let snaps = self.sweep(&self.root.join("snapshots"), &chains)?;
        for hex in &snaps {
            self.db().execute(
                "DELETE FROM snapshots WHERE chain_id = ?1",
                [format!("sha256:{hex}")],
            )?;
        }
        let blobs_removed = self.sweep(&self.root.join("blobs/sha256"), &blobs)?.len();
        // Leftovers of killed pulls (our own lock is held: legacy files go too).
        super::stage::clean_stale(&self.root.join("tmp"), true)?;
        Ok((snaps.len(), blobs_removed))
    }

    /// Removes entries of `dir` whose names are not in `keep`. Snapshot
    /// trees are first renamed into tmp/ so a crash mid-delete never leaves
    /// a half-deleted snapshot under its ChainID.
    fn sweep(
        &self,
        dir: &std::path::Path,
        keep: &HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        let stage = self.stage()?;
        for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let grave = stage.path().join(format!("gc-{name}"));
            fs::rename(e.path(), &grave).map_err(io_err(&e.path()))?;
            crate::fsutil::remove_any(&grave).map_err(io_err(&grave))?;
            removed.push(name);
        }
        Ok(removed)
    }
}
