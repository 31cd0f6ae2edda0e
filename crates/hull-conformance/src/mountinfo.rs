//! `/proc/self/mountinfo` parsing and mount option semantics.

use std::path::{Component, Path, PathBuf};

/// One mountinfo line (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 4: the root of the mount within its filesystem (for a bind
    /// mount, the source's path in the source filesystem).
    pub root: String,
    /// Field 5, unescaped.
    pub mount_point: PathBuf,
    /// Field 6: per-mount options (ro/rw, nosuid, nodev, noexec, atime).
    pub opts: Vec<String>,
    /// Field 7...: optional fields (`shared:N`, `master:N`, `unbindable`).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Superblock options (`size=65536k`, `mode=755`, `sync`...).
    pub super_opts: Vec<String>,
}

impl MountEntry {
    pub fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }

    pub fn has_super(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }

    /// The value of `key=` in the superblock options.
    pub fn super_value(&self, key: &str) -> Option<&str> {
        self.super_opts
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    /// Propagation as the runtime-spec names it: shared, slave, private,
    /// unbindable (a mount can be shared and a slave at once: "shared").
    pub fn propagation(&self) -> &'static str {
        if self.optional.iter().any(|o| o == "unbindable") {
            "unbindable"
        } else if self.optional.iter().any(|o| o.starts_with("shared:")) {
            "shared"
        } else if self.optional.iter().any(|o| o.starts_with("master:")) {
            "slave"
        } else {
            "private"
        }
    }
}

/// Whether propagation `got` satisfies `want`. MS_SLAVE on a mount without
/// peers leaves it private (mount_namespaces(7)), which is what a slave of a
/// private host mount looks like.
pub fn propagation_matches(want: &str, got: &str) -> bool {
    want == got || (want == "slave" && got == "private")
}

/// Undoes mountinfo's octal escapes (`\040` for a space...).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let lf: Vec<&str> = left.split(' ').collect();
    let rf: Vec<&str> = right.split(' ').collect();
    if lf.len() < 6 || rf.is_empty() {
        return None;
    }
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(MountEntry {
        root: unescape(lf[3]),
        mount_point: PathBuf::from(unescape(lf[4])),
        opts: split(lf[5]),
        optional: lf[6..].iter().map(|s| s.to_string()).collect(),
        fstype: rf[0].to_string(),
        source: rf.get(1).map(|s| unescape(s)).unwrap_or_default(),
        super_opts: rf.get(2).map(|s| split(s)).unwrap_or_default(),
    })
}

/// `/a//b/./c/` → `/a/b/c` (no symlink resolution: mountinfo does the same
/// for what the runtime mounted).
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The visible mount at exactly `mp` (the last one stacked there).
pub fn at<'a>(mounts: &'a [MountEntry], mp: &Path) -> Option<&'a MountEntry> {
    let mp = clean(mp);
    mounts.iter().rev().find(|m| m.mount_point == mp)
}

