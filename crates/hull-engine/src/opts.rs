//! What a user asks of a new container (docker's `run`/`create` flags, already
//! split into values), and parsers for the flag syntaxes.

use std::path::PathBuf;

use hull_net::{NetworkMode, PortMapping};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --memory value {0:?} (expected e.g. 512m, 1g, 1048576)")]
    Memory(String),
    #[error("invalid --memory value {0:?}: more than the largest limit the kernel takes (8 EiB)")]
    MemoryTooLarge(String),
    #[error("invalid --memory value {0:?}: the minimum memory limit is 6m (6291456 bytes)")]
    MemoryTooSmall(String),
    #[error("invalid mount target {given:?} for {flag}: {path} cannot be a volume or bind mount ({why})")]
    MountTarget {
        flag: &'static str,
        given: String,
        path: String,
        why: &'static str,
    },
    #[error("invalid --cpus value {0:?} (expected a positive number)")]
    Cpus(String),
    #[error("invalid --ulimit {0:?} (expected NAME=SOFT[:HARD], e.g. nofile=1024:2048)")]
    Ulimit(String),
    #[error("invalid volume spec {0:?} (expected HOST-PATH|NAME:CONTAINER-PATH[:ro|rw])")]
    Volume(String),
    #[error("invalid --mount {0:?}: {1}")]
    Mount(String, &'static str),
    #[error("invalid --device {0:?} (expected HOST[:CONTAINER[:PERMS]])")]
    Device(String),
    #[error(
        "invalid --security-opt {0:?} (supported: seccomp=FILE|unconfined, no-new-privileges)"
    )]
    SecurityOpt(String),
    #[error("invalid --label {0:?} (expected KEY=VALUE)")]
    Label(String),
    #[error("invalid --network {0:?} (bridge, none, host, container:NAME or a network's name)")]
    Network(String, #[source] hull_net::ipam::IpamError),
    #[error("invalid -p/--publish {0:?}")]
    Publish(String, #[source] hull_net::ports::PortError),
    #[error("-p/--publish needs a bridge network, not --network {0}")]
    PublishMode(String),
    #[error("cannot read --env-file {path}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    #[default]
    Default,
    Unconfined,
    File(PathBuf),
}

/// One mount the user asked for, before volumes are resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    Volume {
        name: String,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
    },
}

impl MountSpec {
    pub fn target(&self) -> &str {
        match self {
            MountSpec::Bind { target, .. }
            | MountSpec::Volume { target, .. }
            | MountSpec::Tmpfs { target } => target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub host: PathBuf,
    pub container: String,
    pub perms: String,
}

/// Everything `hull create`/`run` takes besides the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerOptions {
    pub name: Option<String>,
    /// Replaces the image's Cmd when not empty.
    pub cmd: Vec<String>,
    /// `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub mounts: Vec<MountSpec>,
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    pub ulimits: Vec<Ulimit>,
    pub devices: Vec<Device>,
    pub labels: Vec<(String, String)>,
    /// `--network` as given (checked by [`parse_network`]); empty means the default, `bridge`.
    #[serde(default)]
    pub network: String,
    /// `-p/--publish`.
    #[serde(default)]
    pub publish: Vec<PortMapping>,
    pub auto_remove: bool,
    /// CDI devices (`vendor.com/class=name`) from `--device`/`--gpus`, applied by hull-cdi.
    #[serde(default)]
    pub cdi_devices: Vec<String>,
    /// `--init`, `--sysctl`, `--pid`, `--dns`... (see [`crate::extra`]).
    #[serde(default)]
    pub extra: crate::extra::Extra,
    /// `--ip`, `--network-alias`, `--add-host` (see [`crate::net_opts`]).
    #[serde(default)]
    pub net_opts: crate::net_opts::NetOptions,
    /// `--restart` (applied by the shim).
    #[serde(default)]
    pub restart: crate::policy::RestartPolicy,
    /// `--health-*`, `--no-healthcheck` (over the image's `Healthcheck`).
    #[serde(default)]
    pub health: crate::policy::HealthFlags,
}

impl ContainerOptions {
    /// The parsed `--network` (checked when the options were made).
    pub fn network_mode(&self) -> NetworkMode {
        self.network
            .parse()
            .unwrap_or_else(|_| NetworkMode::Network(self.network.clone()))
    }
}

/// `512m`, `1g`, `100k`, `1048576` (bytes); binary multiples like docker.
pub fn parse_memory(s: &str) -> Result<i64, Error> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 1i64 << 10),
        Some((i, 'm')) => (&t[..i], 1 << 20),
        Some((i, 'g')) => (&t[..i], 1 << 30),
        Some((i, 't')) => (&t[..i], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| Error::Memory(s.into()))?;
    if n.is_nan() || n <= 0.0 {
        return Err(Error::Memory(s.into()));
    }
    let bytes = n * mult as f64;
    // `as i64` saturates: 999999999999g became i64::MAX, which the kernel reads as no limit.
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(Error::MemoryTooLarge(s.into()));
    }
    // Below a few MiB the container's init is OOM-killed while it starts (`--memory 1k`
    // failed as "container init exited during create (killed by signal 9)"); docker's floor.
    if bytes < MIN_MEMORY as f64 {
        return Err(Error::MemoryTooSmall(s.into()));
    }
    Ok(bytes as i64)
}

