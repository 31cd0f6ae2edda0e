//! The container's mounts: `config.mounts`, mount options and propagation.
//!
//! Each mount is one small step (as crun's `libcrun_set_*`): resolve the
//! target inside the rootfs (paths.rs), mount onto the resolved fd, remount
//! bind mounts for their flags (the kernel ignores flags on the first bind),
//! then apply propagation, which needs a mount call of its own.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use crate::mountattr::RecAttr;
use crate::paths::{fd_path, open_in_root, Kind};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Label(crate::lsm::LsmError),
    #[error("mounts[{index}] ({dest}): unknown option {option:?}")]
    Option {
        index: usize,
        dest: PathBuf,
        option: String,
    },
    #[error("mount {what} on {dest}")]
    Mount {
        what: String,
        dest: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("preparing mount target {dest}")]
    Target {
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounts[{index}] ({dest}): recursive options (mount_setattr)")]
    RecAttr {
        index: usize,
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount source {src}")]
    Source {
        src: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A mount's options split the way mount(2) wants them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) flags: MsFlags,
    pub(crate) propagation: Vec<MsFlags>,
    pub(crate) data: Vec<String>,
    pub(crate) bind: bool,
    pub(crate) recursive: bool,
    /// `rro`, `rnosuid`, ...: for this mount and every mount below it.
    pub(crate) rec: RecAttr,
}

impl Options {
    /// A tmpfs or `/dev` is made read-only (and gets its recursive
    /// attributes) only in [`finalize`], after everything mounted or created
    /// in it (runc's mountPropagate/finalizeRootfs): `/dev` mounted `ro`
    /// must still take its device nodes and the `/dev/pts` mount point.
    fn deferred(&self, m: &Mount) -> bool {
        !self.bind && (m.typ().as_deref() == Some("tmpfs") || m.destination() == Path::new("/dev"))
    }
}

/// Flags that set (`true`) or clear (`false`) a mount flag, as in mount(8).
const FLAGS: &[(&str, bool, MsFlags)] = &[
    ("ro", true, MsFlags::MS_RDONLY),
    ("rw", false, MsFlags::MS_RDONLY),
    ("nosuid", true, MsFlags::MS_NOSUID),
    ("suid", false, MsFlags::MS_NOSUID),
    ("nodev", true, MsFlags::MS_NODEV),
    ("dev", false, MsFlags::MS_NODEV),
    ("noexec", true, MsFlags::MS_NOEXEC),
    ("exec", false, MsFlags::MS_NOEXEC),
    ("sync", true, MsFlags::MS_SYNCHRONOUS),
    ("async", false, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", true, MsFlags::MS_DIRSYNC),
    ("remount", true, MsFlags::MS_REMOUNT),
    ("mand", true, MsFlags::MS_MANDLOCK),
    ("nomand", false, MsFlags::MS_MANDLOCK),
    ("noatime", true, MsFlags::MS_NOATIME),
    ("atime", false, MsFlags::MS_NOATIME),
    ("nodiratime", true, MsFlags::MS_NODIRATIME),
    ("diratime", false, MsFlags::MS_NODIRATIME),
    ("relatime", true, MsFlags::MS_RELATIME),
    ("norelatime", false, MsFlags::MS_RELATIME),
    ("strictatime", true, MsFlags::MS_STRICTATIME),
    ("nostrictatime", false, MsFlags::MS_STRICTATIME),
    ("lazytime", true, MsFlags::MS_LAZYTIME),
    ("nolazytime", false, MsFlags::MS_LAZYTIME),
    ("silent", true, MsFlags::MS_SILENT),
    ("loud", false, MsFlags::MS_SILENT),
];

const PROPAGATION: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// Looks up a propagation keyword (also used for `rootfsPropagation`).
pub(crate) fn propagation_flag(name: &str) -> Option<MsFlags> {
    PROPAGATION
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
}

/// Splits mount options. Anything that looks like `key=value` or is not a
/// known flag goes to the filesystem as data (`mode=755`, `size=65536k`,
/// `newinstance`, ...), as runc does; only options that hull cannot honour
/// at all are errors.
pub(crate) fn parse_options(index: usize, m: &Mount) -> Result<Options, MountError> {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        rec: RecAttr::default(),
    };
    for opt in m.options().iter().flatten() {
        let opt = opt.as_str();
        if o.rec.apply(opt) {
            continue;
        }
        if let Some((_, set, f)) = FLAGS.iter().find(|(n, _, _)| *n == opt) {
            if *set {
                o.flags |= *f;
            } else {
                o.flags &= !*f;
            }
        } else if let Some(p) = propagation_flag(opt) {
            o.propagation.push(p);
        } else if opt == "bind" || opt == "rbind" {
            o.bind = true;
            o.recursive |= opt == "rbind";
        } else if matches!(opt, "idmap" | "ridmap" | "tmpcopyup")
            || opt.starts_with("X-")
            || opt.is_empty()
        {
            return Err(MountError::Option {
                index,
                dest: m.destination().clone(),
                option: opt.to_string(),
            });
        } else {
            o.data.push(opt.to_string());
        }
    }
    if m.typ().as_deref() == Some("bind") {
        o.bind = true;
    }
    Ok(o)
}

fn mount_err(what: impl Into<String>, dest: &Path) -> impl FnOnce(nix::Error) -> MountError {
    let what = what.into();
    let dest = dest.to_path_buf();
    move |source| MountError::Mount { what, dest, source }
}

/// Mounts one `config.mounts` entry under `root` (the rootfs, still at its
/// host path; we have not pivoted yet). `src_fd` is a bind source opened by
/// the parent outside the user namespace (bindsrc.rs).
pub(crate) fn mount_entry(
    root: &File,
    index: usize,
    m: &Mount,
    label: Option<&str>,
    src_fd: Option<&OwnedFd>,
) -> Result<(), MountError> {
    let mut o = parse_options(index, m)?;
    let dest = m.destination();
    let deferred = o.deferred(m);
    if deferred {
        o.flags &= !MsFlags::MS_RDONLY;
    }
    let src = match src_fd {
        Some(fd) => fd_path(fd),
        None => m.source().clone().unwrap_or_else(|| PathBuf::from("none")),
    };
    let kind = if o.bind {
        bind_kind(m, &src, src_fd)?
    } else {
        Kind::Dir
    };
    if m.typ().as_deref() == Some("tmpfs") && !o.bind {
        if let Some(mode) = existing_mode(root, dest) {
            // runc: a tmpfs over an existing directory takes its mode
            // (setuid/setgid/sticky included) unless the options say mode=;
            // the later option wins in the kernel's parser.
            o.data.insert(0, format!("mode={mode:04o}"));
        }
    }
    let target = open_in_root(root, dest, Some(kind)).map_err(|source| MountError::Target {
        dest: dest.clone(),
        source,
    })?;
    if o.bind {
        bind_mount(&src, &fd_path(&target), dest, &o)?;
    } else {
        let fstype = m.typ().clone().unwrap_or_else(|| "none".into());
        crate::lsm::label_data(&mut o.data, &fstype, label);
        fs_mount(&src, &fd_path(&target), dest, &fstype, &o)?;
    }
    // `target` names the directory under the new mount; the remount and the
    // propagation change must reach the mount itself, so resolve again.
    let mounted = open_in_root(root, dest, None).map_err(|source| MountError::Target {
        dest: dest.clone(),
        source,
    })?;
    let tpath = fd_path(&mounted);
    if m.typ().as_deref() == Some("mqueue") {
        crate::lsm::label_mqueue(&tpath, dest, label).map_err(MountError::Label)?;
    }
    let extra = o.flags & !MsFlags::MS_REMOUNT;
    if o.bind && !extra.is_empty() {
        remount(&tpath, dest, extra)?;
    }
    for p in &o.propagation {
        mount(None::<&str>, &tpath, None::<&str>, *p, None::<&str>)
            .map_err(mount_err("propagation", dest))?;
    }
    if !deferred && !o.rec.is_empty() {
        set_rec(&o, index, dest, &mounted)?;
    }
    Ok(())
}

/// A bind of a directory needs a directory as target, anything else a file.
fn bind_kind(m: &Mount, src: &Path, src_fd: Option<&OwnedFd>) -> Result<Kind, MountError> {
    let is_dir = match src_fd {
        Some(fd) => nix::sys::stat::fstat(fd.as_fd())
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .map_err(std::io::Error::from),
        None => std::fs::metadata(src).map(|md| md.is_dir()),
    };
    // A missing bind source is the caller's mistake; name it.
    match is_dir {
        Ok(true) => Ok(Kind::Dir),
        Ok(false) => Ok(Kind::File),
        Err(source) => Err(MountError::Source {
            src: m.source().clone().unwrap_or_default(),
            source,
        }),
    }
}

/// The mode of what is at `dest` already, if anything.
fn existing_mode(root: &File, dest: &Path) -> Option<u32> {
    let fd = open_in_root(root, dest, None).ok()?;
    let st = nix::sys::stat::fstat(fd.as_fd()).ok()?;
    Some(st.st_mode & 0o7777)
}

fn set_rec(o: &Options, index: usize, dest: &Path, fd: &OwnedFd) -> Result<(), MountError> {
    o.rec
        .set_recursive(fd)
        .map_err(|source| MountError::RecAttr {
            index,
            dest: dest.to_path_buf(),
            source,
        })
}

/// The last step of the mounts, seen from inside the container after
/// pivot_root: the read-only remount and the recursive attributes that
/// [`Options::deferred`] held back.
pub(crate) fn finalize(mounts: &[Mount]) -> Result<(), MountError> {
    let root = File::open("/").map_err(|source| MountError::Target {
        dest: PathBuf::from("/"),
        source,
    })?;
    for (index, m) in mounts.iter().enumerate() {
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        let o = parse_options(index, m)?;
        let ro = o.flags.contains(MsFlags::MS_RDONLY);
        if !o.deferred(m) || (!ro && o.rec.is_empty()) {
            continue;
        }
        let dest = m.destination();
        let fd = open_in_root(&root, dest, None).map_err(|source| MountError::Target {
            dest: dest.clone(),
            source,
        })?;
        if ro {
            // By path: /proc may not be mounted in the container, and
            // inside it now, the path cannot lead out of it.
            remount(dest, dest, o.flags & !MsFlags::MS_REMOUNT)?;
        }
        if !o.rec.is_empty() {
            set_rec(&o, index, dest, &fd)?;
        }
    }
    Ok(())
}

/// The bind itself; its flags need a remount (the kernel silently ignores
/// flags on the first bind call), done by the caller on the new mount.
fn bind_mount(src: &Path, tpath: &Path, dest: &Path, o: &Options) -> Result<(), MountError> {
    let mut flags = MsFlags::MS_BIND;
    if o.recursive {
        flags |= MsFlags::MS_REC;
    }
    mount(Some(src), tpath, None::<&str>, flags, None::<&str>)
        .map_err(mount_err(format!("bind {}", src.display()), dest))
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks on
/// mounts inherited into a user namespace (nodev, nosuid, ... cannot be
/// cleared there, so a remount without them fails with EPERM).
pub(crate) fn remount(tpath: &Path, dest: &Path, flags: MsFlags) -> Result<(), MountError> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    match mount(
        None::<&str>,
        tpath,
        None::<&str>,
        base | flags,
        None::<&str>,
    ) {
        Err(nix::Error::EPERM) => {
            let locked = statvfs_flags(tpath);
            mount(
                None::<&str>,
                tpath,
                None::<&str>,
                base | flags | locked,
                None::<&str>,
            )
            .map_err(mount_err("remount", dest))
        }
        r => r.map_err(mount_err("remount", dest)),
    }
}

fn statvfs_flags(p: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(p) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            m |= b;
        }
    }
    m
}

