//! Limits for rootless containers through a delegated cgroup v2 subtree (docs/rootless.md).
//!
//! A user may only manage cgroups the system delegated to them: on a pure cgroup v2 host, a
//! cgroup whose directory, `cgroup.procs` and `cgroup.subtree_control` belong to the user AND
//! that carries systemd's delegation mark, the xattr `trusted.delegate` or `user.delegate`
//! = `1` (systemd ≥ 251 sets both on every `Delegate=yes` unit's cgroup and removes them
//! from the others; its own `cg_is_delegated` reads them so). Ownership alone is not enough:
//! under `user@UID.service` every unit's cgroup belongs to the user, also those without
//! `Delegate=yes` (a terminal's `vte-spawn-*.scope`), whose processes are the user manager's
//! to place. An unprivileged reader never sees `trusted.*` (the kernel answers ENODATA without
//! CAP_SYS_ADMIN), so for a rootless hull it is `user.delegate` that counts. hull looks at its
//! own cgroup only (the `0::` line of /proc/self/cgroup): a parent that happens to belong to
//! the user is still systemd's to manage. On v1 and hybrid hosts the controllers are in v1
//! hierarchies no user is given, so nothing is delegated.
//!
//! cgroup v2's "no internal processes" rule (cgroup-v2.rst): a cgroup other than the root
//! that enables controllers for its children may hold no process itself, and the kernel
//! refuses the write to `cgroup.subtree_control` (EBUSY) while it does. The user's shell, hull,
//! the shims and the pause process all start in the delegated cgroup `D`, so before the first
//! container with limits (one without gets no cgroup: nothing of the user's moves for it)
//! hull moves every process of `D` into the leaf `D/hull-procs` (as podman's
//! MoveUnderCgroupSubtree and docker's dind script do), then enables `D`'s controllers in `D`
//! and in `D/hull`, the parent of the containers' cgroups `D/hull/ID` that hullc makes and
//! removes. A later hull, started from the moved shell, finds itself in `D/hull-procs` and
//! takes `D` again. Moving a process needs write access to `cgroup.procs` of the common
//! ancestor (`D`), which delegation gives.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The leaf that takes the processes of the delegated cgroup.
pub(crate) const LEAF: &str = "hull-procs";
/// The parent of the containers' cgroups, below the delegated cgroup.
pub(crate) const PARENT: &str = "hull";

/// Where to run hull instead: one long-lived delegated unit for all hull commands (a scope
/// per command would end with the command, leaving the containers' cgroupsPath dangling).
const HINT: &str = "run hull from a shell in a long-lived delegated unit, e.g. \
    `systemd-run --user --scope -p Delegate=yes --unit=hull $SHELL` (docs/rootless.md)";

/// Why rootless containers get no limits here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Only cgroup v1 hierarchies hold controllers (v1 or hybrid).
    NotV2,
    /// The user's cgroup (a path in the v2 hierarchy) is not theirs to manage.
    NotDelegated(String),
    /// The user's cgroup is theirs but lacks the delegation mark (`user.delegate`).
    Unmarked(String),
    /// /proc/self/cgroup or the hierarchy could not be read.
    Unknown(String),
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NotV2 => write!(
                f,
                "this host delegates none to users (rootless on cgroup v1 or hybrid)"
            ),
            Why::NotDelegated(p) => write!(
                f,
                "your cgroup {p} is not delegated to you (its cgroup.procs and \
                 cgroup.subtree_control are not yours); {HINT}"
            ),
            Why::Unmarked(p) => write!(
                f,
                "your cgroup {p} is not delegated to you (it is yours, but lacks the \
                 user.delegate=1 mark systemd sets on Delegate=yes units); {HINT}"
            ),
            Why::Unknown(e) => write!(f, "your cgroup could not be determined: {e}"),
        }
    }
}

/// The user's delegated cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated {
    /// Its directory under the cgroup2 mount.
    pub dir: PathBuf,
    /// Its path in the hierarchy (`/user.slice/.../app.slice/x.scope`).
    pub path: String,
    /// What its parent gives it (`cgroup.controllers`): what limits can use.
    pub controllers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("delegated cgroup: {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "delegated cgroup {path}: processes {pids:?} stay in it, so its controllers cannot be \
         enabled for containers (cgroup v2 allows no process beside child cgroups that use \
         controllers)"
    )]
    Busy { path: PathBuf, pids: Vec<i32> },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.into(),
        source,
    }
}

