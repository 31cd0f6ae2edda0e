//! `linux.resources` as systemd unit properties, where systemd owns the
//! knob (runc's genV1/genV2ResourcesProperties). systemd writes these files
//! itself, and writes them again at every `daemon-reload`: a limit written
//! only to cgroupfs would silently fall back to systemd's idea of the unit.
//! Everything else (devices, hugetlb, io throttles, swappiness, unified)
//! is set through cgroupfs in the delegated scope afterwards, as runc does.

use oci_spec::runtime::LinuxResources;

use super::Error;

/// One unit property's value, in the D-Bus types systemd expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `au` (PIDs)
    U32s(Vec<u32>),
    /// `ay` (cpu and memory node masks)
    Bytes(Vec<u8>),
}

/// A unit property: its name and value.
pub type Property = (&'static str, Value);

/// systemd's USEC_INFINITY / CGROUP_LIMIT_MAX: "no limit".
const INFINITY: u64 = u64::MAX;

/// The kernel's default CFS period, assumed when a quota comes without one.
const DEFAULT_PERIOD: u64 = 100_000;

/// Highest cpu or memory node a mask may name (the kernel's NR_CPUS limit):
/// a typo such as "0-4000000000" must not allocate gigabytes.
const MAX_BIT: u32 = 8192;

/// The unit properties for `r`; `v2` picks the cgroup v2 names (MemoryMax,
/// CPUWeight) over the v1 ones (MemoryLimit, CPUShares).
pub fn properties(r: &LinuxResources, v2: bool) -> Result<Vec<Property>, Error> {
    let mut p = Vec::new();
    if let Some(m) = r.memory() {
        let limit = m.limit().unwrap_or(0);
        if limit != 0 {
            p.push((
                if v2 { "MemoryMax" } else { "MemoryLimit" },
                limit_value(limit),
            ));
        }
        if v2 {
            if let Some(low) = m.reservation().filter(|v| *v != 0) {
                p.push(("MemoryLow", limit_value(low)));
            }
            let swap = crate::memory::swap_v2(m.swap().unwrap_or(0), limit).map_err(|e| {
                Error::Resource {
                    resource: "memory.swap",
                    reason: e.to_string(),
                }
            })?;
            if swap != 0 || m.swap().unwrap_or(0) > 0 {
                p.push(("MemorySwapMax", limit_value(swap)));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            match v2 {
                true => p.push(("CPUWeight", Value::U64(crate::cpu::shares_to_weight(s)))),
                false => p.push(("CPUShares", Value::U64(s))),
            }
        }
        cpu_quota(&mut p, c.quota().unwrap_or(0), c.period().unwrap_or(0));
        if v2 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                p.push(("AllowedCPUs", Value::Bytes(range_to_bits("cpus", cpus)?)));
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                let bits = range_to_bits("mems", mems)?;
                p.push(("AllowedMemoryNodes", Value::Bytes(bits)));
            }
        }
    }
    if let Some(pids) = r.pids() {
        let l = pids.limit();
        if l > 0 || l == -1 {
            p.push(("TasksMax", limit_value(l)));
        }
    }
    Ok(p)
}

/// A byte or task limit: -1 (and anything negative) is "infinity".
fn limit_value(v: i64) -> Value {
    Value::U64(u64::try_from(v).unwrap_or(INFINITY))
}

