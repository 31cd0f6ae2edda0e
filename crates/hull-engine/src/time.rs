//! RFC 3339 timestamps (UTC) and "3 minutes ago" without a date crate.

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01 (the inverse of `civil`, same algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-05-01T12:00:00.123456789Z`.
pub fn rfc3339(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let frac = ns.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// docker's "About a minute ago" style, coarse.
pub fn ago(ns: i128, now_ns: i128) -> String {
    let s = ((now_ns - ns) / 1_000_000_000).max(0);
    match s {
        0..=1 => "Less than a second ago".into(),
        2..=59 => format!("{s} seconds ago"),
        60..=119 => "About a minute ago".into(),
        120..=3599 => format!("{} minutes ago", s / 60),
        3600..=7199 => "About an hour ago".into(),
        7200..=172_799 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// [`go_duration_ns`]'s error for a duration past int64 nanoseconds (Go's limit too).
pub(crate) const TOO_LONG: &str = "too long";

/// Go's `time.ParseDuration`, as docker's flags (`--health-interval 1m30s`) and `--since 10m` take
/// durations: `[0-9.]+(ns|us|µs|ms|s|m|h)` repeated, an optional sign. A bare `0` is not one here
/// (`--since 0` is the unix epoch); flags that take it say so themselves. Nanoseconds; the error
/// says what is wrong with the text ([`TOO_LONG`] past Go's limit, about 292 years).
pub(crate) fn go_duration_ns(s: &str) -> Result<i128, &'static str> {
    const EXAMPLE: &str = "expected a duration such as 30s, 1m30s or 500ms";
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return Err(EXAMPLE);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a duration needs a unit (ns, us, ms, s, m, h)")?;
        let num: f64 = rest[..n].parse().map_err(|_| EXAMPLE)?;
        let tail = &rest[n..];
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let mult = match &tail[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        total += num * mult;
        rest = &tail[u..];
    }
    if total >= i64::MAX as f64 {
        return Err(TOO_LONG);
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_709_251_200_500_000_000),
            "2024-03-01T00:00:00.500000000Z"
        );
        for days in [-800_000, -1, 0, 1, 19_783, 2_000_000] {
            let (y, m, d) = super::civil(days);
            assert_eq!(super::days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn go_durations() {
        use super::go_duration_ns as d;
        assert_eq!(d("1m30s"), Ok(90_000_000_000));
        assert_eq!(d("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(d("500ms"), Ok(500_000_000));
        assert_eq!(d("-10m"), Ok(-600_000_000_000));
        // Not durations: a bare number (unix seconds for --since), a timestamp, no unit.
        for bad in [
            "0",
            "5",
            "1714564800.5",
            "2024-05-01T12:00:00Z",
            "1x",
            "",
            "m",
        ] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }
}