/// docker's smallest `--memory` (6 MiB).
pub const MIN_MEMORY: i64 = 6 << 20;

/// `p` with `.`, `..` and repeated or trailing slashes resolved lexically: `/x/../proc/`,
/// `//proc` and `/proc/.` are all `/proc`. The runtime resolves the target the same way
/// (inside the rootfs, `..` stops at its root).
pub fn normalize_target(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Files under /proc that a bind may replace (runc's list, for lxcfs).
const PROC_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
];

/// Why `target` (normalized) may not be a volume or bind mount, if it may not: one on /proc
/// replaces the container's procfs (and with it masked and read-only paths) with a writable
/// directory, one on /sys or /dev the kernel's view of devices (runc and podman refuse these
/// too); one inside /proc or /sys shadows a file the runtime protects.
pub fn forbidden_target(target: &str) -> Option<&'static str> {
    let under = |d: &str| target.strip_prefix(d).is_some_and(|r| r.starts_with('/'));
    match target {
        "/" => Some("the container's root filesystem"),
        "/proc" => Some("the container's procfs"),
        "/sys" => Some("the container's sysfs"),
        "/dev" => Some("the container's device directory"),
        t if under("/proc") && !PROC_FILES.contains(&t) => Some("a path inside procfs"),
        _ if under("/sys") => Some("a path inside sysfs"),
        _ => None,
    }
}

/// Checks the target of a `-v`/`--mount`/image volume (`flag` names where it came from);
/// the normalized target.
pub fn check_target(flag: &'static str, given: &str) -> Result<String, Error> {
    let path = normalize_target(given);
    match forbidden_target(&path) {
        Some(why) => Err(Error::MountTarget {
            flag,
            given: given.into(),
            path,
            why,
        }),
        None => Ok(path),
    }
}

pub fn parse_cpus(s: &str) -> Result<f64, Error> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(Error::Cpus(s.into())),
    }
}

pub fn parse_ulimit(s: &str) -> Result<Ulimit, Error> {
    let bad = || Error::Ulimit(s.into());
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    let num = |v: &str| -> Result<u64, Error> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse().map_err(|_| bad())
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(vals)?, num(vals)?),
    };
    if name.is_empty() || soft > hard {
        return Err(bad());
    }
    Ok(Ulimit {
        name: name.to_ascii_lowercase(),
        soft,
        hard,
    })
}

