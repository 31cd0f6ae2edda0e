//! docker's namespace, process and etc-file flags of `run`/`create` that the base bundle
//! ([`crate::spec`]) leaves at their defaults: `--init`, `--sysctl`, `--shm-size`,
//! `--group-add`, `--oom-score-adj`, `--pid`, `--ipc`, `--uts`, `--cgroupns`, `--dns`,
//! `--dns-search`, `--dns-option`. Applied as edits to the finished `config.json` value.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::{Engine, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --sysctl {0:?}: expected NAME=VALUE")]
    SysctlSyntax(String),
    #[error("invalid --sysctl {0:?}: not a namespaced sysctl (allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*)")]
    SysctlNotNamespaced(String),
    #[error("invalid --sysctl {0:?}: net.* sysctls cannot be set with --network host")]
    SysctlHostNet(String),
    #[error("invalid --shm-size {0:?} (expected e.g. 64m, a positive size)")]
    ShmSize(String),
    #[error("invalid --oom-score-adj {0}: must be between -1000 and 1000")]
    OomScoreAdj(i64),
    #[error("invalid {flag} {value:?} (expected {expected})")]
    Mode {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{flag} container:{name}: container {name} is not running")]
    JoinNotRunning { flag: &'static str, name: String },
    #[error("--uts host cannot be combined with --hostname")]
    UtsHostname,
    #[error("--init: no init binary found (install Debian's tini: /usr/bin/tini-static), or set HULL_INIT")]
    NoInit,
    #[error("invalid --dns {0:?}: not an IP address")]
    Dns(String),
    #[error("invalid --group-add {0:?}: no such group in the image and not a number")]
    Group(String),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The flags as given (checked by [`Extra::check`] when the options are made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extra {
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    #[serde(default)]
    pub shm_size: Option<u64>,
    #[serde(default)]
    pub group_add: Vec<String>,
    #[serde(default)]
    pub oom_score_adj: Option<i64>,
    /// `--pid`, `--ipc`, `--uts`, `--cgroupns` as given ("" = docker's default).
    #[serde(default)]
    pub pid: String,
    #[serde(default)]
    pub ipc: String,
    #[serde(default)]
    pub uts: String,
    #[serde(default)]
    pub cgroupns: String,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_option: Vec<String>,
    /// `--log-driver`: "" / "json-file" (the shim's json-file log) or "none" (output dropped).
    #[serde(default)]
    pub log_driver: String,
    /// `--log-opt`s as given, checked by [`crate::logs::parse_opts`] (`max-size=`,
    /// `max-file=`: the shim rotates the log).
    #[serde(default)]
    pub log_opts: Vec<String>,
}

impl Extra {
    /// `--log-driver none`: the container's output goes nowhere, and there is no log to read.
    pub fn no_log(&self) -> bool {
        self.log_driver == "none"
    }
}

/// Sysctls a container may set: those of namespaces it owns (docker's list).
fn namespaced(name: &str) -> bool {
    matches!(
        name,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || name.starts_with("fs.mqueue.")
        || name.starts_with("net.")
}

/// `--sysctl NAME=VALUE`.
pub fn parse_sysctl(s: &str) -> Result<(String, String), Error> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => {
            if !namespaced(k) {
                return Err(Error::SysctlNotNamespaced(s.into()));
            }
            Ok((k.into(), v.into()))
        }
        _ => Err(Error::SysctlSyntax(s.into())),
    }
}

/// `--shm-size 64m` (docker's binary units; a bare number is bytes).
pub fn parse_shm_size(s: &str) -> Result<u64, Error> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'm')) => (&t[..i], 1 << 20),
        Some((i, 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(mult).ok_or_else(|| Error::ShmSize(s.into())),
        _ => Err(Error::ShmSize(s.into())),
    }
}