/// Whether this process's cgroup is a delegated v2 subtree (nothing is changed).
pub fn status() -> Result<Delegated, Why> {
    let h = hull_cgroups::Hierarchy::detect().map_err(|e| Why::Unknown(e.to_string()))?;
    let mount = match (h.mode(), h.unified_mount()) {
        (hull_cgroups::Mode::V2, Some(m)) => m.to_path_buf(),
        _ => return Err(Why::NotV2),
    };
    let own = hull_cgroups::read_proc("/proc/self/cgroup")
        .map_err(|e| Why::Unknown(format!("reading /proc/self/cgroup: {e}")))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| Why::Unknown("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    // SAFETY: geteuid cannot fail and touches no memory.
    status_in(&mount, own.trim(), unsafe { libc::geteuid() })
}

/// [`status`] for the cgroup `own` (a path in the hierarchy mounted at `mount`) and the user
/// `euid` (as this process's user namespace shows ids: the owner compares the same way).
pub(crate) fn status_in(mount: &Path, own: &str, euid: u32) -> Result<Delegated, Why> {
    let mut path = own.trim_end_matches('/').to_string();
    // Moved into our leaf by an earlier hull: the delegated cgroup is its parent.
    if let Some(parent) = path.strip_suffix(&format!("/{LEAF}")) {
        path = parent.to_string();
    }
    if path.is_empty() || path.contains("/..") {
        // The root cgroup is never delegated (and "/.." is outside our cgroup namespace).
        return Err(Why::NotDelegated(if path.is_empty() {
            "/".into()
        } else {
            path
        }));
    }
    let dir = mount.join(path.trim_start_matches('/'));
    let ours = |f: &str| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.uid() == euid);
    if !(ours("") && ours("cgroup.procs") && ours("cgroup.subtree_control")) {
        return Err(Why::NotDelegated(path));
    }
    if !marked(&dir) {
        return Err(Why::Unmarked(path));
    }
    let controllers = words(&dir.join("cgroup.controllers"));
    Ok(Delegated {
        dir,
        path,
        controllers,
    })
}

/// Whether `dir` carries systemd's delegation mark: `trusted.delegate` or `user.delegate`
/// reading `1` (systemd writes the one byte; a trailing newline from `echo` is forgiven).
fn marked(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(dir, name).is_some_and(|v| v.trim_ascii() == b"1"))
}

/// The value of the extended attribute `name` of `path` (at most 16 bytes), if readable.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both names are NUL-terminated C strings that outlive the call, and the kernel
    // writes at most buf.len() bytes into buf.
    let len = unsafe {
        libc::getxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    buf.get(..len).map(<[u8]>::to_vec)
}

fn words(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// How many times the move and the enabling are tried: a process of the user may fork
/// into the delegated cgroup between the read of `cgroup.procs` and the write (EBUSY).
const TRIES: usize = 10;

impl Delegated {
    /// Readies the delegated cgroup for containers (module docs): its processes in the leaf,
    /// its controllers enabled in it and in the containers' parent. Returns the parent's
    /// path in the hierarchy, for `linux.cgroupsPath`. Done again by every create: cheap
    /// when it is so already.
    pub(crate) fn prepare(&self) -> Result<String, Error> {
        let want = &self.controllers;
        if !enabled_all(&self.dir, want) {
            let leaf = self.dir.join(LEAF);
            mkdir(&leaf)?;
            let mut tries = 0;
            loop {
                move_all(&self.dir, &leaf);
                match enable(&self.dir, want) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries + 1 < TRIES => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        return Err(Error::Busy {
                            path: self.dir.clone(),
                            pids: pids(&self.dir),
                        })
                    }
                    Err(e) => return Err(io("enabling controllers in", &self.dir)(e)),
                }
            }
        }
        let parent = self.dir.join(PARENT);
        mkdir(&parent)?;
        if !enabled_all(&parent, want) {
            enable(&parent, want).map_err(io("enabling controllers in", &parent))?;
        }
        Ok(format!("{}/{PARENT}", self.path))
    }
}

