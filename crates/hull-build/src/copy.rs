//! COPY and ADD: sources resolved in the build context (or a stage's / image's root),
//! planned as a list of entries, keyed by their content, and written as a layer.
//!
//! Docker's rules: a directory source copies its contents, not itself; several sources (or
//! a wildcard) need a destination ending in `/`; a file goes into the destination when it
//! ends in `/` or is an existing directory, else becomes it; missing parents are made 0755
//! root-owned; existing parents keep their metadata (the layer repeats them as they are, since
//! in an overlay the topmost layer's directory metadata wins). ADD unpacks local tar
//! archives (plain, gzip, zstd) into the destination; URLs are refused.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use hull_image::layer_write::{append_entry, resolve_in_layers, stat_in_layers, Override};
use hull_image::{LayerFile, LayerWriter};
use sha2::{Digest as _, Sha256};

use crate::pattern::{self, Ignore};
use crate::{io_err, msg, StepError};

/// Where sources are read from.
pub(crate) struct Source<'a> {
    pub root: &'a Path,
    /// `.dockerignore` of the context; none for a stage or image.
    pub ignore: Option<&'a Ignore>,
}

/// What one entry of the layer is made from.
pub(crate) enum From {
    Path(PathBuf),
    Inline(Vec<u8>),
    Archive(PathBuf),
}

pub(crate) struct Item {
    pub from: From,
    /// Destination, relative to `/`.
    pub dest: PathBuf,
}

/// Lexically normalises an absolute container path to a relative one (`..` stops at `/`).
pub(crate) fn container_rel(p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `rel` resolved inside `root` as the kernel's RESOLVE_IN_ROOT would: a symlink met on the way
/// (not the last component, which COPY takes as it is) is followed with `root` as `/`, and `..`
/// never climbs above it. Without it `COPY s/etc/shadow /` with `s -> /` in the context read
/// the host's file into the image.
fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    fn push_rev(todo: &mut Vec<std::ffi::OsString>, p: &Path) {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_owned()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    }
    let mut todo = Vec::new();
    push_rev(&mut todo, rel);
    let (mut out, mut hops) = (PathBuf::new(), 0);
    while let Some(c) = todo.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        let cand = out.join(&c);
        if todo.is_empty() {
            return Ok(cand);
        }
        match fs::symlink_metadata(root.join(&cand)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(root.join(&cand))?;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                push_rev(&mut todo, &target);
            }
            _ => out = cand,
        }
    }
    Ok(out)
}

impl Source<'_> {
    fn excluded(&self, rel: &Path) -> bool {
        self.ignore
            .is_some_and(|i| i.excluded(&rel.to_string_lossy()))
    }

    /// The paths (relative to the root) a source argument names.
    pub(crate) fn resolve(&self, src: &str, what: &str) -> Result<Vec<PathBuf>, StepError> {
        let mut rel = PathBuf::new();
        for c in Path::new(src).components() {
            match c {
                Component::Normal(n) => rel.push(n),
                Component::ParentDir if !rel.pop() => {
                    return Err(msg(format!(
                        "{what} source {src:?} is outside the build context"
                    )));
                }
                _ => {}
            }
        }
        let s = rel.to_string_lossy().into_owned();
        if !pattern::is_glob(&s) {
            let rel = resolve_in_root(self.root, &rel).map_err(io_err(&self.root.join(&rel)))?;
            let p = self.root.join(&rel);
            if fs::symlink_metadata(&p).is_err() || (!s.is_empty() && self.excluded(&rel)) {
                return Err(msg(format!(
                    "{what} source {src:?}: no such file or directory in {}",
                    self.root.display()
                )));
            }
            return Ok(vec![rel]);
        }
        let mut all = Vec::new();
        self.walk(Path::new(""), &mut all)?;
        let hits: Vec<PathBuf> = all
            .into_iter()
            .filter(|r| pattern::matches(&s, &r.to_string_lossy()))
            .collect();
        if hits.is_empty() {
            return Err(msg(format!("{what} source {src:?}: no files match")));
        }
        Ok(hits)
    }

    /// Every path below `rel` that is not excluded, parents before children, sorted.
    fn walk(&self, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), StepError> {
        let dir = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(n);
            if self.excluded(&r) {
                // A re-included path below an excluded directory is still found.
                if fs::symlink_metadata(self.root.join(&r)).is_ok_and(|m| m.is_dir()) {
                    let mut below = Vec::new();
                    self.walk(&r, &mut below)?;
                    out.extend(below);
                }
                continue;
            }
            let is_dir = fs::symlink_metadata(self.root.join(&r)).is_ok_and(|m| m.is_dir());
            out.push(r.clone());
            if is_dir {
                self.walk(&r, out)?;
            }
        }
        Ok(())
    }
}

