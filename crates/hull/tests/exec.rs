//! `hull exec` end to end as root: `-it` under a pseudo-terminal (script(1))
//! many times in a row (no hang, no FIFO left), the terminal's size and its
//! changes seen inside, and docker's exit codes for a program that cannot run. No
//! network (`--network none`): these need not wait for the host-wide network test lock.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::process::{Command, Output, Stdio};

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/exec:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

/// Runs the shell line `line` under script(1), so that it has a terminal;
/// `HULL` in it stands for hull with this test's root.
/// (`timeout --foreground` keeps hull in the terminal's foreground process
/// group: its raw mode and SIGWINCH need that.)
fn under_pty(e: &Env, line: &str) -> Output {
    let hull = format!("{} --root {}", ctr::HULL, e.root.path().display());
    Command::new("script")
        .args(["-qec", &line.replace("HULL", &hull), "/dev/null"])
        .envs(e.envs())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// FIFOs (or anything else of an exec) in the container's directory.
fn exec_files(e: &Env, id: &str) -> Vec<String> {
    std::fs::read_dir(e.root.path().join("ctr").join(id))
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("exec-"))
        .collect()
}

/// Short-lived programs under `exec -it`: each one returns (a timeout would
/// say 124) and no FIFO is left. The race this guards against lost about a
/// third of the runs.
#[test]
fn exec_it_short_commands_never_hang() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "c",
        IMG,
        "sleep",
        "1000",
    ]);
    let id = id.trim();
    for i in 0..50 {
        let cmd = if i % 2 == 0 { "true" } else { "ls /" };
        let o = under_pty(
            &e,
            &format!("timeout --foreground -k 5 30 HULL exec -it c {cmd}"),
        );
        assert_eq!(o.status.code(), Some(0), "run {i} ({cmd}): {o:?}");
    }
    // Also without a terminal on our side, with stdin at EOF.
    for _ in 0..10 {
        let o = Command::new("timeout")
            .args(["-k", "5", "30", ctr::HULL, "--root"])
            .arg(e.root.path())
            .args(["exec", "-i", "c", "true"])
            .envs(e.envs())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
    }
    assert_eq!(exec_files(&e, id), Vec::<String>::new(), "FIFOs left");
    e.ok(&["rm", "-f", "c"]);
    e.assert_clean();
}

/// The exec's terminal has our size from the start, and follows it.
#[test]
fn exec_tty_size_and_resize() {
    let e = env();
    let shared = e.work.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let vol = format!("{}:/shared", shared.display());
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "c",
        "-v",
        &vol,
        IMG,
        "sleep",
        "1000",
    ]);
    let o = under_pty(
        &e,
        "stty rows 33 cols 77; HULL exec -it c busybox stty size",
    );
    let out = text(&o).0.replace(['\r', '\0'], "").replace("^@", "");
    assert_eq!(out, "33 77\n", "{o:?}");
    // Inside: print the size, say so through /shared, then print it again on
    // SIGWINCH. Outside: once it is ready, change our size (the kernel sends
    // hull SIGWINCH).
    let ready = shared.join("ready");
    let line = format!(
        "stty rows 33 cols 77; \
         (while [ ! -e {r} ]; do sleep 0.05; done; stty rows 44 cols 99 </dev/tty) & \
         timeout --foreground -k 5 60 HULL exec -it c sh -c \
         'trap \"busybox stty size; exit 0\" WINCH; busybox stty size; touch /shared/ready; \
          while :; do sleep 0.1; done'",
        r = ready.display()
    );
    let o = under_pty(&e, &line);
    let out = text(&o).0.replace(['\r', '\0'], "").replace("^@", "");
    assert_eq!(out, "33 77\n44 99\n", "{o:?}");
    e.ok(&["rm", "-f", "c"]);
    e.assert_clean();
}

/// docker's codes: 127 for a program that is not there, 126 for one that
/// cannot be executed; the runtime's reason is printed.
#[test]
fn exec_of_a_program_that_cannot_run() {
    let e = env();
    let id = e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "c",
        IMG,
        "sleep",
        "1000",
    ]);
    let o = e.hull(&["exec", "c", "no-such-program"]);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(127), "{err}");
    assert!(err.contains("no-such-program"), "{err}");
    let o = e.hull(&["exec", "c", "/no/such/path"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o).1);
    let o = e.hull(&["exec", "c", "/etc/passwd"]);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(126), "{err}");
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    // Still 125 for hull's own failures.
    let o = e.hull(&["exec", "nosuch", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o).1);
    assert_eq!(
        exec_files(&e, id.trim()),
        Vec::<String>::new(),
        "FIFOs left"
    );
    e.ok(&["rm", "-f", "c"]);
    e.assert_clean();
}
