//! The create path: rootfs, bundle (etc files, anonymous volumes, `config.json`), shim and
//! `hullc create`, then the network attach while the container's process still waits for
//! `start`. Whatever fails, nothing is left behind.

use std::path::{Path, PathBuf};

use hull_image::{Durability, RootfsMode, Store};
use hull_net::NetnsConfig;

use crate::engine::{io, Engine, Error};
use crate::net::NetPlan;
use crate::opts::{ContainerOptions, MountSpec};
use crate::record::{self, AnonVolume, Record};
use crate::shim::{self, Io};
use crate::spec::{self, Inputs, ResolvedMount};
use crate::{logs, volume};

impl Engine {
    /// Creates a container (rootfs, bundle, shim, `hullc create`, network) ready to
    /// start. Nothing is left behind when it fails.
    pub fn create(&self, image: &str, o: &ContainerOptions) -> Result<Record, Error> {
        // Before anything is made: both are needed to get a container running.
        self.hullc()?;
        self.shim_bin()?;
        let _lock = self.containers.lock()?;
        let mut store = Store::open(&self.root)?;
        let img = match store.lookup(image) {
            Ok(i) => i,
            Err(hull_image::StoreError::NotFound(_)) => return Err(Error::NoImage(image.into())),
            Err(e) => return Err(e.into()),
        };
        if let Some(n) = &o.name {
            self.containers.check_name(n)?;
        }
        crate::opts::check_publish(o)?;
        if o.auto_remove && !o.restart.is_none() {
            return Err(crate::policy::Error::AutoRemove(o.restart.name.clone()).into());
        }
        o.health.check()?;
        let plan = self.plan_network(o)?;
        let id = record::new_id()?;
        let name = match &o.name {
            Some(n) => n.clone(),
            None => {
                let names: Vec<String> = self
                    .containers
                    .list()?
                    .into_iter()
                    .map(|r| r.name)
                    .collect();
                record::name_for(&id, |c| names.iter().any(|n| n == c))
            }
        };
        let cfg = img.config.config.clone().unwrap_or_default();
        let anon_volumes = anonymous_volumes(&cfg, o)?;
        // `--rm`: the upper dir dies with the container, so it need not survive a host crash;
        // a volatile overlay spares the unmount's flush of the store's whole filesystem.
        let durability = if o.auto_remove {
            Durability::Volatile
        } else {
            Durability::Durable
        };
        let rootfs = store.prepare_rootfs_with(image, &id, RootfsMode::Auto, durability)?;
        let dir = self.containers.dir_of(&id);
        let mut rec = Record {
            id: id.clone(),
            name,
            image: image.into(),
            image_id: img.id.to_string(),
            created_ns: record::now_ns(),
            args: spec::args(&cfg, o).unwrap_or_default(),
            hostname: o.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
            rootfs: rootfs.path.clone(),
            stop_signal: cfg.stop_signal.clone(),
            options: o.clone(),
            started_ns: None,
            exit: None,
            net: None,
            extra_nets: Vec::new(),
            last_ip: None,
            anon_volumes,
            oom_counter: None,
        };
        let made = std::fs::create_dir(&dir)
            .map_err(io("cannot create container directory", &dir))
            .and_then(|()| self.containers.save(&rec).map_err(Error::from))
            .and_then(|()| self.build(&rec, &cfg, &dir, &plan));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = store.teardown_rootfs(&id);
            self.remove_anon_volumes(&rec);
            return Err(e);
        }
        drop(store);
        let launched = self
            .launch(&rec, &dir)
            .and_then(|pid| Ok(self.attach(&rec, pid, None)?));
        match launched {
            Ok(net) => {
                rec.last_ip = net.as_ref().map(|n| n.ip);
                rec.net = net;
            }
            Err(e) => {
                let _ = self.cleanup(&rec, true);
                return Err(e);
            }
        }
        if let Err(e) = self.containers.save(&rec) {
            let _ = self.cleanup(&rec, true);
            return Err(e.into());
        }
        self.emit(&rec, "create", &[]);
        Ok(rec)
    }

    fn resolve_mounts(&self, rec: &Record) -> Result<Vec<ResolvedMount>, Error> {
        let mut out = Vec::new();
        for m in &rec.options.mounts {
            let (source, readonly, tmpfs) = match m {
                MountSpec::Bind {
                    source, readonly, ..
                } => {
                    if !source.exists() {
                        return Err(Error::BindSource(source.clone()));
                    }
                    (source.clone(), *readonly, false)
                }
                MountSpec::Volume {
                    name,
                    readonly,
                    target,
                } => {
                    let src = self.volumes.ensure(name)?;
                    // docker fills an empty volume from the image (unless `nocopy`).
                    volume::populate(&rec.rootfs, target, &src)?;
                    (src, *readonly, false)
                }
                MountSpec::Tmpfs { .. } => (PathBuf::new(), false, true),
            };
            out.push(ResolvedMount {
                source,
                target: m.target().into(),
                readonly,
                tmpfs,
            });
        }
        for v in &rec.anon_volumes {
            let source = self.volumes.ensure(&v.name)?;
            // docker's copy-up: a fresh volume starts with the image's content at its path.
            volume::populate(&rec.rootfs, &v.target, &source)?;
            out.push(ResolvedMount {
                source,
                target: v.target.clone(),
                readonly: false,
                tmpfs: false,
            });
        }
        Ok(out)
    }

    /// Writes the bundle: etc files, volumes, `config.json`, the stdin FIFO.
    fn build(
        &self,
        rec: &Record,
        cfg: &hull_image::ContainerConfig,
        dir: &Path,
        plan: &NetPlan,
    ) -> Result<(), Error> {
        let o = &rec.options;
        let mounts = self.resolve_mounts(rec)?;
        write_etc(dir, &rec.hostname, &plan.netns)?;
        self.write_add_hosts(dir, o)?;
        let mut config = spec::build(
            &Inputs {
                id: &rec.id,
                image: cfg,
                rootfs: &rec.rootfs,
                mounts: &mounts,
                etc_dir: dir,
                shared_etc: plan.shared_etc.as_deref(),
                netns: &plan.netns,
                hostname: &rec.hostname,
            },
            o,
        )?;
        // CDI devices (`--device vendor.com/class=name`, `--gpus`): their edits on top.
        hull_cdi::apply(&mut config, &o.cdi_devices, &hull_cdi::spec_dirs())?;
        self.apply_extra(&mut config, &o.extra, &rec.rootfs, dir)?;
        self.write_policy(rec, cfg.healthcheck.as_ref(), dir)?;
        crate::events::annotate(&mut config, &self.journal(), rec);
        let p = dir.join("config.json");
        let data = serde_json::to_vec_pretty(&config).unwrap_or_default();
        std::fs::write(&p, data).map_err(io("cannot write", &p))?;
        if o.stdin {
            make_fifo(&dir.join("stdin"))?;
        }
        Ok(())
    }

    /// Starts the shim and has it run `hullc create`; init's pid.
    fn launch(&self, rec: &Record, dir: &Path) -> Result<u32, Error> {
        shim::spawn(self.shim_bin()?, dir, &rec.id)?;
        self.create_task(rec, dir)
    }

    /// Has the container's shim run `hullc create`; init's pid.
    pub(crate) fn create_task(&self, rec: &Record, dir: &Path) -> Result<u32, Error> {
        let s = self.shim_for(&rec.id)?;
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        // `--log-driver none`: the shim copies the output to /dev/null (it must still be read,
        // or a terminal's buffer fills and the container blocks).
        let out = if rec.options.extra.no_log() {
            "/dev/null".to_string()
        } else {
            // Checked when the options were made.
            let (size, files) = logs::parse_opts(&rec.options.extra.log_opts).unwrap_or_default();
            logs::shim_path(dir, size, files)
        };
        let io = Io {
            stdin: if rec.options.stdin {
                path("stdin")
            } else {
                String::new()
            },
            stdout: out.clone(),
            // A terminal has one stream.
            stderr: if rec.options.tty { String::new() } else { out },
            terminal: rec.options.tty,
        };
        Ok(s.create(dir, &io, self.hullc()?, &self.hullc_root())?)
    }

    /// Makes an exited container's task again (docker's `start` of a stopped container): the
    /// same directory, bundle, rootfs with its upper layer, name and logs; the old task goes
    /// (deleted through the shim, which is kept; a new shim when it is gone), then a fresh
    /// `hullc create` and network attach, asking for the old address again and re-publishing
    /// its ports. On failure the container stays exited and `rm` cleans up as usual.
    pub(crate) fn recreate(&self, r: &Record) -> Result<Record, Error> {
        let _lock = self.containers.lock()?;
        let dir = self.dir(r);
        let plan = self.plan_network(&r.options)?;
        // Join a `container:` target's namespace as it is now (its pid is new if it restarted).
        if let NetnsConfig::Join(path) = &plan.netns {
            set_netns_path(&dir.join("config.json"), path)?;
        }
        // Released at the exit already, unless that failed: then now, before the new attach.
        self.release_network(&r.id)?;
        let reused = match self.shim(r) {
            Ok(s) => s.delete("").is_ok(),
            Err(_) => false,
        };
        let pid = if reused {
            self.create_task(r, &dir)?
        } else {
            if let Ok(s) = self.shim(r) {
                s.shutdown();
            }
            self.forget_shim(&r.id);
            self.hullc_delete(&r.id)?;
            shim::remove_socket(&dir);
            self.launch(r, &dir)?
        };
        let mut rec = self.containers.find(&r.id)?;
        let net = match self.attach(&rec, pid, rec.last_ip) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.shim(r).and_then(|s| Ok(s.delete("")?));
                return Err(e.into());
            }
        };
        rec.last_ip = net.as_ref().map(|n| n.ip).or(rec.last_ip);
        rec.net = net;
        if let Err(e) = self.attach_extras(&mut rec, pid) {
            let _ = self.release_network(&rec.id);
            let _ = self.shim(r).and_then(|s| Ok(s.delete("")?));
            return Err(e.into());
        }
        rec.exit = None;
        self.containers.save(&rec)?;
        Ok(rec)
    }

    /// Removes the anonymous volumes of `r` (`rm -v`, `--rm`), carrying on past failures.
    pub(crate) fn remove_anon_volumes(&self, r: &Record) -> Option<Error> {
        let mut first = None;
        for v in &r.anon_volumes {
            if let Err(e) = self.volumes.remove(&v.name, &[]) {
                if !matches!(e, volume::Error::NotFound(_)) {
                    first.get_or_insert(e.into());
                }
            }
        }
        first
    }
}