fn fs_mount(
    src: &Path,
    tpath: &Path,
    dest: &Path,
    fstype: &str,
    o: &Options,
) -> Result<(), MountError> {
    let data = o.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let flags = o.flags & !MsFlags::MS_REMOUNT;
    match mount(Some(src), tpath, Some(fstype), flags, data) {
        // sysfs cannot be mounted in a user namespace that does not own the
        // network namespace; runc falls back to a read-only rbind of /sys.
        Err(nix::Error::EPERM) if fstype == "sysfs" => {
            // Read-only as sysfs in a container is; the caller's remount
            // applies only to binds, so do it here on the path (now a mount).
            mount(
                Some("/sys"),
                tpath,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(mount_err("rbind /sys", dest))
        }
        r => r.map_err(mount_err(fstype.to_string(), dest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn m(typ: &str, opts: &[&str]) -> Mount {
        MountBuilder::default()
            .destination("/x")
            .typ(typ)
            .source("src")
            .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .expect("mount")
    }

    #[test]
    fn options_split() {
        let o = parse_options(
            0,
            &m(
                "tmpfs",
                &[
                    "nosuid",
                    "noexec",
                    "mode=755",
                    "size=65536k",
                    "rw",
                    "rprivate",
                ],
            ),
        )
        .expect("options");
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        let o = parse_options(0, &m("none", &["rbind", "ro"])).expect("bind");
        assert!(o.bind && o.recursive && o.flags == MsFlags::MS_RDONLY);
        let o = parse_options(0, &m("bind", &["ro", "rw"])).expect("bind type");
        assert!(o.bind && o.flags.is_empty());
        let e = parse_options(3, &m("bind", &["idmap"])).expect_err("unsupported");
        assert!(e.to_string().contains("mounts[3]"), "{e}");
    }
}
