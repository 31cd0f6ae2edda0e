//! Directory trees to tar streams: a container's overlayfs upper directory as an OCI layer
//! (`commit`, and `build` after a step), or a whole root filesystem (`export`).
//!
//! Entries are written in byte order of their names, parents first, so the same tree always
//! gives the same stream (and the same DiffID). Owners, modes with the set-id bits, mtimes,
//! hardlinks (by device and inode: the first path carries the data, later ones link to it),
//! symlinks, device nodes, FIFOs and xattrs (PAX `SCHILY.xattr.*`, as docker and podman write
//! them, `security.capability` included) are kept; sockets are skipped (tar cannot hold
//! them, docker skips them too).
//!
//! With [`Whiteouts::Overlay`] the overlayfs markers become OCI whiteouts (image-spec
//! layer.md): a 0/0 character device `NAME` → an empty file `.wh.NAME`; a directory with
//! `trusted.overlay.opaque=y` (`user.overlay.opaque` rootless, docs/rootless.md) → the
//! directory followed by `DIR/.wh..wh..opq`. overlayfs's own xattrs (`trusted.overlay.*`,
//! `user.overlay.*`) are never written. A directory that overlayfs renamed
//! with `redirect_dir` (an xattr `trusted.overlay.redirect`), or a metacopy-only file, holds
//! only part of its content in the upper dir; such a tree is refused rather than written
//! as a layer that would lose files.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{self, at};

/// overlayfs's partial-content markers, trusted (root) or user (rootless, `userxattr`).
fn partial_marker(n: &[u8]) -> Option<&'static str> {
    let base = n
        .strip_prefix(b"trusted.overlay.")
        .or_else(|| n.strip_prefix(b"user.overlay."))?;
    match base {
        b"redirect" => Some("a renamed directory"),
        b"metacopy" => Some("a metadata-only copy"),
        _ => None,
    }
}

/// Errors writing a tree as a tar stream.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the tar stream (entry {path})")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what} (overlayfs redirect_dir/metacopy); this upper dir cannot be written as a layer")]
    Partial { path: PathBuf, what: &'static str },
    #[error(
        "{0}: a file whose name starts with .wh. cannot go into a layer (the OCI layer format \
         reads it as a whiteout or an opaque-directory marker): rename or remove it"
    )]
    WhiteoutName(PathBuf),
}

/// What to do with overlayfs whiteouts found in the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// The tree is the kernel overlayfs's upper dir: whiteouts and opaque dirs become OCI
    /// whiteouts; a file named `.wh.*` (the container's own: the kernel whites out with
    /// devices only) is refused, as a layer would read it as a marker.
    Overlay,
    /// The tree is fuse-overlayfs's upper dir (rootfs mode `overlay-fuse`): as `Overlay`, but
    /// its `.wh..wh..opq` file marks an opaque dir (written once, from the xattr) and its
    /// `.wh.NAME` files (where it cannot mknod) are whiteouts in the layer format already.
    FuseOverlay,
    /// The tree is a plain filesystem (a merged rootfs): everything is written as it is,
    /// except overlayfs's own xattrs.
    Plain,
}

