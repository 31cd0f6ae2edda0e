//! `hull system reset`: removes every container of this root (with its anonymous volumes) and
//! everything hull-net made (links, leases, nft table, network definitions), also what a crash
//! left half-made: container directories without a record, hullc state without a container,
//! rootfs mounts without a container directory. Images and named volumes stay.

use std::path::Path;
use std::time::Duration;

use hull_image::Store;

use crate::engine::Engine;
use crate::shim::{self, Shim};

/// The steps of a reset that failed (every step is tried).
#[derive(Debug, thiserror::Error)]
#[error("reset: {}", .0.join("; "))]
pub struct ResetError(pub Vec<String>);

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

impl Engine {
    /// Removes every container and all network state; see the module doc.
    pub fn reset(&self) -> Result<(), ResetError> {
        let mut errors = Vec::new();
        let mut step = |what: String, r: Result<(), String>| {
            if let Err(e) = r {
                errors.push(format!("{what}: {e}"));
            }
        };
        // The store lock, held to the end: `create` holds it from before its directory, rootfs
        // and hullc state exist until its record is complete, so without it a create running
        // alongside would be taken below for what a crash left (its shim killed, its
        // directory removed) and fail half-way. With it, a create either finished before (and
        // is removed here) or starts after the reset. Without it nothing below is safe.
        let lock = match self.containers.lock() {
            Ok(l) => l,
            Err(e) => return Err(ResetError(vec![format!("lock containers: {e}")])),
        };
        match self.containers.list() {
            Ok(all) => {
                for r in all {
                    let res = self
                        .remove_locked(&r, true, true, &lock)
                        .map_err(|e| e.to_string());
                    step(format!("remove container {}", r.name), res);
                }
            }
            Err(e) => step("list containers".into(), Err(e.to_string())),
        }
        // Directories of creates that crashed before their record was written or after
        // it was lost: their shim, task, rootfs and directory (no create is running: the
        // lock is held).
        for id in entries(&self.root.join("ctr")) {
            let res = self.remove_orphan(&id);
            step(format!("remove orphan container {id}"), res);
        }
        for id in entries(&self.hullc_root().join(shim::NAMESPACE)) {
            let res = self.hullc_delete(&id).map_err(|e| e.to_string());
            step(format!("delete hullc state {id}"), res);
        }
        for id in entries(&self.root.join("containers")) {
            let res = Store::open(&self.root)
                .map_err(|e| e.to_string())
                .and_then(|mut s| match s.teardown_rootfs(&id) {
                    Ok(()) | Err(hull_image::RootfsError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                });
            step(format!("remove rootfs {id}"), res);
        }
        // Rootless: the user's networks, in the user's rootless netns (ended with them).
        let net = if crate::rootless::active() {
            self.reset_user_networks()
        } else {
            self.networks()
                .map_err(|e| e.to_string())
                .and_then(|n| n.reset(false).map_err(|e| e.to_string()))
        };
        step("reset networks".into(), net);
        drop(lock);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ResetError(errors))
        }
    }

    fn remove_orphan(&self, id: &str) -> Result<(), String> {
        let dir = self.containers.dir_of(id);
        if let Ok(s) = Shim::connect(&dir, id) {
            let _ = s.kill("", libc::SIGKILL as u32, true);
            let _ = s.wait("", Some(Duration::from_secs(5)));
            let _ = s.delete("");
            s.shutdown();
        }
        shim::remove_socket(&dir);
        let mut errs = Vec::new();
        if let Err(e) = self.hullc_delete(id) {
            errs.push(e.to_string());
        }
        if let Err(e) = self.release_network(id) {
            errs.push(e.to_string());
        }
        match Store::open(&self.root).map(|mut s| s.teardown_rootfs(id)) {
            Ok(Ok(()) | Err(hull_image::RootfsError::NotFound(_))) => {}
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
        if let Err(e) = self.containers.remove_dir(id) {
            errs.push(e.to_string());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}