/// runc's addCpuQuota: systemd keeps a quota as µs of CPU time per second
/// and turns it into a whole percentage internally, so a fraction of a
/// percent is rounded up to the next 10 ms; otherwise the kernel's
/// cpu.max would end up below what the container asked for.
fn cpu_quota(p: &mut Vec<Property>, quota: i64, period: u64) {
    if period != 0 {
        p.push(("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    if quota == 0 && period == 0 {
        return;
    }
    let mut per_sec = INFINITY;
    if quota > 0 {
        let period = if period == 0 { DEFAULT_PERIOD } else { period };
        per_sec = (quota as u64).saturating_mul(1_000_000) / period;
        if !per_sec.is_multiple_of(10_000) {
            per_sec = (per_sec / 10_000 + 1) * 10_000;
        }
    }
    p.push(("CPUQuotaPerSecUSec", Value::U64(per_sec)));
}

/// runc's RangeToBits: "0-2,7" as systemd's mask, bit `n` of byte `n / 8`
/// standing for cpu (or memory node) `n`.
fn range_to_bits(what: &'static str, list: &str) -> Result<Vec<u8>, Error> {
    let bad = |reason: String| Error::Resource {
        resource: if what == "cpus" {
            "cpu.cpus"
        } else {
            "cpu.mems"
        },
        reason,
    };
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_BIT)
            .ok_or_else(|| {
                bad(format!(
                    "{s:?} in {list:?} is not a {what} number up to {MAX_BIT}"
                ))
            })
    };
    let mut bytes: Vec<u8> = Vec::new();
    for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (lo, hi) = match r.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(r)?, num(r)?),
        };
        if lo > hi {
            return Err(bad(format!("invalid range {r:?}")));
        }
        for n in lo..=hi {
            let i = (n / 8) as usize;
            if bytes.len() <= i {
                bytes.resize(i + 1, 0);
            }
            bytes[i] |= 1 << (n % 8);
        }
    }
    if bytes.is_empty() {
        return Err(bad(format!("{list:?} names no {what}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).expect("resources")
    }

    fn get(p: &[Property], name: &str) -> Option<Value> {
        p.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn v2_properties() {
        let r = res(serde_json::json!({
            "memory": {"limit": 67108864, "reservation": 1048576, "swap": 134217728},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 42}
        }));
        let p = properties(&r, true).expect("props");
        assert_eq!(get(&p, "MemoryMax"), Some(Value::U64(67108864)));
        assert_eq!(get(&p, "MemoryLow"), Some(Value::U64(1048576)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(Value::U64(67108864)));
        assert_eq!(get(&p, "CPUWeight"), Some(Value::U64(39)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(Value::U64(100000)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(500000)));
        assert_eq!(get(&p, "AllowedCPUs"), Some(Value::Bytes(vec![0b11])));
        assert_eq!(get(&p, "AllowedMemoryNodes"), Some(Value::Bytes(vec![1])));
        assert_eq!(get(&p, "TasksMax"), Some(Value::U64(42)));
        assert_eq!(get(&p, "MemoryLimit"), None);
    }

    #[test]
    fn unlimited_and_unset() {
        let r = res(serde_json::json!({"memory": {"limit": -1}, "pids": {"limit": -1}}));
        let p = properties(&r, true).expect("props");
        assert_eq!(get(&p, "MemoryMax"), Some(Value::U64(u64::MAX)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(Value::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(Value::U64(u64::MAX)));
        assert!(properties(&LinuxResources::default(), true)
            .expect("props")
            .is_empty());
        // swap == limit: no swap at all, which must be said ("0").
        let r = res(serde_json::json!({"memory": {"limit": 1048576, "swap": 1048576}}));
        let p = properties(&r, true).expect("props");
        assert_eq!(get(&p, "MemorySwapMax"), Some(Value::U64(0)));
        let r = res(serde_json::json!({"memory": {"limit": 1048576, "swap": 1024}}));
        assert!(properties(&r, true).is_err());
    }

    #[test]
    fn v1_names() {
        let r = res(serde_json::json!({"memory": {"limit": 4096}, "cpu": {"shares": 512}}));
        let p = properties(&r, false).expect("props");
        assert_eq!(get(&p, "MemoryLimit"), Some(Value::U64(4096)));
        assert_eq!(get(&p, "CPUShares"), Some(Value::U64(512)));
        assert_eq!(get(&p, "MemoryMax"), None);
    }

    #[test]
    fn quota_rounds_up_to_whole_percent() {
        // Whole and fractional percentages, -1, and the default period.
        let cases = [
            (0, 0, None),
            (-1, 0, Some(u64::MAX)),
            (100000, 0, Some(1_000_000)),
            (1000, 100000, Some(10_000)),
            (1234, 100000, Some(20_000)),
            (33333, 100000, Some(340_000)),
            (50000, 1000000, Some(50_000)),
        ];
        for (quota, period, want) in cases {
            let mut p = Vec::new();
            cpu_quota(&mut p, quota, period);
            assert_eq!(
                get(&p, "CPUQuotaPerSecUSec"),
                want.map(Value::U64),
                "{quota}/{period}"
            );
        }
    }

    #[test]
    fn masks() {
        assert_eq!(range_to_bits("cpus", "0").expect("ok"), vec![1]);
        assert_eq!(
            range_to_bits("cpus", "0-3,9").expect("ok"),
            vec![0x0f, 0x02]
        );
        assert_eq!(range_to_bits("cpus", " 1 , 2-2,").expect("ok"), vec![0b110]);
        assert_eq!(range_to_bits("cpus", "8").expect("ok"), vec![0, 1]);
        for bad in ["", ",", "3-1", "x", "0-99999999", "-1"] {
            assert!(range_to_bits("cpus", bad).is_err(), "{bad:?}");
        }
    }
}
