//! The cgroup v2 device programs, loaded and enforced by the real kernel.
//!
//! For docker's, runc's and privileged rule lists, the empty list and a few
//! hundred seeded random lists, the crate applies `linux.resources.devices`
//! to a scratch cgroup in the cgroup2 tree (pure v2 at /sys/fs/cgroup, or the
//! hybrid host's /sys/fs/cgroup/unified, where device programs are enforced
//! too) through its public API, seen as a pure v2 host so that the BPF path
//! is taken. A forked child then joins the cgroup and opens (read, write,
//! read-write) device nodes made beforehand outside it, and mknods each
//! type/number; EPERM is "denied", anything else (success, ENXIO...) is
//! "allowed". Every outcome must equal a model of cgroup v1's devices
//! controller (security/device_cgroup.c) written here, independent of the
//! crate. Needs root and a cgroup2 mount; skips with a note otherwise
//! (HULL_CGROUP_HOST_TESTS=0 skips too).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use hull_cgroups::{default_allowed_devices, Cgroup, Hierarchy, LinuxResources};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Device numbers of the draw; rules pick majors and minors from the same
/// small sets (plus `*`) so that they overlap. 1:3 null, 1:5 zero, 1:7 full,
/// 5:0 tty, 7:x loop; 120 is a major reserved for local use (ENXIO).
const NODES: [(char, u32, u32); 8] = [
    ('c', 1, 3),
    ('c', 1, 5),
    ('c', 1, 7),
    ('c', 5, 0),
    ('c', 120, 1),
    ('b', 7, 0),
    ('b', 7, 1),
    ('b', 120, 1),
];
const MAJORS: [Option<i64>; 5] = [None, Some(1), Some(5), Some(7), Some(120)];
const MINORS: [Option<i64>; 6] = [None, Some(0), Some(1), Some(3), Some(5), Some(7)];
const OPENS: [(libc::c_int, &str); 3] = [
    (libc::O_RDONLY, "r"),
    (libc::O_WRONLY, "w"),
    (libc::O_RDWR, "rw"),
];
/// Per node: three opens and one mknod.
const CHECKS: usize = NODES.len() * (OPENS.len() + 1);

#[derive(Debug, Clone)]
struct Rule {
    allow: bool,
    typ: Option<char>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &'static str,
}

impl Rule {
    fn oci(&self) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(self.allow);
        r.set_typ(self.typ.map(|t| match t {
            'a' => LinuxDeviceType::A,
            'b' => LinuxDeviceType::B,
            _ => LinuxDeviceType::C,
        }));
        r.set_major(self.major);
        r.set_minor(self.minor);
        r.set_access(Some(self.access.to_string()));
        r
    }

    fn from_oci(r: &LinuxDeviceCgroup) -> Rule {
        let access = match r.access().as_deref().unwrap_or("") {
            "" => "",
            a => Box::leak(a.to_string().into_boxed_str()),
        };
        Rule {
            allow: r.allow(),
            typ: r.typ().map(|t| t.as_str().chars().next().unwrap_or('a')),
            major: r.major(),
            minor: r.minor(),
            access,
        }
    }
}

fn show(rules: &[Rule]) -> String {
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    let lines: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{} {} {}:{} {:?}",
                if r.allow { "allow" } else { "deny " },
                r.typ.unwrap_or('a'),
                n(r.major),
                n(r.minor),
                r.access
            )
        })
        .collect();
    format!("[\n  {}\n]", lines.join("\n  "))
}

/// cgroup v1's devices controller, written from security/device_cgroup.c:
/// devcgroup_update_access (type `a` resets whatever follows it; a rule with
/// the default's verdict only subtracts from the exactly matching exception;
/// exceptions merge by exact match) and __devcgroup_check_permission.
struct V1Model {
    default_allow: bool,
    exceptions: BTreeMap<(char, Option<i64>, Option<i64>), u8>,
}

fn bits(access: &str) -> u8 {
    if access.is_empty() {
        return 7;
    }
    access.chars().fold(0, |b, c| {
        b | match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        }
    })
}

