//! `hull stats`: one sample of a container's resource usage. The cgroup figures come from
//! `hullc events --stats` (the runtime resolves the container's cgroup, v1, v2 or hybrid,
//! the same way the shim's metrics do); network I/O from `/proc/<init>/net/dev`, which shows
//! the interfaces of init's network namespace.

use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::engine::{Engine, Error, State};
use crate::record::Record;
use crate::shim;

/// One reading of a container's usage. Two readings give the CPU share ([`cpu_percent`]).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was read (CPU % is usage over wall time).
    pub taken: Instant,
    /// Cumulative CPU time of the cgroup, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use as docker counts it: usage minus inactive page cache.
    pub mem_usage: u64,
    /// The memory limit; the host's memory when the cgroup has none.
    pub mem_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub pids: u64,
}

impl Sample {
    /// A container that does not run: all zero (docker shows such a row too).
    pub fn idle() -> Sample {
        Sample {
            taken: Instant::now(),
            cpu_ns: 0,
            mem_usage: 0,
            mem_limit: 0,
            net_rx: 0,
            net_tx: 0,
            blk_read: 0,
            blk_write: 0,
            pids: 0,
        }
    }
}

/// CPU use between two samples, in percent of one CPU (docker's CPU %: 200 is two busy CPUs).
pub fn cpu_percent(prev: &Sample, now: &Sample) -> f64 {
    let wall = now.taken.saturating_duration_since(prev.taken).as_nanos() as f64;
    if wall <= 0.0 || now.cpu_ns < prev.cpu_ns {
        return 0.0;
    }
    (now.cpu_ns - prev.cpu_ns) as f64 / wall * 100.0
}

impl Engine {
    /// A sample of `r`'s usage now; [`Sample::idle`] when it does not run.
    pub fn sample(&self, r: &Record) -> Result<Sample, Error> {
        let pid = match self.state(r) {
            State::Running { pid } | State::Paused { pid } => pid,
            _ => return Ok(Sample::idle()),
        };
        let hullc = self.hullc()?;
        let out = std::process::Command::new(hullc)
            .arg("--root")
            .arg(self.hullc_root().join(shim::NAMESPACE))
            .args(["events", "--stats", &r.id])
            .output()
            .map_err(crate::engine::io("cannot run", hullc))?;
        let taken = Instant::now();
        if !out.status.success() {
            return Err(Error::Hullc {
                what: "hullc events --stats",
                msg: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Hullc {
            what: "hullc events --stats",
            msg: format!("unreadable output: {e}"),
        })?;
        let data = &v["data"];
        let (net_rx, net_tx) = net_io(format!("/proc/{pid}/net/dev"));
        let (blk_read, blk_write) = block_io(data);
        Ok(Sample {
            taken,
            cpu_ns: num(data, "/cpu/usage/total"),
            mem_usage: mem_usage(data),
            mem_limit: match num(data, "/memory/usage/limit") {
                0 => host_memory(),
                // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX pages).
                l => match host_memory() {
                    0 => l,
                    h => l.min(h),
                },
            },
            net_rx,
            net_tx,
            blk_read,
            blk_write,
            pids: num(data, "/pids/current"),
        })
    }
}

fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// docker's memory figure: the page cache that can go at once is not counted
/// (`total_inactive_file` on v1, `inactive_file` on v2).
fn mem_usage(data: &Value) -> u64 {
    let usage = num(data, "/memory/usage/usage");
    let raw = &data["memory"]["raw"];
    let inactive = ["total_inactive_file", "inactive_file"]
        .iter()
        .find_map(|k| raw.get(*k).and_then(Value::as_u64))
        .unwrap_or(0);
    if inactive < usage {
        usage - inactive
    } else {
        usage
    }
}

/// Bytes read and written, summed over devices.
fn block_io(data: &Value) -> (u64, u64) {
    let mut rw = (0, 0);
    let list = data
        .pointer("/blkio/ioServiceBytesRecursive")
        .and_then(Value::as_array);
    for e in list.into_iter().flatten() {
        let value = e["value"].as_u64().unwrap_or(0);
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rw.0 += value,
            Some("write") => rw.1 += value,
            _ => {}
        }
    }
    rw
}

/// Received and sent bytes of every interface but loopback (docker's NET I/O).
fn net_io(path: impl AsRef<Path>) -> (u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_net_dev(&text)
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rxtx = (0, 0);
    // Two header lines, then "  eth0: rx_bytes packets ... (8 fields) tx_bytes ...".
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rxtx.0 += f[0];
            rxtx.1 += f[8];
        }
    }
    rxtx
}

/// MemTotal of the host, the limit shown for a container without one.
fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// docker's `units.BytesSize`: binary units, four significant digits ("1.5MiB").
pub fn bytes_binary(n: u64) -> String {
    human(
        n as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"],
        4,
    )
}

/// docker's `units.HumanSizeWithPrecision(n, 3)`: decimal units ("1.23kB").
pub fn bytes_decimal(n: u64) -> String {
    human(
        n as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB"],
        3,
    )
}

fn human(mut v: f64, base: f64, units: &[&str], precision: i32) -> String {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    // Go's %.Ng: N significant digits, trailing zeros dropped.
    let digits = if v < 1.0 {
        precision - 1
    } else {
        (precision - 1 - v.log10().floor() as i32).max(0)
    };
    let mut s = format!("{v:.*}", digits as usize);
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(bytes_binary(0), "0B");
        assert_eq!(bytes_binary(1536 * 1024), "1.5MiB");
        assert_eq!(bytes_binary(64 << 20), "64MiB");
        assert_eq!(bytes_binary(1000), "1000B");
        assert_eq!(bytes_decimal(1234), "1.23kB");
        assert_eq!(bytes_decimal(648), "648B");
        assert_eq!(bytes_decimal(12_345_678), "12.3MB");
    }

    #[test]
    fn net_dev_skips_loopback() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 1500 10 0 0 0 0 0 0 700 5 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(t), (1500, 700));
    }

    #[test]
    fn memory_leaves_out_inactive_cache() {
        let d = serde_json::json!({"memory": {"usage": {"usage": 1000},
            "raw": {"total_inactive_file": 300}}});
        assert_eq!(mem_usage(&d), 700);
    }
}
