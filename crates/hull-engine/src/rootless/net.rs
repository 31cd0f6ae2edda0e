//! Rootless networking: `none` and `host` as for root; the default network is a user-mode
//! one through `pasta` (Debian `passt`), started per container once its netns exists; user
//! networks (`hull network create`) are hull-net's bridges inside the user's rootless netns
//! (`netns.rs`, `usernet.rs`).
//!
//! Why pasta rather than slirp4netns: pasta forwards published ports itself (`-t`/`-u`:
//! it listens on the host and splices to the container), where slirp4netns needs a separate
//! port forwarder (podman's rootlessport) or its API socket driven for every port; it copies
//! the host's addresses and routes into the container, so the container sees real
//! addresses; it needs no helper process per port; and it is podman 5's default, so the
//! behaviour users meet is the one podman users know.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hull_net::{NetnsConfig, NetworkMode, PortMapping, Protocol, DEFAULT_NETWORK};

use crate::net::NetSettings;

/// The name `inspect` shows for the user-mode network (podman's too).
pub const PASTA: &str = "pasta";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not running rootless")]
    NotRootless,
    #[error(
        "-p {0}: a host address is not supported on a rootless user network (pasta forwards \
         the port on every host address): use -p {1}:{2}"
    )]
    HostIp(String, u16, u16),
    #[error(
        "-p {0}: host port {1} is below {2}, the lowest port an ordinary user may bind \
         (net.ipv4.ip_unprivileged_port_start)"
    )]
    LowPort(String, u16, u16),
    #[error("binding the container's network namespace to {0}")]
    Bind(PathBuf, #[source] std::io::Error),
    #[error("running pasta (install Debian's `passt` package)")]
    Spawn(#[source] std::io::Error),
    #[error("pasta could not connect the container ({status}): {log}")]
    Failed { status: String, log: String },
}

/// The netns for `mode` rootless: `Some` for the user-mode network, `None` where the
/// engine's own handling applies (none, host, container:, and user networks, whose ports
/// are checked here).
pub(crate) fn plan(
    mode: &NetworkMode,
    ports: &[PortMapping],
) -> Result<Option<NetnsConfig>, Error> {
    let NetworkMode::Network(n) = mode else {
        return Ok(None);
    };
    let lowest = unprivileged_port_start();
    if let Some(p) = ports.iter().find(|p| p.host_port < lowest) {
        return Err(Error::LowPort(p.to_string(), p.host_port, lowest));
    }
    if n != DEFAULT_NETWORK && n != PASTA {
        if let Some(p) = ports.iter().find(|p| p.host_ip.is_some()) {
            return Err(Error::HostIp(p.to_string(), p.host_port, p.container_port));
        }
        return Ok(None);
    }
    Ok(Some(NetnsConfig::New {
        attach: Some(PASTA.into()),
    }))
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// pasta's port list for one protocol: `[ADDR/]HOST:CTR,...`, or `none`.
fn port_spec(ports: &[PortMapping], proto: Protocol) -> String {
    let list: Vec<String> = ports
        .iter()
        .filter(|p| p.protocol == proto)
        .map(|p| {
            let addr = p.host_ip.map(|a| format!("{a}/")).unwrap_or_default();
            format!("{addr}{}:{}", p.host_port, p.container_port)
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(",")
    }
}

fn pid_file(dir: &Path) -> PathBuf {
    dir.join("pasta.pid")
}

/// Connects container init `pid` (netns made, process not started) through pasta, which
/// configures the namespace (`--config-net`), then goes to the background; its pid is kept
/// in the container's directory for [`release`].
pub(crate) fn attach(dir: &Path, pid: u32, ports: &[PortMapping]) -> Result<NetSettings, Error> {
    let log = dir.join("pasta.log");
    let netns = bind_netns(dir, pid)?;
    let out = Command::new("pasta")
        .args(["--config-net", "--quiet", "--no-map-gw"])
        .args(["-t", &port_spec(ports, Protocol::Tcp)])
        .args(["-u", &port_spec(ports, Protocol::Udp)])
        .args(["-T", "none", "-U", "none"])
        .arg("--pid")
        .arg(pid_file(dir))
        .arg("--netns")
        .arg(&netns)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::Spawn)?;
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let _ = std::fs::write(&log, &text);
    if !out.status.success() {
        unbind_netns(dir);
        return Err(Error::Failed {
            status: out.status.to_string(),
            log: text,
        });
    }
    Ok(NetSettings {
        network: PASTA.into(),
        // pasta copies the host's address into the container: nothing of ours to show.
        ip: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
        gateway: Ipv4Addr::UNSPECIFIED,
        mac: String::new(),
        ports: ports.to_vec(),
    })
}

fn netns_file(dir: &Path) -> PathBuf {
    dir.join("netns")
}

/// Binds init's netns onto `<dir>/netns` (podman's way) and returns that path. pasta drops
/// all capabilities but a few before it opens the namespace, and opening
/// `/proc/PID/ns/net` is a ptrace-mode check that fails when the target holds capabilities
/// the opener lacks (commoncap's superset rule); an nsfs bind mount is opened as a file. It
/// also gives pasta its end: it quits once the bound file is removed ([`release`]).
fn bind_netns(dir: &Path, pid: u32) -> Result<PathBuf, Error> {
    let file = netns_file(dir);
    let src = format!("/proc/{pid}/ns/net");
    std::fs::File::create(&file).map_err(|e| Error::Bind(file.clone(), e))?;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok();
    let (Some(s), Some(t)) = (c(Path::new(&src)), c(&file)) else {
        return Err(Error::Bind(file, std::io::ErrorKind::InvalidInput.into()));
    };
    // SAFETY: both are valid C strings; mount retains no pointer. We are root of the
    // user namespace that owns this mount namespace (the pause process's).
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::Bind(file, std::io::Error::last_os_error()));
    }
    Ok(file)
}

fn unbind_netns(dir: &Path) {
    let file = netns_file(dir);
    if let Ok(c) = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()) {
        // SAFETY: a valid C string; a failure (not mounted) is fine.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_file(file);
}

/// Ends the container's pasta (it would also go once the netns is gone, but that is when
/// the last process holding it exits, which a forwarded connection can delay).
pub(crate) fn release(dir: &Path) {
    unbind_netns(dir);
    let file = pid_file(dir);
    let Some(pid) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // pasta re-executes itself as `passt.avx2` where the CPU has AVX2.
    if comm.starts_with("pasta") || comm.starts_with("passt") {
        // SAFETY: kill touches no memory; the pid was checked to be a pasta.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = std::fs::remove_file(file);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pasta_port_specs() {
        let p: Vec<PortMapping> = ["8080:80", "127.0.0.1:5353:53/udp", "9000:90"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(port_spec(&p, Protocol::Tcp), "8080:80,9000:90");
        assert_eq!(port_spec(&p, Protocol::Udp), "127.0.0.1/5353:53");
        assert_eq!(port_spec(&[], Protocol::Tcp), "none");
    }

    #[test]
    fn user_networks_are_the_engines() {
        let user = NetworkMode::Network("mynet".into());
        assert!(plan(&user, &[]).unwrap().is_none());
        let p: PortMapping = "127.0.0.1:8080:80".parse().unwrap();
        let e = plan(&user, std::slice::from_ref(&p))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("-p 127.0.0.1:8080:80") && e.contains("-p 8080:80"),
            "{e}"
        );
        assert!(plan(&NetworkMode::Network(PASTA.into()), &[p])
            .unwrap()
            .is_some());
        assert!(plan(&NetworkMode::None, &[]).unwrap().is_none());
    }
}
