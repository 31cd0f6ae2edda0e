//! Finding `hullc` and the shim: an environment override, next to the
//! running executable (how the tree is built and installed), then PATH.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("cannot find {name}: put it next to hull or on PATH, or set {env}")]
pub struct Error {
    pub name: &'static str,
    pub env: &'static str,
}

pub fn find(name: &'static str, env: &'static str) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or(Error { name, env })
}
