//! `hull exec`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::exec::{self, ExecOptions};
use hull_engine::opts;
use hull_engine::shim::Shim;
use hull_engine::Error;
use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::Signals;

use super::run::engine;
use super::tty;

#[derive(Args)]
pub(crate) struct ExecArgs {
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "ENV")]
    env: Vec<String>,
    /// User[:group] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

pub(crate) fn run(root: &Path, a: ExecArgs) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(&a.container)?;
    let o = ExecOptions {
        cmd: a.cmd,
        env: a.env.iter().filter_map(|x| opts::expand_env(x)).collect(),
        user: a.user,
        workdir: a.workdir,
        stdin: a.interactive,
        tty: a.tty,
        console_size: if a.tty { tty::size() } else { None },
    };
    let winch = if a.tty {
        Some(Signals::new([SIGWINCH])?)
    } else {
        None
    };
    let raw = if a.tty { tty::RawMode::enter() } else { None };
    let started = |shim: &Shim, exec_id: &str| {
        if let Some(s) = winch {
            tty::follow_resizes(s, shim, exec_id);
        }
    };
    let res = exec::run(&e, &r, &o, started);
    drop(raw);
    match res {
        Ok(code) => Ok(code.min(255) as u8),
        // docker's codes for a program that cannot be run.
        Err(err @ (Error::ExecNotFound(_) | Error::ExecNotExecutable(_))) => {
            let code = if matches!(err, Error::ExecNotFound(_)) {
                127
            } else {
                126
            };
            eprintln!("Error: {:#}", anyhow::Error::from(err));
            Ok(code)
        }
        Err(err) => Err(err.into()),
    }
}
