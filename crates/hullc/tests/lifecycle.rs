//! The runtime-spec lifecycle through hullc: create / start / state / kill /
//! delete, and the status sequence created → running → stopped.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

fn init_pid(h: &Hullc, id: &str) -> i32 {
    h.state(id)["pid"].as_i64().unwrap() as i32
}

/// A script that runs until `/tmp/go` exists.
const WAIT_FOR_GO: &str = "while [ ! -e /tmp/go ]; do sleep 0.02; done";

#[test]
fn create_does_not_run_the_process_until_start() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo ran > /tmp/ran; echo from-container"]);
    let id = h.id("barrier");
    let created = h.create(&b, &id, &[]).ok();
    let pid = init_pid(&h, &id);
    // Give a leaky barrier time to leak.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !b.rootfs().join("tmp/ran").exists(),
        "process ran before start"
    );
    assert_eq!(h.status(&id), "created");
    assert!(alive(pid));
    // Still hullc's copy waiting at the barrier, not the user's program.
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!cmdline.contains("echo ran"), "{cmdline:?}");

    h.cmd(&["start", &id]).ok();
    wait_until("process to run", WAIT, || {
        b.rootfs().join("tmp/ran").exists()
    });
    h.wait_status(&id, "stopped");
    // The container's stdout is create's stdout (the caller's stdio).
    assert_eq!(
        fs::read_to_string(&created.stdout_path).unwrap(),
        "from-container\n"
    );
}

#[test]
fn state_goes_created_running_stopped() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", WAIT_FOR_GO]);
    let id = h.id("seq");
    h.create(&b, &id, &[]).ok();
    assert_eq!(h.status(&id), "created");
    let pid = init_pid(&h, &id);
    h.cmd(&["start", &id]).ok();
    assert_eq!(h.status(&id), "running");
    assert_eq!(init_pid(&h, &id), pid, "start must not change the init pid");
    fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    h.wait_status(&id, "stopped");
    h.cmd(&["delete", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn start_of_a_running_container_fails() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("start2");
    h.create(&b, &id, &[]).ok();
    h.cmd(&["start", &id]).ok();
    h.cmd(&["start", &id]).fails_with(&[&id, "running"]);
    assert_eq!(h.status(&id), "running");
}

#[test]
fn start_of_a_stopped_container_fails() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let id = h.id("startstopped");
    h.create(&b, &id, &[]).ok();
    h.cmd(&["start", &id]).ok();
    h.wait_status(&id, "stopped");
    h.cmd(&["start", &id]).fails_with(&[&id, "stopped"]);
}

#[test]
fn start_of_an_unknown_container_fails() {
    let h = Hullc::new();
    let id = h.id("ghost");
    h.cmd(&["start", &id]).fails_with(&[&id, "does not exist"]);
}

#[test]
fn delete_running_without_force_fails() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("delrun");
    h.run(&b, &id, &["--detach"]).ok();
    let pid = init_pid(&h, &id);
    h.cmd(&["delete", &id]).fails_with(&[&id, "running"]);
    assert_eq!(h.status(&id), "running");
    assert!(alive(pid));
}

#[test]
fn delete_force_kills_a_running_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("delforce");
    h.run(&b, &id, &["--detach"]).ok();
    let pid = init_pid(&h, &id);
    h.cmd(&["delete", "--force", &id]).ok();
    reap_zombies();
    assert!(!alive(pid), "init {pid} survived delete --force");
    h.cmd(&["state", &id]).fails_with(&["does not exist"]);
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn delete_short_force_flag() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("delf");
    h.run(&b, &id, &["-d"]).ok();
    h.cmd(&["delete", "-f", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn delete_of_a_created_container_removes_its_init() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sh", "-c", "echo ran > /tmp/ran"]);
    let id = h.id("delcreated");
    h.create(&b, &id, &[]).ok();
    let pid = init_pid(&h, &id);
    h.cmd(&["delete", &id]).ok();
    reap_zombies();
    assert!(!alive(pid));
    assert!(
        !b.rootfs().join("tmp/ran").exists(),
        "a deleted container ran"
    );
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn delete_of_a_stopped_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let id = h.id("delstopped");
    h.run(&b, &id, &["--detach"]).ok();
    h.wait_status(&id, "stopped");
    h.cmd(&["delete", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn delete_of_an_unknown_container() {
    let h = Hullc::new();
    let id = h.id("ghost");
    h.cmd(&["delete", &id]).fails_with(&[&id, "does not exist"]);
    // runc: --force on a missing container is not an error.
    h.cmd(&["delete", "--force", &id]).ok();
}

/// A container whose init logs USR1/TERM to /tmp/sig and has a long-lived
/// `sleep 1000` child; returns (bundle, id) once the traps are in place.
fn signal_logger(h: &Hullc) -> (Bundle, String) {
    let mut b = Bundle::new(h);
    b.args(&[
        "sh",
        "-c",
        "trap 'echo usr1 >> /tmp/sig' USR1; \
         trap 'echo term >> /tmp/sig; exit 0' TERM; \
         sleep 1000 & \
         touch /tmp/ready; \
         while :; do sleep 0.02; done",
    ]);
    let id = h.id("sig");
    h.run(&b, &id, &["--detach"]).ok();
    wait_until("traps", WAIT, || b.rootfs().join("tmp/ready").exists());
    (b, id)
}

fn sig_log(b: &Bundle) -> String {
    fs::read_to_string(b.rootfs().join("tmp/sig")).unwrap_or_default()
}

#[test]
fn kill_by_signal_name() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    h.cmd(&["kill", &id, "USR1"]).ok();
    wait_until("usr1", WAIT, || sig_log(&b) == "usr1\n");
    h.cmd(&["kill", &id, "SIGUSR1"]).ok();
    wait_until("second usr1", WAIT, || sig_log(&b) == "usr1\nusr1\n");
    assert_eq!(h.status(&id), "running");
}

#[test]
fn kill_by_signal_number() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    h.cmd(&["kill", &id, &libc::SIGUSR1.to_string()]).ok();
    wait_until("usr1", WAIT, || sig_log(&b) == "usr1\n");
}

#[test]
fn kill_defaults_to_sigterm() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    h.cmd(&["kill", &id]).ok();
    h.wait_status(&id, "stopped");
    assert_eq!(sig_log(&b), "term\n");
}

#[test]
fn kill_with_sigkill_stops_the_container() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("kill9");
    h.run(&b, &id, &["--detach"]).ok();
    h.cmd(&["kill", &id, "KILL"]).ok();
    h.wait_status(&id, "stopped");
    assert_eq!(h.state(&id)["pid"], 0);
}

