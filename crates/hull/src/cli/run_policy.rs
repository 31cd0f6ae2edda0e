//! Restart policies and healthchecks on the command line: the `run`/`create` flags,
//! `start --all --restart-policy` and the shim's `start --by-policy`, `update --restart`
//! and `hull healthcheck run`.

use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use hull_engine::policy::{self, HealthFlags, RestartPolicy};

use super::run::engine;

#[derive(Args, Clone)]
pub(crate) struct PolicyArgs {
    /// Restart policy, applied by the container's shim: no, on-failure[:N], always, unless-stopped.
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// Command run in the container to check its health (through /bin/sh -c).
    #[arg(long, value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between checks (e.g. 30s, 1m; default 30s).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    health_interval: Option<String>,
    /// Longest a check may run before it counts as failed (default 30s).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy (default 3).
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    health_retries: Option<String>,
    /// Time after the start during which failures do not count (default 0s).
    #[arg(long, allow_hyphen_values = true, value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Disable any healthcheck, the image's included.
    #[arg(long)]
    no_healthcheck: bool,
}

impl PolicyArgs {
    /// The checked restart policy and health flags.
    pub(crate) fn parse(&self) -> Result<(RestartPolicy, HealthFlags)> {
        let restart = match &self.restart {
            Some(s) => policy::parse_restart(s)?,
            None => RestartPolicy::default(),
        };
        let dur = |flag, v: &Option<String>| {
            v.as_deref()
                .map(|s| policy::parse_health_duration(flag, s))
                .transpose()
        };
        let retries = match &self.health_retries {
            Some(s) => Some(s.parse::<u32>().map_err(|_| policy::Error::Health {
                flag: "--health-retries",
                value: s.clone(),
                why: "expected a number of retries (0 or more)",
            })?),
            None => None,
        };
        if let Some(c) = self.health_cmd.as_deref().filter(|c| c.trim().is_empty()) {
            return Err(policy::Error::Health {
                flag: "--health-cmd",
                value: c.into(),
                why: "the command is empty",
            }
            .into());
        }
        let health = HealthFlags {
            cmd: self.health_cmd.clone(),
            interval_ns: dur("--health-interval", &self.health_interval)?,
            timeout_ns: dur("--health-timeout", &self.health_timeout)?,
            start_period_ns: dur("--health-start-period", &self.health_start_period)?,
            retries,
            none: self.no_healthcheck,
            test: None,
        };
        health.check()?;
        Ok((restart, health))
    }
}

#[derive(Subcommand)]
pub(crate) enum HealthcheckCommand {
    /// Run the container's healthcheck once: exit 0 when healthy, 1 when not.
    Run {
        /// The container.
        container: String,
    },
}

/// `hull healthcheck run NAME`: the check runs as the shim runs it (an exec bounded by
/// `--health-timeout`), its output on ours; its result is recorded with the shim's.
pub(crate) fn healthcheck(root: &Path, c: HealthcheckCommand) -> Result<u8> {
    let HealthcheckCommand::Run { container } = c;
    let e = engine(root)?;
    let r = e.find(&container)?;
    let Some(h) = policy::read_policy(&e.dir(&r)).and_then(|f| f.healthcheck) else {
        bail!("container {} has no healthcheck", r.name);
    };
    if h.test.len() < 2 {
        bail!("container {} has no healthcheck", r.name);
    }
    let run = e.run_healthcheck(&r, &h)?;
    let healthy = run.exit_code == 0;
    outln!("{}", if healthy { "healthy" } else { "unhealthy" })?;
    Ok(if healthy { 0 } else { 1 })
}

/// `start --by-policy ID`, run by the container's shim after an exit its policy restarts.
pub(crate) fn start_by_policy(root: &Path, id: &str) -> Result<u8> {
    let e = engine(root)?;
    let r = e.find(id)?;
    match e.start_by_policy(&r)? {
        Ok(_) => outln!("{}", r.name)?,
        Err(why) => eprintln!("{}: not restarted ({why:?})", r.name),
    }
    Ok(0)
}

/// `start --all --restart-policy`: what a service manager runs at boot.
pub(crate) fn start_all(root: &Path) -> Result<u8> {
    let e = engine(root)?;
    let mut failed = false;
    for (name, res) in e.start_all_by_policy()? {
        match res {
            Ok(_) => outln!("{name}")?,
            Err(err) => {
                failed = true;
                eprintln!("Error: {name}: {:#}", anyhow::Error::from(err));
            }
        }
    }
    Ok(if failed { 125 } else { 0 })
}
