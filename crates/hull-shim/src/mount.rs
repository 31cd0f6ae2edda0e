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
    std::fs::create_dir_all(target).map_err(|e| Error::Mkdir(target.display().to_string(), e))?;
    for m in mounts {
        if let Err(e) = mount_one(m, target) {
            let _ = unmount_all(target);
            return Err(e);
        }
    }
    Ok(())
}

/// mount(8)-style option words that are flags; everything else is data.
/// (containerd-shim's own helper forks and waits through its private reaper,
/// which would race with ours.)
fn flag(word: &str) -> Option<(libc::c_ulong, bool)> {
    Some(match word {
        "ro" => (libc::MS_RDONLY, false),
        "rw" => (libc::MS_RDONLY, true),
        "bind" => (libc::MS_BIND, false),
        "rbind" => (libc::MS_BIND | libc::MS_REC, false),
        "nosuid" => (libc::MS_NOSUID, false),
        "suid" => (libc::MS_NOSUID, true),
        "nodev" => (libc::MS_NODEV, false),
        "dev" => (libc::MS_NODEV, true),
        "noexec" => (libc::MS_NOEXEC, false),
        "exec" => (libc::MS_NOEXEC, true),
        "noatime" => (libc::MS_NOATIME, false),
        "relatime" => (libc::MS_RELATIME, false),
        "strictatime" => (libc::MS_STRICTATIME, false),
        "sync" => (libc::MS_SYNCHRONOUS, false),
        "async" => (libc::MS_SYNCHRONOUS, true),
        "defaults" => (0, false),
        _ => return None,
    })
}

fn cstr(s: &str) -> Result<CString, std::io::Error> {
    CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), Error> {
    let err = |msg: String| Error::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.display().to_string(),
        msg,
    };
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in &m.options {
        match flag(o) {
            Some((f, false)) => flags |= f,
            Some((f, true)) => flags &= !f,
            None => data.push(o.as_str()),
        }
    }
    let data = cstr(&data.join(",")).map_err(|e| err(e.to_string()))?;
    let src = cstr(&m.source).map_err(|e| err(e.to_string()))?;
    let kind = cstr(&m.kind).map_err(|e| err(e.to_string()))?;
    let tgt =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(|e| err(e.to_string()))?;
    // A read-only bind needs a second, remounting call; do the bind first.
    let first = if flags & libc::MS_BIND != 0 {
        flags & !libc::MS_RDONLY
    } else {
        flags
    };
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            kind.as_ptr(),
            first,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error().to_string()));
    }
    if flags & libc::MS_BIND != 0 && flags & libc::MS_RDONLY != 0 {
        let f = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        // SAFETY: as above; source and type are ignored for a remount.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                kind.as_ptr(),
                f,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(err(std::io::Error::last_os_error().to_string()));
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
