//! The checks, one function per area of the config. Each reads what the
//! config asks for and what the kernel shows, and records one [`Check`] per
//! field (`crate::Check`); fields the config leaves out are not checked
//! unless the runtime-spec gives them a default the runtime must apply.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::caps;
use crate::mountinfo::{self, MountEntry, OptCheck};
use crate::report::Report;

/// What the checker knows besides the config: the test passes the host's
/// namespace inodes, since the host's `/proc` is not visible inside.
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `/proc/self/ns/<kind>` inodes of the host (kind as in /proc: net, mnt...).
    pub host_ns: HashMap<String, u64>,
    /// Inodes of namespaces the config joins by `path`, by /proc kind.
    pub joined_ns: HashMap<String, u64>,
}

impl Env {
    /// Parses `kind:inode` pairs separated by spaces or commas
    /// (`HULL_CHECK_HOST_NS="net:4026531840 mnt:4026531841"`).
    pub fn parse_ns_list(s: &str) -> HashMap<String, u64> {
        s.split([' ', ','])
            .filter_map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }
}

/// Runs every check against the config.
pub fn run_all(cfg: &Value, env: &Env) -> Report {
    let mut r = Report::default();
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map(|t| mountinfo::parse(&t))
        .unwrap_or_default();
    let status = proc_status();
    uts(cfg, &mut r);
    root(cfg, &mounts, &mut r);
    config_mounts(cfg, &mounts, &mut r);
    masked_paths(cfg, &mut r);
    readonly_paths(cfg, &mounts, &mut r);
    devices(cfg, &mounts, &mut r);
    sysctl(cfg, &mut r);
    process(cfg, &status, &mut r);
    rlimits(cfg, &mut r);
    capabilities(cfg, &status, &mut r);
    cgroups(cfg, &mut r);
    namespaces(cfg, env, &mut r);
    r
}

