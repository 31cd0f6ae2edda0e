//! Host layout detection from /proc/self/mountinfo and /proc/self/cgroup.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// How cgroups are mounted on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only v1 hierarchies (possibly plus named ones), no cgroup2 mount.
    V1,
    /// Pure cgroup v2: a single unified hierarchy owns every controller.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd "hybrid"),
    /// usually at /sys/fs/cgroup/unified with few or no controllers.
    Hybrid,
}

/// One mounted hierarchy: where it is mounted, which part of the hierarchy
/// the mount shows, and where this process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// v1: controllers (and `name=…`) bound to the hierarchy; empty for cgroup2.
    pub(crate) controllers: Vec<String>,
    pub(crate) mount_point: PathBuf,
    /// Field 4 of mountinfo: the hierarchy path shown at `mount_point`.
    pub(crate) root: String,
    /// This process's cgroup in the hierarchy, from /proc/self/cgroup.
    pub(crate) own: String,
}

impl Mount {
    /// The directory of the caller's own cgroup, as seen through this mount.
    pub(crate) fn own_dir(&self) -> PathBuf {
        let rel = strip_root(&self.own, &self.root).unwrap_or_else(|| {
            // Happens in a cgroup namespace whose root is not the mount's
            // root (/proc/self/cgroup then shows "/.."): use the mount root.
            tracing::debug!(own = %self.own, root = %self.root, "own cgroup outside mount root");
            String::new()
        });
        join_rel(&self.mount_point, &rel)
    }
}

/// The host's cgroup layout. Built once per runtime invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub(crate) mode: Mode,
    pub(crate) v1: Vec<Mount>,
    pub(crate) unified: Option<Mount>,
}

impl Hierarchy {
    /// Detect the layout of the running host.
    pub fn detect() -> Result<Hierarchy, Error> {
        let read = |path: &str| {
            read_proc(path).map_err(|source| Error::Read {
                path: PathBuf::from(path),
                source,
            })
        };
        Hierarchy::from_proc(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)
    }

    /// Build from the texts of a mountinfo and a /proc/PID/cgroup file.
    /// Used by tests (mount points may point into a fake tree) and usable for
    /// another process's view.
    pub fn from_proc(mountinfo: &str, proc_cgroup: &str) -> Result<Hierarchy, Error> {
        let own = parse_proc_cgroup(proc_cgroup);
        let mut v1: Vec<Mount> = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            let Some((root, mount_point, fstype, super_opts)) = parse_mountinfo_line(line) else {
                continue;
            };
            match fstype {
                "cgroup2" if unified.is_none() => {
                    let own = own_path(&own, |c| c.is_empty());
                    unified = Some(Mount {
                        controllers: Vec::new(),
                        mount_point,
                        root,
                        own,
                    });
                }
                "cgroup" => {
                    let ctrls = v1_controllers(super_opts);
                    // A hierarchy may be bind-mounted more than once; keep the first.
                    if ctrls.is_empty() || v1.iter().any(|m| m.controllers == ctrls) {
                        continue;
                    }
                    let own = own_path(&own, |c| same_set(c, &ctrls));
                    v1.push(Mount {
                        controllers: ctrls,
                        mount_point,
                        root,
                        own,
                    });
                }
                _ => {}
            }
        }
        let real_v1 = v1
            .iter()
            .any(|m| m.controllers.iter().any(|c| !c.starts_with("name=")));
        let mode = match (real_v1, unified.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::V1,
            (false, true) => Mode::V2,
            (false, false) => return Err(Error::NoHierarchy),
        };
        if mode == Mode::V2 {
            // Named v1 hierarchies next to a pure v2 host are not ours to manage.
            v1.clear();
        }
        Ok(Hierarchy { mode, v1, unified })
    }

    /// V1, V2 or Hybrid.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The mount point of the cgroup2 hierarchy, if one is mounted.
    pub fn unified_mount(&self) -> Option<&Path> {
        self.unified.as_ref().map(|m| m.mount_point.as_path())
    }
}

/// A /proc text file whole, in one read at typical sizes (std's
/// `read_to_string` grows its buffer from 32 bytes for files that stat as
/// empty, one read per doubling, and mountinfo is formatted anew each time).
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// (controllers field, path) pairs of /proc/self/cgroup: "4:memory:/a/b".
fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

fn own_path(own: &[(String, String)], matches: impl Fn(&str) -> bool) -> String {
    own.iter()
        .find(|(c, _)| matches(c))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| "/".to_string())
}

fn same_set(proc_ctrls: &str, ctrls: &[String]) -> bool {
    let mut a: Vec<&str> = proc_ctrls.split(',').filter(|s| !s.is_empty()).collect();
    a.sort_unstable();
    let mut b: Vec<&str> = ctrls.iter().map(String::as_str).collect();
    b.sort_unstable();
    !a.is_empty() && a == b
}