impl V1Model {
    fn new(rules: &[Rule]) -> V1Model {
        let mut m = V1Model {
            default_allow: false, // runc writes "a" to devices.deny first
            exceptions: BTreeMap::new(),
        };
        for r in rules {
            let typ = r.typ.unwrap_or('a');
            if typ == 'a' {
                m.default_allow = r.allow;
                m.exceptions.clear();
                continue;
            }
            let key = (typ, r.major, r.minor);
            let acc = bits(r.access);
            if r.allow != m.default_allow {
                *m.exceptions.entry(key).or_insert(0) |= acc;
            } else if let Some(e) = m.exceptions.get_mut(&key) {
                *e &= !acc;
                if *e == 0 {
                    m.exceptions.remove(&key);
                }
            }
        }
        m
    }

    fn allows(&self, typ: char, major: u32, minor: u32, access: u8) -> bool {
        let hit = |want: &dyn Fn(u8) -> bool| {
            self.exceptions.iter().any(|((t, ma, mi), acc)| {
                *t == typ
                    && ma.is_none_or(|v| v == i64::from(major))
                    && mi.is_none_or(|v| v == i64::from(minor))
                    && want(*acc)
            })
        };
        if self.default_allow {
            !hit(&|acc| acc & access != 0)
        } else {
            hit(&|acc| access & !acc == 0)
        }
    }

    fn expected(&self) -> [bool; CHECKS] {
        let mut out = [false; CHECKS];
        let mut k = 0;
        for (typ, major, minor) in NODES {
            for acc in [2, 4, 6] {
                out[k] = self.allows(typ, major, minor, acc);
                k += 1;
            }
            out[k] = self.allows(typ, major, minor, 1);
            k += 1;
        }
        out
    }
}

/// The scratch cgroup; removed on drop, even after a failed assertion.
struct Scratch {
    dir: PathBuf,
    /// Its cgroups path (below the cgroup2 mount).
    name: String,
    cg: Cgroup,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Our children are reaped before we get here; a just-emptied cgroup
        // may still be busy for a moment.
        for _ in 0..100 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    eprintln!("cleanup of {} failed: {e}", self.dir.display());
                    return;
                }
                _ => return,
            }
        }
        eprintln!("cleanup of {} failed: still busy", self.dir.display());
    }
}

/// This host seen as pure v2 (its cgroup2 mount only), and our cgroup there.
fn v2_view() -> Option<(Hierarchy, String)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let v2_only: String = mountinfo
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .take(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let h = Hierarchy::from_proc(&v2_only, &proc_cgroup).ok()?;
    Some((h, own.to_string()))
}

/// A scratch cgroup under our own cgroup in the cgroup2 tree, resolved on a
/// pure-v2 view of this host (only the cgroup2 mount), so `apply` takes the
/// BPF path even on a hybrid host.
fn scratch() -> Option<Scratch> {
    if std::env::var("HULL_CGROUP_HOST_TESTS").as_deref() == Ok("0") {
        eprintln!("skipped: HULL_CGROUP_HOST_TESTS=0");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: loading device programs needs root");
        return None;
    }
    let Some((h, own)) = v2_view() else {
        eprintln!("skipped: no cgroup2 mount on this host");
        return None;
    };
    let mount = h.unified_mount()?.to_path_buf();
    let name = format!(
        "{}/hull-devbpf-{}",
        own.trim_end_matches('/'),
        std::process::id()
    );
    let dir = mount.join(name.trim_start_matches('/'));
    if let Err(e) = fs::create_dir(&dir) {
        eprintln!("skipped: cannot create {}: {e}", dir.display());
        return None;
    }
    let cg = Cgroup::resolve(&h, Some(&name), "unused").expect("resolve");
    assert_eq!(cg.unified_path(), Some(dir.as_path()));
    Some(Scratch { dir, name, cg })
}

/// C strings the child uses: it must not allocate after fork.
struct Paths {
    procs: CString,
    nodes: Vec<CString>,
    mknods: Vec<(CString, libc::mode_t, libc::dev_t)>,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn mode(typ: char) -> libc::mode_t {
    0o600
        | if typ == 'b' {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        }
}

/// Nodes made outside the cgroup, and the names the child will mknod.
fn prepare(tmp: &Path, cg: &Path) -> Paths {
    let mut p = Paths {
        procs: cstr(&cg.join("cgroup.procs")),
        nodes: Vec::new(),
        mknods: Vec::new(),
    };
    for (i, (typ, major, minor)) in NODES.into_iter().enumerate() {
        let dev = libc::makedev(major, minor);
        let node = cstr(&tmp.join(format!("node{i}")));
        // SAFETY: `node` is a valid C string; mknod reads it only.
        let r = unsafe { libc::mknod(node.as_ptr(), mode(typ), dev) };
        assert_eq!(r, 0, "mknod {node:?}: {}", std::io::Error::last_os_error());
        p.nodes.push(node);
        p.mknods
            .push((cstr(&tmp.join(format!("made{i}"))), mode(typ), dev));
    }
    p
}

/// 0 or the errno of the last call.
fn errno_of(r: libc::c_int) -> i32 {
    if r < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    } else {
        0
    }
}

