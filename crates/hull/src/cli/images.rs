//! `hull images`, `hull rmi`, `hull image inspect` (and the dispatch of the other `image` commands).

use std::path::Path;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hull_image::ImageRecord;
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Args)]
pub(crate) struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Only print image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show the build cache's intermediate images too (docker's `images -a`).
    #[arg(short, long)]
    all: bool,
}

#[derive(Args)]
pub(crate) struct RmiArgs {
    /// Remove even if the image has several names or containers use it.
    #[arg(short, long)]
    force: bool,
    /// Image names or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Show image details as JSON.
    Inspect {
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Mount images read-only; prints the mount points.
    Mount {
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Unmount images mounted with `image mount`.
    Unmount {
        /// Image names or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove dangling images (-a: all unused ones) and unreferenced blobs and snapshots.
    Prune(super::image_ops::PruneArgs),
    /// Show the history of an image.
    History(super::image_ops::HistoryArgs),
    /// Give an image another name.
    Tag(super::image_ops::TagArgs),
    /// Push an image to a registry.
    Push(super::push::PushArgs),
}

fn short_id(img: &ImageRecord) -> &str {
    &img.id.hex()[..12]
}

pub(crate) fn human(size: u64) -> String {
    let mut v = size as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return format!("{v:.3} {unit}").replace(".000 B", " B");
        }
        v /= 1000.0;
    }
    format!("{v:.1} TB")
}

pub(crate) fn list(root: &Path, a: ImagesArgs) -> anyhow::Result<()> {
    let store = super::open_store(root)?;
    let mut images = store.images()?;
    if !a.all {
        // As docker hides the intermediate images of its builds: the unnamed images of
        // `hull build`'s step cache (`image prune` keeps them; `builder prune` removes them).
        let cache = hull_build::cache::images(root).context("reading the build cache")?;
        images.retain(|i| i.tags().next().is_some() || !cache.contains(&i.id));
    }
    if a.quiet {
        for img in &images {
            outln!("{}", short_id(img))?;
        }
        return Ok(());
    }
    match a.format {
        Format::Json => {
            let v: Vec<_> = images
                .iter()
                .map(|i| {
                    json!({
                        "Id": i.id,
                        "Names": i.tags().collect::<Vec<_>>(),
                        "Digests": i.names.iter().filter(|n| n.contains('@')).collect::<Vec<_>>(),
                        "Digest": i.manifest_digest,
                        "Created": i.config.created,
                        "Size": i.size,
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Table => {
            outln!(
                "{:<40} {:<16} {:<12} {:<20} {:>10}",
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE"
            )?;
            for img in &images {
                let created = img.config.created.as_deref().unwrap_or("-");
                let created = created.get(..19).unwrap_or(created).replace('T', " ");
                let mut tags: Vec<(String, String)> = img
                    .tags()
                    .filter_map(|t| t.rsplit_once(':'))
                    .map(|(r, t)| (r.to_string(), t.to_string()))
                    .collect();
                if tags.is_empty() {
                    tags.push(("<none>".into(), "<none>".into()));
                }
                for (repo, tag) in tags {
                    outln!(
                        "{repo:<40} {tag:<16} {:<12} {created:<20} {:>10}",
                        short_id(img),
                        human(img.size)
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn rmi(root: &Path, a: RmiArgs) -> anyhow::Result<()> {
    let mut store = super::open_store(root)?;
    let journal = hull_engine::events::Journal::open(root);
    for name in &a.images {
        let id = store
            .lookup(name)
            .map(|i| i.id.to_string())
            .unwrap_or_default();
        let r = store
            .remove_image(name, a.force)
            .with_context(|| format!("removing {name}"))?;
        for n in r.untagged.iter().filter(|n| !n.contains('@')) {
            journal.emit_image("untag", &id, n);
            outln!("Untagged: {n}")?;
        }
        if let Some(id) = r.deleted {
            journal.emit_image("delete", &id, name);
            outln!("Deleted: {id}")?;
        }
    }
    Ok(())
}

/// docker's image inspect. `Config` comes from the stored config JSON as it is, so fields
/// hull's typed config does not model (`Healthcheck`, `Shell`, `OnBuild`, ...) show too.
fn inspect_json(img: &ImageRecord, raw: &serde_json::Value) -> serde_json::Value {
    let config = match raw.get("config") {
        Some(c) if !c.is_null() => c.clone(),
        _ => json!(img.config.config),
    };
    json!({
        "Id": img.id,
        "Digest": img.manifest_digest,
        "RepoTags": img.tags().collect::<Vec<_>>(),
        "RepoDigests": img.names.iter().filter(|n| n.contains('@')).collect::<Vec<_>>(),
        "MediaType": img.manifest_media_type,
        "Created": img.config.created,
        "Architecture": img.config.architecture,
        "Os": img.config.os,
        "Variant": img.config.variant,
        "Author": raw.get("author").cloned().unwrap_or(json!("")),
        "Config": config,
        "RootFS": { "Type": img.config.rootfs.kind, "Layers": img.config.rootfs.diff_ids },
        "Layers": img.layers.iter().map(|l| json!({
            "Digest": l.blob, "MediaType": l.media_type, "Size": l.size,
            "DiffID": l.diff_id, "ChainID": l.chain_id,
        })).collect::<Vec<_>>(),
        "Size": img.size,
    })
}

/// The inspect JSON of image `name` (a name or id).
pub(crate) fn inspect_image(
    store: &hull_image::Store,
    name: &str,
) -> anyhow::Result<serde_json::Value> {
    let img = store
        .lookup(name)
        .with_context(|| format!("inspecting {name}"))?;
    let raw = store
        .config_raw(&img)
        .with_context(|| format!("reading the config of {name}"))?;
    let raw: serde_json::Value =
        serde_json::from_slice(&raw).with_context(|| format!("parsing the config of {name}"))?;
    Ok(inspect_json(&img, &raw))
}

pub(crate) fn image(root: &Path, c: ImageCommand) -> anyhow::Result<()> {
    match c {
        ImageCommand::Inspect { images } => {
            let store = super::open_store(root)?;
            let mut out = Vec::new();
            for name in &images {
                out.push(inspect_image(&store, name)?);
            }
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
            Ok(())
        }
        ImageCommand::Mount { images } => super::image_ops::mount(root, &images),
        ImageCommand::Unmount { images } => super::image_ops::unmount(root, &images),
        ImageCommand::Prune(a) => super::image_ops::prune(root, a),
        ImageCommand::History(a) => super::image_ops::history(root, a),
        ImageCommand::Tag(a) => super::image_ops::tag(root, a),
        ImageCommand::Push(a) => super::push::push(root, a),
    }
}
