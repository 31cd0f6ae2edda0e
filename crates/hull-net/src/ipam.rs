//! IPAM and the host-wide lease store. Network definitions are durable files in the state dir
//! (`/var/lib/hull/networks/<name>.json`, fsynced); leases are runtime files in the run dir
//! (`/run/hull/net/<name>.json`), lost at a reboot like the veths and namespaces they describe.
//! Both are shared by every `--root` on the host, so any number of roots share one IPAM; each
//! lease names the root (`owner`) and container (`holder`) holding it. Files are replaced
//! atomically (temp file + rename) under `flock`s that the kernel drops if hull dies.
//!
//! Locks (in the run dir): `lock` is taken shared by attach/detach and exclusively by network
//! create/remove/reset; `<name>.lock` serialises attach/detach on one network.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::files::ExtraHost;
use crate::ports::PortMapping;
use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("state dir {0}: {1}")]
    Io(PathBuf, #[source] io::Error),
    #[error("lock {0}: {1}")]
    Lock(PathBuf, #[source] nix::Error),
    #[error("network file {0}: {1}")]
    Corrupt(PathBuf, #[source] serde_json::Error),
    #[error("invalid network name {0:?}: use letters, digits, '_', '.', '-' (at most 64)")]
    BadName(String),
    #[error("no free address left in {subnet} (network {network})")]
    Exhausted { network: String, subnet: Subnet },
    #[error("address {ip} is not assignable in {subnet} (network {network})")]
    NotAssignable {
        network: String,
        subnet: Subnet,
        ip: Ipv4Addr,
    },
    #[error("address {ip} is already leased to container {holder} on network {network}")]
    InUse {
        network: String,
        ip: Ipv4Addr,
        holder: String,
    },
    #[error("container {container} is already attached to network {network} ({ip})")]
    AlreadyAttached {
        network: String,
        container: String,
        ip: Ipv4Addr,
    },
}

/// A network's definition, as `hull network inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    /// The Linux bridge (at most 15 bytes).
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    /// Seconds since the epoch.
    pub created: u64,
    /// The `--root` that created it: its `system reset` removes the network once no other
    /// root's container is on it. Definitions are host-wide, every root sees and uses them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PathBuf>,
}

/// One container's lease on a network, with everything teardown needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub container_id: String,
    pub ip: Ipv4Addr,
    /// Names other containers resolve it by (container name, hostname, aliases).
    pub names: Vec<String>,
    /// The host end of its veth pair.
    pub host_veth: String,
    pub ports: Vec<PortMapping>,
    /// The container's bind-mounted hosts file, rewritten whenever the network changes.
    pub hosts_file: Option<PathBuf>,
    /// The `--root` whose container holds it (`None`: any root's reset releases it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<PathBuf>,
    /// A path that exists while the holder does (its container directory): once it is gone
    /// (the container or its whole root deleted without `rm`), the lease is stale and the
    /// next attach to the network reclaims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<PathBuf>,
    /// `--add-host` entries of its hosts file (kept across rewrites).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<ExtraHost>,
    /// Hot-plugged into a container already on another network (no default route through
    /// it): its hosts file names the container by its address on that other network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secondary: bool,
}

impl Lease {
    /// Whether the holder is known to be gone (see [`Lease::holder`]).
    pub fn is_stale(&self) -> bool {
        self.holder.as_ref().is_some_and(|h| {
            matches!(std::fs::symlink_metadata(h), Err(e) if e.kind() == io::ErrorKind::NotFound)
        })
    }
}

/// The leases file of a network (in the run dir).
#[derive(Debug, Default, Serialize, Deserialize)]
struct LeaseFile {
    leases: BTreeMap<String, Lease>,
}

/// A definition file as stored: hull before host-wide state kept the leases in it too.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredConfig {
    Config(NetworkConfig),
    WithLeases { config: NetworkConfig },
}

/// A network file: the definition and its leases by container id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub config: NetworkConfig,
    pub leases: BTreeMap<String, Lease>,
}

impl NetworkState {
    pub fn new(config: NetworkConfig) -> Self {
        NetworkState {
            config,
            leases: BTreeMap::new(),
        }
    }

