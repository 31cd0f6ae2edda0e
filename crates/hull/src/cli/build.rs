//! `hull build` (flags only; the builder is `hull-build`) and `hull builder prune`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(crate) enum BuilderCommand {
    /// Remove the build cache: its entries, then the unnamed images only it kept.
    Prune {
        /// Accepted for docker compatibility (hull never asks).
        #[arg(short, long)]
        force: bool,
    },
}

pub(crate) fn builder(root: &Path, c: BuilderCommand) -> anyhow::Result<()> {
    let BuilderCommand::Prune { force: _ } = c;
    let mut store = super::open_store(root)?;
    let n = hull_build::cache::forget(&store, true).context("removing build cache entries")?;
    let r = store.prune_images(false).context("pruning images")?;
    outln!(
        "Deleted build cache entries: {n}\nDeleted images: {}\nTotal reclaimed space: {}",
        r.deleted.len(),
        super::images::human(r.reclaimed)
    )?;
    Ok(())
}

#[derive(Args)]
pub(crate) struct BuildArgs {
    /// Name (and tag) of the image; repeatable.
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// The Containerfile/Dockerfile (default: Containerfile or Dockerfile in the context).
    #[arg(short, long = "file")]
    file: Option<PathBuf>,
    /// A build argument, NAME=VALUE (NAME alone takes it from the environment).
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    target: Option<String>,
    /// Do not use the step cache.
    #[arg(long)]
    no_cache: bool,
    /// Network of RUN containers (bridge, host, none).
    #[arg(long, default_value = "")]
    network: String,
    /// Platform of the image (only the host's can be built).
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// The build context directory.
    context: PathBuf,
}

pub(crate) fn run(root: &Path, a: BuildArgs) -> anyhow::Result<()> {
    let mut build_args = Vec::new();
    for b in &a.build_arg {
        match b.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.push((b.clone(), v));
                }
            }
        }
    }
    if !a.context.is_dir() {
        anyhow::bail!("build context {}: not a directory", a.context.display());
    }
    let opts = hull_build::BuildOptions {
        context: a.context,
        file: a.file,
        tags: a.tag,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        network: a.network,
        platform: a.platform,
        quiet: a.quiet,
    };
    let mut out = super::Output(std::io::stdout().lock());
    hull_build::build(root, &opts, &mut out)?;
    Ok(())
}
