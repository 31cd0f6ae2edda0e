//! Rootless hull: an ordinary user's own storage and state, and the user namespace all of
//! that user's hull commands share (kept alive by a pause process, as podman does; see
//! `pause.rs` and docs/rootless.md).
//!
//! - storage: `$XDG_DATA_HOME/hull` (default `~/.local/share/hull`);
//! - state (pause pid, shim sockets): `$XDG_RUNTIME_DIR/hull`, or `/tmp/hull-$UID` with a
//!   warning when the session has no runtime dir (podman's fallback too);
//! - `--root` still wins for the storage.
//!
//! [`enter`] runs first thing in `hull`, while the process has one thread (setns into a
//! user namespace refuses a multithreaded caller). Children (shim, hullc, the `run -d --rm`
//! watcher) inherit the namespaces and learn the dirs from [`ENV_RUN`] / [`ENV_DATA`].

pub mod cgroup;
mod idmap;
pub(crate) mod net;
pub(crate) mod netns;
mod pause;
pub(crate) mod spec;
mod usernet;

pub(crate) use usernet::options as net_options;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use idmap::IdRange;

/// Set for everything hull starts inside the user namespace: the per-user run dir.
pub const ENV_RUN: &str = "_HULL_ROOTLESS_RUN";
/// Set with [`ENV_RUN`]: the per-user storage root.
pub const ENV_DATA: &str = "_HULL_ROOTLESS_DATA";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rootless: neither XDG_DATA_HOME nor HOME is set: cannot place your storage (or give --root)")]
    NoHome,
    #[error("rootless: {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rootless: {path} belongs to uid {owner}, not to you (uid {uid}): refusing to use it")]
    NotOurs { path: PathBuf, owner: u32, uid: u32 },
    #[error(transparent)]
    IdMap(#[from] idmap::Error),
    #[error(transparent)]
    Pause(#[from] pause::Error),
    #[error(transparent)]
    Spec(#[from] spec::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.into(),
        source,
    }
}

/// Where an unprivileged user's hull keeps things.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Images, containers, volumes, networks: the default `--root`.
    pub data: PathBuf,
    /// Pause process pid and lock, shim sockets: gone at logout, like `/run` at boot.
    pub run: PathBuf,
}

/// How this hull runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Real root (or root of a namespace that did not come from [`enter`]).
    Root,
    /// An ordinary user, now inside its user namespace.
    Rootless(Dirs),
}

/// The current user's dirs from the environment (not made yet).
pub fn user_dirs(uid: u32) -> Result<Dirs, Error> {
    let var = |v| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let data = match (var("XDG_DATA_HOME"), var("HOME")) {
        (Some(d), _) => d.join("hull"),
        (None, Some(h)) => h.join(".local/share/hull"),
        (None, None) => return Err(Error::NoHome),
    };
    let run = match var("XDG_RUNTIME_DIR").filter(|d| owned_by(d, uid)) {
        Some(d) => d.join("hull"),
        None => {
            let d = PathBuf::from(format!("/tmp/hull-{uid}"));
            // Said once, when the dir is made (and after each reset), not on every command.
            if !d.exists() {
                eprintln!(
                "WARN: XDG_RUNTIME_DIR is not set (or not yours): keeping hull's run state in {} \
                 (it does not go away at logout)",
                d.display()
            );
            }
            d
        }
    };
    Ok(Dirs { data, run })
}

fn owned_by(p: &Path, uid: u32) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

/// Makes `dir` (and its parents) 0700, refusing one that someone else owns: `/tmp/hull-$UID`
/// could have been made by another user to catch our sockets.
pub(crate) fn private_dir(dir: &Path, uid: u32) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("creating", dir))?;
    let m = std::fs::symlink_metadata(dir).map_err(io("reading", dir))?;
    if m.uid() != uid || !m.is_dir() {
        return Err(Error::NotOurs {
            path: dir.into(),
            owner: m.uid(),
            uid,
        });
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("chmod", dir))
}

/// Enters rootless mode when hull runs unprivileged: makes the user's dirs, joins (starting
/// it first if needed) the user's pause process's user and mount namespaces, and exports the
/// dirs to children. Inside already (a child of such a hull), just reads them back. Must run
/// while the process is single-threaded.
pub fn enter() -> Result<Mode, Error> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Ok(inherited().map_or(Mode::Root, Mode::Rootless));
    }
    let dirs = user_dirs(euid)?;
    private_dir(&dirs.run, euid)?;
    pause::join_or_start(&dirs.run, euid)?;
    export(&dirs);
    Ok(Mode::Rootless(dirs))
}

