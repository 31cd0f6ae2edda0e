//! The container's rootfs: the mounts containerd hands over in
//! CreateTaskRequest.rootfs, stacked on `bundle/rootfs`.

use std::ffi::CString;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create {0}")]
    Mkdir(String, #[source] std::io::Error),
    #[error("cannot mount {kind} {source_path} on {target}: {msg}")]
    Mount {
        kind: String,
        source_path: String,
        target: String,
        msg: String,
    },
    #[error("cannot unmount {0}")]
    Unmount(String, #[source] std::io::Error),
}

/// One mount as containerd describes it (type, source, options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mounts every entry on `target`, in order; on failure undoes what it did.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<(), Error> {
    if mounts.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(target)
        .map_err(|e| Error::Mkdir(target.display().to_string(), e))?;
    for m in mounts {
        // containerd-shim's helper knows containerd's option vocabulary
        // (bind, ro, overlay lowerdir compaction past one page, loop).
        if let Err(e) = containerd_shim::mount::mount_rootfs(
            Some(m.kind.as_str()),
            Some(m.source.as_str()),
            &m.options,
            target,
        ) {
            let _ = unmount_all(target);
            return Err(Error::Mount {
                kind: m.kind.clone(),
                source_path: m.source.clone(),
                target: target.display().to_string(),
                msg: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazily, so a process that still
/// holds it open cannot keep the bundle from going away).
pub fn unmount_all(target: &Path) -> Result<(), Error> {
    let c = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::Unmount(target.display().to_string(), e.into()))?;
    loop {
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                // EINVAL: not a mount point (any more); ENOENT: gone.
                Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
                _ => Err(Error::Unmount(target.display().to_string(), e)),
            };
        }
    }
}
