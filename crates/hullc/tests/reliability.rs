//! Reliability (issue 6): leak-free cycles, crash safety of `create`, races
//! on one id, and mutated configs that must end in a clear error or a run —
//! never a panic or a hang.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Bundle, Hullc};
use serde_json::{json, Value};

/// What a host looks like from the outside, for before/after comparison.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    mounts: usize,
    cgroup_dirs: usize,
    state_entries: usize,
    zombies: usize,
    own_fds: usize,
}

/// cgroup dirs anywhere in the host tree whose name starts with `prefix`
/// (other suites run beside us, so only our own names count).
fn count_dirs(p: &Path, prefix: &str, depth: u32) -> usize {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| {
            usize::from(e.file_name().to_string_lossy().starts_with(prefix))
                + if depth > 0 {
                    count_dirs(&e.path(), prefix, depth - 1)
                } else {
                    0
                }
        })
        .sum()
}

/// Host mounts that mention `dir` (a bundle or state root of ours).
fn mounts_mentioning(dir: &Path) -> usize {
    let d = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(d.as_ref()))
        .count()
}

fn snapshot(h: &Hullc, b: &Bundle, prefix: &str) -> Snapshot {
    common::reap_zombies();
    Snapshot {
        mounts: mounts_mentioning(b.path()) + mounts_mentioning(h.root()),
        cgroup_dirs: count_dirs(Path::new("/sys/fs/cgroup"), prefix, 6),
        state_entries: std::fs::read_dir(h.root()).map(|d| d.count()).unwrap_or(0),
        zombies: common::processes()
            .iter()
            .filter(|(_, ppid, s)| *s == 'Z' && *ppid == std::process::id() as i32)
            .count(),
        own_fds: std::fs::read_dir("/proc/self/fd").expect("fds").count(),
    }
}

/// N create/start/delete cycles leave the host exactly as they found it
/// (N=200 here; `scripts/cycles.sh` runs 1000).
#[test]
fn create_start_delete_cycles_leak_nothing() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    b.save();
    let bundle = b.path().to_str().expect("utf-8").to_string();
    // One warm-up cycle: the state root itself is created on first use.
    let warm = h.id("warm");
    h.run(&b, &warm, &[]).ok();
    let n: usize = std::env::var("HULL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let prefix = h.id("cyc");
    let before = snapshot(&h, &b, &prefix);
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        h.track(&id);
        h.cmd(&["create", "--bundle", &bundle, &id]).ok();
        h.cmd(&["start", &id]).ok();
        h.wait_status(&id, "stopped");
        h.cmd(&["delete", &id]).ok();
    }
    let after = snapshot(&h, &b, &prefix);
    assert_eq!(before, after, "after {n} cycles");
}

/// Of 8 concurrent `create`s of one id exactly one wins; the losers say why
/// and do not disturb the winner.
#[test]
fn concurrent_creates_of_one_id_have_one_winner() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    b.save();
    let id = h.id("race");
    h.track(&id);
    let bundle = b.path().to_str().expect("utf-8").to_string();
    let racers: Vec<_> = (0..8)
        .map(|_| h.spawn(&["create", "--bundle", &bundle, &id]))
        .collect();
    let outs: Vec<_> = racers.into_iter().map(|s| s.wait()).collect();
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(winners, 1, "{outs:#?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(o.stderr.contains("already exists"), "{o:?}");
        o.assert_no_panic();
    }
    assert_eq!(h.status(&id), "created");
    h.cmd(&["start", &id]).ok();
    assert_eq!(h.status(&id), "running");
}

