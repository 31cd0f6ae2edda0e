//! Applies one layer tar stream to an empty snapshot directory, turning OCI
//! whiteouts into overlayfs whiteouts so the directory can serve directly as
//! an overlay lowerdir.
//!
//! Safety model: the destination is a fresh directory only this process
//! writes to, so a lexical check plus `lstat` of every parent component is
//! enough: no entry path may contain `..`, no parent component may be a
//! symlink (we never write through a link), and hardlink targets obey the
//! same rules. Existing entries are unlinked before being replaced, so a
//! symlink created by an earlier entry is never followed. A whiteout hides a name in
//! its own directory: `.wh.` followed by nothing, `.` or `..` is refused (`.wh...` at the
//! root would otherwise delete the snapshot's parent, the store's staging directory).
//!
//! Size: the uncompressed stream, the file content written and the entry count are capped
//! by [`LayerLimits`] (a decompression bomb stops at the limit, not at a full disk).

use std::cell::Cell;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::fsutil;
use crate::limits::{LayerLimits, MAX_FILES_ENV, MAX_SIZE_ENV};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Errors applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading layer tar stream")]
    Read(#[source] io::Error),
    #[error("tar entry {path:?} escapes the snapshot: {reason}")]
    Escape { path: String, reason: &'static str },
    #[error("the layer unpacks to more than {limit} bytes (the limit per layer; {MAX_SIZE_ENV} raises it)")]
    TooLarge { limit: u64 },
    #[error(
        "the layer has more than {limit} entries (the limit per layer; {MAX_FILES_ENV} raises it)"
    )]
    TooManyFiles { limit: u64 },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn werr(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Lexically normalises an archive path to relative components. `..`
/// anywhere is refused (docker refuses breakouts too); leading `/` and `.`
/// are dropped as every tar implementation does.
pub(crate) fn safe_relative(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    path: raw.display().to_string(),
                    reason: "path contains '..'",
                })
            }
        }
    }
    Ok(out)
}

/// Makes sure every component of `rel` below `root` is a real directory,
/// creating missing ones. A symlink (or file) in the way is an error.
fn ensure_dirs(root: &Path, rel: &Path, shown: &Path) -> Result<(), UnpackError> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Escape {
                    path: shown.display().to_string(),
                    reason: "a parent directory is a symlink",
                })
            }
            Ok(_) => {
                return Err(UnpackError::Escape {
                    path: shown.display().to_string(),
                    reason: "a parent component is not a directory",
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(werr(&cur))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755)).map_err(werr(&cur))?;
            }
            Err(e) => return Err(werr(&cur)(e)),
        }
    }
    Ok(())
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, i64),
    xattrs: Vec<(String, Vec<u8>)>,
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, UnpackError> {
    let h = entry.header();
    let old = h.as_old();
    let mut meta = Meta {
        mode: numeric(h.mode().map(u64::from), &old.mode)? as u32,
        uid: numeric(h.uid(), &old.uid)?,
        gid: numeric(h.gid(), &old.gid)?,
        mtime: (numeric(h.mtime(), &old.mtime)? as i64, 0),
        xattrs: Vec::new(),
    };
    let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? else {
        return Ok(meta);
    };
    for ext in exts {
        let ext = ext.map_err(UnpackError::Read)?;
        let Ok(key) = ext.key() else { continue };
        let num = || ext.value().ok().and_then(|v| v.parse::<u64>().ok());
        match key {
            "uid" => meta.uid = num().unwrap_or(meta.uid),
            "gid" => meta.gid = num().unwrap_or(meta.gid),
            "mtime" => {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    meta.mtime = t;
                }
            }
            // overlayfs interprets trusted.overlay.* (user.overlay.* rootless) on lower
            // layers (opaque, redirect, metacopy); an image must not smuggle those in.
            k if k.starts_with("SCHILY.xattr.") => {
                let name = &k["SCHILY.xattr.".len()..];
                if !crate::userns::is_overlay_xattr(name.as_bytes()) {
                    meta.xattrs
                        .push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// Like Go's archive/tar (which wrote most image layers), an all-NUL or
/// blank numeric field reads as 0; anything else unparsable is an error.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Result<u64, UnpackError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(UnpackError::Read(e)),
    }
}

/// PAX times are decimal seconds with an optional fraction.
fn parse_pax_time(v: &str) -> Option<(i64, i64)> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs = s.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    Some((secs, nanos))
}

/// Reads at most `left` bytes of the uncompressed stream; past it, fails and sets `over`
/// (the tar reader wraps the error, so the flag tells the limit apart from a bad stream).
struct Capped<'a, R> {
    inner: R,
    left: u64,
    over: &'a Cell<bool>,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(
            usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let n = self.inner.read(&mut buf[..want])?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => {
                self.over.set(true);
                Err(io::Error::other("layer size limit reached"))
            }
        }
    }
}

