//! The OCI runtime config (`config.json`) of a container: the image's
//! execution defaults merged with the user's options, with docker's defaults
//! for what neither says (capabilities, seccomp, masked paths, mounts).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use hull_image::ContainerConfig;
use serde_json::{json, Value};

use hull_net::NetnsConfig;

use crate::opts::{ContainerOptions, Seccomp};
use crate::user::{self, User};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no command: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    #[error(transparent)]
    User(#[from] user::Error),
    #[error(transparent)]
    Rootless(#[from] crate::rootless::spec::Error),
    #[error("cannot read seccomp profile {path}")]
    SeccompFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path} is not valid JSON")]
    SeccompJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("--device {0}: not a device node")]
    Device(PathBuf, #[source] Option<std::io::Error>),
    #[error("unknown capability {0:?} in --cap-add/--cap-drop")]
    Capability(String),
    #[error(transparent)]
    MountTarget(#[from] crate::opts::Error),
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// docker's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Indexed by capability number.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// docker's default profile (moby's `profiles/seccomp/default.json`, in OCI form).
const DEFAULT_SECCOMP: &str = include_str!("seccomp-default.json");

/// A mount with its source resolved (volumes → their directories).
#[derive(Debug, Clone)]
pub struct ResolvedMount {
    pub source: PathBuf,
    pub target: String,
    pub readonly: bool,
    pub tmpfs: bool,
}

/// Everything [`build`] needs besides the options.
pub struct Inputs<'a> {
    pub id: &'a str,
    pub image: &'a ContainerConfig,
    pub rootfs: &'a Path,
    pub mounts: &'a [ResolvedMount],
    /// Directory holding the container's `hosts`, `hostname`, `resolv.conf`.
    pub etc_dir: &'a Path,
    /// `--network container:X`: X's directory, whose `hosts` and `resolv.conf` are shared.
    pub shared_etc: Option<&'a Path>,
    pub netns: &'a NetnsConfig,
    pub hostname: &'a str,
}

/// The process arguments: entrypoint (flag over image) + cmd (args over
/// image's Cmd, which a new entrypoint also resets, like docker).
pub fn args(image: &ContainerConfig, o: &ContainerOptions) -> Result<Vec<String>, Error> {
    let entry: Vec<String> = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = if !o.cmd.is_empty() {
        o.cmd.clone()
    } else if o.entrypoint.is_some() {
        Vec::new()
    } else {
        image.cmd.clone().unwrap_or_default()
    };
    let all: Vec<String> = entry.into_iter().chain(cmd).collect();
    if all.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(all)
}

/// Image env, then the user's (later wins per key); PATH and HOME filled
/// in when missing, TERM for a terminal.
pub fn env(image: &ContainerConfig, o: &ContainerOptions, home: &str, host: &str) -> Vec<String> {
    fn set(out: &mut Vec<String>, kv: &str) {
        let key = kv.split('=').next().unwrap_or(kv);
        out.retain(|e| e.split('=').next() != Some(key));
        out.push(kv.to_string());
    }
    let has = |out: &[String], k: &str| out.iter().any(|e| e.starts_with(k));
    let mut out: Vec<String> = Vec::new();
    if !image.env.iter().flatten().any(|e| e.starts_with("PATH=")) {
        set(&mut out, &format!("PATH={DEFAULT_PATH}"));
    }
    for e in image.env.iter().flatten().chain(&o.env) {
        set(&mut out, e);
    }
    if o.tty && !has(&out, "TERM=") {
        set(&mut out, "TERM=xterm");
    }
    if !has(&out, "HOSTNAME=") {
        set(&mut out, &format!("HOSTNAME={host}"));
    }
    if !has(&out, "HOME=") {
        set(&mut out, &format!("HOME={home}"));
    }
    out
}

fn norm_cap(c: &str) -> Result<String, Error> {
    let up = c.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if full == "CAP_ALL" || ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::Capability(c.into()))
    }
}

/// "All" capabilities means all that we have: the kernel or our own
/// bounding set may lack some, and asking for those fails the create.
fn host_caps() -> Vec<String> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

