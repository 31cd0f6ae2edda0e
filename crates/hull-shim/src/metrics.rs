//! `hullc events --stats` JSON (runc's stats shape) → containerd's cgroups v1
//! Metrics protobuf, which `ctr task metrics` decodes.

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use serde_json::Value;

/// The type URL containerd's typeurl registry uses for these metrics.
pub const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode metrics")]
    Encode(#[source] containerd_shim::protos::protobuf::Error),
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn entry(v: &Value, key: &str) -> MessageField<MemoryEntry> {
    MessageField::some(MemoryEntry {
        limit: u(v, &["memory", key, "limit"]),
        usage: u(v, &["memory", key, "usage"]),
        max: u(v, &["memory", key, "max"]),
        failcnt: u(v, &["memory", key, "failcnt"]),
        ..Default::default()
    })
}

pub fn v1_metrics(v: &Value) -> Metrics {
    let per_cpu = v
        .pointer("/cpu/usage/percpu")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let raw = |k: &str| u(v, &["memory", "raw", k]);
    Metrics {
        pids: MessageField::some(PidsStat {
            current: u(v, &["pids", "current"]),
            limit: u(v, &["pids", "limit"]),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: u(v, &["cpu", "usage", "total"]),
                kernel: u(v, &["cpu", "usage", "kernel"]),
                user: u(v, &["cpu", "usage", "user"]),
                per_cpu,
                ..Default::default()
            }),
            throttling: MessageField::some(Throttle {
                periods: u(v, &["cpu", "throttling", "periods"]),
                throttled_periods: u(v, &["cpu", "throttling", "throttledPeriods"]),
                throttled_time: u(v, &["cpu", "throttling", "throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            cache: u(v, &["memory", "cache"]),
            rss: raw("rss"),
            mapped_file: raw("mapped_file"),
            pg_fault: raw("pgfault"),
            pg_maj_fault: raw("pgmajfault"),
            total_rss: raw("total_rss"),
            total_cache: raw("total_cache"),
            usage: entry(v, "usage"),
            swap: entry(v, "swap"),
            kernel: entry(v, "kernel"),
            kernel_tcp: entry(v, "kernelTCP"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn v1_metrics_any(v: &Value) -> Result<Any, Error> {
    Ok(Any {
        type_url: V1_METRICS.into(),
        value: v1_metrics(v).write_to_bytes().map_err(Error::Encode)?,
        ..Default::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::zombie_processes)]
mod tests {
    use super::*;

    #[test]
    fn maps_runc_stats() {
        let v = serde_json::json!({
            "cpu": {"usage": {"total": 5, "percpu": [2, 3], "kernel": 1, "user": 4},
                    "throttling": {"throttledPeriods": 7}},
            "memory": {"usage": {"limit": 100, "usage": 42, "failcnt": 0},
                       "raw": {"rss": 9}},
            "pids": {"current": 3}
        });
        let m = v1_metrics(&v);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.cpu.usage.per_cpu, vec![2, 3]);
        assert_eq!(m.cpu.throttling.throttled_periods, 7);
        assert_eq!(m.memory.usage.usage, 42);
        assert_eq!(m.memory.rss, 9);
        let any = v1_metrics_any(&v).unwrap();
        assert_eq!(any.type_url, V1_METRICS);
    }
}
