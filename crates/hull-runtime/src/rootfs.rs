//! Building the container's filesystem view, in init, in its mount namespace.
//!
//! Order (runc's prepareRootfs/finalizeRootfs): stop mount events from
//! leaking to the host; bind the rootfs onto itself (pivot_root needs a mount
//! point); the config's mounts; /dev nodes and links; pivot_root; then, seen
//! from inside: rootfsPropagation, readonlyPaths, maskedPaths, and last the
//! read-only remount of `/` (earlier steps still write to it).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;

use crate::cgroup::HostViews;
use crate::cgroupfs::{self, CgroupfsError};
use crate::devices::{self, DeviceError};
use crate::mounts::{self, propagation_flag, MountError};
use crate::paths::{open_in_root, Kind};
use crate::protocol::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Cgroupfs(#[from] CgroupfsError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("linux.rootfsPropagation: unknown mode {0:?}")]
    Propagation(String),
    #[error("{op} {path}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |e| RootfsError::Sys {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// How init was asked to build the rootfs.
pub(crate) struct RootfsOpts<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) rootfs: &'a Path,
    pub(crate) no_pivot: bool,
    /// In a new user namespace: devices must be bind-mounted.
    pub(crate) userns: bool,
    /// In a new cgroup namespace: cgroupfs can be mounted afresh.
    pub(crate) cgroupns: bool,
    /// Init's cgroup dirs (empty: those of /proc/self/cgroup).
    pub(crate) cgroup_dirs: &'a [PathBuf],
    /// The parent's /proc views, when they hold for init (None: read them).
    pub(crate) host_views: Option<&'a HostViews>,
    /// Blocks until the parent has made init's cgroup (`false`) or moved
    /// init into it (`true`): a cgroup mount binds those directories.
    pub(crate) await_cgroup: &'a dyn Fn(bool) -> Result<(), ProtocolError>,
    /// Bind sources the parent opened, by mount index (bindsrc.rs).
    pub(crate) bind_fds: &'a HashMap<usize, OwnedFd>,
}

/// Makes private the mount that holds `path`: the rootfs's own mount when it
/// is a mount point (containerd's overlay), else the nearest one above it, as
/// runc's rootfsParentMountPrivate. Under rootfsPropagation "shared"/"rshared"
/// that mount is shared, and so would be the rootfs bind made on it, which
/// pivot_root(2) refuses with EINVAL (critest's rshared propagation spec through
/// containerd's CRI). EINVAL from mount(2) means "not a mount point": go up.
fn mount_containing_private(path: &Path) -> Result<(), RootfsError> {
    let mut p = path;
    loop {
        match mount(
            None::<&str>,
            p,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::Error::EINVAL) if p != Path::new("/") => {
                p = p.parent().unwrap_or(Path::new("/"));
            }
            Err(e) => return Err(sys("make the rootfs's mount private", p)(e)),
        }
    }
}

/// Everything before pivot_root.
pub(crate) fn prepare(o: &RootfsOpts) -> Result<(), RootfsError> {
    let linux = o.spec.linux().as_ref();
    let prop = linux.and_then(|l| l.rootfs_propagation().clone());
    // Host mount events must not propagate into the container, nor ours out:
    // slave by default (runc), or what rootfsPropagation asks for.
    let root_flags = match prop.as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => {
            propagation_flag(p).ok_or_else(|| RootfsError::Propagation(p.into()))? | MsFlags::MS_REC
        }
    };
    mount(None::<&str>, "/", None::<&str>, root_flags, None::<&str>)
        .map_err(sys("make / private", Path::new("/")))?;
    // pivot_root(2) refuses a new root whose mount or parent mount is shared.
    if root_flags.contains(MsFlags::MS_SHARED) {
        mount_containing_private(o.rootfs)?;
    }
    mount(
        Some(o.rootfs),
        o.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind rootfs onto itself", o.rootfs))?;
    let root = File::open(o.rootfs).map_err(|e| RootfsError::Sys {
        op: "open rootfs",
        path: o.rootfs.to_path_buf(),
        source: e,
    })?;
    let mut dev_bound = false;
    for (i, m) in o.spec.mounts().iter().flatten().enumerate() {
        if m.typ().as_deref() == Some("cgroup") || m.typ().as_deref() == Some("cgroup2") {
            (o.await_cgroup)(o.cgroup_dirs.is_empty())?;
            cgroupfs::mount_cgroup(&root, i, m, o.cgroupns, o.cgroup_dirs, o.host_views)?;
        } else {
            let fd = o.bind_fds.get(&i);
            mounts::mount_entry(&root, i, m, crate::lsm::mount_label(o.spec), fd)?;
        }
        dev_bound |= m.destination() == Path::new("/dev") && mounts::parse_options(i, m)?.bind;
    }
    // A /dev bound from the host already has its nodes (runc's needsSetupDev).
    if !dev_bound {
        for n in devices::default_nodes() {
            devices::create(&root, &n, o.userns)?;
        }
        devices::create_links(&root)?;
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        devices::create(&root, &devices::from_spec(d)?, o.userns)?;
    }
    if let Some(p) = o.spec.process() {
        open_in_root(&root, p.cwd(), Some(Kind::Dir)).map_err(|e| RootfsError::Sys {
            op: "create process.cwd",
            path: p.cwd().clone(),
            source: e,
        })?;
    }
    Ok(())
}

