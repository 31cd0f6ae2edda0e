//! Real-host tests: create a cgroup below this process's own cgroup in every
//! hierarchy, put a child in it, configure, freeze, kill and remove it.
//!
//! They adapt to the host mode (v1, hybrid, pure v2) and skip (with a note on
//! stderr) when not root or when cgroupfs is not writable. Run with
//! `cargo test -p hull-cgroups --test host`; set HULL_CGROUP_HOST_TESTS=0 to skip.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use hull_cgroups::{default_allowed_devices, Cgroup, Hierarchy, LinuxResources, Mode};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

/// Removes the test cgroup and kills our child even when an assertion fails.
struct Guard {
    cg: Cgroup,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cg.thaw();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup of {:?} failed: {e:#?}", self.cg.paths());
        }
    }
}

/// Root, and not switched off; says why not on stderr.
fn may_run() -> bool {
    if std::env::var("HULL_CGROUP_HOST_TESTS").as_deref() == Ok("0") {
        eprintln!("skipped: HULL_CGROUP_HOST_TESTS=0");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: host cgroup tests need root");
        return false;
    }
    true
}

fn setup(tag: &str) -> Option<(Hierarchy, Guard)> {
    if !may_run() {
        return None;
    }
    let h = match Hierarchy::detect() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
    create(h, tag)
}

