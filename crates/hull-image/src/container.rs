//! What hull-image knows of a container's root filesystem beyond mounting it: the image it
//! came from, its overlay upper dir (the container's own layer, for `commit`) and the
//! changes in it against the image (`diff`, docker's A/C/D).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rusqlite::OptionalExtension;

use crate::digest::Digest;
use crate::rootfs::{io_err, RootfsError, FUSE_MODE};
use crate::store::{ImageRecord, Store, StoreError};

/// How a path changed in a container (docker diff's letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    /// `A`, `C` or `D`.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path (absolute, as seen in the container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathChange {
    pub kind: ChangeKind,
    pub path: String,
}

struct RootfsRow {
    image_id: String,
    chains: Vec<Digest>,
    mode: String,
}

impl Store {
    fn rootfs_row(&self, id: &str) -> Result<RootfsRow, RootfsError> {
        let row: Option<(String, String, String)> = self
            .db()
            .query_row(
                "SELECT image_id, chains, mode FROM rootfs WHERE container_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(StoreError::from)?;
        let (image_id, chains, mode) = row.ok_or_else(|| RootfsError::NotFound(id.into()))?;
        let chains = serde_json::from_str(&chains).map_err(|source| StoreError::Corrupt {
            what: format!("rootfs {id}"),
            source,
        })?;
        Ok(RootfsRow {
            image_id,
            chains,
            mode,
        })
    }

    /// The image container `id`'s rootfs was made from (an error once it was removed).
    pub fn container_image(&self, id: &str) -> Result<ImageRecord, RootfsError> {
        let row = self.rootfs_row(id)?;
        Ok(self.lookup(&row.image_id)?)
    }

    /// The overlay upper dir of container `id`: its own layer.
    pub fn container_upper(&self, id: &str) -> Result<PathBuf, RootfsError> {
        let row = self.rootfs_row(id)?;
        let upper = self.containers_dir().join(id).join("upper");
        if !row.mode.starts_with("overlay") || !upper.is_dir() {
            return Err(RootfsError::NoUpper(id.into()));
        }
        Ok(upper)
    }

    /// Whether container `id`'s rootfs is fuse-overlayfs's (its upper dir then marks opaque
    /// directories with a `.wh..wh..opq` file too: [`TreeOptions::fuse`]).
    ///
    /// [`TreeOptions::fuse`]: crate::layer_write::TreeOptions::fuse
    pub fn container_fuse(&self, id: &str) -> Result<bool, RootfsError> {
        Ok(self.rootfs_row(id)?.mode == FUSE_MODE)
    }

    /// `diff`: what container `id` added, changed and deleted against its image, sorted by
    /// path. `init` (relative, e.g. `etc/hosts`, `proc`) is what the engine makes in every
    /// container, docker's init layer, which docker counts as part of the base: those files
    /// are left out, and those directories and the directories above them (`etc`) show only
    /// for a change in them or to their own mode or owner, and as changed, never added.
    pub fn container_changes(
        &self,
        id: &str,
        init: &[PathBuf],
    ) -> Result<Vec<PathChange>, RootfsError> {
        let upper = self.container_upper(id)?;
        let row = self.rootfs_row(id)?;
        let lowers: Vec<PathBuf> = row
            .chains
            .iter()
            .rev()
            .map(|c| self.snapshot_path(c))
            .collect();
        let mut out = Vec::new();
        let walk = Walk {
            lowers: &lowers,
            init,
            fuse: row.mode == FUSE_MODE,
        };
        walk.dir(&upper, Path::new(""), (false, false), &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

struct Walk<'a> {
    /// Top first.
    lowers: &'a [PathBuf],
    init: &'a [PathBuf],
    /// The upper dir is fuse-overlayfs's (rootfs mode `overlay-fuse`).
    fuse: bool,
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    crate::fsutil::lxattrs(p).is_ok_and(|x| {
        x.iter()
            .any(|(n, v)| crate::userns::is_opaque_xattr(n) && v == b"y")
    })
}

/// An upper dir's opaque directory: the xattr, or (`fuse`: fuse-overlayfs's upper dir only)
/// its marker file. On the kernel's overlay a `.wh..wh..opq` file is one the container made.
fn is_upper_opaque(p: &Path, fuse: bool) -> bool {
    is_opaque(p) || (fuse && p.join(crate::userns::FUSE_OPAQUE_FILE).exists())
}

impl Walk<'_> {
    /// Whether `rel` is visible in the image (the merged lower layers).
    fn in_lower(&self, rel: &Path) -> bool {
        for l in self.lowers {
            if let Ok(m) = fs::symlink_metadata(l.join(rel)) {
                return !is_whiteout(&m);
            }
            // Hidden below here by an opaque or deleted ancestor in this layer.
            let hidden = rel.ancestors().skip(1).any(|a| {
                !a.as_os_str().is_empty()
                    && fs::symlink_metadata(l.join(a))
                        .is_ok_and(|m| is_whiteout(&m) || (m.is_dir() && is_opaque(&l.join(a))))
            });
            if hidden {
                return false;
            }
        }
        false
    }

    /// Whether directory `rel` (with `m`, its metadata in the upper dir) has the mode and
    /// owner it has in the image; one the image lacks is the engine's, as it made it.
    fn same_as_image(&self, rel: &Path, m: &fs::Metadata) -> bool {
        let Some(l) = self
            .lowers
            .iter()
            .find_map(|l| fs::symlink_metadata(l.join(rel)).ok())
        else {
            return true;
        };
        l.is_dir() && (l.mode(), l.uid(), l.gid()) == (m.mode(), m.uid(), m.gid())
    }

    /// Names visible in the image's directory `rel`.
    fn lower_names(&self, rel: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for l in self.lowers {
            if let Ok(rd) = fs::read_dir(l.join(rel)) {
                names.extend(rd.flatten().map(|e| e.file_name()));
            }
        }
        names.sort();
        names.dedup();
        names.retain(|n| self.in_lower(&rel.join(n)));
        names
    }

    fn dir(
        &self,
        dir: &Path,
        rel: &Path,
        (hidden, own_opaque): (bool, bool),
        out: &mut Vec<PathChange>,
    ) -> Result<(), RootfsError> {
        // Below an opaque directory nothing of the image shows: everything is new.
        let fresh = hidden || own_opaque;
        let mut seen = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let name = e.file_name();
            let path = e.path();
            let rel = rel.join(&name);
            // fuse-overlayfs's opaque marker: not a file of the container's.
            if self.fuse && name == crate::userns::FUSE_OPAQUE_FILE {
                continue;
            }
            seen.push(name);
            let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            // Docker's init layer: its directories, and those above its files (`etc`).
            let init_dir = m.is_dir() && self.init.iter().any(|s| s.starts_with(&rel));
            if !init_dir && self.init.iter().any(|s| s == &rel) {
                continue;
            }
            let abs = format!("/{}", rel.display());
            let mut kind = if is_whiteout(&m) {
                ChangeKind::Deleted
            } else if !fresh && self.in_lower(&rel) {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            };
            if kind == ChangeKind::Deleted && !self.in_lower(&rel) {
                continue;
            }
            if init_dir && kind == ChangeKind::Added {
                kind = ChangeKind::Changed;
            }
            let at = out.len();
            out.push(PathChange { kind, path: abs });
            if m.is_dir() {
                let own = !fresh && is_upper_opaque(&path, self.fuse);
                self.dir(&path, &rel, (fresh, own), out)?;
                // Copied up (or made) only for the engine's mount points: not a change.
                if init_dir && out.len() == at + 1 && self.same_as_image(&rel, &m) {
                    out.truncate(at);
                }
            }
        }
        if own_opaque && !hidden {
            // An opaque directory hides all of the image's entries in it.
            for n in self.lower_names(rel) {
                if !seen.contains(&n) {
                    let p = rel.join(&n);
                    out.push(PathChange {
                        kind: ChangeKind::Deleted,
                        path: format!("/{}", p.display()),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The image has `d/old`; the upper dir has `d/.wh..wh..opq` as a plain file and `d/new`.
    fn changes(fuse: bool) -> Vec<String> {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        fs::create_dir_all(lower.join("d")).unwrap();
        fs::write(lower.join("d/old"), "").unwrap();
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::write(upper.join("d/.wh..wh..opq"), "").unwrap();
        fs::write(upper.join("d/new"), "").unwrap();
        let lowers = [lower];
        let walk = Walk {
            lowers: &lowers,
            init: &[],
            fuse,
        };
        let mut out = Vec::new();
        walk.dir(&upper, Path::new(""), (false, false), &mut out)
            .unwrap();
        let mut got: Vec<String> = out
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect();
        got.sort();
        got
    }

    #[test]
    fn opaque_marker_file_is_honoured_on_fuse_overlayfs_only() {
        assert_eq!(changes(true), ["A /d/new", "C /d", "D /d/old"]);
        assert_eq!(changes(false), ["A /d/.wh..wh..opq", "A /d/new", "C /d"]);
    }
}