/// What unpacking one layer keeps across entries.
struct State<'a> {
    limits: &'a LayerLimits,
    /// Directory mtimes, applied last because creating children updates them.
    dir_times: HashMap<PathBuf, (i64, i64)>,
    entries: u64,
    /// File content written (sparse files expand beyond their bytes in the stream).
    written: u64,
    /// `.wh.` names are OCI whiteouts (a layer), or plain names (docker cp's tar).
    whiteouts: bool,
}

/// Unpacks a layer tar stream into `dest`, an empty directory only this call writes to,
/// refusing entries that would land outside it and stopping at `limits`. On error, `dest`
/// holds a partial tree for the caller to remove.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    limits: &LayerLimits,
) -> Result<(), UnpackError> {
    unpack(reader, dest, limits, true)
}

/// [`unpack_layer`] for a tar that is not a layer (`docker cp`'s stream): entries named
/// `.wh.*` are files like any other, as docker copies them, not whiteouts.
pub fn unpack_plain<R: Read>(
    reader: R,
    dest: &Path,
    limits: &LayerLimits,
) -> Result<(), UnpackError> {
    unpack(reader, dest, limits, false)
}

fn unpack<R: Read>(
    reader: R,
    dest: &Path,
    limits: &LayerLimits,
    whiteouts: bool,
) -> Result<(), UnpackError> {
    let over = Cell::new(false);
    let capped = Capped {
        inner: reader,
        left: limits.max_size,
        over: &over,
    };
    let res = unpack_entries(capped, dest, limits, whiteouts);
    if over.get() {
        return Err(UnpackError::TooLarge {
            limit: limits.max_size,
        });
    }
    res
}

fn unpack_entries<R: Read>(
    reader: R,
    dest: &Path,
    limits: &LayerLimits,
    whiteouts: bool,
) -> Result<(), UnpackError> {
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(werr(dest))?;
    let mut archive = tar::Archive::new(reader);
    let mut st = State {
        limits,
        dir_times: HashMap::new(),
        entries: 0,
        written: 0,
        whiteouts,
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        st.entries += 1;
        if st.entries > limits.max_files {
            return Err(UnpackError::TooManyFiles {
                limit: limits.max_files,
            });
        }
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let rel = safe_relative(&raw)?;
        apply_entry(&mut entry, dest, &raw, &rel, &mut st)?;
    }
    for (path, (s, ns)) in st.dir_times {
        fsutil::set_mtime(&path, s, ns).map_err(werr(&path))?;
    }
    Ok(())
}

/// The name a whiteout `.wh.<hidden>` hides, refused when it is not a plain name of the
/// entry's own directory: empty, `.` or `..` would remove the directory itself or its parent
/// (for `.wh...` at the root, the directory holding the snapshot).
fn whiteout_target(hidden: &str, raw: &Path) -> Result<(), UnpackError> {
    if matches!(hidden, "" | "." | "..") {
        return Err(UnpackError::Escape {
            path: raw.display().to_string(),
            reason: "a whiteout must name an entry of its directory, not '', '.' or '..'",
        });
    }
    Ok(())
}

