//! Helpers shared by the shim's integration tests.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

/// hullc next to the shim, built on demand with the same target dir/profile.
pub fn hullc_dir(shim_bin: &str) -> PathBuf {
    // HULL_SHIM_BIN: another build of the shim (e.g. release, to measure
    // its memory); hullc must sit next to it.
    let shim =
        std::env::var_os("HULL_SHIM_BIN").map_or_else(|| PathBuf::from(shim_bin), PathBuf::from);
    let dir = shim.parent().unwrap().to_path_buf();
    if !dir.join("hullc").exists() {
        let profile_dir = dir.file_name().unwrap().to_str().unwrap().to_string();
        let target = dir.parent().unwrap();
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-p", "hullc"])
            .env("CARGO_TARGET_DIR", target);
        if profile_dir == "release" {
            c.arg("--release");
        }
        assert!(c.status().unwrap().success(), "cargo build -p hullc");
    }
    dir
}
