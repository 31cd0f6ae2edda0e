//! `hull logs`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::logs;

use super::run::engine;

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// Keep streaming new output until the container exits.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end ("all" for everything).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

pub(crate) fn run(root: &Path, a: LogsArgs) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    if r.options.extra.no_log() {
        anyhow::bail!(
            "configured logging driver \"none\" does not support reading (container {})",
            r.name
        );
    }
    let lines =
        match a.tail.as_str() {
            "all" | "-1" => None,
            n => Some(n.parse().map_err(|_| {
                anyhow::anyhow!("invalid --tail {n:?}: expected a number or \"all\"")
            })?),
        };
    let dir = e.dir(&r);
    let (mut out, mut err) = (
        super::Output(std::io::stdout().lock()),
        super::Output(std::io::stderr().lock()),
    );
    let mut sink = logs::Sink {
        out: &mut out,
        err: &mut err,
        timestamps: a.timestamps,
    };
    let offset = logs::print(&dir, lines, &mut sink)?;
    if a.follow && e.state(&r).is_live() {
        let exited = logs::Exited::new()?;
        let waiter = {
            let (exited, shim) = (exited.clone(), e.shim(&r));
            std::thread::spawn(move || {
                let done = shim.ok().and_then(|s| s.wait("", None).ok().flatten());
                exited.set();
                done
            })
        };
        logs::Follower::from(&dir, offset).follow(&mut sink, &exited)?;
        if let Ok(Some((code, at_ns))) = waiter.join() {
            e.remember_exit(&r, code, at_ns);
        }
    }
    Ok(0)
}
