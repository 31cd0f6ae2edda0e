//! The container process: args, env, cwd, user (uid, gid, additionalGids,
//! umask), rlimits, noNewPrivileges, capabilities, oomScoreAdj — read back
//! from inside the container (`id`, /proc/self/status, /proc/self/limits).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::*;
use serde_json::json;

/// The value of `Key:` in the container's /proc/self/status.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} not in\n{status}"))
        .trim()
}

#[test]
fn args_are_passed_verbatim() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&[
        "sh",
        "-c",
        "for a in \"$0\" \"$@\"; do printf '[%s]' \"$a\"; done",
        "zero",
        "two words",
        "",
        "*",
        "$HOME",
    ]);
    let id = h.id("args");
    let out = h.run(&b, &id, &[]).ok().stdout;
    assert_eq!(out, "[zero][two words][][*][$HOME]");
}

#[test]
fn executable_is_found_on_the_containers_path() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    fs::create_dir_all(b.rootfs().join("opt/tools")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", b.rootfs().join("opt/tools/echo")).unwrap();
    b.config["process"]["env"] = json!(["PATH=/opt/tools", format!("HULL_TEST_TAG={}", h.tag)]);
    b.args(&["echo", "via-path"]);
    let id = h.id("path");
    assert_eq!(h.run(&b, &id, &[]).ok().stdout, "via-path\n");
}

#[test]
fn env_is_exactly_the_configs() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["env"] = json!([
        "PATH=/bin",
        "FOO=bar baz",
        "EMPTY=",
        format!("HULL_TEST_TAG={}", h.tag),
    ]);
    b.args(&["env"]);
    let id = h.id("env");
    let o = h
        .run_with(&b, &id, &[], |c| {
            c.env("LEAK_FROM_CALLER", "1");
        })
        .ok();
    let mut got: Vec<&str> = o.stdout.lines().collect();
    got.sort();
    let tag = format!("HULL_TEST_TAG={}", h.tag);
    // HOME comes from the container's /etc/passwd when the config has none.
    let mut want = vec!["EMPTY=", "FOO=bar baz", "HOME=/root", "PATH=/bin", &tag];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn home_follows_the_user() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    assert_eq!(h.sh(&mut b, "echo $HOME"), "/home/user\n");
}

#[test]
fn cwd_is_created_if_missing() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["cwd"] = json!("/work/deep/dir");
    assert_eq!(h.sh(&mut b, "pwd"), "/work/deep/dir\n");
    assert!(b.rootfs().join("work/deep/dir").is_dir());
}

/// runc enters the cwd before it switches to the container's user (runc's cwd.bats): a 0700 root
/// directory is a valid cwd for uid 1000, though that user could not chdir there itself.
#[test]
fn cwd_is_entered_before_the_user_switch() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let dir = b.rootfs().join("private");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    b.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    b.config["process"]["cwd"] = json!("/private");
    assert_eq!(
        h.sh(&mut b, "pwd; ls . || echo no access"),
        "/private\nno access\n"
    );
}

#[test]
fn cwd_existing_directory() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["cwd"] = json!("/etc");
    assert_eq!(h.sh(&mut b, "pwd; ls passwd"), "/etc\npasswd\n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["user"] = json!({
        "uid": 1000, "gid": 1001, "additionalGids": [10, 20]
    });
    let out = h.sh(&mut b, "id -u; id -g; id -G; cat /proc/self/status");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1001"));
    let mut groups: Vec<&str> = lines.next().unwrap().split(' ').collect();
    groups.sort();
    assert_eq!(groups, ["10", "1001", "20"]);
    let status: String = lines.map(|l| format!("{l}\n")).collect();
    // real, effective, saved and fs ids all switched.
    assert_eq!(
        status_field(&status, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(
        status_field(&status, "Gid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1001"; 4]
    );
    assert_eq!(status_field(&status, "Groups"), "10 20");
}

#[test]
fn root_user_has_no_supplementary_groups_by_default() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(&mut b, "id -u; id -g; grep Groups /proc/self/status");
    assert_eq!(out.lines().take(2).collect::<Vec<_>>(), ["0", "0"]);
    // The caller's groups must not leak in.
    assert_eq!(status_field(&out, "Groups"), "");
}

#[test]
fn umask_is_applied() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["user"]["umask"] = json!(0o027);
    let out = h.sh(&mut b, "umask; touch /tmp/f; stat -c %a /tmp/f");
    assert_eq!(out, "0027\n640\n");
}

#[test]
fn rlimits_are_applied() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["rlimits"] = json!([
        { "type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2345 },
        { "type": "RLIMIT_STACK", "soft": 4194304, "hard": 16777216 },
        { "type": "RLIMIT_CORE", "soft": 0, "hard": 0 }
    ]);
    let out = h.sh(&mut b, "ulimit -n; ulimit -Hn; cat /proc/self/limits");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1234"));
    assert_eq!(lines.next(), Some("2345"));
    let limits: Vec<&str> = lines.collect();
    let row = |name: &str| -> Vec<String> {
        let l = limits
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {limits:?}"));
        l[name.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Max open files"), ["1234", "2345", "files"]);
    assert_eq!(row("Max stack size"), ["4194304", "16777216", "bytes"]);
    assert_eq!(row("Max core file size"), ["0", "0", "bytes"]);
}

#[test]
fn no_new_privileges_set() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["noNewPrivileges"] = json!(true);
    let out = h.sh(&mut b, "cat /proc/self/status");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1");
}

#[test]
fn no_new_privileges_unset() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["noNewPrivileges"] = json!(false);
    let out = h.sh(&mut b, "cat /proc/self/status");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0");
}

