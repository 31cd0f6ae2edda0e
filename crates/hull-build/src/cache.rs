//! The step cache: `<root>/build-cache/<key>` holds the id of the image a file-changing step
//! made. A key chains like docker's: sha256 of the parent's key, the instruction as
//! written (variables expanded) and what else decides the result (the digests of the
//! files a COPY takes, the build args a RUN sees). An entry is written only after its image
//! is committed, by rename: an interrupted build leaves complete entries or none.

use std::io::Write;
use std::path::{Path, PathBuf};

use hull_image::{Digest, ImageRecord, Store};

use crate::{io_err, StepError};

pub(crate) fn key(parent: &Digest, text: &str, extra: &str) -> Digest {
    Digest::of(format!("{parent}\n{text}\n{extra}").as_bytes())
}

fn dir(root: &Path) -> PathBuf {
    root.join("build-cache")
}

/// The image a step with `key` made before, if it is still in the store.
pub(crate) fn get(store: &Store, key: &Digest) -> Option<ImageRecord> {
    let id = std::fs::read_to_string(dir(store.root()).join(key.hex())).ok()?;
    store.lookup(id.trim()).ok()
}

pub(crate) fn put(store: &Store, key: &Digest, image: &Digest) -> Result<(), StepError> {
    let d = dir(store.root());
    hull_image::store::private_dir(&d)?;
    let mut f = tempfile::NamedTempFile::new_in(&d).map_err(io_err(&d))?;
    f.write_all(image.to_string().as_bytes())
        .map_err(io_err(&d))?;
    let dest = d.join(key.hex());
    f.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
    Ok(())
}
