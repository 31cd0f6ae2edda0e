//! `hull cdi generate --nvidia`: what nvidia-container-toolkit's `nvidia-ctk cdi generate`
//! finds on a host, as a CDI spec (kind `nvidia.com/gpu`): one device per GPU by index
//! (its `/dev/nvidiaN` minor) and by UUID, plus `all`; the control nodes, the driver's
//! user-space libraries, binaries, firmware and IPC sockets as spec-wide edits.
//!
//! Everything is looked up under `root` (a fake tree in tests; a host's driver root) and
//! host paths in the spec keep that prefix, as nvidia-ctk's `--driver-root` does.
//! No ld-cache hook is written: libraries are mounted at their host paths and the
//! container finds them through its own ld cache or `LD_LIBRARY_PATH` (docs/gpus.md).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::schema::{ContainerEdits, Device, DeviceNode, Mount, Spec};

pub const KIND: &str = "nvidia.com/gpu";
pub const VERSION: &str = "0.5.0";

const CONTROL_NODES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];
/// Library name prefixes of the driver's user-space (nvidia-ctk's driver library list).
const LIB_PREFIXES: &[&str] = &[
    "libcuda.so",
    "libcudadebugger.so",
    "libnvcuvid.so",
    "libnvidia-",
    "libnvoptix.so",
    "libGLX_nvidia.so",
    "libEGL_nvidia.so",
    "libGLESv2_nvidia.so",
    "libGLESv1_CM_nvidia.so",
    "libvdpau_nvidia.so",
];
const LIB_DIRS: &[&str] = &["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"];
const BINARIES: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];
const BIN_DIRS: &[&str] = &[
    "/usr/local/nvidia/bin",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local/bin",
];
const IPC: &[&str] = &[
    "/run/nvidia-persistenced/socket",
    "/var/run/nvidia-fabricmanager/socket",
    "/tmp/nvidia-mps",
];
const RO: &[&str] = &["ro", "nosuid", "nodev", "bind"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no NVIDIA GPUs found: no /dev/nvidia[0-9]* device nodes under {0}")]
    NoGpus(PathBuf),
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("ld cache {0}")]
    LdCache(PathBuf, #[source] crate::ldcache::Error),
}

/// One GPU: its index (the minor of `/dev/nvidiaN`) and UUID when the driver says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub minor: u32,
    pub node: String,
    pub uuid: Option<String>,
}

/// Discovers everything under `root` and returns the spec.
pub fn generate(root: &Path) -> Result<Spec, Error> {
    let gpus = gpus(root)?;
    if gpus.is_empty() {
        return Err(Error::NoGpus(root.into()));
    }
    let mut devices = Vec::new();
    let node = |p: &str| DeviceNode {
        path: p.into(),
        host_path: (root != Path::new("/")).then(|| under(root, p).display().to_string()),
        ..Default::default()
    };
    for g in &gpus {
        let edits = ContainerEdits {
            device_nodes: vec![node(&g.node)],
            ..Default::default()
        };
        devices.push(Device {
            name: g.minor.to_string(),
            annotations: None,
            container_edits: edits.clone(),
        });
        if let Some(u) = &g.uuid {
            devices.push(Device {
                name: u.clone(),
                annotations: None,
                container_edits: edits,
            });
        }
    }
    let all = ContainerEdits {
        device_nodes: gpus.iter().map(|g| node(&g.node)).collect(),
        ..Default::default()
    };
    devices.push(Device {
        name: "all".into(),
        annotations: None,
        container_edits: all,
    });
    let mut edits = ContainerEdits::default();
    for c in CONTROL_NODES {
        let p = format!("/dev/{c}");
        if is_device(&under(root, &p)) {
            edits.device_nodes.push(node(&p));
        }
    }
    for c in names_in(&under(root, "/dev/nvidia-caps")) {
        edits
            .device_nodes
            .push(node(&format!("/dev/nvidia-caps/{c}")));
    }
    edits.mounts = mounts(root)?;
    Ok(Spec {
        cdi_version: VERSION.into(),
        kind: KIND.into(),
        annotations: None,
        devices,
        container_edits: edits,
    })
}

