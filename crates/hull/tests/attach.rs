//! `hull attach` end to end as root: typed input reaches a `-it` container's shell under a
//! pseudo-terminal (script(1)) and its output comes back; ctrl-p ctrl-q (or `--detach-keys`)
//! detaches and leaves it running; a non-tty container's later output and exit status; a
//! stopped container and bad keys are refused with 125. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::process::{Command, Output, Stdio};

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/attach:1";

/// `input` (a shell `printf` program, timed with sleeps) piped into script(1) running
/// `hull attach ARGS` on a terminal.
fn attach_under_pty(e: &Env, args: &str, input: &str) -> Output {
    let hull = format!("{} --root {}", ctr::HULL, e.root.path().display());
    let line = format!("({input}; sleep 5) | script -qec 'timeout --foreground -k 5 30 {hull} attach {args}' /dev/null");
    Command::new("sh")
        .args(["-c", &line])
        .envs(e.envs())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn running(e: &Env, name: &str) -> bool {
    e.ok(&["ps", "--format", "{{.Names}}"])
        .lines()
        .any(|l| l == name)
}

#[test]
fn attach_types_reads_and_detaches() {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e.ok(&["run", "-dit", "--network", "none", "--name", "t", IMG, "sh"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let o = attach_under_pty(
        &e,
        "t",
        r"sleep 2; printf 'echo attached-$((6*7))\r'; sleep 2; printf '\020\021'",
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("attached-42"), "{out}");
    assert!(running(&e, "t"), "detach stopped the container");
    // Other keys; the default sequence is then just input.
    let o = attach_under_pty(
        &e,
        "--detach-keys ctrl-x,y t",
        r"sleep 2; printf 'echo second-$((2+3))\r'; sleep 2; printf '\030y'",
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("second-5"), "{out}");
    assert!(running(&e, "t"));

    // Without a terminal: later output, then the container's exit status.
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "o",
        IMG,
        "sh",
        "-c",
        "sleep 3; echo late; exit 7",
    ]);
    let o = e.hull(&["attach", "o"]);
    assert_eq!(o.status.code(), Some(7), "{:?}", text(&o));
    assert_eq!(text(&o).0, "late\n");

    // Refused: a stopped container, bad keys.
    let o = e.hull(&["attach", "o"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("stopped container o"), "{}", text(&o).1);
    let o = e.hull(&["attach", "--detach-keys", "ctrl-", "t"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("--detach-keys"), "{}", text(&o).1);
    e.ok(&["rm", "-f", "t", "o"]);
    e.assert_clean();
}
