//! Small cgroupfs file helpers: every kernel interaction by path goes through here.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use crate::Error;

/// Read a cgroup file, trimming the trailing newline.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Write `value` to `dir/file` in a single write(2).
///
/// cgroupfs parses each write() separately, so the value must go in one call;
/// the file is never created (O_CREAT on kernfs gives a misleading EACCES),
/// so a controller file that does not exist surfaces as ENOENT naming it.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let path = dir.join(file);
    tracing::trace!(path = %path.display(), value, "cgroup write");
    let res = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    res.map_err(|source| Error::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// Writes each of `values` to `dir/file` in its own write(2) through one
/// open file: for files that take one entry per write (v1 devices.allow),
/// this spares an open and a close per entry. On a regular file (a fake
/// tree in tests) the entries end up one per line.
pub(crate) fn write_each<'a>(
    dir: &Path,
    file: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), Error> {
    let path = dir.join(file);
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|source| Error::Write {
            path: path.clone(),
            value: String::new(),
            source,
        })?;
    for value in values {
        tracing::trace!(path = %path.display(), value, "cgroup write");
        // The kernel parses a trailing newline away, as after `echo`.
        f.write_all(format!("{value}\n").as_bytes())
            .map_err(|source| Error::Write {
                path: path.clone(),
                value: value.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Whether `dir/file` exists (used to probe optional kernel features).
pub(crate) fn has(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Read an unsigned integer file; "max" reads as `u64::MAX` like runc.
pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let s = read(path)?;
    parse_u64(path, &s)
}

pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64, Error> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse::<u64>().map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("{s:?} is not an unsigned integer: {e}"),
    })
}

/// Parse a flat-keyed file ("key value" per line: memory.stat, cpu.stat, …).
pub(crate) fn read_keyed(path: &Path) -> Result<HashMap<String, u64>, Error> {
    let s = read(path)?;
    let mut map = HashMap::new();
    for line in s.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            map.insert(k.to_string(), parse_u64(path, v)?);
        }
    }
    Ok(map)
}

/// PIDs listed in `dir/cgroup.procs` (missing directory → empty).
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>, Error> {
    let path = dir.join("cgroup.procs");
    let s = match fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse::<i32>().map_err(|e| Error::Parse {
                path: path.clone(),
                reason: format!("bad pid {l:?}: {e}"),
            })
        })
        .collect()
}

/// Sub-directories of `dir` (child cgroups), depth-first, children before parents.
pub(crate) fn subdirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for ent in rd.flatten() {
            if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                subdirs_post_order(&ent.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// rmdir one cgroup directory, retrying EBUSY: the kernel keeps a cgroup busy
/// for a short while after its last task exited (runc retries the same way).
pub(crate) fn rmdir_retry(dir: &Path) -> Result<(), Error> {
    let mut delay = Duration::from_millis(10);
    for attempt in 0..8 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 7 => {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(e) if is_fake_fs_nonempty(&e) => return remove_fake(dir),
            Err(source) => {
                return Err(Error::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// On cgroupfs a directory's control files vanish with rmdir, but on a fake
/// tree (tests, or a plain directory) they are real files: ENOTEMPTY there
/// means "only regular files left", which we may delete.
fn is_fake_fs_nonempty(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTEMPTY)
}

fn remove_fake(dir: &Path) -> Result<(), Error> {
    let only_files = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .all(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        })
        .unwrap_or(false);
    let res = if only_files && !is_cgroupfs(dir) {
        fs::remove_dir_all(dir)
    } else {
        fs::remove_dir(dir)
    };
    res.map_err(|source| Error::Rmdir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether `path` lives on cgroupfs (v1 or v2), via statfs f_type.
pub(crate) fn is_cgroupfs(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => {
            let t = st.filesystem_type();
            t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
        }
        Err(_) => false,
    }
}

/// Poll `check` until it returns true or ~`timeout` passes.
pub(crate) fn poll(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, Error>,
) -> Result<bool, Error> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if check()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