pub fn capabilities(o: &ContainerOptions) -> Result<Vec<String>, Error> {
    if o.privileged {
        return Ok(host_caps());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for d in &o.cap_drop {
        let d = norm_cap(d)?;
        if d == "CAP_ALL" {
            caps.clear();
        } else {
            caps.retain(|c| *c != d);
        }
    }
    for a in &o.cap_add {
        let a = norm_cap(a)?;
        let add: Vec<String> = if a == "CAP_ALL" { host_caps() } else { vec![a] };
        for a in add {
            if !caps.contains(&a) {
                caps.push(a);
            }
        }
    }
    Ok(caps)
}

fn seccomp(o: &ContainerOptions) -> Result<Option<Value>, Error> {
    if o.privileged {
        return Ok(None);
    }
    let (path, text) = match &o.seccomp {
        Seccomp::Unconfined => return Ok(None),
        Seccomp::Default => (PathBuf::from("<default>"), DEFAULT_SECCOMP.to_string()),
        Seccomp::File(p) => (
            p.clone(),
            std::fs::read_to_string(p).map_err(|source| Error::SeccompFile {
                path: p.clone(),
                source,
            })?,
        ),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| Error::SeccompJson { path, source })
}

fn mounts(inp: &Inputs<'_>, o: &ContainerOptions) -> Vec<Value> {
    let sys_opts = if o.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    for f in ["hosts", "hostname", "resolv.conf"] {
        if inp.mounts.iter().any(|u| u.target == format!("/etc/{f}")) {
            continue;
        }
        let dir = match inp.shared_etc {
            Some(d) if f != "hostname" => d,
            _ => inp.etc_dir,
        };
        m.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
            "source": dir.join(f), "options": ["rbind", "rprivate"]}));
    }
    for u in inp.mounts {
        if u.tmpfs {
            m.push(
                json!({"destination": u.target, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"]}),
            );
            continue;
        }
        let mut opts = vec!["rbind", "rprivate"];
        if u.readonly {
            opts.push("ro");
        }
        m.push(
            json!({"destination": u.target, "type": "bind", "source": u.source, "options": opts}),
        );
    }
    m
}

fn devices(o: &ContainerOptions) -> Result<(Vec<Value>, Vec<Value>), Error> {
    let mut nodes = Vec::new();
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    if o.privileged {
        rules = vec![json!({"allow": true, "access": "rwm"})];
    }
    for d in &o.devices {
        let md = std::fs::metadata(&d.host).map_err(|e| Error::Device(d.host.clone(), Some(e)))?;
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            return Err(Error::Device(d.host.clone(), None));
        };
        let rdev = md.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        nodes.push(
            json!({"path": d.container, "type": kind, "major": major, "minor": minor,
            "fileMode": md.mode() & 0o7777, "uid": 0, "gid": 0}),
        );
        rules.push(
            json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": d.perms}),
        );
    }
    Ok((nodes, rules))
}

fn resources(o: &ContainerOptions, rules: Vec<Value>) -> Value {
    let mut r = json!({"devices": rules});
    if let Some(m) = o.memory {
        r["memory"] = json!({"limit": m});
    }
    if let Some(c) = o.cpus {
        r["cpu"] = json!({"quota": (c * 100_000.0) as i64, "period": 100_000});
    }
    if let Some(p) = o.pids_limit {
        r["pids"] = json!({"limit": p});
    }
    r
}

