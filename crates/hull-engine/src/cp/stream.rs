//! `hull cp CTR:PATH -` and `hull cp - CTR:DIR`: docker cp's tar streams on stdout/stdin.
//!
//! Both go through a private staging directory under the root, so that the container's side
//! is only ever touched by the confined copy of [`super`] (`openat2(RESOLVE_IN_ROOT)`, fd by
//! fd, symlinks copied as symlinks, never followed): out, PATH is copied into the stage and
//! the stage written as a tar (the entry named as PATH's last component, as docker's); in,
//! the tar is unpacked into the empty stage by hull-image's unpacker (no entry may leave it:
//! no `..`, no write through a symlink an earlier entry made, size and count capped; `.wh.`
//! names are plain files, the tar is no layer) and the stage's contents copied into DIR. A tar thus never names a path of the
//! container directly, and a symlink in the container never leads out of it
//! (CVE-2018-15664, CVE-2019-14271).

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use hull_image::tarball::{self, Whiteouts};

use super::{Error, Owner, Side};
use crate::engine::{io, Engine};
use crate::record::Record;

/// A fresh private directory under the root, removed (without following anything in it)
/// when dropped.
struct Stage(PathBuf);

impl Stage {
    fn new(root: &Path) -> Result<Stage, crate::Error> {
        let p = root.join(format!(
            "cp-{}-{}",
            std::process::id(),
            crate::record::now_ns()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(io("cannot create", &p))?;
        Ok(Stage(p))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Engine {
    /// `cp CTR:PATH -`: a tar stream of `path` in `r` to `out` (owners, modes, symlinks as
    /// they are in the container); `follow`: `-L`.
    pub fn copy_out_tar(
        &self,
        r: &Record,
        path: &str,
        follow: bool,
        out: impl Write,
    ) -> Result<(), crate::Error> {
        let stage = Stage::new(&self.root)?;
        self.copy(
            &Side::Container(r, path),
            &Side::Host(&stage.0),
            follow,
            Owner::Keep,
        )?;
        let mut out =
            tarball::write_tree(&stage.0, out, Whiteouts::Plain, &[]).map_err(crate::Error::Tar)?;
        out.flush().map_err(io("cannot write", Path::new("-")))
    }

    /// `cp - CTR:DIR`: unpacks the tar stream `input` into the directory `dir` of `r`;
    /// `owner`: the tar's owners (`-a`) or the given ones.
    pub fn copy_in_tar(
        &self,
        r: &Record,
        dir: &str,
        input: impl Read,
        owner: Owner,
    ) -> Result<(), crate::Error> {
        // DIR must be an existing directory (docker's rule for a tar on stdin).
        let side = Side::Container(r, dir);
        let (droot, dpath) = self.root_of(&side)?;
        match droot.open(dpath, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::NotADir(droot.name(dpath)).into())
            }
            Err(e) => return Err(super::not_found(&droot, dpath)(e).into()),
        }
        let stage = Stage::new(&self.root)?;
        let limits = hull_image::LayerLimits::from_env().map_err(Error::Limits)?;
        // A tar to copy, not a layer: `.wh.x` is a file named so, as docker copies it (as a
        // whiteout it became a 0/0 device over `x`, deleting `x` in the container).
        hull_image::unpack_plain(input, &stage.0, &limits).map_err(Error::Unpack)?;
        let contents = stage.0.join(".");
        self.copy(
            &Side::Host(&contents),
            &Side::Container(r, dir),
            false,
            owner,
        )
    }
}
