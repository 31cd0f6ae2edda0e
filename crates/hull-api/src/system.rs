//! `_ping`, `version`, `info`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, Resp};
use crate::routes::blocking;
use crate::server::App;

pub(crate) fn ping(head: bool) -> Resp {
    if head {
        return http::empty(StatusCode::OK);
    }
    http::text(StatusCode::OK, "OK")
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; uname fills it and we read NUL-terminated fields.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let field = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (field(&u.release), field(&u.nodename))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) fn version() -> Resp {
    let (kernel, _) = uname();
    let v = env!("CARGO_PKG_VERSION");
    http::ok_json(&json!({
        "Platform": {"Name": "hull"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": crate::API_VERSION, "MinAPIVersion": crate::MIN_API_VERSION,
            "Os": "linux", "Arch": go_arch(), "KernelVersion": kernel,
        }}],
        "Version": v,
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

pub(crate) async fn info(app: &Arc<App>) -> Result<Resp, ApiError> {
    let root = app.root.clone();
    let (total, running, paused, stopped, images) = blocking(app, move |e| {
        let list = e.containers.list()?;
        let (mut running, mut paused) = (0, 0);
        for r in &list {
            match e.state(r) {
                hull_engine::State::Running { .. } => running += 1,
                hull_engine::State::Paused { .. } => paused += 1,
                _ => {}
            }
        }
        let images = hull_image::Store::open(&root)
            .and_then(|s| s.images())
            .map(|l| l.len())
            .unwrap_or(0);
        Ok((
            list.len(),
            running,
            paused,
            list.len() - running - paused,
            images,
        ))
    })
    .await?;
    let (kernel, host) = uname();
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Ok(http::ok_json(&json!({
        "ID": "hull", "Name": host, "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Containers": total, "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": stopped, "Images": images,
        "Driver": "overlay", "DriverStatus": [], "DockerRootDir": app.root,
        "OperatingSystem": "linux", "OSType": "linux", "Architecture": std::env::consts::ARCH,
        "KernelVersion": kernel, "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total(), "CgroupDriver": "cgroupfs",
        "CgroupVersion": if cgroup_v2 { "2" } else { "1" },
        "DefaultRuntime": "hullc", "Runtimes": {"hullc": {"path": "hullc"}},
        "LoggingDriver": "json-file", "SecurityOptions": ["name=seccomp,profile=default"],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
            "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "IPv4Forwarding": true, "Debug": false, "ExperimentalBuild": false,
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": []},
        "Swarm": {"LocalNodeState": "inactive"}, "Labels": [], "Warnings": [],
    })))
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `POST /build/prune`: hull's builder keeps no cache apart from images (which image
/// prune removes); `docker system prune` calls this.
pub(crate) fn build_prune() -> Resp {
    http::ok_json(&json!({"CachesDeleted": [], "SpaceReclaimed": 0}))
}

/// `GET /system/df`: counts and sizes, without per-layer sharing.
pub(crate) async fn df(app: &Arc<App>) -> Result<Resp, ApiError> {
    let root = app.root.clone();
    let v = blocking(app, move |e| {
        let images: Vec<serde_json::Value> = hull_image::Store::open(&root)
            .and_then(|s| s.images())
            .unwrap_or_default()
            .iter()
            .map(|i| {
                json!({"Id": i.id, "RepoTags": i.tags().collect::<Vec<_>>(),
                    "Created": i.created, "Size": i.size, "SharedSize": 0,
                    "VirtualSize": i.size, "Containers": 0, "ParentId": "", "Labels": {}})
            })
            .collect();
        let total: u64 = images.iter().filter_map(|i| i["Size"].as_u64()).sum();
        let containers: Vec<serde_json::Value> = e
            .containers
            .list()?
            .iter()
            .map(|r| {
                json!({"Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.image,
                    "ImageID": r.image_id, "State": e.state(r).name(), "SizeRw": 0,
                    "SizeRootFs": 0, "Created": (r.created_ns / 1_000_000_000) as i64})
            })
            .collect();
        let volumes: Vec<serde_json::Value> = e
            .volumes
            .list()
            .unwrap_or_default()
            .iter()
            .map(|n| {
                json!({"Name": n, "Driver": "local", "Mountpoint": e.volumes.path(n),
                    "Scope": "local", "Labels": {}, "Options": {},
                    "UsageData": {"Size": -1, "RefCount": -1}})
            })
            .collect();
        Ok(
            json!({"LayersSize": total, "Images": images, "Containers": containers,
            "Volumes": volumes, "BuildCache": []}),
        )
    })
    .await?;
    Ok(http::ok_json(&v))
}
