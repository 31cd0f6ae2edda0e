//! Rootless operation, with runc's rules (runc main.go, rootless_linux.go):
//!
//! - state root: `$XDG_RUNTIME_DIR/hullc` when hullc runs unprivileged (or
//!   as root of a user namespace, unless `USER=root`) and `--root` is not
//!   given; made 0700 + sticky (systemd's tmpfiles then leave it alone);
//! - cgroups: `--rootless=true|false|auto`; auto means rootless when the
//!   euid is not 0, or is 0 in a user namespace. Rootless cgroups tolerate
//!   permission errors when creating or joining the container's cgroup (no
//!   delegation: the container simply has none), and device rules that
//!   cannot be set; limits that cannot be set remain errors.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("--rootless: {0:?} is not true, false or auto")]
    Flag(String),
    #[error("creating the state root {path}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const SYSTEM_ROOT: &str = "/run/hullc";

/// The state root when `--root` is not given, and whether it is the
/// per-user one under `$XDG_RUNTIME_DIR`.
pub fn default_root() -> (PathBuf, bool) {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    match xdg {
        Some(d) if honor_xdg() => (PathBuf::from(d).join("hullc"), true),
        _ => (PathBuf::from(SYSTEM_ROOT), false),
    }
}

fn honor_xdg() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    // Root of a user namespace (rootlesskit and the like) is still a user's
    // hullc, unless it says it is root.
    running_in_userns() && std::env::var("USER").map_or(true, |u| u != "root")
}

/// Creates the per-user state root 0700 with the sticky bit, as runc does.
pub fn prepare_user_root(root: &Path) -> Result<(), RootlessError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| RootlessError::Root {
        path: root.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(err)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o1700)).map_err(err)
}

/// Whether cgroups are handled the rootless way (`--rootless` value).
pub fn rootless_cgroups(flag: Option<&str>) -> Result<bool, RootlessError> {
    match flag {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        None | Some("auto") => Ok(!nix::unistd::geteuid().is_root() || running_in_userns()),
        Some(other) => Err(RootlessError::Flag(other.to_string())),
    }
}

/// Whether we run in a user namespace other than the initial one (whose
/// uid_map is the identity over the whole range).
pub(crate) fn running_in_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| !is_initial_map(&m))
        .unwrap_or(false)
}

fn is_initial_map(map: &str) -> bool {
    let f: Vec<&str> = map.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_follow_runc() {
        assert!(rootless_cgroups(Some("true")).expect("true"));
        assert!(!rootless_cgroups(Some("false")).expect("false"));
        assert!(rootless_cgroups(Some("maybe")).is_err());
        // auto: the test suite runs as root in the initial user namespace.
        if nix::unistd::geteuid().is_root() && !running_in_userns() {
            assert!(!rootless_cgroups(None).expect("auto"));
            assert!(!rootless_cgroups(Some("auto")).expect("auto"));
        }
    }

    #[test]
    fn initial_user_namespace_is_the_identity_map() {
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(!is_initial_map("         0       1000          1\n"));
        assert!(!is_initial_map("0 0 4294967295\n1 1 1\n"));
    }
}