fn read_trim(p: impl AsRef<Path>) -> Result<String, String> {
    let p = p.as_ref();
    fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// `/proc/self/status` as key → value.
fn proc_status() -> HashMap<String, String> {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------- uts

fn uts(cfg: &Value, r: &mut Report) {
    for key in ["hostname", "domainname"] {
        let Some(want) = cfg[key].as_str() else {
            continue;
        };
        match read_trim(format!("/proc/sys/kernel/{key}")) {
            Ok(got) => r.eq(key, want.to_string(), got),
            Err(e) => r.fail(key, want, e),
        }
    }
}

// ---------------------------------------------------------------- mounts

fn root(cfg: &Value, mounts: &[MountEntry], r: &mut Report) {
    let Some(m) = mountinfo::at(mounts, Path::new("/")) else {
        r.fail("root", "a mount at /", "no / in mountinfo");
        return;
    };
    let ro = cfg["root"]["readonly"].as_bool().unwrap_or(false);
    r.eq("root.readonly", ro, m.has_opt("ro"));
    if let Some(p) = cfg["linux"]["rootfsPropagation"].as_str() {
        if let OptCheck::Propagation(want) = mountinfo::option_check(p) {
            let got = m.propagation();
            r.check(
                "linux.rootfsPropagation",
                mountinfo::propagation_matches(want, got),
                want,
                got,
            );
        }
    }
}

fn is_bind(m: &Value) -> bool {
    m["type"].as_str() == Some("bind")
        || strs(&m["options"])
            .iter()
            .any(|o| *o == "bind" || *o == "rbind")
}

fn config_mounts(cfg: &Value, mounts: &[MountEntry], r: &mut Report) {
    let list: Vec<&Value> = cfg["mounts"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let dests: Vec<PathBuf> = list
        .iter()
        .map(|m| mountinfo::clean(Path::new(m["destination"].as_str().unwrap_or("/"))))
        .collect();
    let masked: Vec<PathBuf> = strs(&cfg["linux"]["maskedPaths"])
        .iter()
        .map(|p| mountinfo::clean(Path::new(p)))
        .collect();
    for (i, m) in list.iter().enumerate() {
        let dest = &dests[i];
        // A later mount on or above this one hides it; so does a masked path.
        if dests[i + 1..].iter().any(|d| dest.starts_with(d))
            || masked.iter().any(|d| dest.starts_with(d))
        {
            continue;
        }
        let f = format!("mounts[{}]", dest.display());
        let Some(e) = mountinfo::at(mounts, dest) else {
            r.fail(f, "mounted", "no such mount point in mountinfo");
            continue;
        };
        let typ = m["type"].as_str().unwrap_or("");
        let opts = strs(&m["options"]);
        if is_bind(m) {
            // mountinfo's root is the source's path within its filesystem.
            let src = m["source"].as_str().unwrap_or("");
            let ok = e.root == "/"
                || mountinfo::clean(Path::new(src)).ends_with(e.root.trim_start_matches('/'));
            r.check(format!("{f}.source"), ok, src, e.root.clone());
        } else if typ == "cgroup" {
            // v2: cgroup2; v1/hybrid: a tmpfs holding one mount per hierarchy.
            let ok = ["cgroup", "cgroup2", "tmpfs"].contains(&e.fstype.as_str());
            r.check(format!("{f}.type"), ok, typ, e.fstype.clone());
        } else if !typ.is_empty() {
            r.eq(format!("{f}.type"), typ.to_string(), e.fstype.clone());
        }
        for o in &opts {
            mount_option(&f, o, e, r);
        }
        if typ == "cgroup" && opts.contains(&"ro") {
            // `ro` applies to every hierarchy below the tmpfs too.
            for sub in mounts
                .iter()
                .filter(|s| s.mount_point.starts_with(dest) && s.mount_point != *dest)
            {
                let name = sub
                    .mount_point
                    .strip_prefix(dest)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                r.eq(format!("{f}/{name}.options.ro"), true, sub.has_opt("ro"));
            }
        }
    }
}

fn mount_option(f: &str, o: &str, e: &MountEntry, r: &mut Report) {
    let field = format!("{f}.options.{o}");
    match mountinfo::option_check(o) {
        OptCheck::Has(flag) => r.check(field, e.has_opt(flag), flag, e.opts.join(",")),
        OptCheck::Lacks(flag) => r.check(
            field,
            !e.has_opt(flag),
            format!("not {flag}"),
            e.opts.join(","),
        ),
        OptCheck::Strict => r.check(
            field,
            !e.has_opt("relatime") && !e.has_opt("noatime"),
            "neither relatime nor noatime",
            e.opts.join(","),
        ),
        OptCheck::SuperHas(flag) => r.check(field, e.has_super(flag), flag, e.super_opts.join(",")),
        OptCheck::Propagation(p) => {
            let got = e.propagation();
            r.check(field, mountinfo::propagation_matches(p, got), p, got)
        }
        OptCheck::Value(k, v, kind) => match e.super_value(&k) {
            Some(got) => r.check(field, mountinfo::value_matches(kind, &v, got), v, got),
            // tmpfs leaves out its defaults (mode=1777, uid=0, gid=0): the
            // root of the mount shows them.
            None if e.fstype == "tmpfs" && ["mode", "uid", "gid"].contains(&k.as_str()) => {
                match fs::metadata(&e.mount_point) {
                    Ok(md) => {
                        let got = match k.as_str() {
                            "mode" => format!("{:o}", md.mode() & 0o7777),
                            "uid" => md.uid().to_string(),
                            _ => md.gid().to_string(),
                        };
                        r.check(field, mountinfo::value_matches(kind, &v, &got), v, got)
                    }
                    Err(err) => r.fail(field, v, err.to_string()),
                }
            }
            None => r.fail(field, v, format!("no {k}= in {}", e.super_opts.join(","))),
        },
        OptCheck::Unchecked => {}
    }
}

fn masked_paths(cfg: &Value, r: &mut Report) {
    for p in strs(&cfg["linux"]["maskedPaths"]) {
        let f = format!("linux.maskedPaths[{p}]");
        let Ok(md) = fs::metadata(p) else {
            // runc skips masked paths that do not exist.
            continue;
        };
        if md.is_dir() {
            let n = fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
            r.check(f, n == 0, "an empty directory", format!("{n} entries"));
        } else {
            match fs::read(p) {
                Ok(b) => r.check(
                    f,
                    b.is_empty(),
                    "reads nothing",
                    format!("{} bytes", b.len()),
                ),
                // EACCES/EPERM also hide the content.
                Err(e) => r.check(f, true, "reads nothing", e.to_string()),
            }
        }
    }
}

fn readonly_paths(cfg: &Value, mounts: &[MountEntry], r: &mut Report) {
    for p in strs(&cfg["linux"]["readonlyPaths"]) {
        if fs::symlink_metadata(p).is_err() {
            continue;
        }
        let f = format!("linux.readonlyPaths[{p}]");
        match mountinfo::containing(mounts, Path::new(p)) {
            Some(e) => r.check(f, e.has_opt("ro"), "ro", e.opts.join(",")),
            None => r.fail(f, "ro", "no mount holds it"),
        }
    }
}

// ---------------------------------------------------------------- devices

fn dev_major(d: u64) -> u64 {
    ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff)
}

fn dev_minor(d: u64) -> u64 {
    (d & 0xff) | ((d >> 12) & !0xff)
}

fn dev_type(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_char_device() {
        "c"
    } else if t.is_block_device() {
        "b"
    } else if t.is_fifo() {
        "p"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else {
        "file"
    }
}

/// runtime-spec "Default Devices", which the runtime must supply.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn devices(cfg: &Value, mounts: &[MountEntry], r: &mut Report) {
    let listed: BTreeSet<&str> = cfg["linux"]["devices"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["path"].as_str()).collect())
        .unwrap_or_default();
    for (path, maj, min) in DEFAULT_DEVICES {
        if listed.contains(path) {
            continue;
        }
        let f = format!("linux.devices.default[{path}]");
        let want = format!("c {maj}:{min}");
        match fs::symlink_metadata(path) {
            Ok(md) => {
                let got = format!(
                    "{} {}:{}",
                    dev_type(&md),
                    dev_major(md.rdev()),
                    dev_minor(md.rdev())
                );
                r.eq(f, want, got);
            }
            Err(e) => r.fail(f, want, e.to_string()),
        }
    }
    let mut links = vec![
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ];
    if mountinfo::at(mounts, Path::new("/dev/pts")).is_some_and(|m| m.fstype == "devpts") {
        links.push(("/dev/ptmx", "pts/ptmx"));
    }
    for (link, target) in links {
        let f = format!("linux.devices.default[{link}]");
        match fs::read_link(link) {
            Ok(t) => r.eq(f, target.to_string(), t.display().to_string()),
            Err(e) => r.fail(f, target, e.to_string()),
        }
    }
    for d in cfg["linux"]["devices"].as_array().into_iter().flatten() {
        let Some(path) = d["path"].as_str() else {
            continue;
        };
        let f = format!("linux.devices[{path}]");
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                r.fail(f, "exists", e.to_string());
                continue;
            }
        };
        let want_type = match d["type"].as_str() {
            Some("u") => "c",
            Some(t) => t,
            None => "?",
        };
        r.eq(format!("{f}.type"), want_type, dev_type(&md));
        if want_type != "p" {
            for (k, got) in [
                ("major", dev_major(md.rdev())),
                ("minor", dev_minor(md.rdev())),
            ] {
                if let Some(want) = d[k].as_u64() {
                    r.eq(format!("{f}.{k}"), want, got);
                }
            }
        }
        if let Some(mode) = d["fileMode"].as_u64() {
            r.eq(
                format!("{f}.fileMode"),
                format!("{:o}", mode & 0o7777),
                format!("{:o}", md.mode() & 0o7777),
            );
        }
        for (k, got) in [("uid", md.uid()), ("gid", md.gid())] {
            if let Some(want) = d[k].as_u64() {
                r.eq(format!("{f}.{k}"), want, u64::from(got));
            }
        }
    }
}

