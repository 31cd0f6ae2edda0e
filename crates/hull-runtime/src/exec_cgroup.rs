//! `hullc exec --cgroup`: the exec'd process joins an existing sub-cgroup
//! of the container's cgroup instead of the container's cgroup itself
//! (runc's `exec --cgroup`, exec.bats). `PATH` alone names the same
//! sub-cgroup in every hierarchy (the only form on cgroup v2);
//! `CTRL[,CTRL]:PATH` names one per v1 controller, the others keep the
//! container's cgroup. PATH may not leave the container's cgroup, and the
//! sub-cgroup must exist (the container makes it, in its cgroupfs).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::cgroup::Cgroups;
use crate::process::GoErrno;

#[derive(Debug, thiserror::Error)]
pub enum ExecCgroupError {
    #[error("invalid --cgroup argument: {0}")]
    Invalid(String),
    #[error("invalid --cgroup argument: {0} (missing <controller>: prefix)")]
    MissingController(String),
    /// runc's words (exec.bats matches them).
    #[error("--cgroup: {0} is not a sub cgroup path")]
    NotSub(String),
    #[error("--cgroup: unknown controller {0} in the container's cgroups")]
    UnknownController(String),
    #[error("--cgroup: the container has no cgroup recorded")]
    NoCgroup,
    /// Go's errno text (lower-case), as runc: "... no such file or directory".
    #[error("--cgroup: adding pid {pid} to {path}: {errno}")]
    Enter {
        pid: i32,
        path: PathBuf,
        errno: GoErrno,
    },
}

/// The parsed `--cgroup` arguments: one path for all hierarchies, or one
/// per controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubCgroups {
    All(String),
    Per(BTreeMap<String, String>),
}

/// Parses runc's `[<controller>[,<controller>]:]<path>` arguments; `None`
/// when there are none.
pub(crate) fn parse(args: &[String]) -> Result<Option<SubCgroups>, ExecCgroupError> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut per = BTreeMap::new();
    for a in args {
        let parts: Vec<&str> = a.splitn(3, ':').collect();
        match parts[..] {
            [path] if args.len() == 1 => return Ok(Some(SubCgroups::All(path.to_string()))),
            [_] => return Err(ExecCgroupError::MissingController(a.clone())),
            [ctrls, path] => {
                for c in ctrls.split(',') {
                    per.insert(c.to_string(), path.to_string());
                }
            }
            _ => return Err(ExecCgroupError::Invalid(a.clone())),
        }
    }
    Ok(Some(SubCgroups::Per(per)))
}

/// `base` joined with `sub` lexically (a leading `/` is relative to
/// `base`); an error when `..` climbs above `base`.
fn below(base: &Path, sub: &str) -> Result<PathBuf, ExecCgroupError> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts
                    .pop()
                    .ok_or_else(|| ExecCgroupError::NotSub(sub.to_string()))?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts.iter().fold(base.to_path_buf(), |p, n| p.join(n)))
}

/// The directories the exec'd process joins: the container's cgroup in
/// every hierarchy, with the sub-cgroups `s` names.
pub(crate) fn dirs(cg: Option<&Cgroups>, s: &SubCgroups) -> Result<Vec<PathBuf>, ExecCgroupError> {
    let cg = cg.ok_or(ExecCgroupError::NoCgroup)?.cgroup();
    let paths = cg.paths();
    match s {
        SubCgroups::All(sub) => paths.iter().map(|p| below(p, sub)).collect(),
        SubCgroups::Per(per) => {
            // Controllers mounted together (cpu,cpuacct) share a directory:
            // one sub-cgroup for that directory, the first one named.
            let mut chosen: Vec<(PathBuf, PathBuf)> = Vec::new();
            for (ctrl, sub) in per {
                let base = cg
                    .v1_path(ctrl)
                    .ok_or_else(|| ExecCgroupError::UnknownController(ctrl.clone()))?;
                if !chosen.iter().any(|(b, _)| b == base) {
                    chosen.push((base.to_path_buf(), below(base, sub)?));
                }
            }
            Ok(paths
                .iter()
                .map(|p| {
                    chosen
                        .iter()
                        .find(|(b, _)| b == p)
                        .map_or_else(|| p.to_path_buf(), |(_, s)| s.clone())
                })
                .collect())
        }
    }
}

/// Moves `pid` into each of `dirs` (never creating a directory or file).
pub(crate) fn enter(dirs: &[PathBuf], pid: i32) -> Result<(), ExecCgroupError> {
    for d in dirs {
        let path = d.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .map_err(|e| ExecCgroupError::Enter {
                pid,
                errno: GoErrno(e.raw_os_error().unwrap_or(libc::EIO)),
                path: path.clone(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_as_runc() {
        assert_eq!(parse(&[]).expect("none"), None);
        assert_eq!(
            parse(&strings(&["sub"])).expect("all"),
            Some(SubCgroups::All("sub".into()))
        );
        let per = parse(&strings(&["memory:m", "cpu,cpuacct:c"]))
            .expect("per")
            .expect("some");
        let want: BTreeMap<String, String> = [("memory", "m"), ("cpu", "c"), ("cpuacct", "c")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(per, SubCgroups::Per(want));
        assert!(matches!(
            parse(&strings(&["a", "memory:b"])),
            Err(ExecCgroupError::MissingController(_))
        ));
        assert!(matches!(
            parse(&strings(&["a:b:c"])),
            Err(ExecCgroupError::Invalid(_))
        ));
    }

    #[test]
    fn sub_paths_stay_below_the_container_cgroup() {
        let base = Path::new("/sys/fs/cgroup/memory/ct");
        assert_eq!(below(base, "/").expect("root"), base);
        assert_eq!(below(base, "a/../b").expect("b"), base.join("b"));
        assert_eq!(below(base, "/x/./y").expect("xy"), base.join("x/y"));
        let e = below(base, "..").expect_err("parent");
        assert_eq!(e.to_string(), "--cgroup: .. is not a sub cgroup path");
        assert!(below(base, "a/../../ct").is_err());
    }
}