/// Concurrent lifecycles on distinct ids never corrupt each other's state.
#[test]
fn concurrent_lifecycles_on_distinct_ids() {
    let hullc = Hullc::new();
    let mut b = Bundle::new(&hullc);
    b.args(&["sleep", "1000"]);
    b.save();
    let bundle = b.path().to_str().expect("utf-8").to_string();
    let ids: Vec<String> = (0..4).map(|i| format!("{}-{i}", hullc.id("par"))).collect();
    for id in &ids {
        hullc.track(id);
    }
    let root = hullc.root().to_path_buf();
    let threads: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let (bundle, root) = (bundle.clone(), root.clone());
            std::thread::spawn(move || {
                // stderr goes to a file, never a pipe: the container inherits
                // hullc's stdio and would hold a pipe open past hullc's exit.
                let err_path = root.with_file_name(format!("{id}.err"));
                let run = |args: &[&str]| {
                    let err = std::fs::File::create(&err_path).expect("stderr file");
                    let st = std::process::Command::new(common::HULLC)
                        .arg("--root")
                        .arg(&root)
                        .args(args)
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(err)
                        .status()
                        .expect("hullc");
                    (
                        st.success(),
                        std::fs::read_to_string(&err_path).unwrap_or_default(),
                    )
                };
                for _ in 0..5 {
                    for args in [
                        vec!["create", "--bundle", &bundle, &id],
                        vec!["start", &id],
                        vec!["state", &id],
                        vec!["kill", &id, "KILL"],
                        vec!["delete", "--force", &id],
                    ] {
                        let (ok, err) = run(&args);
                        assert!(ok, "{args:?}: {err}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a lifecycle thread failed");
    }
    assert_eq!(
        std::fs::read_dir(hullc.root())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

/// SIGKILL of `hullc create` at a given stage: `state` and `list` describe
/// the half-made container, and `delete --force` leaves nothing. The stages
/// are reached with hooks that announce themselves and then block.
fn crash_at(hook_kind: &str, hook_in_container: bool) {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let marker = h.scratch().join(format!("{hook_kind}.pid"));
    b.config["hooks"] = json!({ hook_kind: [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 1000", marker.display())]
    }]});
    b.save();
    let id = h.id("crash");
    h.track(&id);
    let bundle = b.path().to_str().expect("utf-8").to_string();
    let create = h.spawn(&["create", "--bundle", &bundle, &id]);
    common::wait_until("the hook to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
    });
    let hook_pid: i32 = std::fs::read_to_string(&marker)
        .expect("marker")
        .trim()
        .parse()
        .expect("pid");
    // createContainer hooks run in the container's pid namespace: their $$
    // is not a host pid, and they die with init anyway.
    let hook_pid = (!hook_in_container).then_some(hook_pid);
    // SAFETY: kill with a pid we spawned and a signal number.
    unsafe { libc::kill(create.pid(), libc::SIGKILL) };
    let out = create.wait();
    assert!(!out.status.success());
    assert_eq!(h.status(&id), "creating", "a half-made container says so");
    let list = h.cmd(&["list", "--format", "json"]).ok();
    assert!(
        list.stdout.contains(&id) && list.stdout.contains("creating"),
        "{}",
        list.stdout
    );
    h.cmd(&["delete", "--force", &id]).ok();
    if let Some(pid) = hook_pid {
        // The blocked hook is ours to end (runtimes do not track hooks).
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        common::wait_until("hook gone", Duration::from_secs(10), || {
            common::reap_zombies();
            !common::alive(pid)
        });
    }
    common::assert_clean(&h, &b, &[&id]);
}

#[test]
fn crash_during_create_runtime_hooks_leaves_nothing() {
    crash_at("createRuntime", false);
}

#[test]
fn crash_during_create_container_hooks_leaves_nothing() {
    crash_at("createContainer", true);
}

/// A tiny deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// Every JSON pointer in `v` (objects and arrays, recursively).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            pointers(
                c,
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

fn mutate(base: &Value, rng: &mut Rng) -> Value {
    let mut v = base.clone();
    let mut ptrs = Vec::new();
    pointers(&v, String::new(), &mut ptrs);
    let replacements = [
        json!(null),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1e308),
        json!("../../../../etc"),
        json!("/proc/self/fd/0"),
        json!(""),
        json!("x".repeat(5000)),
        json!([]),
        json!({}),
        json!(true),
        json!(["/..", "\u{0}"]),
    ];
    for _ in 0..1 + rng.next() % 3 {
        let p = rng.pick(&ptrs).clone();
        if p.is_empty() {
            continue;
        }
        let (parent, key) = p.rsplit_once('/').expect("non-empty pointer");
        let remove = rng.next().is_multiple_of(4);
        let with = rng.pick(&replacements).clone();
        match v.pointer_mut(parent) {
            Some(Value::Object(m)) if remove => {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            Some(Value::Array(a)) if remove => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {
                if let Some(slot) = v.pointer_mut(&p) {
                    *slot = with;
                }
            }
        }
    }
    v
}

/// Hundreds of mutated configs through `run`: each ends in a clear error or
/// a correct run; never a panic, a signal death or a hang; nothing is left.
#[test]
fn mutated_configs_never_panic_or_hang() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let base = b.config.clone();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n: usize = std::env::var("HULL_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..n {
        b.config = mutate(&base, &mut rng);
        let id = format!("{}-{i}", h.id("mut"));
        let o = h.run(&b, &id, &[]);
        o.assert_no_panic();
        match o.code() {
            Some(0) => ok += 1,
            Some(1) => {
                failed += 1;
                assert!(
                    o.stderr.starts_with("hullc: ") && o.stderr.len() > 10,
                    "unclear error for mutation {i}: {:?}\n{}",
                    o.stderr,
                    b.config
                );
            }
            other => panic!(
                "mutation {i}: exit {other:?} ({}) stderr {}\nconfig {}",
                o.status, o.stderr, b.config
            ),
        }
        // Whatever happened, the container must be gone after run.
        let left: Vec<_> = std::fs::read_dir(h.root())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "mutation {i} left {left:?}\nconfig {}",
            b.config
        );
    }
    assert!(
        ok > 0 && failed > 0,
        "the mutations should both pass and fail sometimes ({ok} ok, {failed} failed)"
    );
    b.config = base;
    common::assert_clean(&h, &b, &[]);
}
