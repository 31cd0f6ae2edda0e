//! IPAM and the persistent lease store: one JSON file per network under the state dir, written
//! atomically (temp file + fsync + rename) under `flock`s that the kernel drops if hull dies.
//!
//! Locks: `<dir>/lock` is taken shared by attach/detach and exclusively by network
//! create/remove/reset; `<dir>/<name>.lock` serialises attach/detach on one network.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

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

/// The state directory holding the network files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Which of a network's two files a temp file is for (see [`Store::tmp_path`]).
#[derive(Debug, Clone, Copy)]
enum TmpKind {
    Leases,
    Config,
}

/// A held lock; dropping it unlocks.
pub struct Lock(#[allow(dead_code)] Flock<File>);

impl Store {
    /// Opens (creating, mode 0700) the state dir.
    pub fn open(dir: &Path) -> Result<Store, IpamError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| IpamError::Io(dir.to_path_buf(), e))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_file(&self, file: &str, arg: FlockArg) -> Result<Lock, IpamError> {
        let path = self.dir.join(file);
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

    /// The lock of one network's leases.
    pub fn lock_network(&self, name: &str) -> Result<Lock, IpamError> {
        check_name(name)?;
        self.lock_file(&format!("{name}.lock"), FlockArg::LockExclusive)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The durable copy of a network's definition, written once at create: lease updates are
    /// not fsynced, so after a power loss the network file may be empty or torn, and this is
    /// what the definition is recovered from. A dot file: never taken for a network.
    fn config_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.config.json"))
    }

    /// The temp file a network file (`kind` "leases") or its durable copy ("config") is
    /// written to before the rename. Named from the network and the kind, not from the target
    /// file: dots are allowed in names, so `.a.config.json` (network `a`'s copy) and
    /// `a.config.json` (network `a.config`'s file) would share a temp file derived from their
    /// names, and two writers under different network locks would rename each other's bytes.
    /// `.<name>.<kind>.tmp` is unambiguous: the kind is the last component before `.tmp`.
    fn tmp_path(&self, name: &str, kind: TmpKind) -> PathBuf {
        let kind = match kind {
            TmpKind::Leases => "leases",
            TmpKind::Config => "config",
        };
        self.dir.join(format!(".{name}.{kind}.tmp"))
    }

    /// Reads a network file; `None` when there is none. A torn file (only a host crash makes
    /// one: updates land by rename) comes back as the network's definition without leases —
    /// after a host crash every lease is stale anyway (no veth or netns outlives it).
    pub fn read(&self, name: &str) -> Result<Option<NetworkState>, IpamError> {
        check_name(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IpamError::Io(path, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let saved = fs::read(self.config_path(name))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<NetworkConfig>(&b).ok());
                let Some(config) = saved else {
                    return Err(IpamError::Corrupt(path, e));
                };
                tracing::warn!(
                    "{}: unreadable ({e}; a host crash during a lease update?): network {name} \
                     restored from its definition, without leases",
                    path.display()
                );
                Ok(Some(NetworkState::new(config)))
            }
        }
    }

    /// Writes a network file atomically and durably (fsync of the file and the directory),
    /// with the durable copy of its definition: for create and reset.
    pub fn write(&self, state: &NetworkState) -> Result<(), IpamError> {
        let name = &state.config.name;
        check_name(name)?;
        let config = self.config_path(name);
        let bytes = serde_json::to_vec_pretty(&state.config)
            .map_err(|e| IpamError::Corrupt(config.clone(), e))?;
        self.replace(&config, &self.tmp_path(name, TmpKind::Config), &bytes, true)?;
        let path = self.path(name);
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| IpamError::Corrupt(path.clone(), e))?;
        self.replace(&path, &self.tmp_path(name, TmpKind::Leases), &bytes, true)
    }

    /// Writes a network file atomically after a lease change, without fsyncs: leases need not
    /// survive a host crash (nothing they describe does), and each fsync cost 0.3 ms on a
    /// quiet disk and up to 375 ms under write load, four per `run --rm` on a network. A
    /// process crash loses nothing (the page cache has it); a host crash may leave the file
    /// torn, which [`Store::read`] recovers from the durable definition.
    pub fn write_leases(&self, state: &NetworkState) -> Result<(), IpamError> {
        let name = &state.config.name;
        check_name(name)?;
        if !self.config_path(name).exists() {
            // A network made before the definition had a copy of its own.
            return self.write(state);
        }
        let path = self.path(name);
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| IpamError::Corrupt(path.clone(), e))?;
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

    /// Removes a network file, its durable copy, its lock file and any temp file a crash
    /// left (no writer runs: delete is called under the exclusive store lock).
    pub fn delete(&self, name: &str) -> Result<(), IpamError> {
        check_name(name)?;
        for p in [
            self.path(name),
            self.config_path(name),
            self.tmp_path(name, TmpKind::Leases),
            self.tmp_path(name, TmpKind::Config),
            self.dir.join(format!("{name}.lock")),
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

    /// Every network file.
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
mod tests {
    use super::*;

    fn config(subnet: &str) -> NetworkConfig {
        let subnet: Subnet = subnet.parse().expect("subnet");
        NetworkConfig {
            name: "t".into(),
            bridge: "htest0".into(),
            subnet,
            gateway: subnet.gateway(),
            mtu: 1500,
            created: 0,
        }
    }

    fn lease(id: &str, ip: Ipv4Addr) -> Lease {
        Lease {
            container_id: id.into(),
            ip,
            names: vec![id.into()],
            host_veth: format!("v{id}"),
            ports: vec![],
            hosts_file: None,
        }
    }

    fn alloc(s: &mut NetworkState, id: &str) -> Result<Ipv4Addr, IpamError> {
        let ip = s.pick(id, None)?;
        s.insert(lease(id, ip));
        Ok(ip)
    }

    #[test]
    fn allocate_release_reuse() {
        let mut s = NetworkState::new(config("10.87.0.0/24"));
        assert_eq!(alloc(&mut s, "a").expect("a"), Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(alloc(&mut s, "b").expect("b"), Ipv4Addr::new(10, 87, 0, 3));
        assert!(matches!(
            alloc(&mut s, "a"),
            Err(IpamError::AlreadyAttached { .. })
        ));
        assert_eq!(
            s.release("a").expect("lease").ip,
            Ipv4Addr::new(10, 87, 0, 2)
        );
        assert!(s.release("a").is_none());
        assert_eq!(alloc(&mut s, "c").expect("c"), Ipv4Addr::new(10, 87, 0, 2));
    }

    #[test]
    fn requested_addresses() {
        let mut s = NetworkState::new(config("10.87.0.0/24"));
        let want = Ipv4Addr::new(10, 87, 0, 77);
        assert_eq!(s.pick("a", Some(want)).expect("free"), want);
        s.insert(lease("a", want));
        assert!(matches!(
            s.pick("b", Some(want)),
            Err(IpamError::InUse { .. })
        ));
        for bad in [
            [10, 87, 0, 0],
            [10, 87, 0, 1],
            [10, 87, 0, 255],
            [10, 88, 0, 5],
        ] {
            let e = s
                .pick("b", Some(Ipv4Addr::from(bad)))
                .expect_err("reserved");
            assert!(matches!(e, IpamError::NotAssignable { .. }), "{e}");
        }
    }

    #[test]
    fn exhaustion_never_hands_out_reserved() {
        let mut s = NetworkState::new(config("10.87.0.0/29"));
        let mut got = vec![];
        for i in 0..5 {
            got.push(alloc(&mut s, &format!("c{i}")).expect("alloc"));
        }
        let e = alloc(&mut s, "c5").expect_err("full");
        assert!(
            e.to_string()
                .contains("no free address left in 10.87.0.0/29"),
            "{e}"
        );
        let octets: Vec<u8> = got.iter().map(|ip| ip.octets()[3]).collect();
        assert_eq!(octets, [2, 3, 4, 5, 6]);
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        {
            let _g = store.lock_network("t").expect("lock");
            let mut s = NetworkState::new(config("10.87.0.0/24"));
            alloc(&mut s, "a").expect("a");
            store.write(&s).expect("write");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let mut s = store.read("t").expect("read").expect("present");
        assert_eq!(s.leases["a"].ip, Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(alloc(&mut s, "b").expect("b"), Ipv4Addr::new(10, 87, 0, 3));
        assert_eq!(store.names().expect("names"), ["t"]);
        store.delete("t").expect("delete");
        assert!(store.read("t").expect("read").is_none());
        assert!(store.names().expect("names").is_empty());
        assert!(matches!(store.read("../x"), Err(IpamError::BadName(_))));
    }

    #[test]
    fn lease_writes_recover_from_a_torn_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut s = NetworkState::new(config("10.87.0.0/24"));
        store.write(&s).expect("write");
        alloc(&mut s, "a").expect("a");
        store.write_leases(&s).expect("write leases");
        assert_eq!(store.read("t").expect("read").expect("t").leases.len(), 1);
        // What a host crash can leave of an unsynced rename: an empty file.
        std::fs::write(dir.path().join("t.json"), b"").expect("tear");
        let back = store.read("t").expect("recovered").expect("t");
        assert_eq!(back.config, s.config);
        assert!(back.leases.is_empty());
        assert_eq!(
            store.names().expect("names"),
            ["t"],
            "the copy is no network"
        );
        store.delete("t").expect("delete");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    fn named(name: &str, subnet: &str) -> NetworkState {
        let mut c = config(subnet);
        c.name = name.into();
        NetworkState::new(c)
    }

    #[test]
    fn dotted_names_have_their_own_temp_files() {
        // Network `a`'s durable copy `.a.config.json` and network `a.config`'s file
        // `a.config.json` once shared the temp file `.a.config.json.tmp`.
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let tmps = [
            store.tmp_path("a", TmpKind::Leases),
            store.tmp_path("a", TmpKind::Config),
            store.tmp_path("a.config", TmpKind::Leases),
            store.tmp_path("a.config", TmpKind::Config),
            store.tmp_path("a.leases", TmpKind::Leases),
            store.tmp_path("a.leases", TmpKind::Config),
        ];
        for (i, x) in tmps.iter().enumerate() {
            for y in &tmps[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn dotted_names_written_concurrently_keep_their_contents() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let a = named("a", "10.87.0.0/24");
        let ac = named("a.config", "10.88.0.0/24");
        store.write(&a).expect("write a");
        store.write(&ac).expect("write a.config");
        // Each writer holds only its own network's lock, as attach/detach do; `a`'s writer
        // also rewrites its durable copy, as a lease write on a network older than the copy
        // does.
        std::thread::scope(|t| {
            t.spawn(|| {
                for _ in 0..300 {
                    let _g = store.lock_network("a").expect("lock a");
                    store.write(&a).expect("write a");
                }
            });
            t.spawn(|| {
                for _ in 0..300 {
                    let _g = store.lock_network("a.config").expect("lock a.config");
                    store.write_leases(&ac).expect("write a.config");
                }
            });
        });
        assert_eq!(store.read("a").expect("read a"), Some(a.clone()));
        assert_eq!(store.read("a.config").expect("read"), Some(ac.clone()));
        let copy = std::fs::read(dir.path().join(".a.config.json")).expect("copy of a");
        let copy: NetworkConfig = serde_json::from_slice(&copy).expect("a's definition");
        assert_eq!(copy, a.config);
        assert_eq!(store.names().expect("names"), ["a", "a.config"]);
        store.delete("a").expect("delete a");
        store.delete("a.config").expect("delete a.config");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn lock_excludes_other_processes() {
        // flock locks belong to the open file description, so a second open in this
        // process contends like another process would.
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let held = store.lock_network("t").expect("lock");
        let path = dir.path().join("t.lock");
        let f = File::open(&path).expect("open lock");
        let try2 = Flock::lock(f, FlockArg::LockExclusiveNonblock);
        assert!(try2.is_err(), "second lock must fail while held");
        drop(held);
        let f = File::open(&path).expect("open lock");
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
