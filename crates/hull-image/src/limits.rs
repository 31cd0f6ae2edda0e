//! Limits on what one layer may unpack to.
//!
//! A 9 MB gzip layer can inflate to 8 GiB of zeros (gzip reaches ~1000:1, zstd far more), so
//! the declared blob size bounds nothing on disk. hull stops a layer whose uncompressed tar
//! stream, or the file content it writes (sparse entries expand), exceeds `max_size` bytes, or
//! which has more than `max_files` entries; the staged snapshot is removed.
//!
//! Defaults are generous (64 GiB, 4 million entries: larger than any layer of the public
//! images we know, CUDA and ML images included) and set per process with the environment:
//! `HULL_LAYER_MAX_SIZE` (bytes, or with a binary suffix: `512M`, `8G`, `1T`, `KiB`...) and
//! `HULL_LAYER_MAX_FILES`.

/// Environment variable: the most bytes one layer may unpack to.
pub const MAX_SIZE_ENV: &str = "HULL_LAYER_MAX_SIZE";
/// Environment variable: the most entries one layer may have.
pub const MAX_FILES_ENV: &str = "HULL_LAYER_MAX_FILES";

/// Errors reading the limits.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{var}={value:?}: expected a positive number, optionally with K, M, G or T (binary)")]
    Bad { var: &'static str, value: String },
}

/// The most one layer may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Bytes of the uncompressed tar stream, and of file content written.
    pub max_size: u64,
    /// Tar entries (files, directories, links, whiteouts...).
    pub max_files: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        LayerLimits {
            max_size: 64 << 30,
            max_files: 4_000_000,
        }
    }
}

impl LayerLimits {
    /// The defaults, overridden by `HULL_LAYER_MAX_SIZE` / `HULL_LAYER_MAX_FILES` when set.
    pub fn from_env() -> Result<LayerLimits, LimitError> {
        let mut l = LayerLimits::default();
        if let Some(v) = std::env::var_os(MAX_SIZE_ENV) {
            l.max_size = parse_size(MAX_SIZE_ENV, &v.to_string_lossy())?;
        }
        if let Some(v) = std::env::var_os(MAX_FILES_ENV) {
            let v = v.to_string_lossy();
            l.max_files = match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad(MAX_FILES_ENV, &v)),
            };
        }
        Ok(l)
    }
}

fn bad(var: &'static str, value: &str) -> LimitError {
    LimitError::Bad {
        var,
        value: value.to_string(),
    }
}

/// `1048576`, `1024K`, `1M`, `1MiB`, `1mb`: binary multiples, case-insensitive.
pub(crate) fn parse_size(var: &'static str, value: &str) -> Result<u64, LimitError> {
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(digits);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad(var, value)),
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(1 << shift).ok_or_else(|| bad(var, value)),
        _ => Err(bad(var, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let p = |s| parse_size(MAX_SIZE_ENV, s).ok();
        assert_eq!(p("1048576"), Some(1 << 20));
        assert_eq!(p("1M"), Some(1 << 20));
        assert_eq!(p("1MiB"), Some(1 << 20));
        assert_eq!(p(" 8g "), Some(8 << 30));
        assert_eq!(p("2 KB"), Some(2048));
        assert_eq!(p("0"), None);
        assert_eq!(p("-1"), None);
        assert_eq!(p("1X"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("99999999999T"), None);
        let e = parse_size(MAX_SIZE_ENV, "lots").expect_err("bad");
        assert!(
            e.to_string().contains("HULL_LAYER_MAX_SIZE=\"lots\""),
            "{e}"
        );
    }
}
