//! `hull image mount` / `unmount`: an image's root filesystem, read-only, at
//! `<root>/containers/image-<id hex>/merged`.
//!
//! An overlay with lower layers only (no upper dir: overlayfs then makes the superblock
//! read-only) of the image's snapshots over an empty directory (overlayfs wants two lower
//! layers when there is no upper one, and a one-layer image has one), mounted `MS_RDONLY`
//! as well. It is recorded in the `rootfs` table like a container's rootfs, so its
//! snapshots stay while it is mounted (`rmi` names it as a user), `system reset` removes
//! it, and mounting it twice hands back the same path.

use std::fs;
use std::io;
use std::path::PathBuf;

use rusqlite::params;

use super::{io_err, is_mounted, mount_lowers, RootfsError};
use crate::store::{Store, StoreError};

/// The rootfs id of an image mount.
fn mount_id(image_hex: &str) -> String {
    format!("image-{image_hex}")
}

impl Store {
    /// Mounts `image` read-only; returns the mount point (the same one when it is mounted
    /// already).
    pub fn mount_image(&mut self, image: &str) -> Result<PathBuf, RootfsError> {
        let _lock = self.lock_shared()?;
        let img = self.lookup(image)?;
        let id = mount_id(img.id.hex());
        let dir = self.containers_dir().join(&id);
        let merged = dir.join("merged");
        if is_mounted(&merged) {
            return Ok(merged);
        }
        let chains: Vec<_> = img.layers.iter().map(|l| l.chain_id.clone()).collect();
        let mut lowers = Vec::new();
        for c in chains.iter().rev() {
            if !self.has_snapshot(c) {
                return Err(RootfsError::MissingSnapshot(c.clone()));
            }
            lowers.push(self.snapshot_path(c));
        }
        let empty = dir.join("empty");
        for d in [&merged, &empty] {
            match fs::create_dir_all(d) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(d)(e)),
                _ => {}
            }
        }
        lowers.push(empty);
        let chains_json = serde_json::to_string(&chains).map_err(|source| StoreError::Corrupt {
            what: format!("image mount {id}"),
            source,
        })?;
        self.db()
            .execute(
                "INSERT OR REPLACE INTO rootfs(container_id, image_id, chains, mode) VALUES (?1, ?2, ?3, 'image-mount')",
                params![id, img.id.to_string(), chains_json],
            )
            .map_err(StoreError::from)?;
        if let Err(e) = mount_lowers(&merged, &lowers, "", libc::MS_RDONLY) {
            let _ = self.teardown_rootfs(&id);
            return Err(e);
        }
        Ok(merged)
    }

    /// Unmounts what [`Store::mount_image`] mounted for `image`.
    pub fn unmount_image(&mut self, image: &str) -> Result<(), RootfsError> {
        let img = self.lookup(image)?;
        let id = mount_id(img.id.hex());
        match self.teardown_rootfs(&id) {
            Err(RootfsError::NotFound(_)) => Err(RootfsError::NotMounted(image.to_string())),
            other => other,
        }
    }
}
