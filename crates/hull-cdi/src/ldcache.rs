//! Reads glibc's `/etc/ld.so.cache` (the "glibc-ld.so.cache1.1" format glibc has written
//! since 2.32, alone or after the old "ld.so-1.7.0" table): the library paths the
//! dynamic loader knows, as `ldconfig -p` prints them, without running ldconfig (which
//! could only read the host's cache, not one under `--root`).

const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const HEADER: usize = 48;
const ENTRY: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no glibc-ld.so.cache1.1 header")]
    Format,
    #[error("truncated at byte {0}")]
    Truncated(usize),
}

/// The architecture bits of an entry's flags (glibc's FLAG_X8664_LIB64, FLAG_AARCH64_LIB64):
/// only the machine's own libraries are of use.
fn native(flags: u32) -> bool {
    let arch = flags & 0xff00;
    if cfg!(target_arch = "x86_64") {
        arch == 0x0300
    } else if cfg!(target_arch = "aarch64") {
        arch == 0x0a00
    } else {
        true
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, Error> {
    let s = b.get(at..at + 4).ok_or(Error::Truncated(at))?;
    Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn str_at(b: &[u8], at: usize) -> Result<String, Error> {
    let rest = b.get(at..).ok_or(Error::Truncated(at))?;
    let end = rest
        .iter()
        .position(|c| *c == 0)
        .ok_or(Error::Truncated(at))?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// `(soname, path)` of each native library in the cache.
pub fn parse(b: &[u8]) -> Result<Vec<(String, String)>, Error> {
    // String offsets count from the new-format header, wherever it sits.
    let base = b
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .ok_or(Error::Format)?;
    let n = u32_at(b, base + MAGIC.len())? as usize;
    let mut out = Vec::new();
    for i in 0..n {
        let e = base + HEADER + i * ENTRY;
        let flags = u32_at(b, e)?;
        if !native(flags) {
            continue;
        }
        let key = str_at(b, base + u32_at(b, e + 4)? as usize)?;
        let value = str_at(b, base + u32_at(b, e + 8)? as usize)?;
        out.push((key, value));
    }
    Ok(out)
}

/// Builds a cache image (for tests of code that reads one).
pub fn build(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut strings = Vec::new();
    let strings_at = HEADER + entries.len() * ENTRY;
    let mut b = MAGIC.to_vec();
    b.extend((entries.len() as u32).to_ne_bytes());
    b.resize(HEADER, 0);
    for (k, v) in entries {
        let flag: u32 = if cfg!(target_arch = "aarch64") {
            0x0a03
        } else {
            0x0303
        };
        let k_at = strings_at + strings.len();
        strings.extend(k.as_bytes());
        strings.push(0);
        let v_at = strings_at + strings.len();
        strings.extend(v.as_bytes());
        strings.push(0);
        b.extend(flag.to_ne_bytes());
        b.extend((k_at as u32).to_ne_bytes());
        b.extend((v_at as u32).to_ne_bytes());
        b.extend([0u8; 12]);
    }
    b.extend(strings);
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_host_cache() {
        let b = build(&[
            ("libcuda.so.1", "/usr/lib/libcuda.so.1"),
            ("libz.so.1", "/lib/libz.so.1"),
        ]);
        let e = parse(&b).unwrap();
        assert_eq!(
            e[0],
            ("libcuda.so.1".into(), "/usr/lib/libcuda.so.1".into())
        );
        assert_eq!(e.len(), 2);
        assert_eq!(parse(b"nope"), Err(Error::Format));
        assert!(parse(&b[..60]).is_err());
        // The host's own cache, as glibc wrote it: libc is in it.
        if let Ok(host) = std::fs::read("/etc/ld.so.cache") {
            let libs = parse(&host).unwrap();
            assert!(libs.iter().any(|(k, _)| k == "libc.so.6"), "{libs:?}");
        }
    }
}