// ---------------------------------------------------------------- sysctl

fn sysctl(cfg: &Value, r: &mut Report) {
    let Some(map) = cfg["linux"]["sysctl"].as_object() else {
        return;
    };
    for (k, v) in map {
        let f = format!("linux.sysctl[{k}]");
        let want = ws(v.as_str().unwrap_or(""));
        // Dots separate levels; a key may use slashes instead (runc).
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        match read_trim(&path) {
            Ok(got) => r.eq(f, want, ws(&got)),
            Err(e) => r.fail(f, want, e),
        }
    }
}

// ---------------------------------------------------------------- process

fn status_ids(status: &HashMap<String, String>, key: &str) -> Vec<u64> {
    status
        .get(key)
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn process(cfg: &Value, status: &HashMap<String, String>, r: &mut Report) {
    let p = &cfg["process"];
    let user = &p["user"];
    for (k, sk) in [("uid", "Uid"), ("gid", "Gid")] {
        let want = user[k].as_u64().unwrap_or(0);
        let got = status_ids(status, sk);
        // real, effective, saved and filesystem ids all switch.
        let ok = got.len() == 4 && got.iter().all(|g| *g == want);
        r.check(format!("process.user.{k}"), ok, want, json!(got));
    }
    let want: BTreeSet<u64> = user["additionalGids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let got: BTreeSet<u64> = status_ids(status, "Groups").into_iter().collect();
    r.eq(
        "process.user.additionalGids",
        json!(want.into_iter().collect::<Vec<_>>()),
        json!(got.into_iter().collect::<Vec<_>>()),
    );
    if let Some(mask) = user["umask"].as_u64() {
        let got = status
            .get("Umask")
            .and_then(|u| u32::from_str_radix(u, 8).ok());
        r.eq(
            "process.user.umask",
            format!("{mask:04o}"),
            got.map(|g| format!("{g:04o}")).unwrap_or_default(),
        );
    }
    let nnp = p["noNewPrivileges"].as_bool().unwrap_or(false);
    let got = status.get("NoNewPrivs").map(|v| v == "1");
    r.check("process.noNewPrivileges", got == Some(nnp), nnp, json!(got));
    if let Some(adj) = p["oomScoreAdj"].as_i64() {
        match read_trim("/proc/self/oom_score_adj") {
            Ok(got) => r.eq("process.oomScoreAdj", adj.to_string(), got),
            Err(e) => r.fail("process.oomScoreAdj", adj, e),
        }
    }
    if let Some(cwd) = p["cwd"].as_str() {
        let got = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|e| e.to_string());
        r.eq(
            "process.cwd",
            mountinfo::clean(Path::new(cwd)).display().to_string(),
            got,
        );
    }
    let args: Vec<String> = std::env::args().collect();
    r.eq("process.args", json!(strs(&p["args"])), json!(args));
    for e in strs(&p["env"]) {
        let Some((k, v)) = e.split_once('=') else {
            continue;
        };
        let got = std::env::var(k).ok();
        r.check(
            format!("process.env[{k}]"),
            got.as_deref() == Some(v),
            v,
            json!(got),
        );
    }
}

/// `/proc/self/limits` row names by rlimit.
const RLIMITS: [(&str, &str); 16] = [
    ("RLIMIT_CPU", "Max cpu time"),
    ("RLIMIT_FSIZE", "Max file size"),
    ("RLIMIT_DATA", "Max data size"),
    ("RLIMIT_STACK", "Max stack size"),
    ("RLIMIT_CORE", "Max core file size"),
    ("RLIMIT_RSS", "Max resident set"),
    ("RLIMIT_NPROC", "Max processes"),
    ("RLIMIT_NOFILE", "Max open files"),
    ("RLIMIT_MEMLOCK", "Max locked memory"),
    ("RLIMIT_AS", "Max address space"),
    ("RLIMIT_LOCKS", "Max file locks"),
    ("RLIMIT_SIGPENDING", "Max pending signals"),
    ("RLIMIT_MSGQUEUE", "Max msgqueue size"),
    ("RLIMIT_NICE", "Max nice priority"),
    ("RLIMIT_RTPRIO", "Max realtime priority"),
    ("RLIMIT_RTTIME", "Max realtime timeout"),
];

/// (soft, hard) by `/proc/self/limits` row name; "unlimited" is u64::MAX.
pub fn parse_limits(text: &str) -> HashMap<String, (u64, u64)> {
    let num = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let name = l.get(..25)?.trim().to_string();
            let mut f = l.get(25..)?.split_whitespace();
            Some((name, (num(f.next()?)?, num(f.next()?)?)))
        })
        .collect()
}