/// A fresh test cgroup below our own in every hierarchy of `h`.
fn create(h: Hierarchy, tag: &str) -> Option<(Hierarchy, Guard)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "hull-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let cg = Cgroup::resolve(&h, Some(&name), "unused").expect("resolve");
    for p in cg.paths() {
        assert!(p.ends_with(&name), "{p:?} must be our own test cgroup");
    }
    if let Err(e) = cg.create() {
        eprintln!("skipped: cannot create cgroups here: {e:#}");
        let _ = cg.destroy();
        return None;
    }
    Some((
        h,
        Guard {
            cg,
            children: Vec::new(),
        },
    ))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn proc_state(pid: i32) -> String {
    let s = read(Path::new(&format!("/proc/{pid}/status")));
    s.lines()
        .find_map(|l| l.strip_prefix("State:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn first_cpu(list: &str) -> String {
    list.split([',', '-']).next().unwrap_or("0").to_string()
}

/// Whether a v2 controller is usable for the container's unified dir.
fn v2_has(cg: &Cgroup, ctrl: &str) -> bool {
    let Some(u) = cg.unified_path() else {
        return false;
    };
    let avail = |d: &Path| fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default();
    avail(u).split_whitespace().any(|c| c == ctrl)
}

#[test]
fn lifecycle_limits_freeze_kill_destroy() {
    let Some((h, mut g)) = setup("life") else {
        return;
    };
    // The shell waits until it is in the cgroup, then execs: memory and CPU
    // used from then on are charged to the new cgroup (v1 does not move
    // existing charges with the task).
    let mut child = Command::new("sh")
        .args(["-c", "read _; exec sleep 600"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().expect("stdin");
    g.children.push(child);
    g.cg.add_process(pid).expect("add_process");
    writeln!(stdin, "go").expect("write");
    drop(stdin);
    let exec_done = || read(Path::new(&format!("/proc/{pid}/comm"))) == "sleep";
    for _ in 0..500 {
        if exec_done() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(exec_done(), "child did not exec sleep");
    let own = read(Path::new(&format!("/proc/{pid}/cgroup")));
    let name = g.cg.paths()[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(own.contains(&name), "{own}");

    let v1 = h.mode() != Mode::V2;
    let cpuset = if v1 {
        g.cg.v1_path("cpuset").is_some()
    } else {
        v2_has(&g.cg, "cpuset")
    };
    let mut cpu = LinuxCpuBuilder::default()
        .shares(512u64)
        .quota(50_000)
        .period(100_000u64);
    let status = read(Path::new("/proc/self/status"));
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"));
    let cpus = first_cpu(allowed.unwrap_or("0").trim());
    if cpuset {
        cpu = cpu.cpus(cpus.clone()).mems("0");
    }
    let res: LinuxResources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .expect("mem"),
        )
        .cpu(cpu.build().expect("cpu"))
        .pids(LinuxPidsBuilder::default().limit(32).build().expect("pids"))
        .build()
        .expect("resources");
    g.cg.apply(&res).expect("apply");

    if v1 {
        let p = |c: &str, f: &str| read(&g.cg.v1_path(c).expect(c).join(f));
        assert_eq!(
            p("memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(p("cpu", "cpu.shares"), "512");
        assert_eq!(p("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(p("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(p("pids", "pids.max"), "32");
        if cpuset {
            assert_eq!(p("cpuset", "cpuset.cpus"), cpus);
        }
    } else {
        let u = g.cg.unified_path().expect("unified");
        assert_eq!(read(&u.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&u.join("cpu.weight")), "20");
        assert_eq!(read(&u.join("cpu.max")), "50000 100000");
        assert_eq!(read(&u.join("pids.max")), "32");
        if cpuset {
            assert_eq!(read(&u.join("cpuset.cpus")), cpus);
        }
    }

    assert_eq!(g.cg.pids().expect("pids"), vec![pid]);
    g.cg.freeze().expect("freeze");
    assert!(g.cg.is_frozen().expect("is_frozen"));
    let frozen_state = proc_state(pid);
    eprintln!("frozen task state: {frozen_state}");
    // v1 (and the 6.1+ freezer) parks tasks in TASK_FROZEN, shown as D;
    // v2's cgroup.freeze traps them in an interruptible sleep (S).
    assert!(
        frozen_state.starts_with('D') || frozen_state.starts_with('S'),
        "{frozen_state}"
    );
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().expect("is_frozen"));
    // A thawed task may be runnable (R) for a moment before it sleeps again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !proc_state(pid).starts_with('S') && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(proc_state(pid).starts_with('S'), "{}", proc_state(pid));

    let stats = g.cg.stats().expect("stats");
    assert!(stats.pids.current >= 1, "{stats:?}");
    assert_eq!(stats.pids.limit, 32);
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    assert_eq!(stats.memory.usage.limit, 64 << 20);
    let json = serde_json::to_value(&stats).expect("json");
    assert!(json["cpu"]["usage"].is_object());
    assert_eq!(g.cg.oom_kill_count().expect("oom"), 0);

    g.cg.kill_all(libc::SIGKILL).expect("kill_all");
    let st = g.children[0].wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    assert!(!g.cg.is_frozen().expect("thawed after kill"));

    g.cg.destroy().expect("destroy");
    assert!(!g.cg.exists());
    for p in g.cg.paths() {
        assert!(!p.exists(), "{p:?} left behind");
    }
}

#[test]
fn device_rules_are_enforced() {
    let Some((h, mut g)) = setup("dev") else {
        return;
    };
    if h.mode() != Mode::V2 && g.cg.v1_path("devices").is_none() {
        eprintln!("skipped: no devices controller");
        return;
    }
    // The shell waits for a line so it is in the cgroup before opening devices.
    let script = "read _; if head -c1 /dev/zero >/dev/null 2>&1; then echo zero-ok; else echo zero-denied; fi; \
                  if head -c1 /dev/null; then echo null-ok; fi";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    g.children.push(child);
    g.cg.add_process(pid).expect("add_process");
    // Only /dev/null (1:3) is allowed: default_allowed_devices minus /dev/zero.
    let rules: Vec<_> = default_allowed_devices()
        .into_iter()
        .filter(|r| !(r.major() == Some(1) && r.minor() == Some(5)))
        .collect();
    let mut res = LinuxResources::default();
    res.set_devices(Some(rules.clone()));
    g.cg.apply(&res).expect("apply devices");
    // Re-applying replaces the rules instead of stacking another program.
    g.cg.apply(&res).expect("re-apply devices");
    if let Some(d) = g.cg.v1_path("devices").filter(|_| h.mode() != Mode::V2) {
        let list = read(&d.join("devices.list"));
        assert!(list.lines().any(|l| l == "c 1:3 rwm"), "{list}");
        assert!(!list.lines().any(|l| l == "c 1:5 rwm"), "{list}");
    }
    writeln!(stdin, "go").expect("write");
    drop(stdin);
    let out: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert_eq!(out, ["zero-denied", "null-ok"]);
}

#[test]
fn absolute_path_and_escape_rejected() {
    let Some((h, _g)) = setup("abs") else { return };
    assert!(Cgroup::resolve(&h, Some("../../../x"), "x").is_err());
    let abs = Cgroup::resolve(&h, Some("/hull-abs-check/c"), "x").expect("resolve");
    for p in abs.paths() {
        assert!(p.ends_with("hull-abs-check/c"), "{p:?}");
        let parent: PathBuf = p
            .parent()
            .and_then(Path::parent)
            .expect("mount")
            .to_path_buf();
        assert!(parent.exists(), "mount point {parent:?}");
    }
}

/// This host seen as pure v2: only its cgroup2 mount. On a hybrid host the
/// v2-only paths (cgroup.freeze, cgroup.kill, v2 stats, subtree_control,
/// the clone3 dir fd) then meet the kernel too, in the unified hierarchy.
fn v2_view() -> Option<Hierarchy> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let v2: String = mi
        .lines()
        .filter(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .take(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let h = Hierarchy::from_proc(&v2, &fs::read_to_string("/proc/self/cgroup").ok()?).ok()?;
    (h.mode() == Mode::V2).then_some(h)
}

#[test]
fn v2_freeze_kill_stats_on_the_unified_hierarchy() {
    if !may_run() {
        return;
    }
    let Some(h) = v2_view() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let Some((_, mut g)) = create(h, "v2view") else {
        return;
    };
    assert!(g.cg.unified_dir().is_some(), "clone3 dir fd");
    let mut child = Command::new("sh")
        .args(["-c", "read _; exec sleep 600"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    let stdin = child.stdin.take().expect("stdin");
    g.children.push(child);
    g.cg.add_process(pid).expect("add_process");
    assert_eq!(g.cg.pids().expect("pids"), vec![pid]);
    g.cg.freeze().expect("freeze through cgroup.freeze");
    assert!(g.cg.is_frozen().expect("is_frozen"));
    g.cg.thaw().expect("thaw");
    assert!(!g.cg.is_frozen().expect("is_frozen"));
    let stats = g.cg.stats().expect("v2 stats");
    let json = serde_json::to_value(&stats).expect("json");
    assert!(json["cpu"]["usage"].is_object(), "{json}");
    assert_eq!(g.cg.oom_kill_count().expect("oom"), 0);
    g.cg.kill_all(libc::SIGKILL)
        .expect("kill_all through cgroup.kill");
    let st = g.children[0].wait().expect("wait");
    drop(stdin);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    g.cg.destroy().expect("destroy");
    assert!(!g.cg.exists());
}

/// A cgroup made below a thread root is "domain invalid": it can take no
/// process. Like runc, `create` makes it threaded when no domain limits are
/// asked for (a process may then join); memory limits are refused already at
/// the thread root ("domain threaded"), before anything is made below it.
#[test]
fn v2_domain_invalid_cgroup_is_made_threaded() {
    if !may_run() {
        return;
    }
    let Some(h) = v2_view() else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let name = format!("hull-test-types-{}/c", std::process::id());
    let cg = Cgroup::resolve(&h, Some(&name), "unused").expect("resolve");
    let c = cg.unified_path().expect("unified").to_path_buf();
    let parent = c.parent().expect("parent").to_path_buf();
    let thread = parent.join("t");
    struct Dirs(Vec<PathBuf>);
    impl Drop for Dirs {
        fn drop(&mut self) {
            for d in self.0.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
    }
    let mut dirs = Dirs(Vec::new());
    for d in [&parent, &thread] {
        if let Err(e) = fs::create_dir(d) {
            eprintln!("skipped: cannot create {}: {e}", d.display());
            return;
        }
        dirs.0.push(d.clone());
    }
    // A threaded child turns the parent into a thread root ("domain threaded").
    fs::write(thread.join("cgroup.type"), "threaded").expect("make t threaded");
    assert_eq!(read(&parent.join("cgroup.type")), "domain threaded");
    let mut mem = LinuxResources::default();
    mem.set_memory(Some(
        LinuxMemoryBuilder::default()
            .limit(64 << 20)
            .build()
            .expect("b"),
    ));
    dirs.0.push(c.clone());
    let e = cg
        .create_for(&mem)
        .expect_err("memory limits need a domain");
    let msg = e.to_string();
    assert!(
        msg.contains("\"domain threaded\"") && msg.contains(&*parent.to_string_lossy()),
        "{msg}"
    );
    assert!(!c.exists(), "nothing made below the thread root");
    cg.create().expect("create without limits");
    assert_eq!(read(&c.join("cgroup.type")), "threaded");
    let mut child = Command::new("sleep").arg("600").spawn().expect("spawn");
    let joined = cg.add_process(child.id() as i32);
    let _ = child.kill();
    let _ = child.wait();
    joined.expect("a process joins the threaded cgroup");
}

/// An update to an rt period below the cgroup's current rt runtime: the kernel refuses
/// the period first (runtime > period is EINVAL), so the runtime must go first and the
/// period again, as runc does (runc's update.bats 13). v1 only: v2 has no rt bandwidth.
#[test]
fn v1_rt_period_below_the_current_runtime() {
    let Some((h, g)) = setup("rt") else { return };
    let Some(cpu) = g.cg.v1_path("cpu").map(Path::to_path_buf) else {
        eprintln!("skipped: no v1 cpu controller ({:?})", h.mode());
        return;
    };
    if !cpu.join("cpu.rt_period_us").exists() {
        eprintln!("skipped: kernel without CONFIG_RT_GROUP_SCHED");
        return;
    }
    let rt = |period: u64, runtime: i64| -> LinuxResources {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_period(period)
                    .realtime_runtime(runtime)
                    .build()
                    .expect("cpu"),
            )
            .build()
            .expect("resources")
    };
    g.cg.apply(&rt(1_000_000, 100_000))
        .expect("first rt limits");
    assert_eq!(read(&cpu.join("cpu.rt_runtime_us")), "100000");
    g.cg.apply(&rt(50_000, 20_000))
        .expect("a period below the old runtime is applied");
    assert_eq!(read(&cpu.join("cpu.rt_period_us")), "50000");
    assert_eq!(read(&cpu.join("cpu.rt_runtime_us")), "20000");
}
