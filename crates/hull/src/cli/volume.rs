//! `hull volume create|ls|rm`.

use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

use super::run::engine;

#[derive(Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create a named volume.
    Create { name: String },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove volumes not used by any container.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub(crate) fn run(root: &Path, c: VolumeCommand) -> Result<u8> {
    let e = engine(root)?;
    match c {
        VolumeCommand::Create { name } => {
            e.volumes.ensure(&name)?;
            outln!("{name}")?;
        }
        VolumeCommand::Ls { quiet } => {
            if !quiet {
                outln!("{:<10}VOLUME NAME", "DRIVER")?;
            }
            for v in e.volumes.list()? {
                if quiet {
                    outln!("{v}")?;
                } else {
                    outln!("{:<10}{v}", "local")?;
                }
            }
        }
        VolumeCommand::Rm { names } => {
            for n in names {
                let users = e.volume_users(&n)?;
                e.volumes.remove(&n, &users)?;
                outln!("{n}")?;
            }
        }
    }
    Ok(0)
}
