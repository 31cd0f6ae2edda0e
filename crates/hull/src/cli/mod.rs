//! Command-line definition and dispatch. New command groups (containers)
//! add a module here and a variant to [`Command`].

mod archive;
mod images;
mod pull;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hull", version, about = "Daemonless container tool")]
struct Cli {
    /// Storage root for images, snapshots and containers.
    #[arg(long, global = true, default_value = "/var/lib/hull")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images (and snapshots/blobs no longer used).
    Rmi(images::RmiArgs),
    /// Save an image to an OCI archive.
    Save(archive::SaveArgs),
    /// Load images from an OCI or docker archive.
    Load(archive::LoadArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(images::ImageCommand),
}

/// Runs the CLI; errors print as `Error: cause: cause...` with exit code 125
/// (podman's code for errors of the tool itself).
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(a) => pull::run(&cli.root, a),
        Command::Images(a) => images::list(&cli.root, a),
        Command::Rmi(a) => images::rmi(&cli.root, a),
        Command::Save(a) => archive::save(&cli.root, a),
        Command::Load(a) => archive::load(&cli.root, a),
        Command::Image(c) => images::image(&cli.root, c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// Opens the image store, naming the root in errors.
pub(crate) fn open_store(root: &std::path::Path) -> anyhow::Result<hull_image::Store> {
    use anyhow::Context as _;
    hull_image::Store::open(root).with_context(|| format!("opening image store {}", root.display()))
}