#[test]
fn kill_of_a_stopped_container_fails() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["true"]);
    let id = h.id("killstopped");
    h.run(&b, &id, &["--detach"]).ok();
    h.wait_status(&id, "stopped");
    h.cmd(&["kill", &id, "KILL"]).fails_with(&[&id, "stopped"]);
}

#[test]
fn kill_with_an_unknown_signal_fails() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    for bad in ["SIGNOPE", "4294967296", "999", "65", "USR1x", "RTMIN+99"] {
        h.cmd(&["kill", &id, bad]).fails_with(&["signal"]);
    }
    // 0 is kill(2)'s probe, as runc takes it (its kill.bats sends it with --all): it
    // succeeds on a running container and delivers nothing.
    h.cmd(&["kill", &id, "0"]).ok();
    h.cmd(&["kill", "--all", &id, "0"]).ok();
    assert_eq!(sig_log(&b), "", "a bad signal was delivered");
    assert_eq!(h.status(&id), "running");
}

/// Host pids of the container's `sleep 1000` (it inherits the test tag).
fn long_sleepers(h: &Hullc) -> Vec<i32> {
    tagged_pids(&h.tag)
        .into_iter()
        .filter(|p| {
            fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == b"sleep\x001000\x00"
        })
        .collect()
}

#[test]
fn kill_without_all_signals_only_init() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    // The background `sleep` may still be a forked shell for a moment after
    // /tmp/ready appears: wait until it has exec'd.
    wait_until("the child sleep", WAIT, || long_sleepers(&h).len() == 1);
    let sleepers = long_sleepers(&h);
    h.cmd(&["kill", &id, "USR1"]).ok();
    wait_until("usr1", WAIT, || sig_log(&b) == "usr1\n");
    // USR1's default action kills `sleep`; it must not have received one.
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(sleepers[0]), "the child got init's signal");
}

#[test]
fn kill_all_signals_every_process() {
    let h = Hullc::new();
    let (b, id) = signal_logger(&h);
    // The background `sleep` may still be a forked shell for a moment after
    // /tmp/ready appears: wait until it has exec'd.
    wait_until("the child sleep", WAIT, || long_sleepers(&h).len() == 1);
    let sleepers = long_sleepers(&h);
    h.cmd(&["kill", "--all", &id, "USR1"]).ok();
    // init handles USR1 and lives on; its plain child dies of it.
    wait_until("child killed by USR1", WAIT, || !alive(sleepers[0]));
    wait_until("usr1", WAIT, || sig_log(&b).contains("usr1"));
    assert_eq!(h.status(&id), "running");
}

#[test]
fn create_with_an_id_in_use_fails_and_keeps_the_first() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("dup");
    h.create(&b, &id, &[]).ok();
    let pid = init_pid(&h, &id);
    h.create(&b, &id, &[]).fails_with(&[&id, "already exists"]);
    h.run(&b, &id, &[]).fails_with(&[&id, "already exists"]);
    assert_eq!(h.status(&id), "created");
    assert_eq!(init_pid(&h, &id), pid);
    assert!(alive(pid));
    h.cmd(&["start", &id]).ok();
    assert_eq!(h.status(&id), "running");
}

#[test]
fn state_of_an_unknown_container_fails() {
    let h = Hullc::new();
    let id = h.id("ghost");
    h.cmd(&["state", &id]).fails_with(&[&id, "does not exist"]);
}

#[test]
fn init_exiting_on_its_own_is_reported_stopped() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let id = h.id("external");
    h.run(&b, &id, &["--detach"]).ok();
    let pid = init_pid(&h, &id);
    // Killed behind hullc's back (e.g. by the OOM killer).
    // SAFETY: kill with a pid and a signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    h.wait_status(&id, "stopped");
    h.cmd(&["delete", &id]).ok();
    assert_clean(&h, &b, &[&id]);
}

#[test]
fn many_containers_from_one_bundle() {
    let h = Hullc::new();
    let mut b = Bundle::new(&h);
    b.args(&["sleep", "1000"]);
    let ids: Vec<String> = (0..3).map(|i| h.id(&format!("many{i}"))).collect();
    for id in &ids {
        h.run(&b, id, &["--detach"]).ok();
    }
    let pids: Vec<i32> = ids.iter().map(|id| init_pid(&h, id)).collect();
    assert_eq!(
        pids.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );
    for id in &ids {
        h.cmd(&["delete", "--force", id]).ok();
    }
    reap_zombies();
    for pid in pids {
        assert!(!alive(pid), "init {pid} survived delete --force");
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_clean(&h, &b, &refs);
}