/// The forked child: join the cgroup, try every access, send the errnos.
/// Only raw syscalls here (no allocation, no locks: we forked a threaded
/// process).
fn child(p: &Paths, out: OwnedFd) -> ! {
    use std::os::fd::AsRawFd;
    let mut res = [0i32; CHECKS];
    // SAFETY: every pointer is a live C string or buffer of the given size;
    // the fds are ours; _exit never returns.
    unsafe {
        let fd = libc::open(p.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            libc::_exit(3);
        }
        libc::close(fd);
        let mut k = 0;
        for (node, (made, mode, dev)) in p.nodes.iter().zip(&p.mknods) {
            for (flags, _) in OPENS {
                let extra = libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC;
                let fd = libc::open(node.as_ptr(), flags | extra);
                res[k] = errno_of(fd);
                if fd >= 0 {
                    libc::close(fd);
                }
                k += 1;
            }
            let r = libc::mknod(made.as_ptr(), *mode, *dev);
            res[k] = errno_of(r);
            if r == 0 {
                libc::unlink(made.as_ptr());
            }
            k += 1;
        }
        let n = std::mem::size_of_val(&res);
        let ok = libc::write(out.as_raw_fd(), res.as_ptr().cast(), n) == n as isize;
        libc::_exit(if ok { 0 } else { 4 });
    }
}

/// Fork a child into the cgroup and collect its errnos.
fn probe(p: &Paths) -> [i32; CHECKS] {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only runs `child`, which makes raw syscalls and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(rd);
        child(p, wr);
    }
    drop(wr);
    let mut buf = Vec::new();
    fs::File::from(rd).read_to_end(&mut buf).expect("read pipe");
    let mut status = 0;
    // SAFETY: `pid` is our child; status is a valid out pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed (status {status:#x}: 3 = cannot join the cgroup)"
    );
    let mut res = [0i32; CHECKS];
    for (r, c) in res.iter_mut().zip(buf.chunks_exact(4)) {
        *r = i32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    assert_eq!(buf.len(), std::mem::size_of_val(&res), "short report");
    res
}

fn check_name(k: usize) -> String {
    let (typ, major, minor) = NODES[k / (OPENS.len() + 1)];
    let what = OPENS.get(k % (OPENS.len() + 1)).map_or("mknod", |o| o.1);
    format!("{what} {typ} {major}:{minor}")
}