/// `-v HOST:CTR[:ro]`, `-v NAME:CTR[:ro]`. A source starting with `/` or `.`
/// is a host path (made absolute), anything else names a volume.
pub fn parse_volume(s: &str) -> Result<MountSpec, Error> {
    let bad = || Error::Volume(s.into());
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(bad()),
    };
    let mut readonly = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => readonly = true,
            "rw" | "z" | "Z" => {}
            _ => return Err(bad()),
        }
    }
    if src.is_empty() || !dst.starts_with('/') {
        return Err(bad());
    }
    check_target("-v/--volume", dst)?;
    if src.starts_with('/') || src.starts_with('.') {
        let source = std::path::absolute(src).map_err(|_| bad())?;
        return Ok(MountSpec::Bind {
            source,
            target: dst.into(),
            readonly,
        });
    }
    Ok(MountSpec::Volume {
        name: src.into(),
        target: dst.into(),
        readonly,
    })
}

/// `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly]`.
pub fn parse_mount(s: &str) -> Result<MountSpec, Error> {
    let (mut kind, mut src, mut dst, mut ro) = ("volume", None, None, false);
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => src = Some(v),
            "target" | "destination" | "dst" => dst = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            _ => return Err(Error::Mount(s.into(), "unknown key")),
        }
    }
    let target = dst
        .filter(|d| d.starts_with('/'))
        .ok_or(Error::Mount(s.into(), "target must be an absolute path"))?
        .to_string();
    check_target("--mount", &target)?;
    match (kind, src) {
        ("bind", Some(src)) => Ok(MountSpec::Bind {
            source: std::path::absolute(src).map_err(|_| Error::Mount(s.into(), "bad source"))?,
            target,
            readonly: ro,
        }),
        ("volume", Some(name)) => Ok(MountSpec::Volume {
            name: name.into(),
            target,
            readonly: ro,
        }),
        ("tmpfs", _) => Ok(MountSpec::Tmpfs { target }),
        ("bind" | "volume", None) => Err(Error::Mount(s.into(), "source is required")),
        _ => Err(Error::Mount(s.into(), "type must be bind, volume or tmpfs")),
    }
}

pub fn parse_device(s: &str) -> Result<Device, Error> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, ctr, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if c.starts_with('/') => (*h, *c, "rwm"),
        [h, p] => (*h, *h, *p),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(Error::Device(s.into())),
    };
    if !host.starts_with('/')
        || !ctr.starts_with('/')
        || perms.is_empty()
        || !perms.chars().all(|c| "rwm".contains(c))
    {
        return Err(Error::Device(s.into()));
    }
    Ok(Device {
        host: host.into(),
        container: ctr.into(),
        perms: perms.into(),
    })
}

/// Applies one `--security-opt` to `o`.
pub fn apply_security_opt(o: &mut ContainerOptions, s: &str) -> Result<(), Error> {
    match s.split_once(['=', ':']) {
        Some(("seccomp", "unconfined")) => o.seccomp = Seccomp::Unconfined,
        Some(("seccomp", file)) if !file.is_empty() => {
            o.seccomp =
                Seccomp::File(std::path::absolute(file).map_err(|_| Error::SecurityOpt(s.into()))?)
        }
        Some(("no-new-privileges", "true")) => o.no_new_privileges = true,
        Some(("no-new-privileges", "false")) => o.no_new_privileges = false,
        None if s == "no-new-privileges" => o.no_new_privileges = true,
        _ => return Err(Error::SecurityOpt(s.into())),
    }
    Ok(())
}

pub fn parse_label(s: &str) -> Result<(String, String), Error> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        None if !s.is_empty() => Ok((s.into(), String::new())),
        _ => Err(Error::Label(s.into())),
    }
}

/// Checks a `--network` value; the canonical spelling (`""`/`default` → `bridge`).
pub fn parse_network(s: &str) -> Result<String, Error> {
    let mode: NetworkMode = s.parse().map_err(|e| Error::Network(s.into(), e))?;
    Ok(match mode {
        NetworkMode::Network(n) => n,
        NetworkMode::None => "none".into(),
        NetworkMode::Host => "host".into(),
        NetworkMode::Container(c) => format!("container:{c}"),
    })
}

/// `-p [IP:]HOST:CTR[/tcp|udp]`.
pub fn parse_publish(s: &str) -> Result<PortMapping, Error> {
    s.parse().map_err(|e| Error::Publish(s.into(), e))
}