/// Archive kinds ADD recognises by their first bytes.
fn archive_kind(p: &Path) -> Result<Option<&'static str>, StepError> {
    let mut f = fs::File::open(p).map_err(io_err(p))?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(io_err(p))? {
            0 => break,
            k => n += k,
        }
    }
    let h = &head[..n];
    Ok(match h {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Some("xz"),
        _ if n >= 262 && &h[257..262] == b"ustar" => Some("tar"),
        _ => None,
    })
}

/// Plans the entries of a COPY/ADD. `exists_dir` tells whether a container path is an
/// existing directory of the image.
pub(crate) fn plan(
    src: &Source<'_>,
    paths: &[PathBuf],
    dest: &str,
    add: bool,
    exists_dir: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Item>, StepError> {
    let dest_rel = container_rel(dest);
    let into = dest.ends_with('/') || exists_dir(&dest_rel) || dest_rel.as_os_str().is_empty();
    let mut items = Vec::new();
    for rel in paths {
        let p = src.root.join(rel);
        let m = fs::symlink_metadata(&p).map_err(io_err(&p))?;
        if m.is_dir() {
            if !exists_dir(&dest_rel) && !dest_rel.as_os_str().is_empty() {
                items.push(Item {
                    from: From::Path(p.clone()),
                    dest: dest_rel.clone(),
                });
            }
            let mut below = Vec::new();
            src.walk(rel, &mut below)?;
            for b in below {
                let Ok(sub) = b.strip_prefix(rel) else {
                    continue;
                };
                items.push(Item {
                    from: From::Path(src.root.join(&b)),
                    dest: dest_rel.join(sub),
                });
            }
            continue;
        }
        if add && m.is_file() {
            match archive_kind(&p)? {
                Some(k @ ("bzip2" | "xz")) => {
                    return Err(msg(format!(
                        "ADD {}: {k} archives are not supported (tar, gzip and zstd are)",
                        rel.display()
                    )))
                }
                Some(_) => {
                    items.push(Item {
                        from: From::Archive(p),
                        dest: dest_rel.clone(),
                    });
                    continue;
                }
                None => {}
            }
        }
        let name = rel.file_name().map(PathBuf::from).unwrap_or_default();
        let d = if into {
            dest_rel.join(name)
        } else {
            dest_rel.clone()
        };
        items.push(Item {
            from: From::Path(p),
            dest: d,
        });
    }
    Ok(items)
}

/// The cache digest of a plan: destinations, kinds, modes, owners and contents (not
/// mtimes, as docker).
pub(crate) fn digest(items: &[Item], over: &Override) -> Result<String, StepError> {
    let mut h = Sha256::new();
    h.update(format!("{:?}{:?}\n", over.owner, over.mode));
    for it in items {
        h.update(it.dest.to_string_lossy().as_bytes());
        match &it.from {
            From::Inline(data) => {
                h.update(b" inline ");
                h.update(data);
            }
            From::Path(p) | From::Archive(p) => {
                let m = fs::symlink_metadata(p).map_err(io_err(p))?;
                h.update(format!(
                    " {:o} {} {} {} ",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len()
                ));
                if m.file_type().is_symlink() {
                    h.update(
                        fs::read_link(p)
                            .map_err(io_err(p))?
                            .as_os_str()
                            .as_encoded_bytes(),
                    );
                } else if m.is_file() {
                    let mut f = fs::File::open(p).map_err(io_err(p))?;
                    io::copy(&mut f, &mut h).map_err(io_err(p))?;
                }
            }
        }
        h.update(b"\n");
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes the layer of a plan into `stage_dir`.
pub(crate) fn write(
    stage_dir: &Path,
    items: &[Item],
    over: Override,
    layers: &[PathBuf],
) -> Result<LayerFile, StepError> {
    let mut w = LayerWriter::create(stage_dir)?;
    let mut done: BTreeSet<PathBuf> = BTreeSet::new();
    let mut links = HashMap::new();
    let lerr = |e| StepError::Layer(e);
    for it in items {
        // A directory of the image on the way may be a symlink: followed in the image.
        let dest = match (it.dest.parent(), it.dest.file_name()) {
            (Some(parent), Some(name)) => resolve_in_layers(layers, parent)
                .map_err(io_err(parent))?
                .join(name),
            _ => it.dest.clone(),
        };
        parents(&mut w, &dest, &mut done, layers)?;
        if !done.insert(dest.clone()) {
            continue;
        }
        match &it.from {
            From::Path(p) => {
                let m = fs::symlink_metadata(p).map_err(io_err(p))?;
                append_entry(w.tar(), p, &dest, &m, &mut links, Some(over)).map_err(lerr)?;
            }
            From::Inline(data) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(over.mode.unwrap_or(0o644));
                let (u, g) = over.owner.unwrap_or((0, 0));
                h.set_uid(u64::from(u));
                h.set_gid(u64::from(g));
                h.set_mtime(now());
                h.set_size(data.len() as u64);
                w.tar()
                    .append_data(&mut h, &dest, data.as_slice())
                    .map_err(io_err(&dest))?;
            }
            From::Archive(p) => {
                done.remove(&dest);
                unpack_archive(&mut w, p, &dest, &mut done, layers)?;
            }
        }
    }
    Ok(w.finish()?)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Entries for the parents of `dest` not written yet: as the image has them, or new
/// 0755 root-owned directories.
fn parents(
    w: &mut LayerWriter,
    dest: &Path,
    done: &mut BTreeSet<PathBuf>,
    layers: &[PathBuf],
) -> Result<(), StepError> {
    let mut cur = PathBuf::new();
    let comps: Vec<_> = dest.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        if !done.insert(cur.clone()) {
            continue;
        }
        match stat_in_layers(layers, &cur) {
            Some((p, m)) if m.is_dir() => {
                append_entry(w.tar(), &p, &cur, &m, &mut HashMap::new(), None)?;
            }
            Some(_) => {
                return Err(msg(format!(
                    "/{} exists in the image and is not a directory",
                    cur.display()
                )))
            }
            None => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(now());
                h.set_size(0);
                w.tar()
                    .append_data(&mut h, &cur, io::empty())
                    .map_err(io_err(&cur))?;
            }
        }
    }
    Ok(())
}

/// ADD of a local archive: its entries go below `dest` as they are (owners included).
fn unpack_archive(
    w: &mut LayerWriter,
    p: &Path,
    dest: &Path,
    done: &mut BTreeSet<PathBuf>,
    layers: &[PathBuf],
) -> Result<(), StepError> {
    let f = io::BufReader::new(fs::File::open(p).map_err(io_err(p))?);
    let reader: Box<dyn Read> = match archive_kind(p)? {
        Some("gzip") => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Some("zstd") => Box::new(zstd::Decoder::with_buffer(f).map_err(io_err(p))?),
        _ => Box::new(f),
    };
    let probe = dest.join("x");
    parents(w, &probe, done, layers)?;
    let mut a = tar::Archive::new(reader);
    for e in a.entries().map_err(io_err(p))? {
        let mut e = e.map_err(io_err(p))?;
        let raw = e.path().map_err(io_err(p))?.into_owned();
        let rel = safe(&raw).ok_or_else(|| {
            msg(format!(
                "ADD {}: unsafe entry {}",
                p.display(),
                raw.display()
            ))
        })?;
        let target = dest.join(&rel);
        if rel.as_os_str().is_empty() {
            continue;
        }
        parents(w, &target, done, layers)?;
        done.insert(target.clone());
        let mut h = e.header().clone();
        let kind = h.entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let link = e
                .link_name()
                .map_err(io_err(p))?
                .map(|l| l.into_owned())
                .unwrap_or_default();
            let link = if kind.is_hard_link() {
                dest.join(safe(&link).ok_or_else(|| {
                    msg(format!(
                        "ADD {}: unsafe link {}",
                        p.display(),
                        link.display()
                    ))
                })?)
            } else {
                link
            };
            w.tar()
                .append_link(&mut h, &target, link)
                .map_err(io_err(&target))?;
        } else if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        } else {
            w.tar()
                .append_data(&mut h, &target, &mut e)
                .map_err(io_err(&target))?;
        }
    }
    Ok(())
}

fn safe(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// `--chown` value → uid/gid, names looked up in the image's passwd and group files.
pub(crate) fn owner(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32), StepError> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
    let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, Option<u32>)> {
        let file = resolve_in_layers(layers, Path::new(file)).ok()?;
        let (p, m) = stat_in_layers(layers, &file)?;
        // Only a regular file of the image is read: a symlink left at the end of the lookup
        // would be followed on the host (an image's `/etc/passwd -> /etc/shadow`).
        if !m.is_file() {
            return None;
        }
        let text = fs::read_to_string(p).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| {
                let id = f.get(field)?.parse().ok()?;
                Some((id, f.get(3).and_then(|s| s.parse().ok())))
            })?
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (id, gid) = lookup("etc/passwd", u, 2)
                .ok_or_else(|| msg(format!("--chown={spec}: no user {u:?} in /etc/passwd")))?;
            (id, gid)
        }
    };
    let gid = if g.is_empty() {
        primary.unwrap_or(uid)
    } else {
        match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup("etc/group", g, 2)
                    .ok_or_else(|| msg(format!("--chown={spec}: no group {g:?} in /etc/group")))?
                    .0
            }
        }
    };
    Ok((uid, gid))
}