fn caps_mask(names: &[&str]) -> String {
    let bit = |n: &str| match n {
        "CAP_CHOWN" => 0,
        "CAP_KILL" => 5,
        "CAP_SETUID" => 7,
        "CAP_NET_BIND_SERVICE" => 10,
        "CAP_NET_RAW" => 13,
        "CAP_AUDIT_WRITE" => 29,
        _ => panic!("add {n} to the table"),
    };
    format!("{:016x}", names.iter().fold(0u64, |m, n| m | 1 << bit(n)))
}

fn cap_sets(status: &str) -> [String; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(|k| status_field(status, k).to_string())
}

#[test]
fn capabilities_of_a_non_root_user_match_the_config() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
    ];
    let kept = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    b.config["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
    // For a non-root user, execve keeps exactly the ambient set in
    // permitted and effective, so the five sets are all observable.
    b.config["process"]["capabilities"] = json!({
        "bounding": bounding, "effective": kept, "permitted": kept,
        "inheritable": kept, "ambient": kept
    });
    let out = h.sh(&mut b, "cat /proc/self/status");
    let k = caps_mask(&kept);
    assert_eq!(
        cap_sets(&out),
        [k.clone(), k.clone(), k.clone(), caps_mask(&bounding), k]
    );
}

#[test]
fn capabilities_of_root_match_the_config() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let set = ["CAP_CHOWN", "CAP_KILL"];
    b.config["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set,
        "inheritable": [], "ambient": []
    });
    let out = h.sh(&mut b, "cat /proc/self/status");
    let m = caps_mask(&set);
    let none = caps_mask(&[]);
    assert_eq!(
        cap_sets(&out),
        [none.clone(), m.clone(), m.clone(), m, none]
    );
}

#[test]
fn spec_default_capabilities() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let out = h.sh(&mut b, "cat /proc/self/status");
    let m = caps_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(
        cap_sets(&out),
        [m.clone(), m.clone(), m.clone(), m.clone(), m]
    );
}

/// runc's own default spec lists ambient capabilities that are not
/// inheritable: the kernel cannot raise them, and like runc hullc runs the
/// container without them and without a word on stderr.
#[test]
fn runc_default_ambient_capabilities_are_skipped_quietly() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let set = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    b.config["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set, "ambient": set
    });
    b.args(&["cat", "/proc/self/status"]);
    let id = h.id("amb");
    let out = h.run(&b, &id, &[]).ok();
    let m = caps_mask(&set);
    let none = caps_mask(&[]);
    assert_eq!(
        cap_sets(&out.stdout),
        [none.clone(), m.clone(), m.clone(), m, none]
    );
    assert_eq!(out.stderr, "", "nothing on stderr");
}

#[test]
fn a_dropped_capability_is_denied() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // The spec's default set has no CAP_CHOWN.
    let out = h.sh(&mut b, "touch /tmp/f; chown 1000 /tmp/f 2>&1; echo rc=$?");
    assert!(
        out.contains("Operation not permitted") && out.contains("rc=1"),
        "{out}"
    );
}

#[test]
fn a_granted_capability_is_usable() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    let set = ["CAP_CHOWN"];
    b.config["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set
    });
    let out = h.sh(
        &mut b,
        "touch /tmp/f; chown 1000 /tmp/f && stat -c %u /tmp/f",
    );
    assert_eq!(out, "1000\n");
}

#[test]
fn oom_score_adj_is_applied() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.config["process"]["oomScoreAdj"] = json!(567);
    assert_eq!(h.sh(&mut b, "cat /proc/self/oom_score_adj"), "567\n");
}

/// The container's session keyring as listed in /proc/keys (unmasked here).
fn session_keyrings(h: &Hullc, extra: &[&str]) -> (String, String) {
    let mut b = Bundle::new(h);
    b.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p != "/proc/keys");
    b.args(&["cat", "/proc/keys"]);
    let id = h.id("keyring");
    let out = h.run(&b, &id, extra).ok().stdout;
    (id, out)
}

#[test]
fn a_new_session_keyring_per_container() {
    let h = Hullc::new();
    let (id, keys) = session_keyrings(&h, &[]);
    // runc names it _ses.<id>.
    assert!(keys.contains(&format!("_ses.{id}")), "{keys}");
}

#[test]
fn no_new_keyring_keeps_the_callers_keyring() {
    let h = Hullc::new();
    let (id, keys) = session_keyrings(&h, &["--no-new-keyring"]);
    assert!(!keys.contains(&format!("_ses.{id}")), "{keys}");
}

/// The container keeps its caller's CPU affinity, and so does a foreground
/// `hullc run` once the container is up (an experiment that narrowed the
/// parent's affinity while it made the cgroup is why this test exists).
#[test]
fn cpu_affinity_is_the_callers() {
    let ours = status_field(
        &fs::read_to_string("/proc/self/status").unwrap(),
        "Cpus_allowed_list",
    )
    .to_string();
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    // Without a cgroup namespace: the cgroup is made while init builds.
    b.remove_namespace("cgroup");
    b.args(&[
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status > /tmp/affinity; sleep 30",
    ]);
    b.save();
    let id = h.id("affinity");
    h.track(&id);
    let run = h.spawn(&["run", "-b", b.path().to_str().unwrap(), &id]);
    let marker = b.rootfs().join("tmp/affinity");
    wait_until("the container's affinity", CMD_TIMEOUT, || {
        fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
    });
    let inside = fs::read_to_string(&marker).unwrap();
    assert_eq!(status_field(&inside, "Cpus_allowed_list"), ours);
    let parent = fs::read_to_string(format!("/proc/{}/status", run.pid())).unwrap();
    assert_eq!(
        status_field(&parent, "Cpus_allowed_list"),
        ours,
        "hullc run"
    );
    h.cmd(&["kill", &id, "KILL"]).ok();
    run.wait();
}
