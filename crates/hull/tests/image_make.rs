//! Making images locally: `commit`, `diff`, `export`, `import` round trips through real
//! containers, `history`, `tag`, `image mount|unmount` and `image prune`.
#![allow(clippy::unwrap_used)]

mod ctr;

use std::io::Read;
use std::path::Path;

use ctr::{text, Entry, Env};
use serde_json::json;

const IMG: &str = "hull.test/base:1";

fn env() -> Env {
    let e = Env::new();
    e.load_with(
        IMG,
        json!({"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"}),
        &[Entry::File("home/web/old", b"old\n".to_vec(), 0o644)],
    );
    e
}

fn fails(e: &Env, args: &[&str]) -> String {
    let o = e.hull(args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {out}{err}");
    err
}

/// Entry names of the top layer of `image`, read from `hull save`'s OCI archive.
fn top_layer_entries(e: &Env, image: &str) -> Vec<String> {
    let out = e.work.path().join("saved.tar");
    e.ok(&["save", "-o", out.to_str().unwrap(), image]);
    let mut files = std::collections::HashMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for en in a.entries().unwrap() {
        let mut en = en.unwrap();
        let p = en.path().unwrap().display().to_string();
        let mut data = Vec::new();
        en.read_to_end(&mut data).unwrap();
        files.insert(p, data);
    }
    let blob = |d: &str| files[&format!("blobs/sha256/{}", &d[7..])].clone();
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let layers = m["layers"].as_array().unwrap();
    let top = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let mut t = tar::Archive::new(flate2::read::GzDecoder::new(top.as_slice()));
    t.entries()
        .unwrap()
        .map(|en| en.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn commit_diff_export_import_round_trip() {
    let e = env();
    e.ok(&[
        "run",
        "--name",
        "c1",
        IMG,
        "sh",
        "-c",
        "echo new > /srv/new; rm /srv/from-image; echo more >> /etc/passwd; \
         rm -rf /home/web; mkdir /home/web; echo only > /home/web/only",
    ]);
    let diff = e.ok(&["diff", "c1"]);
    for line in [
        "A /srv/new",
        "D /srv/from-image",
        "C /srv",
        "C /etc/passwd",
        "C /home/web",
        "A /home/web/only",
        "D /home/web/old",
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "{line:?} missing from:\n{diff}"
        );
    }
    assert!(!diff.contains("/etc/hosts"), "{diff}");

    let id = e.ok(&[
        "commit",
        "-c",
        "ENV COMMITTED=yes",
        "-c",
        r#"CMD ["cat", "/srv/new"]"#,
        "-m",
        "my change",
        "--author",
        "Tester <t@example.com>",
        "c1",
        "hull.test/committed:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    // Whiteouts became OCI whiteouts in the new layer; the mount points did not come along.
    let entries = top_layer_entries(&e, "hull.test/committed:1");
    for want in [
        "srv/new",
        "srv/.wh.from-image",
        "home/web/.wh..wh..opq",
        "home/web/only",
    ] {
        assert!(
            entries.iter().any(|p| p == want),
            "{want} not in {entries:?}"
        );
    }
    assert!(!entries.iter().any(|p| p.contains("hosts")), "{entries:?}");
    assert_eq!(e.ok(&["run", "--rm", "hull.test/committed:1"]), "new\n");
    let check =
        "test ! -e /srv/from-image && ls /home/web && echo $COMMITTED && tail -1 /etc/passwd";
    assert_eq!(
        e.ok(&["run", "--rm", "hull.test/committed:1", "sh", "-c", check]),
        "only\nyes\nmore\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["image", "inspect", "hull.test/committed:1"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    let history = e.ok(&["history", "--no-trunc", "hull.test/committed:1"]);
    assert!(history.contains("my change"), "{history}");
    assert!(
        history
            .lines()
            .nth(1)
            .unwrap()
            .starts_with(&id.trim()[7..19]),
        "{history}"
    );

    // export → import gives the same files as one layer.
    let out = e.work.path().join("c1.tar");
    e.ok(&["export", "-o", out.to_str().unwrap(), "c1"]);
    let mut names = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for en in a.entries().unwrap() {
        names.push(en.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.iter().any(|n| n == "srv/new") && names.iter().any(|n| n == "bin/busybox"));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("from-image") || n.contains(".wh.")),
        "{names:?}"
    );
    e.ok(&[
        "import",
        "-c",
        r#"CMD ["cat", "/home/web/only"]"#,
        "-c",
        "ENV PATH=/bin",
        out.to_str().unwrap(),
        "hull.test/imported:1",
    ]);
    assert_eq!(e.ok(&["run", "--rm", "hull.test/imported:1"]), "only\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["image", "inspect", "hull.test/imported:1"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);

    // Bad input.
    let err = fails(&e, &["commit", "-c", "RUN true", "c1"]);
    assert!(
        err.contains("RUN true") && err.contains("unknown instruction"),
        "{err}"
    );
    let err = fails(&e, &["commit", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let err = fails(&e, &["import", "/nonexistent.tar", "x:1"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    let err = fails(&e, &["diff", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    e.ok(&["rm", "c1"]);
    e.assert_clean();
}

#[test]
fn tag_mount_and_prune() {
    let e = env();
    e.ok(&["tag", IMG, "hull.test/other:2"]);
    let id = |n: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&e.ok(&["image", "inspect", n])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    };
    assert_eq!(id(IMG), id("hull.test/other:2"));
    let err = fails(&e, &["tag", "nothere", "x:1"]);
    assert!(err.contains("nothere"), "{err}");
    let err = fails(&e, &["tag", IMG, "Bad Name"]);
    assert!(err.contains("invalid reference"), "{err}");

    // A read-only mount of the image's files; mounting again gives the same path.
    let p = e.ok(&["image", "mount", "hull.test/other:2"]);
    let p = Path::new(p.trim());
    assert_eq!(
        std::fs::read(p.join("srv/from-image")).unwrap(),
        b"image data\n"
    );
    assert_eq!(std::fs::read(p.join("home/web/old")).unwrap(), b"old\n");
    let w = std::fs::write(p.join("srv/x"), b"x").unwrap_err();
    assert_eq!(w.raw_os_error(), Some(libc::EROFS), "{w}");
    assert_eq!(e.ok(&["image", "mount", IMG]).trim(), p.to_str().unwrap());
    // The mount keeps the image: its last name cannot go while it is mounted.
    e.ok(&["rmi", "hull.test/other:2"]);
    let err = fails(&e, &["rmi", IMG]);
    assert!(err.contains("in use"), "{err}");
    e.ok(&["image", "unmount", IMG]);
    assert!(!p.join("srv").exists());
    let err = fails(&e, &["image", "unmount", IMG]);
    assert!(err.contains("not mounted"), "{err}");

    // Two imports under one name: the first one is left dangling, and prune takes it.
    let tar = |content: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "file", content).unwrap();
        let p = e.work.path().join(format!("t{}.tar", content.len()));
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    };
    let first = e.ok(&["import", tar(b"1").to_str().unwrap(), "hull.test/imp:1"]);
    let second = e.ok(&["import", tar(b"22").to_str().unwrap(), "hull.test/imp:1"]);
    let snapshots = || {
        std::fs::read_dir(e.root.path().join("snapshots"))
            .unwrap()
            .count()
    };
    assert_eq!(snapshots(), 3);
    let out = e.ok(&["image", "prune"]);
    assert!(
        out.contains(first.trim()) && !out.contains(second.trim()),
        "{out}"
    );
    assert_eq!(snapshots(), 2);
    let listed = e.ok(&["images", "-q"]);
    assert!(!listed.contains(&first.trim()[7..19]), "{listed}");
    // -a: everything no container uses.
    e.ok(&["create", "--name", "keep", IMG, "true"]);
    let out = e.ok(&["image", "prune", "-a"]);
    assert!(out.contains(second.trim()), "{out}");
    let listed = e.ok(&["images", "-q"]);
    assert_eq!(listed.trim(), &id(IMG)[7..19]);
    assert_eq!(snapshots(), 1);
    e.ok(&["rm", "keep"]);
    e.assert_clean();
}

/// `diff` as docker's: what the engine makes for every container (the mount points of
/// /etc/hosts, /etc/hostname, /etc/resolv.conf, /dev, /proc, /sys and their parents) is
/// docker's init layer, part of the base, so a container that changed nothing shows nothing,
/// and /etc is changed (never added) when the container writes in it, even in an image
/// without /etc, /dev, /proc or /sys.
#[test]
fn diff_hides_what_the_engine_made() {
    let e = env();
    // An image with busybox only: no /etc, /dev, /proc, /sys for the engine to reuse.
    let bare = e.work.path().join("bare.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let bb = std::fs::read("/bin/busybox").unwrap();
    h.set_size(bb.len() as u64);
    h.set_mode(0o755);
    b.append_data(&mut h, "bin/busybox", bb.as_slice()).unwrap();
    for a in ["sh", "true"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    std::fs::write(&bare, b.into_inner().unwrap()).unwrap();
    e.ok(&[
        "import",
        "-c",
        "ENV PATH=/bin",
        bare.to_str().unwrap(),
        "hull.test/bare:1",
    ]);
    for (name, image, script, want) in [
        ("same", IMG, "true", ""),
        ("bare", "hull.test/bare:1", "true", ""),
        ("etc", IMG, "echo x > /etc/new", "C /etc\nA /etc/new\n"),
        (
            "bareetc",
            "hull.test/bare:1",
            "echo x > /etc/new",
            "C /etc\nA /etc/new\n",
        ),
        ("tmp", IMG, "echo x > /tmp/t", "C /tmp\nA /tmp/t\n"),
    ] {
        let o = e.hull(&[
            "run",
            "--name",
            name,
            "--network",
            "none",
            image,
            "sh",
            "-c",
            script,
        ]);
        assert!(o.status.success(), "{name}: {:?}", text(&o));
        assert_eq!(e.ok(&["diff", name]), want, "{name}");
        e.ok(&["rm", name]);
    }
    e.assert_clean();
}