/// Makes the rootfs `/`: pivot_root, or MS_MOVE + chroot for `--no-pivot`
/// (for ramdisk roots, where pivot_root is impossible).
pub(crate) fn switch_root(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    nix::unistd::chdir(rootfs).map_err(sys("chdir", rootfs))?;
    if no_pivot {
        hide_host_procfs(rootfs)?;
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(sys("move rootfs to /", rootfs))?;
        nix::unistd::chroot(".").map_err(sys("chroot", rootfs))?;
    } else {
        // pivot_root(".", ".") stacks the old root on the new one at the
        // same point; unmounting it then drops the old root without needing
        // a directory for it inside the container (runc's trick). Our cwd
        // stays on the new root (a lookup of "." does not cross the mount
        // stacked on it), so step onto the old root through an fd taken
        // before: a recursive change of "." would otherwise hit the new root
        // and every container mount, turning an rshared volume into a slave
        // whose mounts never reach the host (critest's rshared spec).
        let old_root = File::open("/").map_err(|e| RootfsError::Sys {
            op: "open the old root",
            path: PathBuf::from("/"),
            source: e,
        })?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root", rootfs))?;
        nix::unistd::fchdir(&old_root).map_err(sys("fchdir to the old root", rootfs))?;
        drop(old_root);
        // The old root may be shared with the host: detach quietly.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("make old root slave", rootfs))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("unmount old root", rootfs))?;
    }
    nix::unistd::chdir("/").map_err(sys("chdir", Path::new("/")))
}

/// Before `--no-pivot`'s chroot: the host's /proc and /sys stay reachable in
/// this mount namespace (chroot hides them from paths only), and the kernel
/// lets a process in a new user namespace mount procfs or sysfs if the mount
/// namespace holds a full, uncovered one (mount_too_revealing): the
/// container could mount a /proc without the masked paths. So unmount every
/// full proc and sysfs mount outside the rootfs, or cover it with a tmpfs
/// where that is not allowed (runc's msMoveRoot).
fn hide_host_procfs(rootfs: &Path) -> Result<(), RootfsError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Sys {
        op: "read",
        path: PathBuf::from("/proc/self/mountinfo"),
        source: e,
    })?;
    let full: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let (root, point, fstype) = (f.get(3)?, f.get(4)?, f.get(sep + 1)?);
            let point = PathBuf::from(unescape(point));
            (*root == "/" && matches!(*fstype, "proc" | "sysfs") && !point.starts_with(rootfs))
                .then_some(point)
        })
        .collect();
    for p in &full {
        // Slave first: the unmount must not propagate to the host.
        match mount(
            None::<&str>,
            p,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        ) {
            // A parent of it is gone already.
            Err(nix::Error::ENOENT) => continue,
            r => r.map_err(sys("make host procfs slave", p))?,
        }
        match umount2(p, MntFlags::MNT_DETACH) {
            Err(nix::Error::EINVAL | nix::Error::EPERM) => mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(sys("cover host procfs", p))?,
            r => r.map_err(sys("unmount host procfs", p))?,
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything after pivot_root, seen from inside the container.
pub(crate) fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().clone())
        .filter(|p| !p.is_empty())
    {
        let f = propagation_flag(&p).ok_or_else(|| RootfsError::Propagation(p.clone()))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            f | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("rootfsPropagation", Path::new("/")))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(Path::new(p))?;
    }
    mounts::finalize(spec.mounts().as_deref().unwrap_or_default())?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        mounts::remount(Path::new("/"), Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

/// Bind a path onto itself read-only; a missing path is fine (runc).
fn readonly_path(p: &Path) -> Result<(), RootfsError> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Err(nix::Error::ENOENT) => return Ok(()),
        r => r.map_err(sys("bind readonly path", p))?,
    }
    mounts::remount(
        p,
        p,
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
    )?;
    Ok(())
}

/// Hide a path: /dev/null over a file, an empty read-only tmpfs over a
/// directory; a missing path is fine.
fn mask_path(p: &Path) -> Result<(), RootfsError> {
    let r = match std::fs::metadata(p) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        ),
        Ok(_) => mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ),
    };
    r.map_err(sys("mask path", p))
}
