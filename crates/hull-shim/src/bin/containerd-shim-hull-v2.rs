//! containerd-shim-hull-v2: runtime type `io.containerd.hull.v2`.

use std::io::Write;

use anyhow::Context;
use containerd_shim::Config;
use hull_shim::shim::{start_plain, HullShim, RUNTIME_ID};

fn main() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags =
        containerd_shim::parse(args.get(1..).unwrap_or_default()).context("parse arguments")?;
    if flags.action == "start" {
        let address = start_plain(&flags).context("start shim")?;
        let mut out = std::io::stdout().lock();
        out.write_all(address.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    // One malloc arena: the shim has a handful of threads that allocate
    // little, and per-thread arenas would each add their own RSS.
    // SAFETY: mallopt only sets an allocator tunable, before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if flags.action.is_empty() && !flags.info && !flags.version {
        return hull_shim::serve::serve(&flags).context("serve");
    }
    // `delete` (and `-info`): the library's bootstrap handles them.
    let config = Config {
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<HullShim>(RUNTIME_ID, Some(config));
    Ok(())
}
