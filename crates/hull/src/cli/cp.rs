//! `hull cp [-a] [-L] SRC DEST`: docker cp between a container and the host; one side is
//! `CONTAINER:PATH` (see hull-engine's `cp` for the rules and how the container's paths
//! stay inside its root).

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;
use hull_engine::cp::{Owner, Side};

use super::run::engine;

#[derive(Args)]
pub(crate) struct CpArgs {
    /// Archive mode: keep the source's owners (default: the destination's user, root in a
    /// container, the caller on the host).
    #[arg(short, long)]
    archive: bool,
    /// Follow a symlink named by SRC.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// CONTAINER:SRC_PATH, a host path (SRC_PATH/. copies a directory's contents), or `-`: a
    /// tar stream on stdin, unpacked into the directory DEST_PATH.
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-`: SRC_PATH as a tar stream on stdout.
    dest: String,
}

/// `NAME:PATH` → `(Some(NAME), PATH)`; a host path (absolute, or starting with `.`) → `(None, PATH)`.
fn parse(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => (Some(c), p),
        _ => (None, arg),
    }
}

pub(crate) fn run(root: &Path, a: CpArgs) -> Result<u8> {
    if a.src == "-" || a.dest == "-" {
        return stream(root, &a);
    }
    let e = engine(root)?;
    let (src, dst) = (parse(&a.src), parse(&a.dest));
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let me = unsafe { (libc::getuid(), libc::getgid()) };
    let (owner_default, records) = match (src.0, dst.0) {
        (Some(c), None) => (me, (Some(e.find(c)?), None)),
        (None, Some(c)) => ((0, 0), (None, Some(e.find(c)?))),
        (Some(_), Some(_)) => bail!(
            "copying between containers is not supported: {} → {}",
            a.src,
            a.dest
        ),
        (None, None) => bail!(
            "one of SRC and DEST must be CONTAINER:PATH (got {} and {})",
            a.src,
            a.dest
        ),
    };
    let owner = if a.archive {
        Owner::Keep
    } else {
        Owner::Fixed(owner_default.0, owner_default.1)
    };
    let s = match &records.0 {
        Some(r) => Side::Container(r, non_empty(src.1)),
        None => Side::Host(Path::new(src.1)),
    };
    let d = match &records.1 {
        Some(r) => Side::Container(r, non_empty(dst.1)),
        None => Side::Host(Path::new(dst.1)),
    };
    e.copy(&s, &d, a.follow_link, owner)?;
    Ok(0)
}

/// `cp CTR:PATH -` (a tar of PATH on stdout) and `cp - CTR:DIR` (a tar on stdin unpacked
/// into DIR), as docker's.
fn stream(root: &Path, a: &CpArgs) -> Result<u8> {
    let e = engine(root)?;
    match (parse(&a.src), parse(&a.dest)) {
        ((Some(c), path), (None, "-")) => {
            let r = e.find(c)?;
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            e.copy_out_tar(&r, non_empty(path), a.follow_link, out)?;
        }
        ((None, "-"), (Some(c), path)) => {
            let r = e.find(c)?;
            let owner = if a.archive {
                Owner::Keep
            } else {
                Owner::Fixed(0, 0)
            };
            e.copy_in_tar(&r, non_empty(path), std::io::stdin().lock(), owner)?;
        }
        _ => bail!(
            "\"-\" (a tar stream) goes with CONTAINER:PATH on the other side: cp CONTAINER:PATH - or cp - CONTAINER:DIR (got {} and {})",
            a.src,
            a.dest
        ),
    }
    Ok(0)
}

/// `CONTAINER:` alone names the container's root.
fn non_empty(p: &str) -> &str {
    if p.is_empty() {
        "/"
    } else {
        p
    }
}
