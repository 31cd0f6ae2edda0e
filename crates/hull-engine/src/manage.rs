//! `rename`, `container prune` and `update` (live resources through `hullc update`).

use std::path::Path;

use crate::engine::{io, Engine, Error, State};
use crate::record::Record;
use crate::shim;

/// New resources for `update`; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
}

impl Engine {
    /// Gives `r` the name `new` (checked and free), under the store lock.
    pub fn rename(&self, r: &Record, new: &str) -> Result<(), Error> {
        let _lock = self.containers.lock()?;
        self.containers.check_name(new)?;
        let mut r = self.containers.find(&r.id)?;
        let old = std::mem::replace(&mut r.name, new.into());
        self.containers.save(&r)?;
        // The shim's `die` names the container from its bundle's annotations.
        let dir = self.dir(&r);
        crate::events::reannotate(&dir, &self.journal(), &r).map_err(io("cannot update", &dir))?;
        self.emit(&r, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// Removes every container that does not run (created, exited, dead): their ids.
    /// Carries on past a failure; the first one is returned with the ids removed so far.
    pub fn prune(&self) -> (Vec<String>, Option<Error>) {
        let (mut gone, mut first) = (Vec::new(), None);
        let all = match self.containers.list() {
            Ok(a) => a,
            Err(e) => return (gone, Some(e.into())),
        };
        for r in all {
            if self.state(&r).is_live() {
                continue;
            }
            match self.remove(&r, false, false) {
                Ok(()) => gone.push(r.id),
                // It was started meanwhile: not ours to remove.
                Err(Error::Running(_)) => {}
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        (gone, first)
    }

    /// Changes `r`'s limits: live through `hullc update` when it runs, and in its bundle and
    /// record so that a later start keeps them. A memory limit below what the container uses
    /// now is refused before anything changes (cgroup v2 would OOM-kill it, v1 refuse late).
    pub fn update(&self, r: &Record, res: &Resources) -> Result<(), Error> {
        let _lock = self.containers.lock()?;
        let r = self.containers.find(&r.id)?;
        if crate::rootless::active() {
            check_rootless_update(&self.dir(&r).join("config.json"), res, &r.name)?;
        }
        let live = matches!(self.state(&r), State::Running { .. } | State::Paused { .. });
        if let (Some(m), true) = (res.memory, live) {
            let used = self.sample(&r)?.mem_usage;
            if (m as u64) < used {
                return Err(Error::Hullc {
                    what: "update",
                    msg: format!(
                        "--memory {m} is below the {used} bytes container {} uses now; nothing was changed",
                        r.name
                    ),
                });
            }
        }
        if live {
            self.hullc_update(&r, res)?;
        }
        let config = self.dir(&r).join("config.json");
        write_resources(&config, res)?;
        let mut r = r;
        r.options.memory = res.memory.or(r.options.memory);
        r.options.cpus = res.cpus.or(r.options.cpus);
        r.options.pids_limit = res.pids_limit.or(r.options.pids_limit);
        Ok(self.containers.save(&r)?)
    }

    /// `update`: new resources and/or a new restart policy for `r` (docker's
    /// `container update`, shared by `hull update` and the API). A policy the container
    /// cannot have (a restart policy with `--rm`) is refused before anything changes.
    pub fn update_with_policy(
        &self,
        r: &Record,
        res: &Resources,
        restart: Option<&crate::policy::RestartPolicy>,
    ) -> Result<(), Error> {
        if let Some(p) = restart {
            if !p.is_none() && r.options.auto_remove {
                return Err(crate::policy::Error::AutoRemove(p.name.clone()).into());
            }
        }
        if *res != Resources::default() {
            self.update(r, res)?;
        }
        if let Some(p) = restart {
            self.update_restart(r, p)?;
        }
        Ok(())
    }

    fn hullc_update(&self, r: &Record, res: &Resources) -> Result<(), Error> {
        let hullc = self.hullc()?;
        let mut cmd = std::process::Command::new(hullc);
        cmd.arg("--root")
            .arg(self.hullc_root().join(shim::NAMESPACE))
            .arg("update");
        if let Some(m) = res.memory {
            cmd.arg(format!("--memory={m}"));
        }
        if let Some(c) = res.cpus {
            cmd.arg(format!("--cpu-quota={}", (c * 100_000.0) as i64))
                .arg("--cpu-period=100000");
        }
        if let Some(p) = res.pids_limit {
            cmd.arg(format!("--pids-limit={p}"));
        }
        let out = cmd.arg(&r.id).output().map_err(io("cannot run", hullc))?;
        if !out.status.success() {
            return Err(Error::Hullc {
                what: "hullc update",
                msg: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        Ok(())
    }
}

/// Rootless: limits only for a container that has a cgroup (see `rootless::spec`).
fn check_rootless_update(config: &Path, res: &Resources, name: &str) -> Result<(), Error> {
    let flag = match (res.memory, res.cpus, res.pids_limit) {
        (Some(_), ..) => "--memory",
        (_, Some(_), _) => "--cpus",
        (.., Some(_)) => "--pids-limit",
        _ => return Ok(()),
    };
    let v = read_config(config)?;
    crate::rootless::spec::check_update(&v, flag, name)
        .map_err(|e| Error::Spec(crate::spec::Error::from(e)))
}

fn read_config(config: &Path) -> Result<serde_json::Value, Error> {
    let data = std::fs::read(config).map_err(io("cannot read", config))?;
    serde_json::from_slice(&data).map_err(|e| Error::Io {
        what: "corrupt bundle config",
        path: config.into(),
        source: std::io::Error::other(e),
    })
}

/// The new limits in the bundle's `linux.resources` (read again by the next `hullc create`),
/// replaced whole: a start racing the update reads the old config or the new one.
fn write_resources(config: &Path, res: &Resources) -> Result<(), Error> {
    let mut v = read_config(config)?;
    let r = &mut v["linux"]["resources"];
    if let Some(m) = res.memory {
        r["memory"]["limit"] = m.into();
    }
    if let Some(c) = res.cpus {
        r["cpu"]["quota"] = ((c * 100_000.0) as i64).into();
        r["cpu"]["period"] = 100_000.into();
    }
    if let Some(p) = res.pids_limit {
        r["pids"]["limit"] = p.into();
    }
    let data = serde_json::to_vec_pretty(&v).unwrap_or_default();
    crate::record::replace_file(config, &data).map_err(io("cannot write", config))
}