/// One fresh volume per image `Volumes` path that no `-v`/`--mount` covers (docker's rule).
fn anonymous_volumes(
    cfg: &hull_image::ContainerConfig,
    o: &ContainerOptions,
) -> Result<Vec<AnonVolume>, Error> {
    let norm = |p: &str| {
        let t = p.trim_end_matches('/');
        if t.is_empty() {
            "/".to_string()
        } else {
            t.to_string()
        }
    };
    let mut out: Vec<AnonVolume> = Vec::new();
    for path in cfg.volumes.iter().flat_map(|v| v.keys()) {
        let target = norm(path);
        if !target.starts_with('/')
            || o.mounts.iter().any(|m| norm(m.target()) == target)
            || out.iter().any(|v| v.target == target)
        {
            continue;
        }
        out.push(AnonVolume {
            name: record::new_id()?,
            target,
        });
    }
    Ok(out)
}

/// Points the bundle's network namespace entry at `netns`.
fn set_netns_path(config: &Path, netns: &Path) -> Result<(), Error> {
    let data = std::fs::read(config).map_err(io("cannot read", config))?;
    let mut v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::Io {
        what: "corrupt bundle config",
        path: config.into(),
        source: std::io::Error::other(e),
    })?;
    for ns in v["linux"]["namespaces"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if ns["type"] == "network" {
            ns["path"] = serde_json::json!(netns);
        }
    }
    let data = serde_json::to_vec_pretty(&v).unwrap_or_default();
    std::fs::write(config, data).map_err(io("cannot write", config))
}

