//! containerd-shim-hull-v2: runtime type `io.containerd.hull.v2`.

use containerd_shim::Config;
use hull_shim::shim::{HullShim, RUNTIME_ID};

fn main() {
    // One malloc arena: the shim has a handful of threads that allocate
    // little, and per-thread arenas would each add their own RSS.
    // SAFETY: mallopt only sets an allocator tunable, before any thread starts.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    let config = Config {
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<HullShim>(RUNTIME_ID, Some(config));
}
