//! `hull cp` end to end as root: docker cp's rules both ways (a file into a directory,
//! a directory made anew, `SRC/.` for its contents, a file onto a file), symlinks copied as
//! symlinks, owners and modes kept with `-a` (root / the caller without), a stopped
//! container, clear errors (exit 125) for missing paths; and the symlink-swap race of
//! CVE-2018-15664: a container process swaps a directory for a symlink to `/` in a loop
//! while cp reads and writes through it, and the host's files are never reached.
//! `--network none`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use ctr::{text, Env};
use serde_json::json;

const IMG: &str = "hull.test/cp:1";

fn env() -> Env {
    let e = Env::new();
    e.load(IMG, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}));
    e
}

fn sh(e: &Env, ctr: &str, script: &str) -> String {
    e.ok(&["exec", ctr, "sh", "-c", script])
}

fn fails(e: &Env, args: &[&str], names: &str) {
    let o = e.hull(args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
    assert!(err.contains(names), "{args:?}: {err}");
}

#[test]
fn cp_both_ways_keeps_symlinks_owners_and_modes() {
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
        "c",
        "B=busybox; $B mkdir -p /d/sub && echo data > /d/f && $B chmod 640 /d/f \
         && $B chown 1000:50 /d/f && echo g > /d/sub/g && $B chmod 751 /d/sub \
         && $B ln -s f /d/link && $B ln -s /etc/passwd /d/abs",
    );
    let w = e.work.path();
    let out = w.join("out");
    let (o, c) = (out.to_str().unwrap(), |p: &str| format!("c:{p}"));

    // A directory to a missing DEST: DEST becomes the directory; -a keeps owners and modes.
    e.ok(&["cp", "-a", &c("/d"), o]);
    let f = std::fs::metadata(out.join("f")).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o640, 1000, 50));
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "data\n");
    assert_eq!(
        std::fs::metadata(out.join("sub")).unwrap().mode() & 0o7777,
        0o751
    );
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap().to_str(),
        Some("f")
    );
    // An absolute symlink is copied as it is, never followed (host's /etc/passwd untouched).
    assert_eq!(
        std::fs::read_link(out.join("abs")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    // Into an existing directory: DEST/d. Without -a the caller (root) owns the copy.
    e.ok(&["cp", &c("/d"), w.to_str().unwrap()]);
    let f = std::fs::metadata(w.join("d/f")).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o640, 0, 0));
    // A file onto a file, and a file into a directory.
    std::fs::write(w.join("old"), "old").unwrap();
    e.ok(&["cp", &c("/d/sub/g"), w.join("old").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(w.join("old")).unwrap(), "g\n");

    // Back into the container with -a: owners, modes and symlinks survive the round trip.
    e.ok(&["cp", "-a", o, &c("/back")]);
    assert_eq!(
        sh(&e, "c", "busybox stat -c '%a %u %g' /back/f /back/sub; busybox readlink /back/abs; busybox readlink /back/link"),
        "640 1000 50\n751 0 0\n/etc/passwd\nf\n"
    );
    // SRC/. copies the contents into an existing directory (the image's file stays).
    e.ok(&["cp", &format!("{o}/."), &c("/srv")]);
    assert_eq!(sh(&e, "c", "ls /srv"), "abs\nf\nfrom-image\nlink\nsub\n");
    // A host file, without -a: owned by root in the container, mode kept.
    let hf = w.join("hostfile");
    std::fs::write(&hf, "host\n").unwrap();
    std::fs::set_permissions(&hf, std::fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::chown(&hf, Some(1234), Some(1234)).unwrap();
    e.ok(&["cp", hf.to_str().unwrap(), &c("/tmp/")]);
    assert_eq!(
        sh(
            &e,
            "c",
            "busybox stat -c '%a %u %g' /tmp/hostfile; cat /tmp/hostfile"
        ),
        "604 0 0\nhost\n"
    );

    // Bad input: exit 125 naming the path, nothing made.
    fails(
        &e,
        &["cp", hf.to_str().unwrap(), &c("/nonexistent/dir/x")],
        "c:/nonexistent/dir",
    );
    fails(
        &e,
        &["cp", &c("/nope"), w.join("x").to_str().unwrap()],
        "c:/nope",
    );
    fails(
        &e,
        &["cp", &c("/d"), hf.to_str().unwrap()],
        "cannot copy a directory to a file",
    );
    fails(
        &e,
        &["cp", hf.to_str().unwrap(), &c("/newdir/")],
        "c:/newdir/",
    );
    fails(
        &e,
        &["cp", hf.to_str().unwrap(), w.join("y").to_str().unwrap()],
        "CONTAINER:PATH",
    );
    assert!(!w.join("x").exists());
    assert_eq!(
        sh(&e, "c", "ls / | grep -c -e nonexistent -e newdir || true"),
        "0\n"
    );

    // A stopped container: its root filesystem.
    e.ok(&["stop", "-t", "1", "c"]);
    e.ok(&["cp", &c("/back/f"), w.join("again").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(w.join("again")).unwrap(), "data\n");
    e.ok(&["rm", "c"]);
    e.assert_clean();
}

#[test]
fn cp_never_follows_a_swapped_symlink_out_of_the_container() {
    let e = env();
    // The host's files at a path the container can name: <h>/secret and <h>/drop/.
    let h = e.work.path().join("h");
    std::fs::create_dir_all(h.join("drop")).unwrap();
    std::fs::write(h.join("secret"), "HOST SECRET\n").unwrap();
    let rel = h.to_str().unwrap().trim_start_matches('/').to_string();
    // In the container the same path exists twice: under /x.dir (the directory state of
    // /x) and under / (where /x -> / leads when resolved inside the root).
    let script = format!(
        "B=busybox; $B mkdir -p /x/{rel}/drop /{rel}/drop && echo ctr-a > /x/{rel}/secret \
         && echo ctr-b > /{rel}/secret && $B ln -s / /x.lnk && echo ready > /ready \
         && while :; do $B mv /x /x.dir; $B mv /x.lnk /x; $B mv /x /x.lnk; $B mv /x.dir /x; done"
    );
    e.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "swap",
        IMG,
        "sh",
        "-c",
        &script,
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e.hull(&["exec", "swap", "cat", "/ready"]).stdout != b"ready\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "swapper did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let payload = e.work.path().join("payload");
    std::fs::write(&payload, "from cp\n").unwrap();
    let got = e.work.path().join("got");
    let (mut read_ok, mut write_ok) = (0, 0);
    for i in 0..150 {
        let _ = std::fs::remove_file(&got);
        let o = e.hull(&[
            "cp",
            &format!("swap:/x/{rel}/secret"),
            got.to_str().unwrap(),
        ]);
        if o.status.success() {
            let data = std::fs::read_to_string(&got).unwrap();
            assert!(
                data == "ctr-a\n" || data == "ctr-b\n",
                "round {i}: read {data:?}"
            );
            read_ok += 1;
        }
        let o = e.hull(&[
            "cp",
            payload.to_str().unwrap(),
            &format!("swap:/x/{rel}/drop/"),
        ]);
        write_ok += usize::from(o.status.success());
        assert_eq!(
            std::fs::read_dir(h.join("drop")).unwrap().count(),
            0,
            "round {i}: host written"
        );
    }
    assert_eq!(
        std::fs::read_to_string(h.join("secret")).unwrap(),
        "HOST SECRET\n"
    );
    assert!(
        read_ok > 0 && write_ok > 0,
        "no copy got through: {read_ok} reads, {write_ok} writes"
    );
    e.ok(&["rm", "-f", "swap"]);
    e.assert_clean();
}

/// Two ways a container's own paths used to reach past the destination: `DIR/..` as the
/// source (its `..` became the name to copy to, i.e. the destination's parent), and a device
/// node the container made where a file is copied in (it was opened and written through,
/// here into /dev/null; a block device would have been a host disk).
#[test]
fn dotdot_and_planted_devices_stay_inside() {
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
    sh(&e, "c", "busybox mkdir -p /app/sub && echo x > /app/sub/f");
    let w = e.work.path().join("dd");
    let dest = w.join("existing");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o750)).unwrap();
    e.ok(&["cp", "c:/app/sub/..", dest.to_str().unwrap()]);
    let beside: Vec<String> = std::fs::read_dir(&w)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["existing"], "copied beside the destination");
    assert_eq!(std::fs::metadata(&w).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(
        std::fs::read_to_string(dest.join("app/sub/f")).unwrap(),
        "x\n"
    );

    sh(&e, "c", "busybox mknod /app/cfg c 1 3");

    let src = e.work.path().join("cfg");
    std::fs::write(&src, "settings\n").unwrap();
    e.ok(&["cp", src.to_str().unwrap(), "c:/app/cfg"]);
    assert_eq!(sh(&e, "c", "cat /app/cfg"), "settings\n");
    assert_eq!(sh(&e, "c", "busybox stat -c %F /app/cfg"), "regular file\n");
}