fn apply_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    raw: &Path,
    rel: &Path,
    st: &mut State<'_>,
) -> Result<(), UnpackError> {
    let kind = entry.header().entry_type();
    if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
        return Ok(());
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ensure_dirs(dest, parent, raw)?;
    if st.whiteouts && name == OPAQUE_WHITEOUT {
        let dir = dest.join(parent);
        return fsutil::lsetxattr(&dir, crate::userns::opaque_xattr(), b"y").map_err(werr(&dir));
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX).filter(|_| st.whiteouts) {
        // `.wh..wh.*` other than opq are aufs internals (hardlink dirs): skip.
        if hidden.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        whiteout_target(hidden, raw)?;
        let target = dest.join(parent).join(hidden);
        fsutil::remove_any(&target).map_err(werr(&target))?;
        // overlayfs whiteout: a character device with device number 0/0.
        return fsutil::mknod(&target, libc::S_IFCHR, 0, 0, 0).map_err(werr(&target));
    }
    let target = dest.join(rel);
    if rel.as_os_str().is_empty() && kind != EntryType::Directory {
        return Err(UnpackError::Escape {
            path: raw.display().to_string(),
            reason: "the layer root must be a directory",
        });
    }
    let meta = read_meta(entry)?;
    match kind {
        EntryType::Directory => {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                _ => {
                    fsutil::remove_any(&target).map_err(werr(&target))?;
                    fs::create_dir(&target).map_err(werr(&target))?;
                }
            }
            st.dir_times.insert(target.clone(), meta.mtime);
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            fsutil::remove_any(&target).map_err(werr(&target))?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .map_err(werr(&target))?;
            write_content(entry, &mut f, st)?;
        }
        EntryType::Symlink => {
            let link =
                entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or(UnpackError::Escape {
                        path: raw.display().to_string(),
                        reason: "symlink without target",
                    })?;
            fsutil::remove_any(&target).map_err(werr(&target))?;
            // The link text is stored verbatim: it is only ever resolved
            // inside the container's root, never during unpack.
            std::os::unix::fs::symlink(&link, &target).map_err(werr(&target))?;
        }
        EntryType::Link => return hardlink(entry, dest, raw, &target),
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let h = entry.header();
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let t = match kind {
                EntryType::Char => libc::S_IFCHR,
                EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            fsutil::remove_any(&target).map_err(werr(&target))?;
            if t != libc::S_IFIFO && crate::userns::active() {
                crate::userns::skipped_device(rel);
                return Ok(());
            }
            fsutil::mknod(&target, t, 0o600, major, minor).map_err(werr(&target))?;
        }
        // Unknown entry types (e.g. Solaris ACLs) carry nothing a Linux
        // rootfs can represent.
        _ => return Ok(()),
    }
    apply_meta(&target, kind, &meta)
}

/// Copies a file's content, counting it against the layer's size limit.
fn write_content<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    f: &mut fs::File,
    st: &mut State<'_>,
) -> Result<(), UnpackError> {
    let max = st.limits.max_size;
    let left = max.saturating_sub(st.written);
    let n = io::copy(&mut entry.take(left.saturating_add(1)), f).map_err(UnpackError::Read)?;
    st.written += n;
    if st.written > max {
        return Err(UnpackError::TooLarge { limit: max });
    }
    Ok(())
}

fn hardlink<R: Read>(
    entry: &tar::Entry<'_, R>,
    dest: &Path,
    raw: &Path,
    target: &Path,
) -> Result<(), UnpackError> {
    let link = entry
        .link_name()
        .map_err(UnpackError::Read)?
        .ok_or(UnpackError::Escape {
            path: raw.display().to_string(),
            reason: "hardlink without target",
        })?;
    let link_rel = safe_relative(&link).map_err(|_| UnpackError::Escape {
        path: raw.display().to_string(),
        reason: "hardlink target contains '..'",
    })?;
    // The target must already exist in this layer under real directories.
    ensure_dirs(dest, link_rel.parent().unwrap_or(Path::new("")), raw)?;
    let source = dest.join(&link_rel);
    if fs::symlink_metadata(&source).is_err() || link_rel.as_os_str().is_empty() {
        return Err(UnpackError::Escape {
            path: raw.display().to_string(),
            reason: "hardlink target is not in this layer",
        });
    }
    fsutil::remove_any(target).map_err(werr(target))?;
    // link(2) does not follow a symlink source on Linux, so this links the
    // entry itself even when it is a symlink.
    fs::hard_link(&source, target).map_err(werr(target))
}

fn apply_meta(target: &Path, kind: EntryType, meta: &Meta) -> Result<(), UnpackError> {
    match fsutil::lchown(target, meta.uid, meta.gid) {
        Err(e) if !crate::userns::unmapped_id(&e) => return Err(werr(target)(e)),
        _ => {}
    }
    for (name, value) in &meta.xattrs {
        if let Err(e) = fsutil::lsetxattr(target, name, value) {
            // Linux refuses user.* xattrs on symlinks; nothing to preserve there.
            let symlink_user = kind == EntryType::Symlink && name.starts_with("user.");
            if !symlink_user {
                return Err(werr(target)(e));
            }
        }
    }
    if kind != EntryType::Symlink {
        // chmod after chown: chown(2) clears setuid/setgid bits.
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode & 0o7777))
            .map_err(werr(target))?;
    }
    if kind != EntryType::Directory {
        fsutil::set_mtime(target, meta.mtime.0, meta.mtime.1).map_err(werr(target))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
