//! Facts for `hull info` and `hull version`: the host's cgroup layout and the versions of
//! the binaries hull drives.

use crate::engine::Engine;

/// The host's cgroup layout as docker names it: "1", "2", or "1 (hybrid, with a cgroup2 mount)".
pub fn cgroup_version() -> &'static str {
    match hull_cgroups::Hierarchy::detect().map(|h| h.mode()) {
        Ok(hull_cgroups::Mode::V2) => "2",
        Ok(hull_cgroups::Mode::V1) => "1",
        Ok(_) => "1 (hybrid, with a cgroup2 mount)",
        Err(_) => "unknown",
    }
}

impl Engine {
    /// hullc's path and the first line of its `--version`, if it can be found.
    pub fn hullc_version(&self) -> Option<(String, String)> {
        let p = self.hullc().ok()?;
        let out = std::process::Command::new(p)
            .arg("--version")
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout);
        Some((
            p.display().to_string(),
            v.lines().next().unwrap_or("").trim().into(),
        ))
    }

    /// The shim's path, if it can be found.
    pub fn shim_path(&self) -> Option<String> {
        self.shim_bin().ok().map(|p| p.display().to_string())
    }
}