fn rlimits(cfg: &Value, r: &mut Report) {
    let Some(list) = cfg["process"]["rlimits"].as_array() else {
        return;
    };
    let limits = parse_limits(&fs::read_to_string("/proc/self/limits").unwrap_or_default());
    for l in list {
        let typ = l["type"].as_str().unwrap_or("?");
        let f = format!("process.rlimits[{typ}]");
        let want = (
            l["soft"].as_u64().unwrap_or(0),
            l["hard"].as_u64().unwrap_or(0),
        );
        let got = RLIMITS
            .iter()
            .find(|(t, _)| *t == typ)
            .and_then(|(_, row)| limits.get(*row));
        match got {
            Some(g) => {
                r.eq(format!("{f}.soft"), want.0, g.0);
                r.eq(format!("{f}.hard"), want.1, g.1);
            }
            None => r.fail(f, json!([want.0, want.1]), "not in /proc/self/limits"),
        }
    }
}

fn capabilities(cfg: &Value, status: &HashMap<String, String>, r: &mut Report) {
    let c = &cfg["process"]["capabilities"];
    if !c.is_object() {
        return;
    }
    let set = |k: &str| caps::from_names(strs(&c[k]));
    let before = caps::Sets {
        bounding: set("bounding"),
        effective: set("effective"),
        inheritable: set("inheritable"),
        permitted: set("permitted"),
        ambient: set("ambient"),
    };
    let last = read_trim("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let root = cfg["process"]["user"]["uid"].as_u64().unwrap_or(0) == 0;
    let nnp = cfg["process"]["noNewPrivileges"].as_bool().unwrap_or(false);
    let want = caps::after_exec(before, root, nnp, caps::supported(last));
    for (name, key, w) in [
        ("bounding", "CapBnd", want.bounding),
        ("effective", "CapEff", want.effective),
        ("inheritable", "CapInh", want.inheritable),
        ("permitted", "CapPrm", want.permitted),
        ("ambient", "CapAmb", want.ambient),
    ] {
        let f = format!("process.capabilities.{name}");
        match status
            .get(key)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            Some(got) => r.check(f, got == w, caps::to_names(w), caps::to_names(got)),
            None => r.fail(
                f,
                caps::to_names(w),
                format!("no {key} in /proc/self/status"),
            ),
        }
    }
}

