//! Resource usage in the shape of runc's `events --stats` "data" object
//! (libcontainer/cgroups stats → runc types.Stats).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::cgroup::Target;
use crate::fs::{self as cgfs, has, read_keyed, read_u64};
use crate::{Cgroup, Error};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds, as runc reports them on both v1 and v2.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// USER_HZ is 100 on every Linux ABI; cpuacct.stat is in these ticks.
const NS_PER_TICK: u64 = 10_000_000;

/// Read a u64 file, 0 when absent (optional kernel features).
fn opt_u64(p: &Path) -> Result<u64, Error> {
    if p.exists() {
        read_u64(p)
    } else {
        Ok(0)
    }
}

/// "max" (u64::MAX) → 0 so JSON stays readable; runc reports the raw value, but
/// a limit of 2^64-1 carries no information.
fn limit(v: u64) -> u64 {
    if v == u64::MAX {
        0
    } else {
        v
    }
}

pub(crate) fn collect(cg: &Cgroup) -> Result<Stats, Error> {
    let mut s = Stats::default();
    // cpu.stat usage is a core v2 file, present even with the cpu controller off.
    let unified_cpu = cg
        .unified
        .as_ref()
        .filter(|u| cg.mode == crate::Mode::V2 && has(&u.path, "cpu.stat"));
    if let Some(t) = cg
        .target("cpuacct", "cpu")?
        .or(unified_cpu.map(|u| Target::V2(&u.path)))
    {
        cpu_usage(t, &mut s.cpu)?;
    }
    if let Some(t) = cg.target("cpu", "cpu")? {
        throttling(t, &mut s.cpu.throttling)?;
    }
    if let Some(t) = cg.target("memory", "memory")? {
        memory(t, &mut s.memory)?;
    }
    if let Some(Target::V1(d) | Target::V2(d)) = cg.target("pids", "pids")? {
        s.pids.current = opt_u64(&d.join("pids.current"))?;
        s.pids.limit = limit(opt_u64(&d.join("pids.max"))?);
    }
    if let Some(t) = cg.target("blkio", "io")? {
        blkio(t, &mut s.blkio)?;
    }
    if let Some(t) = cg.target("hugetlb", "hugetlb")? {
        hugetlb(t, &mut s.hugetlb)?;
    }
    Ok(s)
}

fn cpu_usage(t: Target<'_>, c: &mut Cpu) -> Result<(), Error> {
    match t {
        Target::V1(d) => {
            c.usage.total = opt_u64(&d.join("cpuacct.usage"))?;
            if has(d, "cpuacct.usage_percpu") {
                let s = cgfs::read(&d.join("cpuacct.usage_percpu"))?;
                let p = d.join("cpuacct.usage_percpu");
                c.usage.percpu = s
                    .split_whitespace()
                    .map(|v| cgfs::parse_u64(&p, v))
                    .collect::<Result<_, _>>()?;
            }
            if has(d, "cpuacct.stat") {
                let st = read_keyed(&d.join("cpuacct.stat"))?;
                c.usage.user = st.get("user").copied().unwrap_or(0) * NS_PER_TICK;
                c.usage.kernel = st.get("system").copied().unwrap_or(0) * NS_PER_TICK;
            }
        }
        Target::V2(d) => {
            let st = read_keyed(&d.join("cpu.stat"))?;
            let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
            c.usage.total = us("usage_usec");
            c.usage.user = us("user_usec");
            c.usage.kernel = us("system_usec");
            c.throttling = Throttling {
                periods: us("nr_periods") / 1000,
                throttled_periods: us("nr_throttled") / 1000,
                throttled_time: us("throttled_usec"),
            };
        }
    }
    Ok(())
}

fn throttling(t: Target<'_>, th: &mut Throttling) -> Result<(), Error> {
    if let Target::V1(d) = t {
        if has(d, "cpu.stat") {
            let st = read_keyed(&d.join("cpu.stat"))?;
            let g = |k: &str| st.get(k).copied().unwrap_or(0);
            *th = Throttling {
                periods: g("nr_periods"),
                throttled_periods: g("nr_throttled"),
                throttled_time: g("throttled_time"),
            };
        }
    }
    Ok(())
}

