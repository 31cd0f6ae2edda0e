//! One container's cgroup: path resolution, creation, membership, removal.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::{join_rel, Mount};
use crate::{fs as cgfs, Error, Hierarchy, LinuxResources, Mode};

/// A cgroup directory together with the mount point of its hierarchy (needed
/// to walk parents: cpuset inheritance on v1, subtree_control on v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dir {
    pub(crate) mount: PathBuf,
    pub(crate) path: PathBuf,
}

impl Dir {
    /// Directories strictly between the mount point and `path`, then `path`.
    pub(crate) fn chain(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut p = self.path.as_path();
        while p != self.mount && p.starts_with(&self.mount) {
            out.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        out.reverse();
        out
    }
}

/// One container's cgroup: its directory in every hierarchy of the host.
/// Serializable so the runtime can keep it in its state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    pub(crate) mode: Mode,
    /// v1 controller (or `name=…`) → directory; co-mounted controllers
    /// (cpu,cpuacct) map to the same directory.
    pub(crate) v1: BTreeMap<String, Dir>,
    /// The directory in the cgroup2 hierarchy (pure v2, or hybrid's unified mount).
    pub(crate) unified: Option<Dir>,
}

/// Where a resource is written: a v1 controller directory or a v2 directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    /// Resolve `linux.cgroupsPath` against the host layout.
    ///
    /// Absolute paths are used as given below each hierarchy's mount point.
    /// Relative paths (and `None`, meaning `default_name`) go below the
    /// caller's own cgroup in each hierarchy, as runc does; on pure v2 runc
    /// uses the *parent* of the caller's cgroup, because the caller's own
    /// cgroup has processes and so could not enable controllers for children
    /// (the "no internal processes" rule) — we do the same.
    pub fn resolve(
        h: &Hierarchy,
        cgroups_path: Option<&str>,
        default_name: &str,
    ) -> Result<Cgroup, Error> {
        let raw = cgroups_path
            .filter(|p| !p.is_empty())
            .unwrap_or(default_name);
        let rel = clean(raw)?;
        let absolute = raw.starts_with('/');
        let place = |m: &Mount, parent_of_own: bool| -> Dir {
            let base = if absolute {
                m.mount_point.clone()
            } else {
                let own = m.own_dir();
                match own.parent() {
                    Some(p) if parent_of_own && own != m.mount_point => p.to_path_buf(),
                    _ => own,
                }
            };
            Dir {
                mount: m.mount_point.clone(),
                path: join_rel(&base, &rel),
            }
        };
        let mut v1 = BTreeMap::new();
        for m in &h.v1 {
            let dir = place(m, false);
            for c in &m.controllers {
                v1.insert(c.clone(), dir.clone());
            }
        }
        let unified = h.unified.as_ref().map(|m| place(m, h.mode == Mode::V2));
        Ok(Cgroup {
            mode: h.mode,
            v1,
            unified,
        })
    }

    /// The host mode this cgroup was resolved for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Every distinct directory of this cgroup (v1 hierarchies, then unified).
    pub fn paths(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for d in self.v1.values().chain(self.unified.as_ref()) {
            if !out.contains(&d.path.as_path()) {
                out.push(&d.path);
            }
        }
        out
    }

    /// The directory of one v1 controller (e.g. "memory", "name=systemd").
    pub fn v1_path(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(|d| d.path.as_path())
    }

    /// The directory in the cgroup2 hierarchy, if one is mounted.
    pub fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|d| d.path.as_path())
    }

    /// `create_for` a container without limits.
    pub fn create(&self) -> Result<(), Error> {
        self.create_for(&LinuxResources::default())
    }

    /// mkdir -p in every hierarchy, then the per-hierarchy fix-ups that make
    /// the cgroup usable: v1 cpuset needs cpus/mems before a task may join;
    /// pure v2 needs controllers enabled in every ancestor's subtree_control
    /// and a `cgroup.type` that fits `r` (see create_v2: a "domain invalid"
    /// directory becomes "threaded" unless `r` sets memory, io, cpu or
    /// hugetlb limits, which are an error in any threaded state).
    pub fn create_for(&self, r: &LinuxResources) -> Result<(), Error> {
        if let (Mode::V2, Some(u)) = (self.mode, &self.unified) {
            return crate::create_v2::create(u, r);
        }
        for p in self.paths() {
            fs::create_dir_all(p).map_err(|source| Error::Mkdir {
                path: p.to_path_buf(),
                source,
            })?;
        }
        if let Some(d) = self.v1.get("cpuset") {
            crate::cpu::ensure_cpuset(d)?;
        }
        Ok(())
    }

    /// An O_DIRECTORY fd of the v2 cgroup for clone3(CLONE_INTO_CGROUP);
    /// only on pure v2, where that single directory is the whole cgroup.
    pub fn unified_dir(&self) -> Option<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let u = self.unified.as_ref().filter(|_| self.mode == Mode::V2)?;
        // Not O_PATH: the kernel's fdget() ignores O_PATH files, so clone3
        // would reject them with EBADF.
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&u.path)
            .map_err(|e| tracing::debug!(path = %u.path.display(), error = %e, "open unified dir"))
            .ok()
    }

    /// On pure v2: an O_DIRECTORY fd of the cgroup `pid` is in now, when that is this
    /// cgroup or one below it. A container may move its init into a sub-cgroup and then
    /// enable a domain controller in its own cgroup; from then on the kernel refuses new
    /// processes there (EBUSY: no internal processes), and an exec joins init's cgroup
    /// instead, as runc's setnsProcess does (runc issue 2356).
    pub fn v2_dir_of(&self, pid: i32) -> Option<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let u = self.unified.as_ref().filter(|_| self.mode == Mode::V2)?;
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = u.mount.join(rel.trim_start_matches('/'));
        // Only inside the container's own cgroup: never a directory the container
        // could not have made itself (`..` cannot appear in the kernel's paths).
        if dir == u.path || !dir.starts_with(&u.path) {
            return None;
        }
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .ok()
    }

    /// Move `pid` (all its threads) into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        for p in self.paths() {
            cgfs::write(p, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// All processes in the cgroup and its descendants, in any hierarchy.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let mut all = Vec::new();
        for p in self.paths() {
            let mut dirs = Vec::new();
            cgfs::subdirs_post_order(p, &mut dirs);
            for d in dirs {
                all.extend(cgfs::procs(&d)?);
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    /// Whether the cgroup directory exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.paths().iter().any(|p| p.is_dir())
    }

    /// rmdir in every hierarchy when that is all there is to do: the cgroup
    /// has no processes and no child cgroups, as after its init was reaped
    /// in a pid namespace. One syscall per hierarchy, where `pids` and
    /// `destroy` list every directory's tasks and sub-directories. `false`
    /// at the first directory the kernel refuses (EBUSY: tasks or children);
    /// the caller then kills and destroys the rest. Missing ones are fine.
    pub fn remove_if_empty(&self) -> bool {
        self.paths().iter().all(|p| match fs::remove_dir(p) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
    }

    /// rmdir in every hierarchy, children first. Missing directories are fine;
    /// errors are collected and the remaining directories still attempted.
    pub fn destroy(&self) -> Result<(), Error> {
        let mut errs = Vec::new();
        for p in self.paths() {
            let mut dirs = Vec::new();
            cgfs::subdirs_post_order(p, &mut dirs);
            for d in dirs {
                if let Err(e) = cgfs::rmdir_retry(&d) {
                    errs.push(e);
                }
            }
        }
        Error::collect(errs)
    }

    /// Where controller `v1`/`v2` lives for reading: the v1 hierarchy if
    /// mounted, else the unified directory if the v2 controller is enabled
    /// there. Never changes anything. `None`: not available.
    pub(crate) fn target(&self, v1: &str, v2: &str) -> Result<Option<Target<'_>>, Error> {
        if let Some(d) = self.v1.get(v1) {
            return Ok(Some(Target::V1(&d.path)));
        }
        match &self.unified {
            Some(u) if controllers(&u.path).iter().any(|c| c == v2) => {
                Ok(Some(Target::V2(&u.path)))
            }
            _ => Ok(None),
        }
    }

    /// Where to write a resource: like `target`, but a v2 controller that the
    /// host offers and is not yet enabled for this cgroup gets enabled in the
    /// ancestors first (hybrid hosts keep unified-only controllers such as
    /// hugetlb off by default). Missing everywhere: an error naming `resource`.
    pub(crate) fn need(
        &self,
        resource: &'static str,
        v1: &'static str,
        v2: &'static str,
    ) -> Result<Target<'_>, Error> {
        if let Some(t) = self.target(v1, v2)? {
            return Ok(t);
        }
        match &self.unified {
            Some(u) if controllers(&u.mount).iter().any(|c| c == v2) => {
                enable_controller(u, v2)?;
                Ok(Target::V2(&u.path))
            }
            _ => Err(Error::ControllerMissing {
                resource,
                controller: v1,
            }),
        }
    }
}