// ---------------------------------------------------------------- cgroups

/// Where the container's cgroup files are, as it sees them.
struct Cgroups {
    v2_only: bool,
}

impl Cgroups {
    fn detect() -> Cgroups {
        Cgroups {
            v2_only: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        }
    }

    /// Reads the v1 file of `ctrl` or, failing that, the v2 file.
    fn read(
        &self,
        ctrl: &str,
        v1: Option<&str>,
        v2: Option<&str>,
    ) -> Result<(String, String), String> {
        let base = Path::new("/sys/fs/cgroup");
        let mut tried = Vec::new();
        let mut cands = Vec::new();
        if !self.v2_only {
            if let Some(f) = v1 {
                cands.push((base.join(ctrl).join(f), "v1"));
            }
            if let Some(f) = v2 {
                cands.push((base.join("unified").join(f), "v2"));
            }
        } else if let Some(f) = v2 {
            cands.push((base.join(f), "v2"));
        }
        for (p, kind) in cands {
            match read_trim(&p) {
                Ok(v) => return Ok((kind.to_string(), v)),
                Err(e) => tried.push(e),
            }
        }
        Err(tried.join("; "))
    }
}

/// A memory value in a v1 file: -1 is shown as a huge page-aligned number.
fn mem_v1_matches(want: i64, got: &str) -> bool {
    let Ok(g) = got.parse::<u64>() else {
        return false;
    };
    if want < 0 {
        return g >= 1 << 62;
    }
    // The kernel rounds limits down to whole pages.
    let w = want as u64;
    g == w || g == w / 4096 * 4096
}