/// Writes the tree under `dir` (not `dir` itself) as a tar stream into `out`; returns `out`
/// once the end-of-archive marker is written.
/// Entries whose relative path is in `skip` (e.g. `etc/hosts`, a mount point the engine
/// made) are left out.
pub fn write_tree<W: Write>(
    dir: &Path,
    out: W,
    whiteouts: Whiteouts,
    skip: &[PathBuf],
) -> Result<W, TarError> {
    let mut w = Writer {
        b: tar::Builder::new(out),
        root: dir.to_path_buf(),
        links: HashMap::new(),
        whiteouts,
        skip,
    };
    w.b.follow_symlinks(false);
    let top = at::open_root(dir).map_err(read_err(dir))?;
    w.walk(top.as_fd(), Path::new(""))?;
    w.b.into_inner().map_err(|source| TarError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

struct Writer<'s, W: Write> {
    b: tar::Builder<W>,
    skip: &'s [PathBuf],
    root: PathBuf,
    /// (dev, ino) of files with several links → the path written first.
    links: HashMap<(u64, u64), PathBuf>,
    whiteouts: Whiteouts,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> TarError + '_ {
    move |source| TarError::Read {
        path: path.to_path_buf(),
        source,
    }
}

impl<W: Write> Writer<'_, W> {
    /// An overlay upper dir (the kernel's or fuse-overlayfs's).
    fn overlay(&self) -> bool {
        self.whiteouts != Whiteouts::Plain
    }

    /// Walks the directory open as `dir` (at `rel`) by fd: the tree may be a running
    /// container's, which can swap any entry for a symlink or FIFO at any time (see
    /// [`fsutil::at`]).
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<(), TarError> {
        let shown = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(at::proc_path(dir, OsStr::new("")))
            .map_err(read_err(&shown))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(&shown))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = at::proc_path(dir, &name);
            let rel = rel.join(&name);
            if self.skip.contains(&rel) {
                continue;
            }
            if self.whiteouts == Whiteouts::FuseOverlay && name == crate::userns::FUSE_OPAQUE_FILE {
                continue;
            }
            let shown = self.root.join(&rel);
            let meta = fs::symlink_metadata(&path).map_err(read_err(&shown))?;
            #[cfg(test)]
            hook::after_lstat(&shown);
            let ft = meta.file_type();
            let wh_dev = ft.is_char_device() && meta.rdev() == 0;
            if self.whiteouts == Whiteouts::Overlay
                && !wh_dev
                && name.as_bytes().starts_with(b".wh.")
            {
                return Err(TarError::WhiteoutName(rel));
            }
            if self.overlay() && wh_dev {
                let mut wh = name.clone();
                wh.clear();
                wh.push(".wh.");
                wh.push(&name);
                let p = rel.with_file_name(wh);
                self.empty_file(&p, &meta)?;
                continue;
            }
            if ft.is_socket() {
                continue;
            }
            let (xattrs, opaque) = self.xattrs(&path, &shown)?;
            let src = Src {
                dir,
                name: &name,
                path: &path,
                shown: &shown,
            };
            if ft.is_dir() {
                let sub = at::open_dir_at(dir, &name, &meta).map_err(read_err(&shown))?;
                self.pax(&xattrs, &rel)?;
                self.entry(&rel, &meta, tar::EntryType::Directory, &src)?;
                if self.overlay() && opaque {
                    self.empty_file(&rel.join(".wh..wh..opq"), &meta)?;
                }
                self.walk(sub.as_fd(), &rel)?;
            } else {
                self.pax(&xattrs, &rel)?;
                self.non_dir(&src, &rel, &meta)?;
            }
        }
        Ok(())
    }

    fn non_dir(&mut self, src: &Src<'_>, rel: &Path, meta: &fs::Metadata) -> Result<(), TarError> {
        let ft = meta.file_type();
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = header(meta, tar::EntryType::Link);
                h.set_size(0);
                return self
                    .b
                    .append_link(&mut h, rel, &first)
                    .map_err(self.write_err(rel));
            }
            self.links.insert(key, rel.to_path_buf());
        }
        let kind = if ft.is_file() {
            tar::EntryType::Regular
        } else if ft.is_symlink() {
            tar::EntryType::Symlink
        } else if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        self.entry(rel, meta, kind, src)
    }

    fn write_err<'a>(&self, rel: &'a Path) -> impl FnOnce(io::Error) -> TarError + 'a {
        move |source| TarError::Write {
            path: rel.to_path_buf(),
            source,
        }
    }

    /// The xattrs to keep, and whether the entry is an opaque directory (overlayfs's own
    /// xattr, not kept: taken from the same read, so it belongs to the entry written);
    /// refuses overlayfs's partial-content markers.
    fn xattrs(&self, path: &Path, shown: &Path) -> Result<(Xattrs, bool), TarError> {
        let all = fsutil::lxattrs(path).map_err(read_err(shown))?;
        let opaque = all
            .iter()
            .any(|(n, v)| crate::userns::is_opaque_xattr(n) && v == b"y");
        let mut keep = Vec::new();
        for (n, v) in all {
            if let Some(what) = partial_marker(&n).filter(|_| self.overlay()) {
                return Err(TarError::Partial {
                    path: shown.strip_prefix(&self.root).unwrap_or(shown).into(),
                    what,
                });
            }
            if !crate::userns::is_overlay_xattr(&n) {
                keep.push((n, v));
            }
        }
        Ok((keep, opaque))
    }

    fn pax(&mut self, xattrs: &Xattrs, rel: &Path) -> Result<(), TarError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = xattrs
            .iter()
            .map(|(n, _)| format!("SCHILY.xattr.{}", String::from_utf8_lossy(n)))
            .collect();
        let ext = keys
            .iter()
            .zip(xattrs)
            .map(|(k, (_, v))| (k.as_str(), v.as_slice()));
        self.b
            .append_pax_extensions(ext)
            .map_err(self.write_err(rel))
    }

    fn entry(
        &mut self,
        rel: &Path,
        meta: &fs::Metadata,
        kind: tar::EntryType,
        src: &Src<'_>,
    ) -> Result<(), TarError> {
        let mut h = header(meta, kind);
        let err = self.write_err(rel);
        match kind {
            tar::EntryType::Regular => {
                h.set_size(meta.len());
                let f = at::open_file_at(src.dir, src.name, meta).map_err(read_err(src.shown))?;
                // A file that changes size while we read would corrupt the stream; the
                // tar crate refuses a short read, and more than the header says is cut.
                self.b
                    .append_data(&mut h, rel, io::Read::take(f, meta.len()))
                    .map_err(err)
            }
            tar::EntryType::Symlink => {
                let target = fs::read_link(src.path).map_err(read_err(src.shown))?;
                self.b.append_link(&mut h, rel, &target).map_err(err)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let dev = meta.rdev();
                h.set_device_major(libc::major(dev))
                    .map_err(self.write_err(rel))?;
                h.set_device_minor(libc::minor(dev))
                    .map_err(self.write_err(rel))?;
                self.b.append_data(&mut h, rel, io::empty()).map_err(err)
            }
            _ => self.b.append_data(&mut h, rel, io::empty()).map_err(err),
        }
    }

    /// A whiteout file: empty, owned by root, mode 0, the mtime of what it stands for.
    fn empty_file(&mut self, rel: &Path, meta: &fs::Metadata) -> Result<(), TarError> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(meta.mtime().max(0) as u64);
        self.b
            .append_data(&mut h, rel, io::empty())
            .map_err(self.write_err(rel))
    }
}

