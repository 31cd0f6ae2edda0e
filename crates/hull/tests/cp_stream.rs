//! `hull cp` with `-`: `cp CTR:PATH -` writes a tar of PATH to stdout, `cp - CTR:DIR`
//! unpacks a tar from stdin into DIR; owners, modes and symlinks survive the round trip, and
//! a symlink in the container never leads either stream out of its root. `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Stdio;

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/cpstream:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

fn sh(e: &Env, script: &str) -> String {
    e.ok(&["exec", "c", "sh", "-c", script])
}

/// `hull ARGS` with `input` on stdin: (exit code, stdout, stderr).
fn with_stdin(e: &Env, args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut c = e
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        o.status.code(),
        o.stdout,
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// Entry path → (kind, mode, uid, gid, content or link target).
fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (char, u32, u64, u64, String)> {
    let mut a = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for ent in a.entries().unwrap() {
        let mut ent = ent.unwrap();
        let h = ent.header().clone();
        let path = ent
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            _ => '?',
        };
        let mut body = String::new();
        if kind == 'l' {
            body = h.link_name().unwrap().unwrap().to_string_lossy().into();
        } else {
            ent.read_to_string(&mut body).unwrap();
        }
        let mode = h.mode().unwrap() & 0o7777;
        out.insert(path, (kind, mode, h.uid().unwrap(), h.gid().unwrap(), body));
    }
    out
}

#[test]
fn cp_tar_streams_round_trip_and_stay_in_the_root() {
    let e = env();
    e.ok(&[
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
    // A host directory with a secret, and a symlink to it (and to /) in the container.
    let secret = e.work.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("key"), "host secret\n").unwrap();
    let s = secret.to_str().unwrap();
    sh(
        &e,
        &format!(
            "B=busybox; $B mkdir -p /d/sub /back /back2 && echo data > /d/f && $B chmod 640 /d/f \
             && $B chown 1000:50 /d/f && echo g > /d/sub/g && $B chmod 751 /d/sub \
             && $B ln -s f /d/link && $B ln -s /etc/passwd /d/abs && $B ln -s {s} /d/esc \
             && $B ln -s / /d/root"
        ),
    );

    // Out: PATH as a tar, named by its last component; symlinks as symlinks.
    let o = e.hull(&["cp", "c:/d", "-"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let tar_out = o.stdout;
    let ents = entries(&tar_out);
    assert_eq!(ents["d/f"], ('f', 0o640, 1000, 50, "data\n".into()));
    assert_eq!(ents["d/sub"].0, 'd');
    assert_eq!(ents["d/sub"].1, 0o751);
    assert_eq!(ents["d/sub/g"].4, "g\n");
    assert_eq!(ents["d/link"], ('l', 0o777, 0, 0, "f".into()));
    assert_eq!(ents["d/abs"].4, "/etc/passwd");
    assert_eq!(ents["d/esc"].4, s);
    assert!(!ents
        .keys()
        .any(|k| k.starts_with("d/esc/") || k.starts_with("d/root/")));
    assert!(!String::from_utf8_lossy(&tar_out).contains("host secret"));

    // In with -a: the same owners, modes and links in the container.
    let (code, _, err) = with_stdin(&e, &["cp", "-a", "-", "c:/back"], &tar_out);
    assert_eq!(code, Some(0), "{err}");
    let got = sh(
        &e,
        "cd /back/d && busybox stat -c '%a %u %g' f sub && cat f sub/g \
         && busybox readlink link && busybox readlink abs",
    );
    assert_eq!(got, "640 1000 50\n751 0 0\ndata\ng\nf\n/etc/passwd\n");
    // Without -a, root owns what comes in (docker's rule).
    let (code, _, err) = with_stdin(&e, &["cp", "-", "c:/back2"], &tar_out);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(sh(&e, "busybox stat -c '%a %u %g' /back2/d/f"), "640 0 0\n");

    // Through a symlink to a host path: resolved in the container's root, never the host's.
    let (code, out, _) = with_stdin(&e, &["cp", "c:/d/esc/", "-"], b"");
    assert_eq!(code, Some(125));
    assert!(!String::from_utf8_lossy(&out).contains("host secret"));
    sh(&e, &format!("busybox mkdir -p {s}"));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, "pwned", &b"pwned\n"[..]).unwrap();
    let pwn = b.into_inner().unwrap();
    for dest in ["c:/d/esc", "c:/d/root/d/esc"] {
        let (code, _, err) = with_stdin(&e, &["cp", "-", dest], &pwn);
        assert_eq!(code, Some(0), "{dest}: {err}");
    }
    assert!(
        !secret.join("pwned").exists(),
        "written through to the host"
    );
    assert_eq!(sh(&e, &format!("cat {s}/pwned")), "pwned\n");

    // Bad input: exit 125, naming the path.
    for (args, names) in [
        (vec!["cp", "-", "c:/d/f"], "/d/f"),
        (vec!["cp", "-", "c:/nope"], "/nope"),
        (vec!["cp", "c:/nope", "-"], "/nope"),
        (vec!["cp", "-", "-"], "-"),
    ] {
        let (code, _, err) = with_stdin(&e, &args, &pwn);
        assert_eq!(code, Some(125), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }
    // A tar that is not one.
    let (code, _, err) = with_stdin(&e, &["cp", "-", "c:/back"], &[7u8; 1024]);
    assert_eq!(code, Some(125), "{err}");
    // Nothing staged is left in the root.
    let left: Vec<_> = std::fs::read_dir(e.root.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| d.file_name().to_string_lossy().starts_with("cp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `.wh.` names in a tar copied in are plain files, as docker copies them: `.wh.x` neither
/// deletes `x` nor hides it, and `.wh..wh..opq` does not make the directory opaque.
#[test]
fn cp_tar_in_copies_whiteout_names_as_plain_files() {
    let e = env();
    e.ok(&[
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
    sh(
        &e,
        "busybox mkdir -p /w && echo keep > /w/x && echo old > /w/y",
    );
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in [(".wh.x", "plain\n"), (".wh..wh..opq", "opq\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let input = b.into_inner().unwrap();
    let (code, _, err) = with_stdin(&e, &["cp", "-", "c:/w"], &input);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        sh(
            &e,
            "cd /w && busybox ls -a . | busybox sort && cat x y .wh.x .wh..wh..opq"
        ),
        ".\n..\n.wh..wh..opq\n.wh.x\nx\ny\nkeep\nold\nplain\nopq\n"
    );
    e.ok(&["rm", "-f", "c"]);
}