fn v1_entry(d: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    Ok(MemoryEntry {
        usage: opt_u64(&d.join(format!("{prefix}.usage_in_bytes")))?,
        max: opt_u64(&d.join(format!("{prefix}.max_usage_in_bytes")))?,
        failcnt: opt_u64(&d.join(format!("{prefix}.failcnt")))?,
        limit: limit(opt_u64(&d.join(format!("{prefix}.limit_in_bytes")))?),
    })
}

fn memory(t: Target<'_>, m: &mut Memory) -> Result<(), Error> {
    let raw: HashMap<String, u64> = match t {
        Target::V1(d) => {
            m.usage = v1_entry(d, "memory")?;
            m.swap = v1_entry(d, "memory.memsw")?;
            m.kernel = v1_entry(d, "memory.kmem")?;
            m.kernel_tcp = v1_entry(d, "memory.kmem.tcp")?;
            let raw = read_keyed(&d.join("memory.stat"))?;
            m.cache = raw.get("cache").copied().unwrap_or(0);
            raw
        }
        Target::V2(d) => {
            let events = if has(d, "memory.events") {
                read_keyed(&d.join("memory.events"))?
            } else {
                HashMap::new()
            };
            m.usage = MemoryEntry {
                usage: opt_u64(&d.join("memory.current"))?,
                max: opt_u64(&d.join("memory.peak"))?,
                limit: limit(opt_u64(&d.join("memory.max"))?),
                failcnt: events.get("max").copied().unwrap_or(0),
            };
            // runc reports v2 swap as memory+swap to keep v1's meaning.
            if has(d, "memory.swap.current") {
                let swap = opt_u64(&d.join("memory.swap.current"))?;
                let swap_max = opt_u64(&d.join("memory.swap.max"))?;
                m.swap = MemoryEntry {
                    usage: swap + m.usage.usage,
                    limit: limit(swap_max.saturating_add(m.usage.limit)),
                    ..Default::default()
                };
            }
            let raw = read_keyed(&d.join("memory.stat"))?;
            m.cache = raw.get("file").copied().unwrap_or(0);
            raw
        }
    };
    m.raw = raw.into_iter().collect();
    Ok(())
}

fn blkio(t: Target<'_>, b: &mut Blkio) -> Result<(), Error> {
    match t {
        Target::V1(d) => {
            b.io_service_bytes_recursive =
                v1_blkio(&d.join("blkio.throttle.io_service_bytes_recursive"))?;
            b.io_serviced_recursive = v1_blkio(&d.join("blkio.throttle.io_serviced_recursive"))?;
        }
        Target::V2(d) => {
            if !has(d, "io.stat") {
                return Ok(());
            }
            // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
            for line in cgfs::read(&d.join("io.stat"))?.lines() {
                let mut it = line.split_whitespace();
                let Some((major, minor)) = it.next().and_then(|dev| dev.split_once(':')) else {
                    continue;
                };
                let (major, minor) = (major.parse().unwrap_or(0), minor.parse().unwrap_or(0));
                for kv in it {
                    let Some((k, v)) = kv.split_once('=') else {
                        continue;
                    };
                    let value = v.parse().unwrap_or(0);
                    let (list, op) = match k {
                        "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                        "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                        "rios" => (&mut b.io_serviced_recursive, "Read"),
                        "wios" => (&mut b.io_serviced_recursive, "Write"),
                        _ => continue,
                    };
                    list.push(BlkioEntry {
                        major,
                        minor,
                        op: op.to_string(),
                        value,
                    });
                }
            }
        }
    }
    Ok(())
}

/// v1 blkio files: "8:0 Read 123" lines plus a trailing "Total N".
fn v1_blkio(p: &Path) -> Result<Vec<BlkioEntry>, Error> {
    if !p.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for line in cgfs::read(p)?.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dev, op, v] = f[..] else { continue };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        out.push(BlkioEntry {
            major: major.parse().unwrap_or(0),
            minor: minor.parse().unwrap_or(0),
            op: op.to_string(),
            value: v.parse().unwrap_or(0),
        });
    }
    Ok(out)
}