fn header(meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// An entry being written: where it is (its directory's fd and name, and the
/// `/proc/self/fd` path for the `l*` calls) and the path shown in errors.
struct Src<'a> {
    dir: BorrowedFd<'a>,
    name: &'a OsStr,
    path: &'a Path,
    shown: &'a Path,
}

/// A point between the listing's `lstat` and the open where tests swap an entry, so the race
/// a running container could win is played deterministically.
#[cfg(test)]
mod hook {
    use std::cell::RefCell;
    use std::path::Path;

    type Hook = Box<dyn FnMut(&Path)>;

    thread_local! {
        static AFTER_LSTAT: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    pub(super) fn set(h: Hook) {
        AFTER_LSTAT.with(|c| *c.borrow_mut() = Some(h));
    }

    pub(super) fn after_lstat(p: &Path) {
        AFTER_LSTAT.with(|c| {
            if let Some(h) = c.borrow_mut().as_mut() {
                h(p);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A tree `top/{a,d/b}` and, outside it, `secret`; the hook swaps `name` (once) by `swap`.
    fn race(name: &'static str, swap: fn(&Path, &Path)) -> Result<Vec<u8>, TarError> {
        let d = tempfile::tempdir().expect("tempdir");
        let top = d.path().join("top");
        fs::create_dir_all(top.join("d")).expect("mkdir");
        fs::write(top.join("a"), b"inside").expect("write");
        fs::write(top.join("d/b"), b"inside").expect("write");
        fs::write(d.path().join("secret"), b"HOST-SECRET").expect("write");
        let secret = d.path().join("secret");
        let mut done = false;
        hook::set(Box::new(move |p| {
            if !done && p.file_name() == Some(OsStr::new(name)) {
                done = true;
                swap(p, &secret);
            }
        }));
        write_tree(&top, Vec::new(), Whiteouts::Plain, &[])
    }

    fn to_symlink(p: &Path, secret: &Path) {
        let _ = fs::remove_file(p).or_else(|_| fs::remove_dir_all(p));
        std::os::unix::fs::symlink(secret, p).expect("ln");
    }

    fn to_dir_symlink(p: &Path, secret: &Path) {
        fs::remove_dir_all(p).expect("rm");
        std::os::unix::fs::symlink(secret.parent().expect("parent"), p).expect("ln");
    }

    fn to_fifo(p: &Path, _: &Path) {
        fs::remove_file(p).expect("rm");
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("cstr");
        // SAFETY: c is a valid nul-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    fn no_secret(r: &Result<Vec<u8>, TarError>) {
        if let Ok(tar) = r {
            assert!(
                !tar.windows(11).any(|w| w == b"HOST-SECRET"),
                "a file outside the tree was written into the tar"
            );
        }
    }

    #[test]
    fn file_swapped_for_a_symlink_is_not_followed() {
        let r = race("a", to_symlink);
        no_secret(&r);
        assert!(r.is_err(), "the swapped entry was written as if unchanged");
    }

    #[test]
    fn dir_swapped_for_a_symlink_is_not_walked() {
        let r = race("d", to_dir_symlink);
        no_secret(&r);
        assert!(r.is_err());
    }

    #[test]
    fn file_swapped_for_a_fifo_does_not_block() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(race("a", to_fifo).is_err());
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the walk blocked opening a FIFO");
        assert!(refused);
    }

    #[test]
    fn unchanged_tree_is_written() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("d")).expect("mkdir");
        fs::write(d.path().join("d/f"), b"data").expect("write");
        std::os::unix::fs::symlink("f", d.path().join("d/l")).expect("ln");
        let tar = write_tree(d.path(), Vec::new(), Whiteouts::Plain, &[]).expect("tar");
        let mut a = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = a
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["d", "d/f", "d/l"]);
    }
}

#[cfg(test)]
mod marker_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An upper dir with `d/.wh..wh..opq` as a plain file and `d/f`; the tar's entry names.
    fn names_of(whiteouts: Whiteouts) -> Result<Vec<String>, TarError> {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/.wh..wh..opq"), "").unwrap();
        fs::write(t.path().join("d/f"), "x").unwrap();
        if whiteouts == Whiteouts::FuseOverlay {
            // fuse-overlayfs sets its xattr next to the marker file.
            fsutil::lsetxattr(&t.path().join("d"), "user.fuseoverlayfs.opaque", b"y").unwrap();
        }
        let data = write_tree(t.path(), Vec::new(), whiteouts, &[])?;
        let mut a = tar::Archive::new(&data[..]);
        Ok(a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect())
    }

    #[test]
    fn commit_honours_the_opaque_marker_file_on_fuse_overlayfs_only() {
        // fuse-overlayfs: `d` is opaque, its marker written once (from the xattr).
        assert_eq!(
            names_of(Whiteouts::FuseOverlay).unwrap(),
            ["d", "d/.wh..wh..opq", "d/f"]
        );
        // The kernel's overlay: the container made that file; it cannot go into a layer.
        let e = names_of(Whiteouts::Overlay).unwrap_err().to_string();
        assert!(
            e.starts_with("d/.wh..wh..opq: a file whose name starts with .wh."),
            "{e}"
        );
        // An exported rootfs keeps it as it is.
        assert_eq!(
            names_of(Whiteouts::Plain).unwrap(),
            ["d", "d/.wh..wh..opq", "d/f"]
        );
    }
}