fn mem_v2_matches(want: i64, got: &str) -> bool {
    if want < 0 {
        return got == "max";
    }
    got.parse::<u64>()
        .is_ok_and(|g| g == want as u64 || g == want as u64 / 4096 * 4096)
}

/// `0-2,5` → {0,1,2,5}.
pub fn parse_cpu_list(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                out.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse::<u32>().ok()?)
            }
            None => {
                out.insert(part.trim().parse().ok()?);
            }
        }
    }
    Some(out)
}

fn cgroups(cfg: &Value, r: &mut Report) {
    let res = &cfg["linux"]["resources"];
    if !res.is_object() {
        return;
    }
    let cg = Cgroups::detect();
    let mut one = |field: &str,
                   want: Value,
                   got: Result<(String, String), String>,
                   ok: &dyn Fn(&str, &str) -> bool| match got {
        Ok((kind, g)) => r.check(format!("linux.resources.{field}"), ok(&kind, &g), want, g),
        Err(e) => r.fail(format!("linux.resources.{field}"), want, e),
    };
    let mem = &res["memory"];
    if let Some(l) = mem["limit"].as_i64() {
        one(
            "memory.limit",
            json!(l),
            cg.read("memory", Some("memory.limit_in_bytes"), Some("memory.max")),
            &|k, g| {
                if k == "v1" {
                    mem_v1_matches(l, g)
                } else {
                    mem_v2_matches(l, g)
                }
            },
        );
    }
    if let Some(l) = mem["reservation"].as_i64() {
        one(
            "memory.reservation",
            json!(l),
            cg.read(
                "memory",
                Some("memory.soft_limit_in_bytes"),
                Some("memory.low"),
            ),
            &|k, g| {
                if k == "v1" {
                    mem_v1_matches(l, g)
                } else {
                    mem_v2_matches(l, g)
                }
            },
        );
    }
    if let Some(s) = mem["swap"].as_i64() {
        let limit = mem["limit"].as_i64().unwrap_or(-1);
        one(
            "memory.swap",
            json!(s),
            cg.read(
                "memory",
                Some("memory.memsw.limit_in_bytes"),
                Some("memory.swap.max"),
            ),
            &|k, g| {
                if k == "v1" {
                    mem_v1_matches(s, g)
                } else if s < 0 {
                    g == "max"
                } else {
                    // v2 counts swap alone; the spec's swap is memory+swap.
                    mem_v2_matches(s - limit.max(0), g)
                }
            },
        );
    }
    if let Some(sw) = mem["swappiness"].as_u64() {
        one(
            "memory.swappiness",
            json!(sw),
            cg.read("memory", Some("memory.swappiness"), None),
            &|_, g| g == sw.to_string(),
        );
    }
    if let Some(d) = mem["disableOOMKiller"].as_bool() {
        one(
            "memory.disableOOMKiller",
            json!(d),
            cg.read("memory", Some("memory.oom_control"), None),
            &|_, g| {
                g.lines()
                    .any(|l| l == format!("oom_kill_disable {}", u8::from(d)))
            },
        );
    }
    if let Some(l) = res["pids"]["limit"].as_i64() {
        one(
            "pids.limit",
            json!(l),
            cg.read("pids", Some("pids.max"), Some("pids.max")),
            &|_, g| {
                if l > 0 {
                    g == l.to_string()
                } else {
                    g == "max"
                }
            },
        );
    }
    let cpu = &res["cpu"];
    if let Some(s) = cpu["shares"].as_u64() {
        one(
            "cpu.shares",
            json!(s),
            cg.read("cpu", Some("cpu.shares"), Some("cpu.weight")),
            &|k, g| {
                if k == "v1" {
                    g == s.to_string()
                } else {
                    // runc's conversion of shares [2, 262144] to weight [1, 10000].
                    g == (1 + (s.saturating_sub(2) * 9999) / 262142).to_string()
                }
            },
        );
    }
    let quota = cpu["quota"].as_i64();
    let period = cpu["period"].as_u64();
    if let Some(q) = quota {
        one(
            "cpu.quota",
            json!(q),
            cg.read("cpu", Some("cpu.cfs_quota_us"), Some("cpu.max")),
            &|k, g| {
                if k == "v1" {
                    g == if q > 0 { q.to_string() } else { "-1".into() }
                } else {
                    g.split_whitespace().next()
                        == Some(&*if q > 0 { q.to_string() } else { "max".into() })
                }
            },
        );
    }
    if let Some(p) = period {
        one(
            "cpu.period",
            json!(p),
            cg.read("cpu", Some("cpu.cfs_period_us"), Some("cpu.max")),
            &|k, g| {
                if k == "v1" {
                    g == p.to_string()
                } else {
                    g.split_whitespace().nth(1) == Some(&*p.to_string())
                }
            },
        );
    }
    for (k, file) in [("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")] {
        if let Some(want) = cpu[k].as_str() {
            let w = parse_cpu_list(want);
            one(
                &format!("cpu.{k}"),
                json!(want),
                cg.read("cpuset", Some(file), Some(file)),
                &|_, g| w.is_some() && parse_cpu_list(g) == w,
            );
        }
    }
    if let Some(w) = res["blockIO"]["weight"].as_u64() {
        one(
            "blockIO.weight",
            json!(w),
            cg.read("blkio", Some("blkio.weight"), Some("io.bfq.weight"))
                .or_else(|_| cg.read("blkio", Some("blkio.bfq.weight"), Some("io.weight"))),
            &|_, g| g.split_whitespace().last() == Some(&*w.to_string()),
        );
    }
}

