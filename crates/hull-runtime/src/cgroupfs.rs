//! The `cgroup` mount inside the container (`/sys/fs/cgroup`).
//!
//! Init takes its cgroup dirs from the parent (which makes them and moves
//! init in while init builds) and the host's hierarchies from the parent's
//! `/proc/self/mountinfo`, read before clone3; rootless, or in a joined
//! mount namespace, it reads both files itself (`/proc/self/cgroup` once it
//! has been moved). This works the same on v1, v2 and hybrid hosts:
//! - pure v2: with a cgroup namespace, a fresh cgroup2 mount (its root is the
//!   namespace root); without, a bind of the container's own cgroup dir;
//! - v1 / hybrid: a tmpfs, and under it one entry per host hierarchy (named
//!   like the host's mount point: `memory`, `cpu`, `unified`...), each a fresh
//!   mount in a cgroup namespace or a bind of the container's dir otherwise.
//!
//! The container never sees cgroups above its own. `ro` in the mount's
//! options is applied to every piece.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mkdirat, Mode};
use oci_spec::runtime::Mount;

use crate::cgroup::HostViews;
use crate::mounts::{self, MountError};
use crate::paths::{fd_path, open_in_root, Kind};

#[derive(Debug, thiserror::Error)]
pub enum CgroupfsError {
    #[error("reading {path}")]
    Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("mount cgroup {what} on {dest}")]
    Sys {
        what: String,
        dest: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One host cgroup hierarchy as init sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hier {
    /// `cgroup` or `cgroup2`.
    fstype: String,
    /// Host mount point, e.g. /sys/fs/cgroup/memory.
    mountpoint: PathBuf,
    /// Super options naming the controllers (`memory`, `name=systemd`).
    opts: String,
    /// The container's cgroup dir in this hierarchy, on the host.
    own_dir: PathBuf,
}

/// Parses mountinfo and /proc/self/cgroup into the hierarchies.
pub(crate) fn hierarchies(mountinfo: &str, self_cgroup: &str) -> Vec<Hier> {
    // "ID:controllers:/path" — v2 has ID 0 and empty controllers.
    let mut paths: HashMap<String, String> = HashMap::new();
    for line in self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        paths.insert(ctrls.to_string(), path.to_string());
    }
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let lf: Vec<&str> = left.split(' ').collect();
        let rf: Vec<&str> = right.split(' ').collect();
        if lf.len() < 5 || rf.len() < 3 || !(rf[0] == "cgroup" || rf[0] == "cgroup2") {
            continue;
        }
        let (root, mountpoint) = (lf[3], lf[4]);
        let opts = if rf[0] == "cgroup2" {
            String::new()
        } else {
            rf[2]
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let key = if rf[0] == "cgroup2" {
            String::new()
        } else {
            opts.clone()
        };
        let Some(own) = paths.get(&key).or_else(|| {
            paths
                .iter()
                .find(|(k, _)| {
                    !k.is_empty() && k.split(',').all(|c| opts.split(',').any(|o| o == c))
                })
                .map(|(_, v)| v)
        }) else {
            continue;
        };
        // The same hierarchy mounted twice (a rootless config binds the
        // host's /sys, cgroup mounts and all, into the rootfs): the first
        // mount, the host's own, is the one to use.
        if out
            .iter()
            .any(|h: &Hier| h.fstype == rf[0] && h.opts == opts)
        {
            continue;
        }
        let rel = Path::new(own).strip_prefix(root).unwrap_or(Path::new(""));
        out.push(Hier {
            fstype: rf[0].to_string(),
            mountpoint: PathBuf::from(mountpoint),
            opts,
            own_dir: Path::new(mountpoint).join(rel),
        });
    }
    out
}

fn sys(what: impl Into<String>, dest: &Path) -> impl FnOnce(nix::Error) -> CgroupfsError {
    let (what, dest) = (what.into(), dest.to_path_buf());
    move |source| CgroupfsError::Sys { what, dest, source }
}

fn read_proc(path: &'static str) -> Result<String, CgroupfsError> {
    hull_cgroups::read_proc(path).map_err(|source| CgroupfsError::Read { path, source })
}

