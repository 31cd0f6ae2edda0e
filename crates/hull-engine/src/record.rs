//! The container store: one directory per container under `<root>/ctr/<id>`
//! holding `container.json` (what was asked, what is known), the bundle's
//! `config.json`, the etc files, the logs and the shim's socket. The live
//! state (running, exit code) comes from the shim; an exit code learnt is
//! saved here so it outlives the shim.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::opts::ContainerOptions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {0:?} is ambiguous: it prefixes several ids")]
    Ambiguous(String),
    #[error("the container name {0:?} is already in use by container {1}")]
    NameInUse(String, String),
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the store private")]
    Private(#[source] hull_image::StoreError),
    #[error("corrupt container record {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Replaces `dst` with `data` so that no reader (the shim starting the container, `inspect`)
/// ever sees half of it, and a host crash leaves the old or the new file: a temp file of this
/// writer's own beside it (created new, never through what is there), fsynced, renamed over
/// `dst`, then the directory fsynced for the rename. The temp file goes on failure.
/// Public for the API's own files in a container's directory (`api.json`).
pub fn replace_file(dst: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = dst.parent().unwrap_or(Path::new("."));
    let name = dst.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{n}", std::process::id()));
    let written = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, dst));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: u32,
    /// Unix time in nanoseconds.
    pub at_ns: i128,
    /// The kernel's OOM killer killed a process of the container (docker's `OOMKilled`).
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitInfo {
    /// An exit learnt now: OOM-killed when the counter of `r`'s memory cgroup says so (the
    /// cgroup outlives the exit until the task is deleted), or when that was already learnt
    /// of this exit (the counter may be gone since).
    pub fn of(r: &Record, code: u32, at_ns: i128) -> ExitInfo {
        let known = r
            .exit
            .is_some_and(|x| x.oom_killed && x.code == code && x.at_ns == at_ns);
        ExitInfo {
            code,
            at_ns,
            oom_killed: known
                || r.oom_counter
                    .as_deref()
                    .is_some_and(|f| hull_cgroups::oom_kills(f) > 0),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// As the user wrote it.
    pub image: String,
    pub image_id: String,
    /// Unix time in nanoseconds.
    pub created_ns: i128,
    pub args: Vec<String>,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub stop_signal: Option<String>,
    pub options: ContainerOptions,
    #[serde(default)]
    pub started_ns: Option<i128>,
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    /// Its place on a network of hull's while it holds one (cleared once released).
    #[serde(default)]
    pub net: Option<crate::net::NetSettings>,
    /// Networks connected while it ran (docker's `network connect`), besides `net`'s:
    /// attached again when it starts again, until disconnected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_nets: Vec<crate::net_plug::ExtraNet>,
    /// The address it last had (kept after the release): a restart asks for it again.
    #[serde(default)]
    pub last_ip: Option<std::net::Ipv4Addr>,
    /// Volumes made for the image's `Volumes` paths (removed by `rm -v` and `--rm`).
    #[serde(default)]
    pub anon_volumes: Vec<AnonVolume>,
    /// Its memory cgroup's OOM kill counter ([`oom_counter`]), found when it started.
    #[serde(default)]
    pub oom_counter: Option<PathBuf>,
}

impl Record {
    /// Whether it holds an address on any network (not released since it exited).
    pub fn holds_network(&self) -> bool {
        self.net.is_some() || self.extra_nets.iter().any(|x| x.settings.is_some())
    }
}

/// An anonymous volume: a random name and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnonVolume {
    pub name: String,
    pub target: String,
}

pub struct Containers {
    dir: PathBuf,
}

/// An exclusive lock over the whole container store, held while names are
/// checked and records created or removed.
pub struct StoreLock(File);

impl Drop for StoreLock {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor we own; unlocking cannot corrupt memory.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

pub fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        && n.len() <= 128
}

impl Containers {
    pub fn open(root: &Path) -> Result<Containers, Error> {
        // Every command opens this: a store made with wider modes is fixed on its next use.
        hull_image::store::make_private(root).map_err(Error::Private)?;
        let dir = root.join("ctr");
        hull_image::store::private_dir(&dir).map_err(Error::Private)?;
        Ok(Containers { dir })
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn lock(&self) -> Result<StoreLock, Error> {
        let p = self.dir.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&p)(std::io::Error::last_os_error()));
        }
        Ok(StoreLock(f))
    }

    pub fn save(&self, r: &Record) -> Result<(), Error> {
        // A temporary name of this writer's own: two saves of one record at once (the
        // API service's start and its wait, or two hull processes) would otherwise share
        // one file, and the second rename would find it gone (ENOENT).
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.dir_of(&r.id);
        let tmp = dir.join(format!(".container.json.{}.{n}", std::process::id()));
        let data = serde_json::to_vec_pretty(r).map_err(|source| Error::Corrupt {
            path: tmp.clone(),
            source,
        })?;
        std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
        let dst = dir.join("container.json");
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    fn load(&self, id: &str) -> Result<Record, Error> {
        let p = self.dir_of(id).join("container.json");
        let data = std::fs::read(&p).map_err(io_err(&p))?;
        serde_json::from_slice(&data).map_err(|source| Error::Corrupt { path: p, source })
    }

    /// All containers, oldest first. Directories without a record (a create
    /// that crashed before writing one) are skipped.
    pub fn list(&self) -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.path().join("container.json").exists() {
                continue;
            }
            match self.load(&name) {
                Ok(r) => out.push(r),
                // Removed between the directory read and ours (another `rm`, an
                // AutoRemove of the API service): gone, as if listed a moment later.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|r| r.created_ns);
        Ok(out)
    }

    /// By exact name, full id, or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Record, Error> {
        // A full id names its directory: no need to read every record (a name
        // of 64 hex digits that is not an id finds no directory and falls
        // through; one equal to another container's random id cannot happen).
        if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            match self.load(key) {
                Ok(r) => return Ok(r),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == key || r.id == key) {
            return Ok(r.clone());
        }
        let mut hits = all.into_iter().filter(|r| r.id.starts_with(key));
        match (hits.next(), hits.next()) {
            (Some(r), None) if !key.is_empty() => Ok(r),
            (Some(_), Some(_)) => Err(Error::Ambiguous(key.into())),
            _ => Err(Error::NotFound(key.into())),
        }
    }

    pub fn check_name(&self, name: &str) -> Result<(), Error> {
        if !valid_name(name) {
            return Err(Error::BadName(name.into()));
        }
        match self.list()?.into_iter().find(|r| r.name == name) {
            Some(r) => Err(Error::NameInUse(name.into(), r.id)),
            None => Ok(()),
        }
    }

    pub fn remove_dir(&self, id: &str) -> Result<(), Error> {
        let d = self.dir_of(id);
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&d)(e)),
            _ => Ok(()),
        }
    }
}

/// 64 hex digits from the kernel's random pool.
pub fn new_id() -> Result<String, Error> {
    let p = Path::new("/dev/urandom");
    let mut b = [0u8; 32];
    File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err(p))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const ADJ: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "zen", "bold",
];
const NOUN: &[&str] = &[
    "otter", "falcon", "heron", "lynx", "marten", "newt", "orca", "puffin", "raven", "seal",
    "tern", "vole", "wren", "yak", "bison", "crane", "dingo", "egret", "gecko", "ibis",
];

/// docker-style `adjective_noun` name derived from the id.
pub fn name_for(id: &str, taken: impl Fn(&str) -> bool) -> String {
    let n = u64::from_str_radix(id.get(..12).unwrap_or("0"), 16).unwrap_or(0);
    let base = format!(
        "{}_{}",
        ADJ[(n % ADJ.len() as u64) as usize],
        NOUN[((n / 97) % NOUN.len() as u64) as usize]
    );
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}{i}"))
        .find(|c| !taken(c))
        .unwrap_or(base)
}

/// Now, as unix nanoseconds.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
