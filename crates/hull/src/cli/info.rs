//! `hull version` and `hull info`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::images::Format;
use super::run::engine;

#[derive(Args)]
pub(crate) struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// Prints `v` (an object of sections or values) as docker's indented text, or as JSON.
fn print(v: &Value, format: Format) -> Result<()> {
    if let Format::Json = format {
        outln!("{}", serde_json::to_string_pretty(v)?)?;
        return Ok(());
    }
    for (section, body) in v.as_object().into_iter().flatten() {
        match body {
            Value::Object(m) => {
                outln!("{section}:")?;
                for (k, v) in m {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    outln!(" {:<18}{v}", format!("{k}:"))?;
                }
            }
            v => {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                outln!("{:<19}{v}", format!("{section}:"))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn version(root: &Path, a: FormatArgs) -> Result<u8> {
    let e = engine(root)?;
    let (path, hullc) = e
        .hullc_version()
        .unwrap_or_else(|| ("not found".into(), String::new()));
    let v = json!({
        "Client": {
            "Version": env!("CARGO_PKG_VERSION"),
            "OS/Arch": format!("{}/{}", std::env::consts::OS, arch()),
        },
        "Runtime": {"Name": "hullc", "Path": path, "Version": hullc},
        "Shim": {"Name": "containerd-shim-hull-v2", "Path": e.shim_path().unwrap_or_else(|| "not found".into())},
    });
    let mut v = v;
    if let (Some(o), Some(extra)) = (v.as_object_mut(), hull_engine::rootless::info()) {
        o.extend(extra);
    }
    print(&v, a.format)?;
    Ok(0)
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data, filled by the kernel.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is writable and the size the kernel expects.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.release), s(&u.nodename))
}

fn os_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub(crate) fn info(root: &Path, a: FormatArgs) -> Result<u8> {
    let e = engine(root)?;
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let all = e.containers.list()?;
    for r in &all {
        match e.state(r) {
            hull_engine::State::Running { .. } => running += 1,
            hull_engine::State::Paused { .. } => paused += 1,
            _ => stopped += 1,
        }
    }
    let images = super::open_store(root)?.images()?.len();
    let (kernel, host) = uname();
    let (hullc_path, hullc) = e
        .hullc_version()
        .unwrap_or_else(|| ("not found".into(), String::new()));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let v = json!({
        "Containers": all.len(), "Running": running, "Paused": paused, "Stopped": stopped,
        "Images": images,
        "Storage Driver": "overlay",
        "Root Dir": root.display().to_string(),
        "Cgroup Version": hull_engine::info::cgroup_version(),
        "Runtime": format!("hullc ({hullc_path}) {hullc}"),
        "Shim": e.shim_path().unwrap_or_else(|| "not found".into()),
        "Kernel Version": kernel, "Operating System": os_name(),
        "OSType": std::env::consts::OS, "Architecture": std::env::consts::ARCH,
        "CPUs": cpus, "Total Memory": hull_engine::stats::bytes_binary(mem_total()),
        "Name": host, "Client Version": env!("CARGO_PKG_VERSION"),
    });
    let mut v = v;
    if let (Some(o), Some(extra)) = (v.as_object_mut(), hull_engine::rootless::info()) {
        o.extend(extra);
    }
    print(&v, a.format)?;
    Ok(0)
}
