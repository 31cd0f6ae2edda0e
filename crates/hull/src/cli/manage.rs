//! `hull rename`, `hull container prune`, `hull update`.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hull_engine::manage::Resources;
use hull_engine::opts;

use super::run::engine;

#[derive(Args)]
pub(crate) struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Subcommand)]
pub(crate) enum ContainerCommand {
    /// Remove all stopped containers.
    Prune(PruneArgs),
}

#[derive(Args)]
pub(crate) struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub(crate) struct UpdateArgs {
    /// Memory limit (e.g. 512m); below the current usage it is refused.
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Restart policy (no, on-failure[:N], always, unless-stopped), applied at once.
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub(crate) fn rename(root: &Path, a: RenameArgs) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    e.rename(&r, &a.new_name)?;
    Ok(0)
}

pub(crate) fn container(root: &Path, c: ContainerCommand) -> Result<u8> {
    match c {
        ContainerCommand::Prune(a) => prune(root, a),
    }
}

fn prune(root: &Path, a: PruneArgs) -> Result<u8> {
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let e = engine(root)?;
    let (gone, err) = e.prune();
    if !gone.is_empty() {
        outln!("Deleted Containers:")?;
        for id in &gone {
            outln!("{id}")?;
        }
        outln!()?;
    }
    outln!("Total reclaimed containers: {}", gone.len())?;
    match err {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}

pub(crate) fn update(root: &Path, a: UpdateArgs) -> Result<u8> {
    let res = Resources {
        memory: a.memory.as_deref().map(opts::parse_memory).transpose()?,
        cpus: a.cpus.as_deref().map(opts::parse_cpus).transpose()?,
        pids_limit: a.pids_limit,
    };
    if res == Resources::default() && a.restart.is_none() {
        bail!("hull update: nothing to change (give --memory, --cpus, --pids-limit or --restart)");
    }
    let restart = a
        .restart
        .as_deref()
        .map(hull_engine::policy::parse_restart)
        .transpose()?;
    let e = engine(root)?;
    // Every name must exist before anything changes.
    let recs = a
        .containers
        .iter()
        .map(|c| e.find(c))
        .collect::<Result<Vec<_>, _>>()?;
    for (r, name) in recs.iter().zip(&a.containers) {
        e.update_with_policy(r, &res, restart.as_ref())?;
        outln!("{name}")?;
    }
    Ok(0)
}
