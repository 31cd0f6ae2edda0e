//! Fake cgroupfs trees in a tempdir for unit tests.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Cgroup, Hierarchy};

pub(crate) struct Fake {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) h: Hierarchy,
}

impl Fake {
    /// v1 controllers (+ name=systemd) and an unified mount offering hugetlb.
    pub(crate) fn hybrid() -> Fake {
        Fake::build(true, true)
    }

    pub(crate) fn v1() -> Fake {
        Fake::build(true, false)
    }

    /// Pure v2; this process sits in /user/session.
    pub(crate) fn v2() -> Fake {
        Fake::build(false, true)
    }

    fn build(v1: bool, unified: bool) -> Fake {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_path_buf();
        let mut mi = String::new();
        let mut cg = String::new();
        if v1 {
            let hier: &[(&str, &str, &str)] = &[
                ("cpu", "cpu,cpuacct", "/"),
                ("cpuset", "cpuset", "/"),
                ("memory", "memory", "/own"),
                ("devices", "devices", "/"),
                ("freezer", "freezer", "/"),
                ("blkio", "blkio", "/"),
                ("pids", "pids", "/"),
                ("net", "net_cls,net_prio", "/"),
                ("systemd", "name=systemd", "/"),
            ];
            for (i, (dir, opts, own)) in hier.iter().enumerate() {
                fs::create_dir_all(base.join(dir)).expect("mkdir");
                mi += &format!(
                    "{} 1 0:{i} / {} rw - cgroup cgroup rw,{opts}\n",
                    40 + i,
                    base.join(dir).display()
                );
                cg += &format!("{}:{opts}:{own}\n", i + 1);
            }
            fs::write(base.join("cpuset/cpuset.cpus"), "0-3\n").expect("write");
            fs::write(base.join("cpuset/cpuset.mems"), "0\n").expect("write");
        }
        if unified {
            let dir = if v1 {
                base.join("unified")
            } else {
                base.clone()
            };
            fs::create_dir_all(&dir).expect("mkdir");
            let avail = if v1 {
                "hugetlb"
            } else {
                "cpu io memory pids cpuset hugetlb"
            };
            fs::write(dir.join("cgroup.controllers"), avail).expect("write");
            fs::write(dir.join("cgroup.subtree_control"), "").expect("write");
            mi += &format!("30 1 0:99 / {} rw - cgroup2 cgroup2 rw\n", dir.display());
            cg += if v1 { "0::/\n" } else { "0::/user/session\n" };
        }
        let h = Hierarchy::from_proc(&mi, &cg).expect("fake hierarchy");
        Fake { tmp, h }
    }

    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Resolve and create "/t" and create the given files in its directories
    /// (a real cgroupfs has them; the fake needs them because writes never
    /// create files).
    pub(crate) fn cgroup(&self, files: &[&str]) -> Cgroup {
        let cg = Cgroup::resolve(&self.h, Some("/t"), "x").expect("resolve");
        for p in cg.paths() {
            fs::create_dir_all(p).expect("mkdir");
        }
        if let Some(p) = cg.v1_path("cpuset") {
            touch(p, &["cpuset.cpus", "cpuset.mems"]);
        }
        cg.create().expect("create");
        for f in files {
            let (ctrl, name) = f.split_once(':').unwrap_or(("", f));
            let dir = if ctrl.is_empty() {
                cg.unified_path()
            } else {
                cg.v1_path(ctrl)
            };
            touch(dir.expect("dir for fake file"), &[name]);
        }
        cg
    }
}

pub(crate) fn touch(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).expect("mkdir");
    for f in files {
        let p = dir.join(f);
        if !p.exists() {
            fs::write(p, "").expect("touch");
        }
    }
}

pub(crate) fn read(p: &Path) -> String {
    fs::read_to_string(p).expect("read").trim_end().to_string()
}