fn hugetlb(t: Target<'_>, h: &mut BTreeMap<String, Hugetlb>) -> Result<(), Error> {
    let (Target::V1(d) | Target::V2(d)) = t;
    let v2 = matches!(t, Target::V2(_));
    let Ok(rd) = std::fs::read_dir(d) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // v1 hugetlb.2MB.usage_in_bytes / v2 hugetlb.2MB.current
        let suffix = if v2 { ".current" } else { ".usage_in_bytes" };
        let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
        else {
            continue;
        };
        if size.contains('.') {
            continue; // rsvd.* files
        }
        let entry = if v2 {
            let ev = d.join(format!("hugetlb.{size}.events"));
            let failcnt = if ev.exists() {
                read_keyed(&ev)?.get("max").copied().unwrap_or(0)
            } else {
                0
            };
            Hugetlb {
                usage: read_u64(&e.path())?,
                max: 0,
                failcnt,
            }
        } else {
            Hugetlb {
                usage: read_u64(&e.path())?,
                max: opt_u64(&d.join(format!("hugetlb.{size}.max_usage_in_bytes")))?,
                failcnt: opt_u64(&d.join(format!("hugetlb.{size}.failcnt")))?,
            }
        };
        h.insert(size.to_string(), entry);
    }
    Ok(())
}

/// OOM kills so far: memory.events "oom_kill" on v2, memory.oom_control's
/// "oom_kill" line on v1 (Linux 4.13+). 0 without a memory controller.
pub(crate) fn oom_kill_count(cg: &Cgroup) -> Result<u64, Error> {
    let file = match cg.target("memory", "memory")? {
        None => return Ok(0),
        Some(Target::V1(d)) => d.join("memory.oom_control"),
        Some(Target::V2(d)) => d.join("memory.events"),
    };
    Ok(read_keyed(&file)?.get("oom_kill").copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use std::fs;

    #[test]
    fn v2_stats() {
        let f = Fake::v2();
        let cg = f.cgroup(&[]);
        let d = cg.unified_path().expect("u");
        for (file, body) in [
            ("cgroup.controllers", "cpu memory pids io hugetlb"),
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 2\n"),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 1\nfile 2\n"),
            ("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 2\n"),
            ("memory.swap.current", "100\n"),
            ("memory.swap.max", "1000\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.rsvd.current", "0\n"),
        ] {
            fs::write(d.join(file), body).expect("w");
        }
        let s = collect(&cg).expect("stats");
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.usage.kernel, 4_000);
        assert_eq!(s.cpu.throttling.throttled_periods, 1);
        assert_eq!(s.cpu.throttling.throttled_time, 2_000);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.failcnt, 5);
        assert_eq!(s.memory.cache, 2);
        assert_eq!(s.memory.swap.usage, 4196);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.hugetlb.keys().collect::<Vec<_>>(), ["2MB"]);
        assert_eq!(oom_kill_count(&cg).expect("oom"), 2);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["memory"]["usage"]["usage"], 4096);
        assert_eq!(json["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
        assert!(json["memory"]["kernelTCP"].is_object());
    }

    #[test]
    fn v1_stats() {
        let f = Fake::v1();
        let cg = f.cgroup(&[]);
        let cpu = cg.v1_path("cpuacct").expect("cpuacct");
        fs::write(cpu.join("cpuacct.usage"), "1000\n").expect("w");
        fs::write(cpu.join("cpuacct.usage_percpu"), "600 400 \n").expect("w");
        fs::write(cpu.join("cpuacct.stat"), "user 2\nsystem 1\n").expect("w");
        fs::write(
            cpu.join("cpu.stat"),
            "nr_periods 5\nnr_throttled 2\nthrottled_time 77\n",
        )
        .expect("w");
        let mem = cg.v1_path("memory").expect("memory");
        fs::write(mem.join("memory.usage_in_bytes"), "8192\n").expect("w");
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("w");
        fs::write(mem.join("memory.stat"), "cache 5\nrss 6\n").expect("w");
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .expect("w");
        let b = cg.v1_path("blkio").expect("blkio");
        fs::write(
            b.join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 5\n8:0 Write 6\nTotal 11\n",
        )
        .expect("w");
        let s = collect(&cg).expect("stats");
        assert_eq!(s.cpu.usage.percpu, vec![600, 400]);
        assert_eq!(s.cpu.usage.user, 20_000_000);
        assert_eq!(s.cpu.throttling.throttled_time, 77);
        assert_eq!(s.memory.usage.usage, 8192);
        assert_eq!(s.memory.cache, 5);
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(oom_kill_count(&cg).expect("oom"), 3);
    }
}