/// The mount that holds `path`: the longest mount point above it.
pub fn containing<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    let path = clean(path);
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// What a config mount option means for mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptCheck {
    /// The per-mount options must contain this flag.
    Has(&'static str),
    /// The per-mount options must not contain this flag.
    Lacks(&'static str),
    /// Neither `relatime` nor `noatime` (strictatime).
    Strict,
    /// The superblock options must contain this flag.
    SuperHas(&'static str),
    /// Propagation, as [`MountEntry::propagation`] names it.
    Propagation(&'static str),
    /// `key=value` in the superblock options, compared as [`ValueKind`].
    Value(String, String, ValueKind),
    /// Not visible in mountinfo (bind, newinstance, x-*...): not checked.
    Unchecked,
}

/// How to compare a `key=value` option with what the kernel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Octal permissions: `mode=0755` is shown as `mode=755`.
    Octal,
    /// A size with an optional k/m/g suffix: `size=64m` is `size=65536k`.
    Size,
    /// A plain number (uid, gid, nr_inodes).
    Number,
}

/// Maps one option of a config mount to its check.
pub fn option_check(opt: &str) -> OptCheck {
    use OptCheck::*;
    match opt {
        "ro" => Has("ro"),
        "rw" => Has("rw"),
        "nosuid" => Has("nosuid"),
        "nodev" => Has("nodev"),
        "noexec" => Has("noexec"),
        "noatime" => Has("noatime"),
        "nodiratime" => Has("nodiratime"),
        "relatime" => Has("relatime"),
        "nosymfollow" => Has("nosymfollow"),
        "suid" => Lacks("nosuid"),
        "dev" => Lacks("nodev"),
        "exec" => Lacks("noexec"),
        "atime" => Lacks("noatime"),
        "diratime" => Lacks("nodiratime"),
        "norelatime" => Lacks("relatime"),
        "strictatime" => Strict,
        "sync" => SuperHas("sync"),
        "dirsync" => SuperHas("dirsync"),
        "mand" => SuperHas("mand"),
        "lazytime" => SuperHas("lazytime"),
        "shared" | "rshared" => Propagation("shared"),
        "slave" | "rslave" => Propagation("slave"),
        "private" | "rprivate" => Propagation("private"),
        "unbindable" | "runbindable" => Propagation("unbindable"),
        _ => match opt.split_once('=') {
            Some((k @ ("mode" | "ptmxmode"), v)) => Value(k.into(), v.into(), ValueKind::Octal),
            Some((k @ "size", v)) if !v.ends_with('%') => {
                Value(k.into(), v.into(), ValueKind::Size)
            }
            Some((k @ ("uid" | "gid" | "nr_inodes"), v)) => {
                Value(k.into(), v.into(), ValueKind::Number)
            }
            _ => Unchecked,
        },
    }
}

/// Bytes of a size option (`65536k`, `64m`, `1g`, `4096`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

/// Whether option value `want` (from the config) matches `got` (shown).
pub fn value_matches(kind: ValueKind, want: &str, got: &str) -> bool {
    match kind {
        ValueKind::Octal => {
            matches!((u32::from_str_radix(want, 8), u32::from_str_radix(got, 8)), (Ok(a), Ok(b)) if a == b)
        }
        // tmpfs rounds sizes up to whole pages.
        ValueKind::Size => match (parse_size(want), parse_size(got)) {
            (Some(a), Some(b)) => a.div_ceil(4096) == b.div_ceil(4096),
            _ => false,
        },
        ValueKind::Number => {
            matches!((want.parse::<u64>(), got.parse::<u64>()), (Ok(a), Ok(b)) if a == b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
22 1 0:21 / / ro,relatime master:1 - overlay overlay rw,lowerdir=/x
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
24 22 0:23 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
25 24 0:24 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666
26 22 8:1 /tmp/src\\040dir /mnt/a\\040b rw,relatime shared:7 - ext4 /dev/sda1 rw
27 22 0:25 / /proc/kcore ro,nosuid - tmpfs tmpfs ro,size=0k
28 22 0:26 / /dev rw,nosuid - tmpfs tmpfs rw,size=1k,mode=700
";

    #[test]
    fn parses_and_unescapes() {
        let m = parse(MI);
        assert_eq!(m.len(), 7);
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[4].root, "/tmp/src dir");
        assert_eq!(m[4].propagation(), "shared");
        assert_eq!(m[0].propagation(), "slave");
        assert_eq!(m[1].propagation(), "private");
        assert_eq!(m[3].super_value("ptmxmode"), Some("666"));
        assert!(m[1].has_opt("noexec"));
        assert_eq!(m[0].fstype, "overlay");
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trail\\04"), "trail\\04");
    }

    #[test]
    fn lookups() {
        let m = parse(MI);
        // The last mount at a point is the visible one.
        assert_eq!(
            at(&m, Path::new("/dev/")).map(|e| e.super_opts.len()),
            Some(3)
        );
        assert_eq!(
            at(&m, Path::new("/dev")).and_then(|e| e.super_value("mode")),
            Some("700")
        );
        assert!(at(&m, Path::new("/nope")).is_none());
        assert_eq!(
            containing(&m, Path::new("/proc/kcore")).map(|e| e.fstype.as_str()),
            Some("tmpfs")
        );
        assert_eq!(
            containing(&m, Path::new("/proc/sys/kernel")).map(|e| e.fstype.as_str()),
            Some("proc")
        );
        assert_eq!(
            containing(&m, Path::new("/etc")).map(|e| e.fstype.as_str()),
            Some("overlay")
        );
        assert_eq!(clean(Path::new("//a/./b/../c/")), PathBuf::from("/a/c"));
    }

    #[test]
    fn options() {
        assert_eq!(option_check("nosuid"), OptCheck::Has("nosuid"));
        assert_eq!(option_check("exec"), OptCheck::Lacks("noexec"));
        assert_eq!(option_check("rslave"), OptCheck::Propagation("slave"));
        assert_eq!(option_check("newinstance"), OptCheck::Unchecked);
        assert_eq!(option_check("size=50%"), OptCheck::Unchecked);
        assert_eq!(
            option_check("mode=0620"),
            OptCheck::Value("mode".into(), "0620".into(), ValueKind::Octal)
        );
        assert!(value_matches(ValueKind::Octal, "0620", "620"));
        assert!(!value_matches(ValueKind::Octal, "0620", "600"));
        assert!(value_matches(ValueKind::Size, "64m", "65536k"));
        assert!(value_matches(ValueKind::Size, "1000", "4k"));
        assert!(!value_matches(ValueKind::Size, "64m", "32768k"));
        assert!(value_matches(ValueKind::Number, "5", "5"));
        assert!(propagation_matches("slave", "private"));
        assert!(!propagation_matches("shared", "private"));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("x"), None);
    }
}