/// Mounts config.mounts[index] (type cgroup/cgroup2) under `root`.
pub(crate) fn mount_cgroup(
    root: &File,
    index: usize,
    m: &Mount,
    cgroupns: bool,
    own_dirs: &[PathBuf],
    host: Option<&HostViews>,
) -> Result<(), CgroupfsError> {
    let mut hiers = match host {
        Some(h) => hierarchies(&h.mountinfo, &h.cgroup),
        None => hierarchies(
            &read_proc("/proc/self/mountinfo")?,
            &read_proc("/proc/self/cgroup")?,
        ),
    };
    // The cgroup the parent is moving init into, where it manages the
    // hierarchy: what /proc/self/cgroup will say once it has.
    for h in &mut hiers {
        if let Some(d) = own_dirs.iter().find(|d| d.starts_with(&h.mountpoint)) {
            h.own_dir = d.clone();
        }
    }
    let o = mounts::parse_options(index, m)?;
    let dest = m.destination();
    let flags = o.flags & !MsFlags::MS_REMOUNT;
    let target = || {
        open_in_root(root, dest, Some(Kind::Dir)).map_err(|source| {
            CgroupfsError::from(MountError::Target {
                dest: dest.to_path_buf(),
                source,
            })
        })
    };
    let pure_v2 = hiers.iter().all(|h| h.fstype == "cgroup2");
    if pure_v2 {
        if let Some(h) = hiers.first() {
            mount_one(h, &target, dest, cgroupns, flags)?;
        }
        return Ok(());
    }
    let t = target()?;
    mount(
        Some("tmpfs"),
        &fd_path(&t),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(sys("tmpfs", dest))?;
    // `t` is the directory under the tmpfs; the remount below needs the mount.
    let t = target()?;
    for h in &hiers {
        let Some(name) = h.mountpoint.file_name() else {
            continue;
        };
        // The tmpfs is new and nothing but this process has seen it, so its
        // entries are reached directly, not by a walk from the container's root.
        let sub = dest.join(name);
        mkdirat(&t, name, Mode::from_bits_truncate(0o755)).map_err(sys("mkdir", &sub))?;
        let open = || {
            let how = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            openat(&t, name, how, Mode::empty()).map_err(sys("open", &sub))
        };
        mount_one(h, &open, &sub, cgroupns, flags)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mounts::remount(&fd_path(&t), dest, flags)?;
    }
    Ok(())
}

/// One hierarchy at `dest`; `open` reaches it afresh (after a mount, the
/// path leads to the new mount, an old fd to what lies under it).
fn mount_one(
    h: &Hier,
    open: &dyn Fn() -> Result<OwnedFd, CgroupfsError>,
    dest: &Path,
    cgroupns: bool,
    flags: MsFlags,
) -> Result<(), CgroupfsError> {
    let t = open()?;
    let tpath = fd_path(&t);
    let tpath = tpath.as_path();
    let fresh = cgroupns.then(|| {
        let data = (!h.opts.is_empty()).then_some(h.opts.as_str());
        mount(Some("cgroup"), tpath, Some(h.fstype.as_str()), flags, data)
    });
    match fresh {
        Some(Ok(())) => {}
        // Inside a user namespace the kernel refuses some v1 hierarchies
        // (EBUSY/EPERM: only roots it already knows, with the exact options
        // of the host's mount); the container's own dir bound in its place
        // shows the same view, as runc does.
        Some(Err(e)) if !matches!(e, nix::Error::EBUSY | nix::Error::EPERM) => {
            return Err(sys(h.fstype.clone(), dest)(e));
        }
        _ => {
            mount(
                Some(&h.own_dir),
                tpath,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(format!("bind {}", h.own_dir.display()), dest))?;
            if !flags.is_empty() {
                mounts::remount(&fd_path(&open()?), dest, flags)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_hierarchies() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                  33 25 0:29 / /proc rw - proc proc rw\n";
        let cg = "4:memory:/a/c1\n9:name=systemd:/\n0::/c1\n";
        let h = hierarchies(mi, cg);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].own_dir, PathBuf::from("/sys/fs/cgroup/memory/a/c1"));
        assert_eq!(h[1].own_dir, PathBuf::from("/sys/fs/cgroup/unified/c1"));
        assert_eq!(h[2].opts, "xattr,name=systemd");
        assert_eq!(h[2].own_dir, PathBuf::from("/sys/fs/cgroup/systemd"));
    }

    #[test]
    fn a_hierarchy_mounted_twice_counts_once() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                  40 39 0:26 / /b/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let h = hierarchies(mi, "4:memory:/c1\n");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].own_dir, PathBuf::from("/sys/fs/cgroup/memory/c1"));
    }
}
