//! [`assert_clean`] and what it looks at: nothing of a test's containers left in the host's
//! mounts, processes or cgroups (split from mod.rs to keep it small).

use super::*;

/// The mount points under `dir` in the host's mountinfo.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let mi = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let d = dir.to_string_lossy();
    mi.lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|mp| mp.starts_with(d.as_ref()))
        .collect()
}

/// Processes whose cwd or root is inside `dir` (on the host's view).
pub fn processes_in(dir: &Path) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(pid, _, s)| {
            *s != 'Z'
                && ["cwd", "root"].iter().any(|l| {
                    fs::read_link(format!("/proc/{pid}/{l}"))
                        .map(|p| p.starts_with(dir))
                        .unwrap_or(false)
                })
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Cgroup directories named `id` anywhere in the host's cgroup trees
/// (every container gets one, named after its id by default).
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, id: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let p = e.path();
            if e.file_name() == id {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, id, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), id, 6, &mut out);
    out
}

/// Asserts that nothing of the harness' containers is left: no state dir
/// under `--root`, no mount under the bundle in the host's mountinfo, no
/// process of ours (tagged, zombie child, or with cwd/root in the bundle),
/// no cgroup named after one of `ids`.
#[track_caller]
pub fn assert_clean(h: &Hullc, b: &Bundle, ids: &[&str]) {
    reap_zombies();
    let entries: Vec<String> = match fs::read_dir(h.root()) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    assert!(entries.is_empty(), "state left under --root: {entries:?}");
    let mounts = host_mounts_under(b.path());
    assert!(mounts.is_empty(), "mounts left on the host: {mounts:?}");
    let procs = processes_in(b.path());
    assert!(procs.is_empty(), "processes left in the bundle: {procs:?}");
    let tagged = tagged_pids(&h.tag);
    assert!(tagged.is_empty(), "tagged processes left: {tagged:?}");
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let own = own_children();
    let zombies: Vec<i32> = processes()
        .into_iter()
        .filter(|(p, pp, s)| *pp == me && *s == 'Z' && !own.contains(p))
        .map(|(p, _, _)| p)
        .collect();
    drop(own);
    assert!(zombies.is_empty(), "unreaped children: {zombies:?}");
    for id in ids {
        let cg = cgroups_named(id);
        assert!(cg.is_empty(), "cgroups left for {id}: {cg:?}");
    }
}
