//! `hull exec`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use hull_engine::exec::{self, ExecOptions};
use hull_engine::opts;

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
    };
    let _raw = if a.tty { tty::RawMode::enter() } else { None };
    let code = exec::run(&e, &r, &o)?;
    Ok(code.min(255) as u8)
}
