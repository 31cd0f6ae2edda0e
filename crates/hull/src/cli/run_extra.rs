//! `run`/`create` flags for namespaces, the init, sysctls and DNS (hull-engine's `extra`).

use anyhow::Result;
use clap::Args;
use hull_engine::extra::{self, Extra};
use hull_engine::ContainerOptions;

#[derive(Args, Clone)]
pub(crate) struct ExtraArgs {
    /// Run an init (tini) as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    init: bool,
    /// Namespaced kernel parameter: NAME=VALUE (kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, net.*).
    #[arg(long)]
    sysctl: Vec<String>,
    /// Size of /dev/shm (e.g. 128m; default 64m).
    #[arg(long)]
    shm_size: Option<String>,
    /// Additional group (name in the image or number) for the process.
    #[arg(long)]
    group_add: Vec<String>,
    /// The process' OOM score adjustment (-1000..1000).
    #[arg(long, allow_hyphen_values = true)]
    oom_score_adj: Option<i64>,
    /// PID namespace: host, private or container:NAME.
    #[arg(long)]
    pid: Option<String>,
    /// IPC namespace: host, private, shareable, none or container:NAME.
    #[arg(long)]
    ipc: Option<String>,
    /// UTS namespace: host or private.
    #[arg(long)]
    uts: Option<String>,
    /// Cgroup namespace: host or private.
    #[arg(long)]
    cgroupns: Option<String>,
    /// DNS server for the container's resolv.conf (repeatable).
    #[arg(long)]
    dns: Vec<String>,
    /// DNS search domain (repeatable).
    #[arg(long)]
    dns_search: Vec<String>,
    /// resolv.conf option (repeatable).
    #[arg(long)]
    dns_option: Vec<String>,
    /// Logging driver: json-file (default) or none.
    #[arg(long)]
    log_driver: Option<String>,
    /// json-file log options: max-size=SIZE (e.g. 10m: rotate past it), max-file=N (files kept).
    #[arg(long)]
    log_opt: Vec<String>,
}

impl ExtraArgs {
    /// The checked [`Extra`] for options `o` (its network and hostname already set).
    pub(crate) fn to_extra(&self, o: &ContainerOptions) -> Result<Extra> {
        hull_engine::logs::parse_opts(&self.log_opt)?;
        if self.log_driver.as_deref() == Some("none") {
            if let Some(o) = self.log_opt.first() {
                anyhow::bail!("invalid --log-opt {o:?}: --log-driver none keeps no log");
            }
        }
        let x = Extra {
            init: self.init,
            sysctls: self
                .sysctl
                .iter()
                .map(|s| extra::parse_sysctl(s))
                .collect::<Result<_, _>>()?,
            shm_size: self
                .shm_size
                .as_deref()
                .map(extra::parse_shm_size)
                .transpose()?,
            group_add: self.group_add.clone(),
            oom_score_adj: self.oom_score_adj,
            pid: self.pid.clone().unwrap_or_default(),
            ipc: self.ipc.clone().unwrap_or_default(),
            uts: self.uts.clone().unwrap_or_default(),
            cgroupns: self.cgroupns.clone().unwrap_or_default(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_option: self.dns_option.clone(),
            log_driver: self.log_driver.clone().unwrap_or_default(),
            log_opts: self.log_opt.clone(),
        };
        x.check(o.network == "host", o.hostname.is_some())?;
        Ok(x)
    }
}
