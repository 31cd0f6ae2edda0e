//! Copy fallback: applies each snapshot, bottom first, onto a plain
//! directory, interpreting the overlayfs whiteouts the unpacker produced
//! (0/0 char device = delete, `trusted.overlay.opaque=y` = hide lower
//! children) exactly as overlayfs would when merging.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, RootfsError};
use crate::fsutil;

/// `lowers` is in overlay order (top first), as for lowerdir.
pub(super) fn populate(lowers: &[PathBuf], dest: &Path) -> Result<(), RootfsError> {
    for layer in lowers.iter().rev() {
        let mut links = HashMap::new();
        apply_dir(layer, dest, &mut links)?;
        copy_meta(
            layer,
            dest,
            &fs::symlink_metadata(layer).map_err(io_err(layer))?,
        )?;
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> Result<bool, RootfsError> {
    let x = fsutil::lxattrs(dir).map_err(io_err(dir))?;
    Ok(x.iter()
        .any(|(n, v)| crate::userns::is_opaque_xattr(n) && v == b"y"))
}

fn apply_dir(
    src: &Path,
    dest: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), RootfsError> {
    for entry in fs::read_dir(src).map_err(io_err(src))? {
        let entry = entry.map_err(io_err(src))?;
        let s = entry.path();
        let d = dest.join(entry.file_name());
        let meta = fs::symlink_metadata(&s).map_err(io_err(&s))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            fsutil::remove_any(&d).map_err(io_err(&d))?;
            continue;
        }
        if ft.is_dir() {
            let existing_dir = fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir());
            // Replace non-directories; an opaque dir also drops lower content.
            if !existing_dir || is_opaque(&s)? {
                fsutil::remove_any(&d).map_err(io_err(&d))?;
            }
            if !d.exists() {
                fs::create_dir(&d).map_err(io_err(&d))?;
            }
            apply_dir(&s, &d, links)?;
            copy_meta(&s, &d, &meta)?;
            continue;
        }
        fsutil::remove_any(&d).map_err(io_err(&d))?;
        if meta.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &d).map_err(io_err(&d))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), d.clone());
        }
        if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(io_err(&s))?;
            std::os::unix::fs::symlink(target, &d).map_err(io_err(&d))?;
        } else if ft.is_file() {
            fs::copy(&s, &d).map_err(io_err(&d))?;
        } else {
            let kind = meta.mode() & libc::S_IFMT;
            let dev = meta.rdev();
            fsutil::mknod(&d, kind, 0o600, libc::major(dev), libc::minor(dev))
                .map_err(io_err(&d))?;
        }
        copy_meta(&s, &d, &meta)?;
    }
    Ok(())
}

fn copy_meta(src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<(), RootfsError> {
    fsutil::lchown(dest, u64::from(meta.uid()), u64::from(meta.gid())).map_err(io_err(dest))?;
    for (name, value) in fsutil::lxattrs(src).map_err(io_err(src))? {
        if !crate::userns::is_overlay_xattr(&name) {
            fsutil::lsetxattr_raw(dest, &name, &value).map_err(io_err(dest))?;
        }
    }
    if !meta.file_type().is_symlink() {
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err(dest))?;
    }
    fsutil::set_mtime(dest, meta.mtime(), meta.mtime_nsec()).map_err(io_err(dest))
}