/// Lexically clean a cgroups path into "a/b/c", rejecting `..` that escapes.
fn clean(raw: &str) -> Result<String, Error> {
    let mut parts: Vec<&str> = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::InvalidPath {
                        path: raw.to_string(),
                        reason: "\"..\" escapes the cgroup root".into(),
                    });
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(Error::InvalidPath {
            path: raw.to_string(),
            reason: "resolves to the cgroup root".into(),
        });
    }
    Ok(parts.join("/"))
}

/// Controllers listed in `dir/cgroup.controllers` (empty when unreadable).
pub(crate) fn controllers(dir: &Path) -> Vec<String> {
    cgfs::read(&dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Enable one controller from the mount root down to the parent of `u`.
fn enable_controller(u: &Dir, ctrl: &str) -> Result<(), Error> {
    let mut ancestors = vec![u.mount.clone()];
    let chain = u.chain();
    ancestors.extend(chain.iter().take(chain.len().saturating_sub(1)).cloned());
    for d in ancestors {
        let enabled = cgfs::read(&d.join("cgroup.subtree_control")).unwrap_or_default();
        if !enabled.split_whitespace().any(|c| c == ctrl) {
            cgfs::write(&d, "cgroup.subtree_control", &format!("+{ctrl}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a/b/").expect("ok"), "a/b");
        assert_eq!(clean("a/./b/../c").expect("ok"), "a/c");
        assert!(clean("../x").is_err());
        assert!(clean("/a/../../x").is_err());
        assert!(clean("/").is_err());
    }

    #[test]
    fn resolve_relative_v1_uses_own_cgroup() {
        let f = Fake::hybrid();
        let cg = Cgroup::resolve(&f.h, None, "ctr1").expect("resolve");
        assert_eq!(cg.v1_path("memory"), Some(f.p("memory/own/ctr1").as_path()));
        assert_eq!(cg.v1_path("cpu"), Some(f.p("cpu/ctr1").as_path()));
        assert_eq!(cg.v1_path("cpuacct"), cg.v1_path("cpu"));
        assert_eq!(
            cg.v1_path("name=systemd"),
            Some(f.p("systemd/ctr1").as_path())
        );
        assert_eq!(cg.unified_path(), Some(f.p("unified/ctr1").as_path()));
        let json = serde_json::to_string(&cg).expect("ser");
        let back: Cgroup = serde_json::from_str(&json).expect("de");
        assert_eq!(back, cg);
    }

    #[test]
    fn resolve_absolute_and_v2_parent_rule() {
        let f = Fake::v2();
        let cg = Cgroup::resolve(&f.h, Some("/hull/c1"), "ignored").expect("resolve");
        assert_eq!(cg.unified_path(), Some(f.p("hull/c1").as_path()));
        // Own cgroup is /user/session: relative paths go below its parent.
        let cg = Cgroup::resolve(&f.h, Some("c2"), "x").expect("resolve");
        assert_eq!(cg.unified_path(), Some(f.p("user/c2").as_path()));
        assert!(Cgroup::resolve(&f.h, Some("../../etc"), "x").is_err());
    }

    #[test]
    fn create_add_pids_destroy_fake_v2() {
        let f = Fake::v2();
        let cg = Cgroup::resolve(&f.h, Some("/hull/c1"), "x").expect("resolve");
        cg.create().expect("create");
        assert_eq!(
            read(&f.p("cgroup.subtree_control")),
            "+cpu +io +memory +pids +cpuset +hugetlb"
        );
        assert!(cg.exists());
        assert!(cg.unified_dir().is_some());
        touch(&f.p("hull/c1"), &["cgroup.procs"]);
        cg.add_process(42).expect("add");
        assert_eq!(read(&f.p("hull/c1/cgroup.procs")), "42");
        fs::create_dir_all(f.p("hull/c1/sub")).expect("mkdir");
        fs::write(f.p("hull/c1/sub/cgroup.procs"), "7\n9\n").expect("write");
        assert_eq!(cg.pids().expect("pids"), vec![7, 9, 42]);
        cg.destroy().expect("destroy");
        assert!(!cg.exists());
        cg.destroy().expect("destroy twice is fine");
    }

    #[test]
    fn create_v1_copies_cpuset() {
        let f = Fake::hybrid();
        let cg = Cgroup::resolve(&f.h, Some("/a/b"), "x").expect("resolve");
        for d in ["cpuset/a", "cpuset/a/b"] {
            fs::create_dir_all(f.p(d)).expect("mkdir");
            touch(&f.p(d), &["cpuset.cpus", "cpuset.mems"]);
        }
        cg.create().expect("create");
        assert_eq!(read(&f.p("cpuset/a/b/cpuset.cpus")), "0-3");
        assert_eq!(read(&f.p("cpuset/a/cpuset.mems")), "0");
        assert!(cg.unified_dir().is_none(), "only on pure v2");
    }
}