fn mkdir(d: &Path) -> Result<(), Error> {
    match std::fs::create_dir(d) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io("creating", d)(e)),
        _ => Ok(()),
    }
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Moves every process of `dir` into `leaf`. One that exits meanwhile (ESRCH) or cannot be
/// moved is left: the enabling after it says EBUSY if something stayed.
fn move_all(dir: &Path, leaf: &Path) {
    let procs = leaf.join("cgroup.procs");
    for pid in pids(dir) {
        let _ = std::fs::write(&procs, pid.to_string());
    }
}

fn enabled_all(dir: &Path, want: &[String]) -> bool {
    let on = words(&dir.join("cgroup.subtree_control"));
    want.iter().all(|c| on.contains(c))
}

/// Enables `want` in `dir`'s `cgroup.subtree_control`, all in one write.
fn enable(dir: &Path, want: &[String]) -> std::io::Result<()> {
    if want.is_empty() {
        return Ok(());
    }
    let line: Vec<String> = want.iter().map(|c| format!("+{c}")).collect();
    std::fs::write(dir.join("cgroup.subtree_control"), line.join(" "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn euid() -> u32 {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }

    /// A fake cgroup `/u/app` under `mount`, files owned by the caller, without the mark.
    fn unmarked(mount: &Path) -> PathBuf {
        let d = mount.join("u/app");
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("cgroup.procs", "11\n12\n"),
            ("cgroup.subtree_control", ""),
            ("cgroup.controllers", "cpu memory pids\n"),
        ] {
            std::fs::write(d.join(f), v).unwrap();
        }
        d
    }

    /// [`unmarked`] with `user.delegate` set to `value`, as systemd marks a Delegate=yes unit.
    fn mark(d: &Path, value: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let p = std::ffi::CString::new(d.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated names and a value slice that outlive the call.
        let rc = unsafe {
            libc::setxattr(
                p.as_ptr(),
                c"user.delegate".as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }

    /// A fake delegated cgroup `/u/app` under `mount`: owned by the caller and marked.
    fn fake(mount: &Path) -> PathBuf {
        let d = unmarked(mount);
        mark(&d, b"1");
        d
    }

    #[test]
    fn an_owned_cgroup_without_the_mark_is_not_delegated() {
        let t = tempfile::tempdir().unwrap();
        let d = unmarked(t.path());
        let e = status_in(t.path(), "/u/app", euid()).unwrap_err();
        assert_eq!(e, Why::Unmarked("/u/app".into()));
        assert!(
            e.to_string().contains("/u/app is not delegated to you"),
            "{e}"
        );
        assert!(e.to_string().contains("--unit=hull $SHELL"), "{e}");
        mark(&d, b"0");
        assert_eq!(
            status_in(t.path(), "/u/app", euid()),
            Err(Why::Unmarked("/u/app".into()))
        );
        mark(&d, b"1\n");
        assert!(status_in(t.path(), "/u/app", euid()).is_ok());
    }

    #[test]
    fn own_cgroup_is_delegated_when_its_files_are_ours() {
        let t = tempfile::tempdir().unwrap();
        let d = fake(t.path());
        let got = status_in(t.path(), "/u/app", euid()).unwrap();
        assert_eq!(got.dir, d);
        assert_eq!(got.path, "/u/app");
        assert_eq!(got.controllers, ["cpu", "memory", "pids"]);
        // From the leaf an earlier hull moved us into: the same cgroup.
        let again = status_in(t.path(), "/u/app/hull-procs", euid()).unwrap();
        assert_eq!(again, got);
    }

    #[test]
    fn someone_elses_or_the_root_cgroup_is_not_delegated() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path());
        let other = euid().wrapping_add(1);
        assert_eq!(
            status_in(t.path(), "/u/app", other),
            Err(Why::NotDelegated("/u/app".into()))
        );
        assert_eq!(
            status_in(t.path(), "/", euid()),
            Err(Why::NotDelegated("/".into()))
        );
        let e = status_in(t.path(), "/u/missing", euid()).unwrap_err();
        assert!(e.to_string().contains("/u/missing is not delegated"), "{e}");
    }
}