pub(crate) fn make_fifo(p: &Path) -> Result<(), Error> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Error::Io {
        what: "bad path",
        path: p.into(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io("cannot create fifo", p)(std::io::Error::last_os_error()));
    }
    Ok(())
}

const LOOPBACK_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// `hostname`, `hosts` and `resolv.conf` for the container. On a network of hull's, hull-net
/// rewrites `hosts` at attach (own address and names, the other containers) and keeps it
/// current; its resolv.conf is the host's minus loopback nameservers (or public fallbacks).
fn write_etc(dir: &Path, hostname: &str, netns: &NetnsConfig) -> Result<(), Error> {
    let write = |f: &str, s: String| {
        let p = dir.join(f);
        std::fs::write(&p, s).map_err(io("cannot write", &p))
    };
    write("hostname", format!("{hostname}\n"))?;
    let host = matches!(netns, NetnsConfig::Host);
    let hosts = if host {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        LOOPBACK_HOSTS.into()
    };
    write("hosts", format!("{hosts}127.0.1.1\t{hostname}\n"))?;
    let resolv = match netns {
        NetnsConfig::New { attach: Some(_) } => hull_net::files::host_resolv_conf(),
        // Without a network only the host's resolver config makes sense to copy
        // (docker does the same); loopback resolvers are useless in a netns.
        _ => std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                host || !(l.starts_with("nameserver 127.") || l.starts_with("nameserver ::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    };
    write("resolv.conf", resolv)
}
