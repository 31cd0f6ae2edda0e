//! `hullc spec` and `hullc features`.

use std::path::Path;

use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0} exists; remove it first (hullc spec never overwrites a config)")]
    Exists(std::path::PathBuf),
    #[error("writing {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// runc's default config (oci-spec's defaults mirror it), for `hullc spec`.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_hostname(Some("hull".into()));
    align_with_runc(&mut spec, rootless);
    spec
}

/// Where oci-spec's defaults differ from `runc spec` (libcontainer/specconv/example.go), runc's win:
/// tools and test suites written against runc edit its config rather than write their own.
fn align_with_runc(spec: &mut Spec, rootless: bool) {
    if let Some(process) = spec.process_mut() {
        // runc's default is an interactive shell on a terminal.
        process.set_terminal(Some(true));
        // No inheritable capabilities: with them an execve of a binary carrying file capabilities
        // gains those in its permitted set (CVE-2022-29162, dropped from runc's spec in 1.1.2).
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None);
            process.set_capabilities(Some(caps));
        }
    }
    if !unified_cgroup_v2() {
        drop_cgroup_namespace(spec);
    }
    if rootless {
        return;
    }
    // A deny-all device rule first: only the default devices (added by the runtime) are allowed.
    let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .expect("a device rule with only allow and access is valid");
    if let Some(linux) = spec.linux_mut() {
        let mut resources = linux.resources().clone().unwrap_or_default();
        resources.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(resources));
    }
}

/// runc's spec asks for a cgroup namespace only on a pure cgroup v2 host: on v1 and hybrid hosts
/// tools read the container's full cgroup paths from its /proc/self/cgroup, and configs that add
/// the namespace themselves would otherwise name it twice.
fn unified_cgroup_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

fn drop_cgroup_namespace(spec: &mut Spec) {
    use oci_spec::runtime::LinuxNamespaceType;
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces().clone() {
            let kept = ns
                .into_iter()
                .filter(|n| n.typ() != LinuxNamespaceType::Cgroup)
                .collect();
            linux.set_namespaces(Some(kept));
        }
    }
}

/// Writes `<bundle>/config.json`, refusing to overwrite one.
pub fn write_spec(bundle: &Path, rootless: bool) -> Result<(), SpecError> {
    let path = bundle.join("config.json");
    let data =
        serde_json::to_vec_pretty(&default_spec(rootless)).expect("the default spec serializes");
    let mut f = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(SpecError::Exists(path))
        }
        Err(source) => return Err(SpecError::Write { path, source }),
    };
    std::io::Write::write_all(&mut f, &data).map_err(|source| SpecError::Write { path, source })
}

/// runtime-spec features.md: what this build really implements. Fields
/// left out are unknown to hullc; callers treat absence as "not supported".
pub fn features() -> serde_json::Value {
    let opts = [
        "async",
        "atime",
        "bind",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "unbindable",
    ];
    let mut mount_options: Vec<&str> = opts
        .iter()
        .copied()
        .chain(crate::mountattr::option_names())
        .collect();
    mount_options.sort_unstable();
    let caps: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.hull.version": env!("CARGO_PKG_VERSION")
        }
    })
}
