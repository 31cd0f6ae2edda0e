//! The step cache: `<root>/build-cache/<key>` holds the id of the image a file-changing step
//! made. A key chains like docker's: sha256 of the parent's key, the instruction as
//! written (variables expanded) and what else decides the result (the digests of the
//! files a COPY takes, the build args a RUN sees). An entry is written only after its image
//! is committed, by rename: an interrupted build leaves complete entries or none.
//!
//! The images are ordinary unnamed images of the store. `hull image prune` keeps those an
//! entry names (docker's `image prune` leaves the build cache alone too); `image prune -a`
//! deletes them with every unused image and then their entries; `hull builder prune` drops
//! every entry, then the images only the cache kept. A lookup of an entry whose image is gone
//! is a miss, so the step is built again.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hull_image::{Digest, ImageRecord, Store};

use crate::{io_err, StepError};

pub(crate) fn key(parent: &Digest, text: &str, extra: &str) -> Digest {
    Digest::of(format!("{parent}\n{text}\n{extra}").as_bytes())
}

fn dir(root: &Path) -> PathBuf {
    root.join("build-cache")
}

/// What an entry's image is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A file-changing step's (unnamed) image: the build cache proper.
    Step,
    /// A build's result, named by `-t`: once its name moves to a newer build it is an
    /// ordinary dangling image for `image prune`, as docker's would be.
    Result,
}

/// The image a step with `key` made before, if it is still in the store.
pub(crate) fn get(store: &Store, key: &Digest) -> Option<ImageRecord> {
    let text = std::fs::read_to_string(dir(store.root()).join(key.hex())).ok()?;
    store.lookup(text.lines().next()?.trim()).ok()
}

/// Records `image` under `key`: the image id, then the kind on a second line.
pub(crate) fn put(
    store: &Store,
    key: &Digest,
    image: &Digest,
    kind: Kind,
) -> Result<(), StepError> {
    let d = dir(store.root());
    hull_image::store::private_dir(&d)?;
    let mut f = tempfile::NamedTempFile::new_in(&d).map_err(io_err(&d))?;
    let kind = match kind {
        Kind::Step => "step",
        Kind::Result => "result",
    };
    f.write_all(format!("{image}\n{kind}\n").as_bytes())
        .map_err(io_err(&d))?;
    let dest = d.join(key.hex());
    f.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
    Ok(())
}

/// The entries: (file, image id, a step's) for each readable one.
fn entries(root: &Path) -> io::Result<Vec<(PathBuf, String, bool)>> {
    let d = dir(root);
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd {
        let p = e?.path();
        // Temporary files of a `put` in progress start with a dot.
        if p.file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
        {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&p) {
            let mut lines = text.lines();
            let id = lines.next().unwrap_or_default().trim().to_string();
            let step = lines.next().is_none_or(|k| k.trim() != "result");
            out.push((p, id, step));
        }
    }
    Ok(out)
}

/// The images of the steps' entries: `hull image prune` keeps them (they are docker's
/// build cache, not dangling images; they share their layers with the images built).
pub fn images(root: &Path) -> io::Result<HashSet<Digest>> {
    Ok(entries(root)?
        .into_iter()
        .filter(|(_, _, step)| *step)
        .filter_map(|(_, id, _)| id.parse().ok())
        .collect())
}

/// Drops the entries whose image is gone (`image prune -a` deleted it) or, with `all`,
/// every entry (`hull builder prune`). Returns how many went.
pub fn forget(store: &Store, all: bool) -> io::Result<usize> {
    let mut n = 0;
    for (p, id, _) in entries(store.root())? {
        if all || store.lookup(&id).is_err() {
            match std::fs::remove_file(&p) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}
