//! `hull save` and `hull load`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct SaveArgs {
    /// Output file (OCI archive).
    #[arg(short, long)]
    output: PathBuf,
    /// Image name or id.
    image: String,
}

#[derive(Args)]
pub(crate) struct LoadArgs {
    /// Input file: OCI archive or docker-archive tar.
    #[arg(short, long)]
    input: PathBuf,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

pub(crate) fn save(root: &Path, a: SaveArgs) -> anyhow::Result<()> {
    let store = super::open_store(root)?;
    hull_image::archive::save(&store, &a.image, &a.output)
        .with_context(|| format!("saving {} to {}", a.image, a.output.display()))?;
    let id = store
        .lookup(&a.image)
        .map(|i| i.id.to_string())
        .unwrap_or_default();
    hull_engine::events::Journal::open(root).emit_image("save", &id, &a.image);
    Ok(())
}

pub(crate) fn load(root: &Path, a: LoadArgs) -> anyhow::Result<()> {
    let mut store = super::open_store(root)?;
    let bars = (!a.quiet && std::io::stderr().is_terminal()).then(crate::progress::Bars::new);
    let progress: &dyn hull_image::Progress = match &bars {
        Some(b) => b,
        None => &hull_image::NoProgress,
    };
    let images = hull_image::archive::load(&mut store, &a.input, progress)
        .with_context(|| format!("loading {}", a.input.display()))?;
    let journal = hull_engine::events::Journal::open(root);
    for img in images {
        let tags: Vec<&str> = img.tags().collect();
        let id = img.id.to_string();
        journal.emit_image("load", &id, tags.first().copied().unwrap_or(&id));
        if tags.is_empty() {
            outln!("Loaded image: {}", img.id)?;
        }
        for t in tags {
            outln!("Loaded image: {t}")?;
        }
    }
    Ok(())
}