/// Controllers of a v1 mount from its super options: everything that is not a
/// mount flag. `name=` is kept, it identifies named hierarchies.
fn v1_controllers(super_opts: &str) -> Vec<String> {
    const FLAGS: &[&str] = &[
        "rw",
        "ro",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "none",
        "favordynmods",
    ];
    let mut c: Vec<String> = super_opts
        .split(',')
        .filter(|o| !FLAGS.contains(o))
        .filter(|o| !o.contains('=') || o.starts_with("name="))
        .map(str::to_string)
        .collect();
    c.sort();
    c
}

/// (root, mount point, fstype, super options) of one mountinfo line.
fn parse_mountinfo_line(line: &str) -> Option<(String, PathBuf, &str, &str)> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_opts = post.next().unwrap_or("");
    let root = unescape(pre.get(3)?);
    let mount_point = PathBuf::from(unescape(pre.get(4)?));
    Some((root, mount_point, fstype, super_opts))
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `own` relative to `root` ("" when equal), None when outside it.
fn strip_root(own: &str, root: &str) -> Option<String> {
    let root = root.trim_end_matches('/');
    let rest = own.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    if rest.split('/').any(|c| c == "..") {
        return None;
    }
    Some(rest.trim_start_matches('/').to_string())
}

/// Join a relative cgroup path ("a/b", maybe empty) onto a directory.
pub(crate) fn join_rel(base: &Path, rel: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
        p.push(c);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MI: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 23 0:32 / /mnt/mem\\040copy rw,relatime - cgroup cgroup rw,memory
";
    const HYBRID_CG: &str = "\
5:name=systemd:/user.slice
4:memory:/process_api/abc
3:cpuset:/
2:cpu,cpuacct:/a
0::/user.slice
";

    #[test]
    fn hybrid_layout() {
        let h = Hierarchy::from_proc(HYBRID_MI, HYBRID_CG).expect("parse");
        assert_eq!(h.mode(), Mode::Hybrid);
        assert_eq!(h.v1.len(), 4, "{:?}", h.v1);
        let cpu = &h.v1[0];
        assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(cpu.own_dir(), Path::new("/sys/fs/cgroup/cpu,cpuacct/a"));
        let mem =
            h.v1.iter()
                .find(|m| m.controllers == ["memory"])
                .expect("memory");
        assert_eq!(mem.mount_point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(
            mem.own_dir(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc")
        );
        let sd =
            h.v1.iter()
                .find(|m| m.controllers == ["name=systemd"])
                .expect("systemd");
        assert_eq!(sd.own, "/user.slice");
        let u = h.unified.as_ref().expect("unified");
        assert_eq!(u.own_dir(), Path::new("/sys/fs/cgroup/unified/user.slice"));
        assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn pure_v1() {
        let mi = "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory\n\
                  36 31 0:33 / /cg/pids rw - cgroup cgroup rw,pids\n";
        let h = Hierarchy::from_proc(mi, "4:memory:/x\n3:pids:/\n").expect("parse");
        assert_eq!(h.mode(), Mode::V1);
        assert!(h.unified.is_none());
        assert_eq!(h.v1[0].own_dir(), Path::new("/cg/memory/x"));
    }

    #[test]
    fn pure_v2_ignores_named_v1() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
                  40 30 0:37 / /tmp/sd rw - cgroup cgroup rw,name=systemd\n";
        let h = Hierarchy::from_proc(mi, "1:name=systemd:/\n0::/user.slice/session-1.scope\n")
            .expect("parse");
        assert_eq!(h.mode(), Mode::V2);
        assert!(h.v1.is_empty());
        let u = h.unified.as_ref().expect("unified");
        assert_eq!(
            u.own_dir(),
            Path::new("/sys/fs/cgroup/user.slice/session-1.scope")
        );
    }

    #[test]
    fn namespaced_mount_root() {
        // A container whose cgroup mount shows only its own subtree.
        let mi = "30 23 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_proc(mi, "0::/docker/abc/sub\n").expect("parse");
        let u = h.unified.as_ref().expect("unified");
        assert_eq!(u.own_dir(), Path::new("/sys/fs/cgroup/sub"));
        let h = Hierarchy::from_proc(mi, "0::/../other\n").expect("parse");
        assert_eq!(
            h.unified.as_ref().expect("u").own_dir(),
            Path::new("/sys/fs/cgroup")
        );
    }

    #[test]
    fn no_cgroups() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
        assert!(matches!(
            Hierarchy::from_proc(mi, ""),
            Err(Error::NoHierarchy)
        ));
    }

    #[test]
    fn unescapes_mount_points() {
        let h = Hierarchy::from_proc(HYBRID_MI, HYBRID_CG).expect("parse");
        // The second memory mount is a duplicate and skipped.
        assert_eq!(
            h.v1.iter().filter(|m| m.controllers == ["memory"]).count(),
            1
        );
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\"), "/x\\");
    }

    #[test]
    fn detect_runs_on_this_host() {
        // Whatever the host is, detection must succeed where /proc is mounted.
        if Path::new("/proc/self/mountinfo").exists() {
            let h = Hierarchy::detect();
            assert!(h.is_ok() || matches!(h, Err(Error::NoHierarchy)));
        }
    }
}