/// `p` (absolute in the host's view) under `root`.
fn under(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

/// The part of `p` below `root`, as an absolute path.
fn inside(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    format!("/{}", rel.display()).replace("//", "/")
}

fn is_device(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `/dev/nvidiaN` char devices, their minor as index, UUIDs from
/// `/proc/driver/nvidia/gpus/*/information` ("Device Minor:" and "GPU UUID:").
pub fn gpus(root: &Path) -> Result<Vec<Gpu>, Error> {
    let uuids = uuids_by_minor(root)?;
    let mut out = Vec::new();
    for n in names_in(&under(root, "/dev")) {
        let Some(num) = n
            .strip_prefix("nvidia")
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let p = under(root, &format!("/dev/{n}"));
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        if !md.file_type().is_char_device() {
            continue;
        }
        let minor = libc::minor(md.rdev());
        let _ = num;
        out.push(Gpu {
            minor,
            node: format!("/dev/{n}"),
            uuid: uuids.get(&minor).cloned(),
        });
    }
    out.sort_by_key(|g| g.minor);
    Ok(out)
}

fn uuids_by_minor(root: &Path) -> Result<BTreeMap<u32, String>, Error> {
    let dir = under(root, "/proc/driver/nvidia/gpus");
    let mut m = BTreeMap::new();
    for bus in names_in(&dir) {
        let f = dir.join(&bus).join("information");
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Read(f, e)),
        };
        let field = |k: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(k)
                    .map(|v| v.trim_start_matches(':').trim().to_string())
            })
        };
        if let (Some(minor), Some(uuid)) = (field("Device Minor"), field("GPU UUID")) {
            if let Ok(minor) = minor.parse() {
                m.insert(minor, uuid);
            }
        }
    }
    Ok(m)
}

/// The driver version from `/proc/driver/nvidia/version` ("... Kernel Module  550.54.14 ...").
pub fn driver_version(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(under(root, "/proc/driver/nvidia/version")).ok()?;
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(Into::into)
}

fn ro_mount(root: &Path, host: &Path, extra: &[&str]) -> Mount {
    let mut options: Vec<String> = RO.iter().map(|s| s.to_string()).collect();
    options.extend(extra.iter().map(|s| s.to_string()));
    Mount {
        host_path: host.display().to_string(),
        container_path: inside(root, host),
        options,
        kind: None,
    }
}

fn mounts(root: &Path) -> Result<Vec<Mount>, Error> {
    let mut by_target: BTreeMap<String, Mount> = BTreeMap::new();
    let mut add = |m: Mount| {
        by_target.entry(m.container_path.clone()).or_insert(m);
    };
    for lib in libraries(root)? {
        add(ro_mount(root, &lib, &[]));
    }
    for b in BINARIES {
        if let Some(p) = BIN_DIRS
            .iter()
            .map(|d| under(root, &format!("{d}/{b}")))
            .find(|p| p.is_file())
        {
            add(ro_mount(root, &p, &[]));
        }
    }
    if let Some(v) = driver_version(root) {
        let fw = under(root, &format!("/lib/firmware/nvidia/{v}"));
        if fw.is_dir() {
            add(ro_mount(root, &fw, &[]));
        }
    }
    for s in IPC {
        let p = under(root, s);
        if p.exists() {
            add(ro_mount(root, &p, &["noexec"]));
        }
    }
    Ok(by_target.into_values().collect())
}

fn is_driver_lib(name: &str) -> bool {
    LIB_PREFIXES.iter().any(|p| name.starts_with(p)) && name.contains(".so.")
}

/// The driver's libraries: from the ld cache under `root`, else the directories some
/// hosts keep them in; each soname and the file it links to (both get mounted, so the
/// container has the soname without a symlink-making hook).
fn libraries(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut found: Vec<PathBuf> = Vec::new();
    let cache = under(root, "/etc/ld.so.cache");
    match std::fs::read(&cache) {
        Ok(b) => {
            let libs = crate::ldcache::parse(&b).map_err(|e| Error::LdCache(cache.clone(), e))?;
            for (name, path) in libs {
                if is_driver_lib(&name) {
                    found.push(under(root, &path));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Read(cache, e)),
    }
    for d in LIB_DIRS {
        let dir = under(root, d);
        found.extend(
            names_in(&dir)
                .into_iter()
                .filter(|n| is_driver_lib(n))
                .map(|n| dir.join(n)),
        );
    }
    let mut out = Vec::new();
    for p in found {
        if !p.exists() {
            continue;
        }
        if let Ok(target) = std::fs::read_link(&p) {
            let real = p.parent().map(|d| d.join(&target)).unwrap_or(target);
            if real.starts_with(root) && real.is_file() && !out.contains(&real) {
                out.push(real);
            }
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The spec as YAML, or JSON when `json`.
pub fn render(spec: &Spec, json: bool) -> String {
    if json {
        serde_json::to_string_pretty(spec).unwrap_or_default() + "\n"
    } else {
        serde_yaml_ng::to_string(spec).unwrap_or_default()
    }
}
