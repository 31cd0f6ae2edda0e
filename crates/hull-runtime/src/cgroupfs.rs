//! The `cgroup` mount inside the container (`/sys/fs/cgroup`).
//!
//! Init reads where it sits from `/proc/self/cgroup` (the parent has already
//! placed it) and the host's hierarchies from `/proc/self/mountinfo`, so this
//! works the same on v1, v2 and hybrid hosts:
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
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

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

/// Mounts config.mounts[index] (type cgroup/cgroup2) under `root`.
pub(crate) fn mount_cgroup(
    root: &File,
    index: usize,
    m: &Mount,
    cgroupns: bool,
) -> Result<(), CgroupfsError> {
    let read = |path: &'static str| {
        std::fs::read_to_string(path).map_err(|source| CgroupfsError::Read { path, source })
    };
    let hiers = hierarchies(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?);
    let o = mounts::parse_options(index, m)?;
    let dest = m.destination();
    let flags = o.flags & !MsFlags::MS_REMOUNT;
    let target = |p: &Path| {
        open_in_root(root, p, Some(Kind::Dir)).map_err(|source| MountError::Target {
            dest: p.to_path_buf(),
            source,
        })
    };
    let pure_v2 = hiers.iter().all(|h| h.fstype == "cgroup2");
    if pure_v2 {
        if let Some(h) = hiers.first() {
            mount_one(h, root, dest, cgroupns, flags)?;
        }
        return Ok(());
    }
    let t = target(dest)?;
    mount(
        Some("tmpfs"),
        &fd_path(&t),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(sys("tmpfs", dest))?;
    // `t` is the directory under the tmpfs; the remount below needs the mount.
    let t = target(dest)?;
    for h in &hiers {
        let Some(name) = h.mountpoint.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        mount_one(h, root, &sub, cgroupns, flags)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        mounts::remount(&fd_path(&t), dest, flags)?;
    }
    Ok(())
}

fn mount_one(
    h: &Hier,
    root: &File,
    dest: &Path,
    cgroupns: bool,
    flags: MsFlags,
) -> Result<(), CgroupfsError> {
    let open = |kind| {
        open_in_root(root, dest, kind).map_err(|source| MountError::Target {
            dest: dest.to_path_buf(),
            source,
        })
    };
    let t = open(Some(Kind::Dir))?;
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
                mounts::remount(&fd_path(&open(None)?), dest, flags)?;
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
}