    /// Picks an address for `container_id`: `requested` if given and free, else the lowest
    /// free one. Never the network, gateway or broadcast address. Does not record it.
    pub fn pick(
        &self,
        container_id: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let net = &self.config;
        if let Some(l) = self.leases.get(container_id) {
            return Err(IpamError::AlreadyAttached {
                network: net.name.clone(),
                container: container_id.to_string(),
                ip: l.ip,
            });
        }
        let holder = |ip: Ipv4Addr| self.leases.values().find(|l| l.ip == ip);
        if let Some(ip) = requested {
            if !net.subnet.is_assignable(ip) {
                return Err(IpamError::NotAssignable {
                    network: net.name.clone(),
                    subnet: net.subnet,
                    ip,
                });
            }
            if let Some(l) = holder(ip) {
                return Err(IpamError::InUse {
                    network: net.name.clone(),
                    ip,
                    holder: l.container_id.clone(),
                });
            }
            return Ok(ip);
        }
        net.subnet
            .assignable()
            .find(|ip| holder(*ip).is_none())
            .ok_or_else(|| IpamError::Exhausted {
                network: net.name.clone(),
                subnet: net.subnet,
            })
    }

    /// Records a lease (after `pick`).
    pub fn insert(&mut self, lease: Lease) {
        self.leases.insert(lease.container_id.clone(), lease);
    }

    /// Drops a container's lease, returning it.
    pub fn release(&mut self, container_id: &str) -> Option<Lease> {
        self.leases.remove(container_id)
    }
}

/// Checks a network name (it becomes a file name and an nft comment).
pub fn check_name(name: &str) -> Result<(), IpamError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(IpamError::BadName(name.to_string()))
    }
}

/// The two directories of the network state: definitions (`dir`) and leases with the locks
/// (`run`). They must differ: both hold `<name>.json`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    run: PathBuf,
}

/// Which of a network's two files a temp file is for (see [`Store::tmp_path`]).
#[derive(Debug, Clone, Copy)]
enum TmpKind {
    Leases,
    Config,
}

/// A held lock; dropping it unlocks.
pub struct Lock(#[allow(dead_code)] Flock<File>);

fn mkdir(dir: &Path) -> Result<(), IpamError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| IpamError::Io(dir.to_path_buf(), e))
}

impl Store {
    /// Opens (creating, mode 0700) the definitions dir `dir` and the run dir `run`.
    pub fn open(dir: &Path, run: &Path) -> Result<Store, IpamError> {
        if dir == run {
            return Err(IpamError::Io(
                run.to_path_buf(),
                io::Error::other("the run dir must differ from the definitions dir"),
            ));
        }
        mkdir(dir)?;
        mkdir(run)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            run: run.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    fn lock_file(&self, file: &str, arg: FlockArg) -> Result<Lock, IpamError> {
        let path = self.run.join(file);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IpamError::Io(path.clone(), e))?;
        Flock::lock(f, arg)
            .map(Lock)
            .map_err(|(_, e)| IpamError::Lock(path, e))
    }

    /// The store-wide lock: shared for attach/detach, exclusive for create/remove/reset.
    pub fn lock_all(&self, exclusive: bool) -> Result<Lock, IpamError> {
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        self.lock_file("lock", arg)
    }

    /// The host-wide lock of published ports, taken under a network's lock: held from the
    /// check of a container's ports to the write of its lease, as attaches to two networks
    /// (each under its own network's lock only) could otherwise both take one port. A dot
    /// name, never a network's.
    pub fn lock_ports(&self) -> Result<Lock, IpamError> {
        self.lock_file(".ports.lock", FlockArg::LockExclusive)
    }

    /// The lock of one network's leases.
    pub fn lock_network(&self, name: &str) -> Result<Lock, IpamError> {
        check_name(name)?;
        self.lock_file(&format!("{name}.lock"), FlockArg::LockExclusive)
    }

    /// A network's durable definition.
    fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// A network's leases.
    fn leases_path(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.json"))
    }