fn process(inp: &Inputs<'_>, o: &ContainerOptions, u: &User) -> Result<Value, Error> {
    let caps = capabilities(o)?;
    let cwd = o
        .workdir
        .clone()
        .or_else(|| inp.image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    let rlimits: Vec<Value> = o
        .ulimits
        .iter()
        .map(|l| json!({"type": format!("RLIMIT_{}", l.name.to_ascii_uppercase()), "soft": l.soft, "hard": l.hard}))
        .collect();
    Ok(json!({
        "terminal": o.tty,
        "user": {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids},
        "args": args(inp.image, o)?,
        "env": env(inp.image, o, &u.home, inp.hostname),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
        "noNewPrivileges": o.no_new_privileges,
        "oomScoreAdj": 0,
    }))
}

/// The user the container runs as: the flag, else the image's `User`.
pub fn user_of(inp: &Inputs<'_>, o: &ContainerOptions) -> Result<User, Error> {
    let spec = o
        .user
        .clone()
        .or_else(|| inp.image.user.clone())
        .unwrap_or_default();
    Ok(user::resolve(inp.rootfs, &spec)?)
}

/// Refuses a mount over /proc, /sys or /dev (see [`crate::opts::forbidden_target`]); the
/// flags were checked when parsed, an image's `Volumes` only here (and records written by an
/// older hull).
fn check_targets(inp: &Inputs<'_>, o: &ContainerOptions) -> Result<(), Error> {
    for m in inp.mounts {
        let flag = if o.mounts.iter().any(|u| u.target() == m.target) {
            "-v/--mount"
        } else {
            "the image's Volumes"
        };
        crate::opts::check_target(flag, &m.target)?;
    }
    Ok(())
}

/// Builds the whole `config.json`.
pub fn build(inp: &Inputs<'_>, o: &ContainerOptions) -> Result<Value, Error> {
    check_targets(inp, o)?;
    let u = user_of(inp, o)?;
    let (nodes, rules) = devices(o)?;
    let mut ns = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match inp.netns {
        NetnsConfig::New { .. } => ns.push(json!({"type": "network"})),
        NetnsConfig::Join(path) => ns.push(json!({"type": "network", "path": path})),
        NetnsConfig::Host => {}
    }
    let mut linux = json!({
        "namespaces": ns,
        "resources": resources(o, rules),
        "cgroupsPath": format!("{}/{}", cgroup_parent(), inp.id),
        "devices": nodes,
    });
    if !o.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if let Some(s) = seccomp(o)? {
        linux["seccomp"] = s;
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process(inp, o, &u)?,
        "root": {"path": inp.rootfs, "readonly": o.read_only},
        "hostname": inp.hostname,
        "mounts": mounts(inp, o),
        "linux": linux,
    });
    if crate::rootless::active() {
        crate::rootless::spec::adapt(&mut spec, inp.id)?;
    }
    Ok(spec)
}

/// The cgroup that holds hull's containers: `/hull` (as docker's `/docker`),
/// or `HULL_CGROUP_PARENT`. A relative parent lands under the caller's own
/// cgroup, which is how the tests keep theirs private and remove it after.
fn cgroup_parent() -> String {
    std::env::var("HULL_CGROUP_PARENT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/hull".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn image() -> ContainerConfig {
        ContainerConfig {
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["a".into()]),
            env: Some(vec!["FOO=1".into(), "PATH=/x".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn args_merge_like_docker() {
        let mut o = ContainerOptions::default();
        assert_eq!(args(&image(), &o).unwrap(), ["/ep", "a"]);
        o.cmd = vec!["b".into()];
        assert_eq!(args(&image(), &o).unwrap(), ["/ep", "b"]);
        o.cmd.clear();
        o.entrypoint = Some("/other".into());
        assert_eq!(args(&image(), &o).unwrap(), ["/other"]);
        o.entrypoint = Some(String::new());
        assert!(args(&image(), &o).is_err());
    }

    #[test]
    fn env_overrides_and_defaults() {
        let o = ContainerOptions {
            env: vec!["FOO=2".into()],
            tty: true,
            ..Default::default()
        };
        let e = env(&image(), &o, "/root", "h");
        assert!(e.contains(&"FOO=2".to_string()) && !e.contains(&"FOO=1".to_string()));
        assert!(e.contains(&"PATH=/x".to_string()));
        assert!(e.contains(&"TERM=xterm".to_string()) && e.contains(&"HOME=/root".to_string()));
    }

    #[test]
    fn caps_add_drop() {
        let o = ContainerOptions {
            cap_drop: vec!["all".into()],
            cap_add: vec!["net_admin".into()],
            ..Default::default()
        };
        assert_eq!(capabilities(&o).unwrap(), ["CAP_NET_ADMIN"]);
        let bad = ContainerOptions {
            cap_add: vec!["nope".into()],
            ..Default::default()
        };
        assert!(capabilities(&bad).is_err());
        assert!(seccomp(&ContainerOptions::default()).unwrap().is_some());
    }
}
