//! Containers in docker's JSON shapes: `inspect` (`ContainerJSON`), the `ps` status text,
//! labels, mounts; used by `hull inspect`/`ps` and by hull-api.

use serde_json::{json, Value};

use crate::opts::{ContainerOptions, MountSpec};
use crate::time::{ago, rfc3339};
use crate::{net, Engine, Record, State};

/// docker's `Status` column: `Up 3 minutes`, `Exited (0) 2 seconds ago`.
pub fn status_text(st: &State, r: &Record, now: i128) -> String {
    match st {
        State::Created => "Created".into(),
        State::Running { .. } => format!("Up {}", since(r.started_ns.unwrap_or(r.created_ns), now)),
        State::Paused { .. } => format!(
            "Up {} (Paused)",
            since(r.started_ns.unwrap_or(r.created_ns), now)
        ),
        State::Exited(e) => format!("Exited ({}) {}", e.code, ago(e.at_ns, now)),
        State::Dead => "Dead".into(),
    }
}

/// [`status_text`] with the health docker appends to a running container's:
/// `Up 3 minutes (healthy)`, `Up 2 seconds (health: starting)`.
pub fn status_with_health(e: &Engine, st: &State, r: &Record, now: i128) -> String {
    let text = status_text(st, r, now);
    if !matches!(st, State::Running { .. }) {
        return text;
    }
    match crate::policy::health_status(&e.dir(r)).as_deref() {
        Some("starting") => format!("{text} (health: starting)"),
        Some(h) => format!("{text} ({h})"),
        None => text,
    }
}

fn since(ns: i128, now: i128) -> String {
    ago(ns, now).trim_end_matches(" ago").to_string()
}

/// The labels as a JSON object.
pub fn labels(r: &Record) -> Value {
    r.options
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The network as docker names it: `bridge`, `none`, `host`, `container:ID`, or a network.
pub fn network_name(r: &Record) -> String {
    match r.options.network.as_str() {
        "" => hull_net::DEFAULT_NETWORK.into(),
        n => n.into(),
    }
}

/// The user's mounts in docker's shape (what scripts parse): `Type`, `Source`,
/// `Destination`, `Mode`, `RW`, `Propagation`, and `Name`/`Driver` for volumes.
pub fn mounts_json(e: &Engine, r: &Record) -> Vec<Value> {
    let mode = |ro: bool| if ro { "ro" } else { "" };
    let volume = |name: &str, target: &str, ro: bool| {
        json!({"Type": "volume", "Name": name, "Source": e.volumes.path(name),
            "Destination": target, "Driver": "local", "Mode": mode(ro), "RW": !ro,
            "Propagation": ""})
    };
    let mut out: Vec<Value> = r
        .options
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Bind {
                source,
                target,
                readonly,
            } => json!({"Type": "bind", "Source": source, "Destination": target,
                "Mode": mode(*readonly), "RW": !readonly, "Propagation": "rprivate"}),
            MountSpec::Volume {
                name,
                target,
                readonly,
            } => volume(name, target, *readonly),
            MountSpec::Tmpfs { target } => json!({"Type": "tmpfs", "Source": "",
                "Destination": target, "Mode": "", "RW": true, "Propagation": ""}),
        })
        .collect();
    out.extend(
        r.anon_volumes
            .iter()
            .map(|v| volume(&v.name, &v.target, false)),
    );
    out
}

