//! `hull tag`, `hull history`, `hull import`, `hull image prune|mount|unmount`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct TagArgs {
    /// Image name or id.
    source: String,
    /// New name: [registry/]name[:tag].
    target: String,
}

#[derive(Args)]
pub(crate) struct HistoryArgs {
    /// Image name or id.
    image: String,
    /// Do not cut long CREATED BY columns.
    #[arg(long)]
    no_trunc: bool,
    /// Only print image ids (of the entries that are images).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Root filesystem tarball (.tar, .tar.gz, .tar.zst), or - for stdin.
    file: String,
    /// Name of the new image: [registry/]name[:tag].
    name: Option<String>,
    /// Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
    /// VOLUME, WORKDIR, ...); repeatable.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Comment for the history entry.
    #[arg(short, long)]
    message: Option<String>,
    /// Platform of the image (os/arch[/variant]); the host's by default.
    #[arg(long)]
    platform: Option<hull_image::Platform>,
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Accepted for docker compatibility (hull never asks).
    #[arg(short, long)]
    force: bool,
}

pub(crate) fn tag(root: &Path, a: TagArgs) -> anyhow::Result<()> {
    let mut store = super::open_store(root)?;
    store
        .tag(&a.source, &a.target)
        .with_context(|| format!("tagging {} as {}", a.source, a.target))?;
    let id = store
        .lookup(&a.target)
        .map(|i| i.id.to_string())
        .unwrap_or_default();
    hull_engine::events::Journal::open(root).emit_image("tag", &id, &a.target);
    Ok(())
}

fn age(created: Option<&str>) -> String {
    created
        .map(|c| c.get(..19).unwrap_or(c).replace('T', " "))
        .unwrap_or_else(|| "<missing>".into())
}

pub(crate) fn history(root: &Path, a: HistoryArgs) -> anyhow::Result<()> {
    let store = super::open_store(root)?;
    let img = store
        .lookup(&a.image)
        .with_context(|| format!("history of {}", a.image))?;
    let rows = store
        .history(&img)
        .with_context(|| format!("history of {}", a.image))?;
    if a.quiet {
        outln!("{}", &img.id.hex()[..12])?;
        return Ok(());
    }
    outln!(
        "{:<14} {:<21} {:<45} {:>10}  COMMENT",
        "IMAGE",
        "CREATED",
        "CREATED BY",
        "SIZE"
    )?;
    for (i, h) in rows.iter().enumerate() {
        let id = if i == 0 {
            img.id.hex()[..12].to_string()
        } else {
            "<missing>".into()
        };
        let mut by = h.created_by.replace('\n', " ");
        if !a.no_trunc && by.chars().count() > 44 {
            by = by.chars().take(42).collect::<String>() + "…";
        }
        outln!(
            "{id:<14} {:<21} {by:<45} {:>10}  {}",
            age(h.created.as_deref()),
            super::images::human(h.size),
            h.comment.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

pub(crate) fn import(root: &Path, a: ImportArgs) -> anyhow::Result<()> {
    if let Some(n) = &a.name {
        hull_image::create::parse_new_name(n).with_context(|| format!("image name {n:?}"))?;
    }
    let tar: Box<dyn Read + Send> = if a.file == "-" {
        Box::new(std::io::stdin())
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file))?;
        Box::new(f)
    };
    let o = hull_engine::image::ImportOptions {
        name: a.name,
        changes: a.change,
        message: a.message,
        platform: a.platform,
        source: if a.file == "-" {
            "stdin".into()
        } else {
            a.file.clone()
        },
    };
    let engine = hull_engine::Engine::open(root)?;
    let img = engine
        .import(tar, &o)
        .with_context(|| format!("importing {}", a.file))?;
    outln!("{}", img.id)?;
    Ok(())
}

pub(crate) fn prune(root: &Path, a: PruneArgs) -> anyhow::Result<()> {
    let _ = a.force;
    let mut store = super::open_store(root)?;
    // The build cache's images are not dangling (docker's `image prune` leaves the build
    // cache too); `-a` deletes them as any unused image, then their entries.
    let keep = hull_build::cache::images(root).context("reading the build cache")?;
    let r = store
        .prune_images_keeping(a.all, &keep)
        .context("pruning images")?;
    hull_build::cache::forget(&store, false).context("removing build cache entries")?;
    if !r.deleted.is_empty() {
        outln!("Deleted Images:")?;
    }
    for img in &r.deleted {
        for t in img.tags() {
            outln!("untagged: {t}")?;
        }
        outln!("deleted: {}", img.id)?;
    }
    outln!(
        "Total reclaimed space: {} ({} snapshots, {} blobs)",
        super::images::human(r.reclaimed),
        r.snapshots_removed,
        r.blobs_removed
    )?;
    Ok(())
}

pub(crate) fn mount(root: &Path, images: &[String]) -> anyhow::Result<()> {
    let mut store = super::open_store(root)?;
    for i in images {
        let p: PathBuf = store
            .mount_image(i)
            .with_context(|| format!("mounting image {i}"))?;
        outln!("{}", p.display())?;
    }
    Ok(())
}

pub(crate) fn unmount(root: &Path, images: &[String]) -> anyhow::Result<()> {
    let mut store = super::open_store(root)?;
    for i in images {
        store
            .unmount_image(i)
            .with_context(|| format!("unmounting image {i}"))?;
        outln!("{i}")?;
    }
    Ok(())
}
