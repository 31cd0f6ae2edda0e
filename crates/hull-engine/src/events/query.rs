//! What a reader asks of the journal: a time window and docker's filters.

use std::collections::BTreeMap;

use super::{Error, Event};

/// The events wanted (docker's `--since`, `--until`, `--filter`).
///
/// Without `since` and `until`, only events appended from now on; with either, the journal's
/// past events from `since` too. Events after `until` end the stream; without it, a reader
/// follows the journal for as long as it is read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Unix nanoseconds, inclusive.
    pub since: Option<i128>,
    /// Unix nanoseconds, inclusive.
    pub until: Option<i128>,
    pub filters: Filters,
}

impl Query {
    pub fn matches(&self, e: &Event) -> bool {
        let t = i128::from(e.time_nano);
        self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t <= u)
            && self.filters.matches(e)
    }
}

/// docker's event filters: values of one key are alternatives, different keys must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

const KEYS: [&str; 7] = [
    "container",
    "image",
    "event",
    "type",
    "label",
    "network",
    "volume",
];
const TYPES: [&str; 4] = ["container", "image", "network", "volume"];

impl Filters {
    /// `KEY=VALUE` strings, as `--filter` takes them.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Filters, Error> {
        let mut f = Filters::default();
        for a in args {
            let a = a.as_ref();
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| Error::FilterSyntax(a.into()))?;
            f.add(k, v)?;
        }
        Ok(f)
    }

    /// One filter (the API's `filters` JSON gives key and values apart).
    pub fn add(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let key = key.trim().to_ascii_lowercase();
        if !KEYS.contains(&key.as_str()) {
            return Err(Error::FilterKey(format!("{key}={value}")));
        }
        if key == "type" && !TYPES.contains(&value) {
            return Err(Error::FilterType(format!("{key}={value}")));
        }
        self.0.entry(key).or_default().push(value.into());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.0
            .iter()
            .all(|(k, vs)| vs.iter().any(|v| matches_one(k, v, e)))
    }
}

fn attr<'a>(e: &'a Event, k: &str) -> &'a str {
    e.actor.attributes.get(k).map_or("", String::as_str)
}

/// `busybox` and `busybox:latest` are one image to a filter, as to docker's.
fn same_image(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let last = s.rsplit('/').next().unwrap_or(s);
        if last.contains(':') || s.contains('@') {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    !a.is_empty() && !b.is_empty() && (a == b || norm(a) == norm(b))
}

fn matches_one(key: &str, v: &str, e: &Event) -> bool {
    let named = |kind: &str| {
        e.kind == kind && (e.actor.id == v || attr(e, "name") == v || e.actor.id.starts_with(v))
    };
    match key {
        "type" => e.kind == v,
        // `exec_start: sh -c ...` and `health_status: healthy` match their action's name.
        "event" => e.action == v || e.action.split(':').next() == Some(v),
        "container" => named("container"),
        "network" => named("network"),
        "volume" => named("volume"),
        "image" => match e.kind.as_str() {
            "container" => same_image(attr(e, "image"), v),
            "image" => same_image(&e.actor.id, v) || same_image(attr(e, "name"), v),
            _ => false,
        },
        "label" => match v.split_once('=') {
            Some((k, val)) => e.actor.attributes.get(k).is_some_and(|x| x == val),
            None => e.actor.attributes.contains_key(v),
        },
        _ => false,
    }
}

/// A `--since`/`--until` value as unix nanoseconds: an RFC 3339 time (a date alone, or no
/// zone, is UTC), unix seconds with an optional fraction, or a Go duration (`10m`, `1h30m`)
/// before `now_ns`, as docker takes them.
pub fn parse_time(flag: &'static str, value: &str, now_ns: i128) -> Result<i128, Error> {
    let bad = || Error::Time {
        flag,
        value: value.into(),
    };
    let range = || Error::TimeRange {
        flag,
        value: value.into(),
    };
    let v = value.trim();
    match crate::time::go_duration_ns(v) {
        Ok(d) => return now_ns.checked_sub(d).ok_or_else(range),
        Err(crate::time::TOO_LONG) => return Err(range()),
        Err(_) => {}
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return unix_ns(v).map_err(|e| match e {
            Unix::Range => range(),
            Unix::Syntax => bad(),
        });
    }
    rfc3339_ns(v).ok_or_else(bad)
}

/// Why a value of digits and dots is not unix seconds.
enum Unix {
    Syntax,
    /// More seconds than docker's Go takes (`strconv.ParseInt(s, 10, 64)`).
    Range,
}

fn unix_ns(v: &str) -> Result<i128, Unix> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 9 || frac.contains('.') {
        return Err(Unix::Syntax);
    }
    let secs: i64 = s
        .parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            std::num::IntErrorKind::PosOverflow => Unix::Range,
            _ => Unix::Syntax,
        })?;
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| Unix::Syntax)?
    };
    i128::from(secs)
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or(Unix::Range)
}

fn num(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]`.
fn rfc3339_ns(v: &str) -> Option<i128> {
    let date = v.get(..10)?;
    let (y, mo, d) = (
        num(date.get(..4)?, 4)?,
        num(date.get(5..7)?, 2)?,
        num(date.get(8..10)?, 2)?,
    );
    if &date[4..5] != "-" || &date[7..8] != "-" || !(1..=12).contains(&mo) || !(1..=31).contains(&d)
    {
        return None;
    }
    let mut secs = crate::time::days_from_civil(y, mo as u32, d as u32) * 86_400;
    let mut nanos = 0i128;
    let rest = &v[10..];
    let mut zone = "";
    if let Some(t) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) {
        let zi = t.find(['Z', 'z', '+', '-']).unwrap_or(t.len());
        zone = &t[zi..];
        let (clock, frac) = t[..zi].split_once('.').unwrap_or((&t[..zi], ""));
        let parts: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let h = num(parts[0], 2)?;
        let mi = num(parts[1], 2)?;
        let s = parts.get(2).map_or(Some(0), |p| num(p, 2))?;
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
        if !frac.is_empty() {
            nanos = unix_ns(&format!("0.{frac}")).ok()?;
        }
    } else if !rest.is_empty() {
        return None;
    }
    match zone {
        "" | "Z" | "z" => {}
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            secs -= sign * (num(h, 2)? * 3600 + num(m, 2)? * 60);
        }
    }
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}