/// `inspect` of a container in docker's shape (`ContainerJSON`), shared by `hull inspect`
/// and the API's `GET /containers/{id}/json`.
pub fn inspect(e: &Engine, r: &Record) -> Value {
    let st = e.state(r);
    // state() may have just released the network of an exited container.
    let r = &e.find(&r.id).unwrap_or_else(|_| r.clone());
    let config: Value = std::fs::read(e.dir(r).join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let pid = match st {
        State::Running { pid } | State::Paused { pid } => pid,
        _ => 0,
    };
    let (finished, code, oom_killed) = match st {
        State::Exited(x) => (rfc3339(x.at_ns), x.code, x.oom_killed),
        _ => ("0001-01-01T00:00:00Z".into(), 0, false),
    };
    let p = &config["process"];
    let mounts = mounts_json(e, r);
    json!({
        "Id": r.id,
        "Created": rfc3339(r.created_ns),
        "Path": r.args.first(),
        "Args": r.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": st.name(), "Running": matches!(st, State::Running { .. } | State::Paused { .. }),
            "Paused": matches!(st, State::Paused { .. }), "Dead": matches!(st, State::Dead),
            "Pid": pid, "ExitCode": code, "OOMKilled": oom_killed,
            "StartedAt": r.started_ns.map_or("0001-01-01T00:00:00Z".into(), rfc3339),
            "FinishedAt": finished,
            "Health": health_json(e, r, &st),
        },
        "RestartCount": crate::policy::restart_count(&e.dir(r)),
        "Image": r.image_id,
        "ImageName": r.image,
        "Name": format!("/{}", r.name),
        "Config": {
            "Hostname": r.hostname, "User": r.options.user.clone().unwrap_or_default(),
            "Env": p["env"], "Cmd": r.options.cmd, "Entrypoint": r.options.entrypoint,
            "WorkingDir": p["cwd"], "Tty": r.options.tty, "OpenStdin": r.options.stdin,
            "Image": r.image, "Labels": labels(r),
            "Healthcheck": crate::policy::read_policy(&e.dir(r)).and_then(|f| f.healthcheck),
        },
        "HostConfig": {
            "NetworkMode": network_name(r), "ReadonlyRootfs": r.options.read_only,
            "PortBindings": net::ports_json(&r.options.publish),
            "Privileged": r.options.privileged, "AutoRemove": r.options.auto_remove,
            "Memory": r.options.memory.unwrap_or(0),
            "NanoCpus": r.options.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": r.options.pids_limit,
            "CapAdd": r.options.cap_add, "CapDrop": r.options.cap_drop,
            "DeviceRequests": device_requests(&r.options),
            "LogConfig": log_config(&r.options.extra),
            "RestartPolicy": r.options.restart,
        },
        "Mounts": mounts,
        "NetworkSettings": crate::net_plug::settings_json(r,
            (pid > 0 && !r.options.network.starts_with("container:") && r.options.network != "host")
                .then(|| format!("/proc/{pid}/ns/net"))),
        "Process": p,
        "ResolvConfPath": e.dir(r).join("resolv.conf"),
        "HostnamePath": e.dir(r).join("hostname"),
        "HostsPath": e.dir(r).join("hosts"),
        "LogPath": e.dir(r).join(crate::logs::LOG),
        "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": r.rootfs}},
    })
}

/// docker's `State.Health` (`Status`, `FailingStreak`, `Log`), absent without a
/// healthcheck; a container that does not run has no current status (docker shows the
/// last one, so do we, except `starting`, which would never end).
fn health_json(e: &Engine, r: &Record, st: &State) -> Value {
    let has_check = crate::policy::read_policy(&e.dir(r)).is_some_and(|f| f.healthcheck.is_some());
    if !has_check {
        return Value::Null;
    }
    let mut h = crate::policy::health(&e.dir(r))
        .unwrap_or_else(|| json!({"Status": "starting", "FailingStreak": 0, "Log": []}));
    if !st.is_live() && h["Status"] == "starting" {
        h["Status"] = "unhealthy".into();
    }
    h
}

/// docker's `DeviceRequests` for the CDI devices (`--gpus`, `--device vendor/class=name`).
pub fn device_requests(o: &ContainerOptions) -> Value {
    if o.cdi_devices.is_empty() {
        return Value::Null;
    }
    json!([{"Driver": "cdi", "Count": 0, "DeviceIDs": o.cdi_devices, "Capabilities": null, "Options": {}}])
}

/// docker's `HostConfig.LogConfig`: the driver and its options as given.
fn log_config(x: &crate::extra::Extra) -> serde_json::Value {
    let driver = if x.no_log() { "none" } else { "json-file" };
    let config: serde_json::Map<String, serde_json::Value> = x
        .log_opts
        .iter()
        .filter_map(|o| o.split_once('='))
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    serde_json::json!({"Type": driver, "Config": config})
}