// ---------------------------------------------------------------- namespaces

/// runtime-spec namespace types and their /proc/self/ns names.
const NAMESPACES: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

/// The inode in a namespace link (`net:[4026531840]`).
pub fn ns_inode(link: &str) -> Option<u64> {
    link.rsplit_once('[')?.1.strip_suffix(']')?.parse().ok()
}

fn namespaces(cfg: &Value, env: &Env, r: &mut Report) {
    let list = cfg["linux"]["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (typ, kind) in NAMESPACES {
        let Some(host) = env.host_ns.get(kind).copied() else {
            continue;
        };
        let f = format!("linux.namespaces[{typ}]");
        let got = match fs::read_link(format!("/proc/self/ns/{kind}")) {
            Ok(l) => ns_inode(&l.to_string_lossy()),
            Err(_) => None,
        };
        let Some(got) = got else {
            r.fail(f, "a namespace", format!("/proc/self/ns/{kind} unreadable"));
            continue;
        };
        let entry = list.iter().find(|n| n["type"].as_str() == Some(typ));
        match entry {
            None => r.check(f, got == host, format!("the host's ({host})"), got),
            Some(n) if n["path"].is_string() => match env.joined_ns.get(kind) {
                Some(want) => r.check(f, got == *want, format!("joined ({want})"), got),
                None => continue,
            },
            Some(_) => r.check(f, got != host, format!("new (not the host's {host})"), got),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_table() {
        let text =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 4096                 files     \n";
        let l = parse_limits(text);
        assert_eq!(l["Max open files"], (1024, 4096));
        assert_eq!(l["Max cpu time"], (u64::MAX, u64::MAX));
    }

    #[test]
    fn small_parsers() {
        assert_eq!(ns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(ns_inode("net"), None);
        assert_eq!(
            parse_cpu_list("0-2,5"),
            Some([0, 1, 2, 5].into_iter().collect())
        );
        assert_eq!(parse_cpu_list("0,1"), parse_cpu_list("0-1"));
        assert_eq!(parse_cpu_list("a"), None);
        assert!(mem_v1_matches(-1, "9223372036854771712"));
        assert!(!mem_v1_matches(8192, "4096"));
        assert!(mem_v1_matches(67108864, "67108864"));
        assert!(mem_v2_matches(-1, "max"));
        assert_eq!(
            Env::parse_ns_list("net:1 mnt:2,bad x:y"),
            [("net".to_string(), 1), ("mnt".to_string(), 2)]
                .into_iter()
                .collect()
        );
        assert_eq!((dev_major(0x0103), dev_minor(0x0103)), (1, 3));
        assert_eq!(ws(" 1\t 2  3 "), "1 2 3");
    }
}