/// The dirs a rootless parent hull handed down, when we run inside its user namespace.
fn inherited() -> Option<Dirs> {
    let run = std::env::var_os(ENV_RUN).filter(|s| !s.is_empty())?;
    let data = std::env::var_os(ENV_DATA).filter(|s| !s.is_empty())?;
    in_user_namespace().then(|| Dirs {
        data: data.into(),
        run: run.into(),
    })
}

fn export(dirs: &Dirs) {
    // Only ever called from `enter`, before any thread exists (set_var is then sound).
    std::env::set_var(ENV_RUN, &dirs.run);
    std::env::set_var(ENV_DATA, &dirs.data);
    // The shim's socket dir (engine and shim read the same variable): /run/hull is root's.
    if std::env::var_os("HULL_SHIM_SOCKET_DIR").is_none() {
        std::env::set_var("HULL_SHIM_SOCKET_DIR", dirs.run.join("s"));
    }
}

/// The user's run dir when this process runs rootless.
pub fn run_dir() -> Option<PathBuf> {
    inherited().map(|d| d.run)
}

/// Whether this process runs rootless (inside a user's namespace that hull set up).
pub fn active() -> bool {
    inherited().is_some()
}

/// Whether we run in a user namespace other than the initial one, whose uid_map is the
/// identity over the whole range.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// Whether our namespace maps one id only (the user without subordinate ranges).
pub fn single_id_map() -> bool {
    uid_map().lines().filter(|l| !l.trim().is_empty()).count() == 1
}

/// The uids this process's user namespace maps (`inside outside count` lines, as in
/// /proc/self/uid_map): for `info`.
pub fn uid_map() -> String {
    std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default()
}

/// `hull info`'s rootless entries (`None` for root): that it is rootless, the id map, the
/// network and whether cgroup limits apply (podman shows the same facts).
pub fn info() -> Option<serde_json::Map<String, serde_json::Value>> {
    let dirs = inherited()?;
    let map: Vec<String> = uid_map()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    let mut m = serde_json::Map::new();
    m.insert("Rootless".into(), true.into());
    m.insert("Run Dir".into(), dirs.run.display().to_string().into());
    m.insert("ID Mappings".into(), map.join(", ").into());
    m.insert(
        "Network".into(),
        "pasta (user mode); user networks: bridges in the rootless netns".into(),
    );
    m.insert("Cgroup Limits".into(), limits_info().into());
    Some(m)
}

/// `info`'s "Cgroup Limits": whether rootless containers get limits, and through which
/// delegated cgroup and controllers.
fn limits_info() -> String {
    match cgroup::status() {
        Ok(d) if d.controllers.is_empty() => format!(
            "no: your delegated cgroup {} has no controllers (--memory, --cpus, --pids-limit \
             are refused)",
            d.path
        ),
        Ok(d) => format!(
            "yes: through your delegated cgroup {} (controllers: {})",
            d.path,
            d.controllers.join(" ")
        ),
        Err(why) => format!(
            "no: rootless without a delegated cgroup v2 subtree: {why} (--memory, --cpus, \
             --pids-limit are refused)"
        ),
    }
}

/// `system reset`'s rootless part, after the engine's: the user's whole storage (when `root`
/// is the per-user default; images and volumes too, as podman's reset), the run dir and
/// the pause process. Nothing outside the user's own dirs is touched. No-op for root.
pub fn reset_user(root: &Path) -> Result<(), Error> {
    let Some(dirs) = inherited() else {
        return Ok(());
    };
    if root == dirs.data {
        match std::fs::remove_dir_all(root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing", root)(e))
            }
            _ => {}
        }
    }
    // The parent of the containers' cgroups, empty now (hullc removed theirs); the leaf
    // with the user's processes stays, and so do the controllers enabled for it.
    if let Ok(d) = cgroup::status() {
        let _ = std::fs::remove_dir(d.dir.join(cgroup::PARENT));
    }
    reset_run_dir(&dirs)
}

/// Ends the user's pause process (its namespaces go when the last hull process leaves them)
/// and removes the run dir.
fn reset_run_dir(dirs: &Dirs) -> Result<(), Error> {
    // Held across the removal: a hull waiting on it finds its lock file gone then and
    // locks the new one (see `netns::lock`), never beside a newcomer.
    let _lock = netns::lock(&dirs.run).ok();
    pause::stop(&dirs.run);
    match std::fs::remove_dir_all(&dirs.run) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &dirs.run)(e)),
        _ => Ok(()),
    }
}