impl Extra {
    /// Checks the namespace modes and ranges; `host_net`: `--network host`.
    pub fn check(&self, host_net: bool, hostname: bool) -> Result<(), Error> {
        let mode =
            |flag: &'static str, v: &str, ok: &[&str], join: bool, expected: &'static str| {
                if v.is_empty()
                    || ok.contains(&v)
                    || (join && v.strip_prefix("container:").is_some_and(|n| !n.is_empty()))
                {
                    Ok(())
                } else {
                    Err(Error::Mode {
                        flag,
                        value: v.into(),
                        expected,
                    })
                }
            };
        mode(
            "--pid",
            &self.pid,
            &["host", "private"],
            true,
            "host, private or container:NAME",
        )?;
        mode(
            "--ipc",
            &self.ipc,
            &["host", "private", "shareable", "none"],
            true,
            "host, private, shareable, none or container:NAME",
        )?;
        mode(
            "--uts",
            &self.uts,
            &["host", "private"],
            false,
            "host or private",
        )?;
        mode(
            "--cgroupns",
            &self.cgroupns,
            &["host", "private"],
            false,
            "host or private",
        )?;
        mode(
            "--log-driver",
            &self.log_driver,
            &["json-file", "none"],
            false,
            "json-file or none",
        )?;
        if let Some(a) = self.oom_score_adj.filter(|a| !(-1000..=1000).contains(a)) {
            return Err(Error::OomScoreAdj(a));
        }
        if host_net {
            if let Some((k, v)) = self.sysctls.iter().find(|(k, _)| k.starts_with("net.")) {
                return Err(Error::SysctlHostNet(format!("{k}={v}")));
            }
        }
        if self.uts == "host" && hostname {
            return Err(Error::UtsHostname);
        }
        if let Some(d) = self.dns.iter().find(|d| d.parse::<IpAddr>().is_err()) {
            return Err(Error::Dns(d.clone()));
        }
        Ok(())
    }
}

/// The init binary `--init` runs as PID 1: `HULL_INIT`, else Debian's static tini.
fn init_binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("HULL_INIT").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    ["/usr/bin/tini-static", "/usr/bin/docker-init"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(Error::NoInit)
}

/// Where the init is bind-mounted in the container (docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

