//! docker's `--gpus`: `all`, `N`, `count=N`, `device=0,1` / `"device=0,GPU-..."` (the
//! value is a CSV record, hence the quotes), `driver=`/`capabilities=` accepted and
//! ignored. Mapped to `nvidia.com/gpu` CDI devices as docker 25 does with CDI enabled.

use crate::registry::Registry;

pub const GPU_KIND: &str = "nvidia.com/gpu";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid --gpus {0:?}: {1}")]
    Syntax(String, String),
    #[error("--gpus {want}: only {have} GPU(s) by index in the CDI specs ({dirs}); run `hull cdi generate --nvidia`")]
    TooFew {
        want: usize,
        have: usize,
        dirs: String,
    },
}

/// The qualified CDI names `--gpus value` asks for.
pub fn gpu_devices(reg: &Registry, value: &str) -> Result<Vec<String>, Error> {
    let bad = |why: &str| Error::Syntax(value.into(), why.into());
    let (mut count, mut ids): (Option<usize>, Vec<String>) = (None, Vec::new());
    for field in csv_fields(value) {
        let (k, v) = field.split_once('=').unwrap_or(("count", &field));
        match k {
            "count" if v == "all" => count = Some(usize::MAX),
            "count" => {
                count = Some(
                    v.parse()
                        .map_err(|_| bad("count must be a number or all"))?,
                )
            }
            "device" => ids.extend(v.split(',').map(|s| s.trim().to_string())),
            "driver" | "capabilities" => {}
            _ => return Err(bad(&format!("unknown option {k:?}"))),
        }
    }
    if !ids.is_empty() {
        if count.is_some() {
            return Err(bad("count and device cannot be used together"));
        }
        if ids.iter().any(|i| i.is_empty()) {
            return Err(bad("empty device id"));
        }
        return Ok(ids.iter().map(|i| format!("{GPU_KIND}={i}")).collect());
    }
    match count {
        Some(usize::MAX) => Ok(vec![format!("{GPU_KIND}=all")]),
        Some(0) | None => Err(bad("no GPUs requested")),
        Some(n) => first_by_index(reg, n),
    }
}

/// The first `n` GPUs named by a number (their index), in numeric order.
fn first_by_index(reg: &Registry, n: usize) -> Result<Vec<String>, Error> {
    let prefix = format!("{GPU_KIND}=");
    let mut idx: Vec<u64> = reg
        .devices
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
        .collect();
    idx.sort_unstable();
    if idx.len() < n {
        return Err(Error::TooFew {
            want: n,
            have: idx.len(),
            dirs: reg.dirs_text(),
        });
    }
    Ok(idx[..n].iter().map(|i| format!("{prefix}{i}")).collect())
}

/// One CSV record: fields split on commas outside double quotes, quotes removed.
fn csv_fields(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::Found;

    fn reg(names: &[&str]) -> Registry {
        let mut r = Registry::default();
        for n in names {
            let f = Found {
                file: "x".into(),
                device: Default::default(),
                spec_edits: Default::default(),
            };
            r.devices.insert(format!("{GPU_KIND}={n}"), f);
        }
        r
    }

    #[test]
    fn gpus_forms() {
        let r = reg(&["10", "2", "0", "GPU-abc", "all"]);
        assert_eq!(gpu_devices(&r, "all").unwrap(), ["nvidia.com/gpu=all"]);
        assert_eq!(
            gpu_devices(&r, "2").unwrap(),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=2"]
        );
        assert_eq!(gpu_devices(&r, "count=3").unwrap()[2], "nvidia.com/gpu=10");
        assert!(matches!(
            gpu_devices(&r, "4"),
            Err(Error::TooFew {
                want: 4,
                have: 3,
                ..
            })
        ));
        assert_eq!(
            gpu_devices(&r, "\"device=0,GPU-abc\"").unwrap(),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-abc"]
        );
        assert_eq!(
            gpu_devices(&r, "driver=nvidia,\"device=2\"").unwrap(),
            ["nvidia.com/gpu=2"]
        );
        assert!(gpu_devices(&r, "0").is_err());
        assert!(gpu_devices(&r, "bogus=1").is_err());
        assert!(gpu_devices(&r, "x").is_err());
    }
}