/// Apply `rules` through the crate, probe from inside, compare with v1.
fn check(s: &Scratch, p: &Paths, label: &str, rules: &[Rule]) {
    let oci: Vec<LinuxDeviceCgroup> = rules.iter().map(Rule::oci).collect();
    let mut res = LinuxResources::default();
    res.set_devices(Some(oci));
    if let Err(e) = s.cg.apply(&res) {
        panic!("{label}: apply failed: {e:#?}\nrules: {}", show(rules));
    }
    let got = probe(p);
    let want = V1Model::new(rules).expected();
    let wrong: Vec<String> = (0..CHECKS)
        .filter(|&k| (got[k] != libc::EPERM) != want[k])
        .map(|k| {
            format!(
                "{}: want {}, got errno {}",
                check_name(k),
                if want[k] { "allowed" } else { "EPERM" },
                got[k]
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{label}: kernel verdicts differ from cgroup v1's:\n  {}\nrules: {}",
        wrong.join("\n  "),
        show(rules)
    );
}

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        // xorshift64*; the seed is never 0.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn random_rules(seed: u64) -> Vec<Rule> {
    let mut g = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let accesses = ["", "r", "w", "m", "rw", "rm", "wm", "rwm", "mr"];
    (0..g.next(9))
        .map(|_| Rule {
            allow: g.next(2) == 0,
            // `a` is rarer: it wipes the rules before it.
            typ: [
                None,
                Some('a'),
                Some('b'),
                Some('b'),
                Some('c'),
                Some('c'),
                Some('c'),
            ][g.next(7)],
            major: MAJORS[g.next(MAJORS.len())],
            minor: MINORS[g.next(MINORS.len())],
            access: accesses[g.next(accesses.len())],
        })
        .collect()
}

fn c(allow: bool, major: i64, minor: i64) -> Rule {
    Rule {
        allow,
        typ: Some('c'),
        major: Some(major),
        minor: Some(minor),
        access: "rwm",
    }
}

/// moby's oci.DefaultLinuxSpec: deny all (no type), the usual char devices,
/// then a deny of /dev/fuse.
fn docker_default() -> Vec<Rule> {
    let deny_all = Rule {
        allow: false,
        typ: None,
        major: None,
        minor: None,
        access: "rwm",
    };
    vec![
        deny_all,
        c(true, 1, 5),
        c(true, 1, 3),
        c(true, 1, 9),
        c(true, 1, 8),
        c(true, 5, 0),
        c(true, 5, 1),
        c(false, 10, 229),
    ]
}

/// What the runtime passes to the crate: the config's rules, then runc's
/// always-allowed devices (hull-runtime's resources_of).
fn with_runtime_defaults(mut rules: Vec<Rule>) -> Vec<Rule> {
    rules.extend(default_allowed_devices().iter().map(Rule::from_oci));
    rules
}

#[test]
fn kernel_enforces_v1_semantics_for_many_rule_lists() {
    let Some(s) = scratch() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = prepare(tmp.path(), &s.dir);
    // The nodes must be usable outside the cgroup (not on a nodev mount).
    // SAFETY: a valid C string; the fd is closed right away.
    let fd = unsafe { libc::open(p.nodes[0].as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        eprintln!(
            "skipped: cannot open a device node in {}: {}",
            tmp.path().display(),
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: fd was just opened by us.
    unsafe { libc::close(fd) };

    let privileged = vec![Rule {
        allow: true,
        typ: Some('a'),
        major: None,
        minor: None,
        access: "rwm",
    }];
    // `hullc spec` (like `runc spec`) writes a lone deny-all.
    let spec_default = vec![Rule {
        allow: false,
        typ: None,
        major: None,
        minor: None,
        access: "rwm",
    }];
    let named = [
        ("docker default", docker_default()),
        (
            "docker default + runtime",
            with_runtime_defaults(docker_default()),
        ),
        ("hullc spec + runtime", with_runtime_defaults(spec_default)),
        ("privileged", privileged.clone()),
        ("privileged + runtime", with_runtime_defaults(privileged)),
        ("empty", vec![]),
    ];
    for (label, rules) in &named {
        check(&s, &p, label, rules);
    }
    for seed in 1..=300u64 {
        check(&s, &p, &format!("seed {seed}"), &random_rules(seed));
    }
}

/// Set in the re-executed test process that runs in a new user namespace.
const USERNS_CHILD: &str = "HULL_DEVBPF_USERNS_CHILD";

/// In a user namespace bpf(2) refuses to load device programs (EPERM), and
/// runc skips that error with a warning (fs2 canSkipEBPFError): rootless
/// containers, or a runtime nested in a user-namespaced container. The test
/// re-executes itself in a new user namespace (unshare before exec: the
/// forked child is single-threaded), where `apply` must succeed.
#[test]
fn device_program_errors_are_skipped_in_a_user_namespace() {
    const NAME: &str = "device_program_errors_are_skipped_in_a_user_namespace";
    if let Ok(name) = std::env::var(USERNS_CHILD) {
        let (h, _) = v2_view().expect("cgroup2 mount in the child");
        let cg = Cgroup::resolve(&h, Some(&name), "unused").expect("resolve");
        let mut res = LinuxResources::default();
        res.set_devices(Some(
            with_runtime_defaults(docker_default())
                .iter()
                .map(Rule::oci)
                .collect(),
        ));
        if let Err(e) = cg.apply(&res) {
            eprintln!("apply in a user namespace failed: {e:#?}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    let Some(s) = scratch() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(USERNS_CHILD, &s.name);
    // SAFETY: unshare is a plain syscall, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: cannot start a process in a new user namespace: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "apply in a user namespace: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