impl Engine {
    /// Applies `x` to the bundle `config` of a container whose directory is `dir`.
    pub(crate) fn apply_extra(
        &self,
        config: &mut Value,
        x: &Extra,
        rootfs: &Path,
        dir: &Path,
    ) -> Result<(), crate::Error> {
        if x.init {
            let init = init_binary()?;
            if let Some(m) = config["mounts"].as_array_mut() {
                m.push(
                    json!({"destination": INIT_PATH, "type": "bind", "source": init,
                    "options": ["rbind", "rprivate", "ro"]}),
                );
            }
            // tini: `--` ends its options; it forwards signals to the child and reaps zombies.
            let mut args = vec![json!(INIT_PATH), json!("--")];
            args.extend(
                config["process"]["args"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            config["process"]["args"] = json!(args);
        }
        if !x.sysctls.is_empty() {
            let mut m = serde_json::Map::new();
            for (k, v) in &x.sysctls {
                m.insert(k.clone(), json!(v));
            }
            config["linux"]["sysctl"] = Value::Object(m);
        }
        if let Some(size) = x.shm_size {
            for m in config["mounts"].as_array_mut().into_iter().flatten() {
                if m["destination"] == "/dev/shm" {
                    m["options"] = json!([
                        "nosuid",
                        "noexec",
                        "nodev",
                        "mode=1777",
                        format!("size={}k", size.div_ceil(1024))
                    ]);
                }
            }
        }
        if !x.group_add.is_empty() {
            let mut gids: Vec<u32> =
                serde_json::from_value(config["process"]["user"]["additionalGids"].clone())
                    .unwrap_or_default();
            for g in &x.group_add {
                let gid = match g.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => {
                        crate::user::resolve(rootfs, &format!("0:{g}"))
                            .map_err(|_| Error::Group(g.clone()))?
                            .gid
                    }
                };
                if !gids.contains(&gid) {
                    gids.push(gid);
                }
            }
            config["process"]["user"]["additionalGids"] = json!(gids);
        }
        if let Some(a) = x.oom_score_adj {
            config["process"]["oomScoreAdj"] = json!(a);
        }
        self.namespaces(config, x)?;
        if !x.dns.is_empty() || !x.dns_search.is_empty() || !x.dns_option.is_empty() {
            write_resolv(dir, x)?;
        }
        Ok(())
    }

    /// `--pid`, `--ipc`, `--uts`, `--cgroupns`: a namespace dropped (host), or joined by path
    /// (`container:NAME`, which must run: its init's `/proc/<pid>/ns/...`).
    fn namespaces(&self, config: &mut Value, x: &Extra) -> Result<(), crate::Error> {
        let modes = [
            ("--pid", "pid", &x.pid),
            ("--ipc", "ipc", &x.ipc),
            ("--uts", "uts", &x.uts),
            ("--cgroupns", "cgroup", &x.cgroupns),
        ];
        for (flag, kind, mode) in modes {
            let join = match mode.as_str() {
                "host" => None,
                m => match m.strip_prefix("container:") {
                    Some(name) => {
                        let r = self.find(name)?;
                        match self.state(&r) {
                            State::Running { pid } | State::Paused { pid } => {
                                Some(format!("/proc/{pid}/ns/{kind}"))
                            }
                            _ => {
                                return Err(Error::JoinNotRunning {
                                    flag,
                                    name: name.into(),
                                }
                                .into())
                            }
                        }
                    }
                    None => continue,
                },
            };
            let Some(ns) = config["linux"]["namespaces"].as_array_mut() else {
                continue;
            };
            match join {
                None => ns.retain(|n| n["type"] != kind),
                Some(path) => {
                    for n in ns.iter_mut().filter(|n| n["type"] == kind) {
                        n["path"] = json!(path);
                    }
                }
            }
            if kind == "uts" && mode == "host" {
                // No UTS namespace of its own: the runtime may not set a hostname.
                if let Some(o) = config.as_object_mut() {
                    o.remove("hostname");
                }
            }
        }
        Ok(())
    }
}

/// resolv.conf from `--dns`, `--dns-search`, `--dns-option` (what is not given is kept).
fn write_resolv(dir: &Path, x: &Extra) -> Result<(), Error> {
    let p = dir.join("resolv.conf");
    let old = std::fs::read_to_string(&p).unwrap_or_default();
    let keep = |prefix: &str, given: bool| -> Vec<String> {
        if given {
            return Vec::new();
        }
        old.lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    out.extend(keep("nameserver", !x.dns.is_empty()));
    out.extend(x.dns.iter().map(|d| format!("nameserver {d}")));
    out.extend(keep("search", !x.dns_search.is_empty()));
    if !x.dns_search.is_empty() {
        out.push(format!("search {}", x.dns_search.join(" ")));
    }
    out.extend(keep("options", !x.dns_option.is_empty()));
    if !x.dns_option.is_empty() {
        out.push(format!("options {}", x.dns_option.join(" ")));
    }
    let text: String = out.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).map_err(|source| Error::Write { path: p, source })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_checked() {
        assert_eq!(
            parse_sysctl("net.ipv4.ip_forward=1").unwrap().0,
            "net.ipv4.ip_forward"
        );
        assert!(matches!(
            parse_sysctl("vm.swappiness=1"),
            Err(Error::SysctlNotNamespaced(_))
        ));
        assert!(parse_sysctl("=1").is_err());
        assert_eq!(parse_shm_size("128m").unwrap(), 128 << 20);
        assert!(parse_shm_size("0").is_err() && parse_shm_size("big").is_err());
        let mut x = Extra {
            pid: "hostile".into(),
            ..Default::default()
        };
        assert!(x.check(false, false).is_err());
        x.pid = "container:db".into();
        x.ipc = "shareable".into();
        assert!(x.check(false, false).is_ok());
        x.uts = "host".into();
        assert!(matches!(x.check(false, true), Err(Error::UtsHostname)));
        x.oom_score_adj = Some(1001);
        assert!(matches!(
            x.check(false, false),
            Err(Error::OomScoreAdj(1001))
        ));
    }
}