/// Published ports need a network of hull's (docker: "conflicting options").
pub fn check_publish(o: &ContainerOptions) -> Result<(), Error> {
    match o.network_mode() {
        NetworkMode::Network(_) => Ok(()),
        _ if o.publish.is_empty() => Ok(()),
        _ => Err(Error::PublishMode(o.network.clone())),
    }
}

/// `KEY=VALUE` lines; `KEY` alone takes the value from our environment;
/// `#` comments and blank lines are skipped (docker's rules).
pub fn read_env_file(path: &std::path::Path) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::EnvFile {
        path: path.into(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(expand_env)
        .collect())
}

/// `-e KEY` (no `=`) passes our own value, or nothing when we have none.
pub fn expand_env(e: &str) -> Option<String> {
    if e.contains('=') {
        return Some(e.into());
    }
    std::env::var(e).ok().map(|v| format!("{e}={v}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_memory("8388608").unwrap(), 8 << 20);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1m").is_err());
        assert!(matches!(
            parse_memory("999999999999g"),
            Err(Error::MemoryTooLarge(_))
        ));
        assert!(matches!(
            parse_memory("1e400"),
            Err(Error::MemoryTooLarge(_))
        ));
        assert!(matches!(parse_memory("1k"), Err(Error::MemoryTooSmall(_))));
        assert_eq!(parse_memory("6m").unwrap(), MIN_MEMORY);
    }

    #[test]
    fn mount_targets() {
        for t in [
            "/proc",
            "/proc/",
            "//proc",
            "/x/../proc",
            "/proc/.",
            "/sys",
            "/dev/",
            "/",
        ] {
            assert!(check_target("-v", t).is_err(), "{t}");
            assert!(parse_volume(&format!("/a:{t}")).is_err(), "{t}");
            assert!(
                parse_mount(&format!("type=tmpfs,target={t}")).is_err(),
                "{t}"
            );
        }
        assert!(check_target("-v", "/proc/sys/kernel").is_err());
        assert!(check_target("-v", "/sys/fs/cgroup").is_err());
        assert_eq!(
            check_target("-v", "/proc/cpuinfo").unwrap(),
            "/proc/cpuinfo"
        );
        assert_eq!(check_target("-v", "/dev/shm").unwrap(), "/dev/shm");
        assert_eq!(check_target("-v", "/procx").unwrap(), "/procx");
        assert_eq!(check_target("-v", "/data/../srv//x/").unwrap(), "/srv/x");
    }

    #[test]
    fn volumes_and_mounts() {
        assert_eq!(
            parse_volume("/a:/b:ro").unwrap(),
            MountSpec::Bind {
                source: "/a".into(),
                target: "/b".into(),
                readonly: true
            }
        );
        assert!(matches!(
            parse_volume("data:/d").unwrap(),
            MountSpec::Volume { name, .. } if name == "data"
        ));
        assert!(parse_volume("/a:rel").is_err());
        assert!(parse_volume("/a:/b:xx").is_err());
        assert!(matches!(
            parse_mount("type=tmpfs,target=/t").unwrap(),
            MountSpec::Tmpfs { .. }
        ));
        assert!(matches!(
            parse_mount("type=bind,src=/x,dst=/y,readonly").unwrap(),
            MountSpec::Bind { readonly: true, .. }
        ));
        assert!(parse_mount("type=bind,target=/y").is_err());
    }

    #[test]
    fn ulimits_devices_security() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile=9:1").is_err());
        let d = parse_device("/dev/null:/dev/n:r").unwrap();
        assert_eq!((d.container.as_str(), d.perms.as_str()), ("/dev/n", "r"));
        let mut o = ContainerOptions::default();
        apply_security_opt(&mut o, "seccomp=unconfined").unwrap();
        apply_security_opt(&mut o, "no-new-privileges").unwrap();
        assert_eq!(o.seccomp, Seccomp::Unconfined);
        assert!(o.no_new_privileges);
        assert!(apply_security_opt(&mut o, "apparmor=x").is_err());
    }
}
