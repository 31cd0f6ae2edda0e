//! `hull stop|restart|kill|rm|wait|pause|unpause`: signals and removal.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use hull_engine::signal;

use super::run::engine;

#[derive(Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct KillArgs {
    /// Signal to send (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short, long)]
    force: bool,
    /// Remove the containers' anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub(crate) struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Runs `f` on each container, printing its name as given; the first error
/// wins but every container is tried (docker's behaviour).
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = None;
    for n in names {
        match f(n) {
            Ok(()) => outln!("{n}")?,
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(_) => Ok(125),
        None => Ok(0),
    }
}

pub(crate) fn stop(root: &Path, a: StopArgs) -> Result<u8> {
    let e = engine(root)?;
    each(&a.containers, |n| {
        let r = e.find(n)?;
        Ok(e.stop(&r, Duration::from_secs(a.time))?)
    })
}

/// Stops (when running) and starts each container again.
pub(crate) fn restart(root: &Path, a: StopArgs) -> Result<u8> {
    let e = engine(root)?;
    each(&a.containers, |n| {
        let r = e.find(n)?;
        e.restart(&r, Duration::from_secs(a.time))?;
        Ok(())
    })
}

pub(crate) fn kill(root: &Path, a: KillArgs) -> Result<u8> {
    let sig = signal::parse(&a.signal).with_context(|| format!("invalid signal {:?}", a.signal))?;
    let e = engine(root)?;
    each(&a.containers, |n| Ok(e.kill(&e.find(n)?, sig)?))
}

pub(crate) fn rm(root: &Path, a: RmArgs) -> Result<u8> {
    let e = engine(root)?;
    each(&a.containers, |n| {
        Ok(e.remove(&e.find(n)?, a.force, a.volumes)?)
    })
}

pub(crate) fn pause(root: &Path, a: NamesArgs, pause: bool) -> Result<u8> {
    let e = engine(root)?;
    each(&a.containers, |n| Ok(e.pause(&e.find(n)?, pause)?))
}

/// Prints each container's exit status once it exits.
pub(crate) fn wait(root: &Path, a: NamesArgs) -> Result<u8> {
    let e = engine(root)?;
    for n in &a.containers {
        let code = e.wait(&e.find(n)?)?;
        outln!("{code}")?;
    }
    Ok(0)
}