    /// The temp file a definition or leases file is written to before the rename: a dot file
    /// (never taken for a network) in the target's directory, `.<name>.<kind>.tmp`, so that
    /// dotted names (`a` and `a.config`) never share one.
    fn tmp_path(&self, name: &str, kind: TmpKind) -> PathBuf {
        match kind {
            TmpKind::Leases => self.run.join(format!(".{name}.leases.tmp")),
            TmpKind::Config => self.dir.join(format!(".{name}.config.tmp")),
        }
    }

    /// Reads a network; `None` when it is not defined. Missing leases are none; a torn
    /// leases file (only a host crash makes one: updates land by rename, and /run is
    /// usually a tmpfs) reads as none: after a host crash every lease is stale anyway.
    pub fn read(&self, name: &str) -> Result<Option<NetworkState>, IpamError> {
        check_name(name)?;
        let path = self.config_path(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IpamError::Io(path, e)),
        };
        let config = match serde_json::from_slice(&bytes) {
            Ok(StoredConfig::Config(c) | StoredConfig::WithLeases { config: c }) => c,
            Err(e) => return Err(IpamError::Corrupt(path, e)),
        };
        let path = self.leases_path(name);
        let leases = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<LeaseFile>(&bytes) {
                Ok(f) => f.leases,
                Err(e) => {
                    tracing::warn!(
                        "{}: unreadable ({e}; a host crash during a lease update?): network \
                         {name} has no leases",
                        path.display()
                    );
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(IpamError::Io(path, e)),
        };
        Ok(Some(NetworkState { config, leases }))
    }

    /// Writes a network's definition atomically and durably (fsync of the file and the
    /// directory), and its leases: for create and reset.
    pub fn write(&self, state: &NetworkState) -> Result<(), IpamError> {
        let name = &state.config.name;
        check_name(name)?;
        let path = self.config_path(name);
        let bytes = serde_json::to_vec_pretty(&state.config)
            .map_err(|e| IpamError::Corrupt(path.clone(), e))?;
        self.replace(&path, &self.tmp_path(name, TmpKind::Config), &bytes, true)?;
        self.write_leases(state)
    }

    /// Writes a network's leases atomically after a change, without fsyncs: leases need not
    /// survive a host crash (nothing they describe does), and each fsync cost 0.3 ms on a
    /// quiet disk and up to 375 ms under write load, four per `run --rm` on a network.
    pub fn write_leases(&self, state: &NetworkState) -> Result<(), IpamError> {
        let name = &state.config.name;
        check_name(name)?;
        let path = self.leases_path(name);
        let file = LeaseFile {
            leases: state.leases.clone(),
        };
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| IpamError::Corrupt(path.clone(), e))?;
        self.replace(&path, &self.tmp_path(name, TmpKind::Leases), &bytes, false)
    }

    /// Replaces `path` by writing `tmp` and renaming it, fsyncing both when `durable`.
    fn replace(
        &self,
        path: &Path,
        tmp: &Path,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), IpamError> {
        let io = |e| IpamError::Io(tmp.to_path_buf(), e);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        if durable {
            f.sync_all().map_err(io)?;
        }
        fs::rename(tmp, path).map_err(|e| IpamError::Io(path.to_path_buf(), e))?;
        if durable {
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Removes a network's definition, leases, lock file and any temp file a crash left (no
    /// writer runs: delete is called under the exclusive store lock).
    pub fn delete(&self, name: &str) -> Result<(), IpamError> {
        check_name(name)?;
        for p in [
            self.config_path(name),
            self.leases_path(name),
            self.tmp_path(name, TmpKind::Leases),
            self.tmp_path(name, TmpKind::Config),
            self.run.join(format!("{name}.lock")),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::Io(p, e)),
            }
        }
        Ok(())
    }

    /// Names of all networks, sorted.
    pub fn names(&self) -> Result<Vec<String>, IpamError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| IpamError::Io(self.dir.clone(), e))?;
        let mut names: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every network.
    pub fn all(&self) -> Result<Vec<NetworkState>, IpamError> {
        let mut out = Vec::new();
        for n in self.names()? {
            if let Some(s) = self.read(&n)? {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;
