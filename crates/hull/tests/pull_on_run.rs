//! `run`/`create --pull missing|always|never` against a local docker-registry: a missing
//! image is pulled (progress on stderr, the container's output alone on stdout), `never`
//! refuses and makes nothing, `always` fetches the tag's newer image. `--network none`.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;
mod ctr;

use common::{push, Comp, Layer, Layout, Registry};
use ctr::{text, Env};

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pushes a busybox image with `/etc/version` = `version` as `name` (`host/repo:tag`).
fn push_image(dir: &std::path::Path, name: &str, version: &str) {
    let mut layout = Layout::new(&dir.join(format!("layout-{version}")));
    let layer = Layer::new()
        .busybox()
        .dir("etc/")
        .file("etc/version", version.as_bytes())
        .tar();
    let m = layout.image(vec![(Comp::Gzip, layer)], arch());
    layout.finish(vec![m], "t").unwrap();
    push(&layout.dir, "t", name, false, None).unwrap();
}

#[test]
fn run_pulls_a_missing_image_never_refuses_always_refreshes() {
    let reg = Registry::start(None).unwrap();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}/auto:v1", reg.host());
    push_image(work.path(), &name, "one");
    let e = Env::new();

    // --pull never with the image absent: exit 125, the flag named, nothing made.
    let o = e.hull(&["create", "--pull", "never", "--network", "none", &name]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("--pull never") && err.contains(&name), "{err}");
    assert_eq!(e.ok(&["images", "-q"]).trim(), "");
    assert_eq!(e.ok(&["ps", "-aq"]).trim(), "");
    // An unknown policy names the flag.
    let o = e.hull(&["run", "--pull", "sometimes", "--network", "none", &name]);
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("--pull"), "{}", text(&o).1);

    // Default (missing): pulled, then run; stdout is the container's alone.
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&name, "cat", "/etc/version"]);
        let o = e.hull(&args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}{err}");
        (out, err)
    };
    let (out, err) = run(&[]);
    assert_eq!(out, "one");
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally"))
            && err.contains("Downloaded newer image"),
        "{err}"
    );
    assert!(e.ok(&["images"]).contains("auto"));
    // Present now: no pull.
    let (out, err) = run(&[]);
    assert_eq!(out, "one");
    assert!(!err.contains("Pulling"), "{err}");

    // A newer image under the tag: `missing` keeps the old one, `always` fetches it.
    push_image(work.path(), &name, "two");
    assert_eq!(run(&["--pull", "missing"]).0, "one");
    let (out, err) = run(&["--pull", "always"]);
    assert_eq!(out, "two");
    assert!(err.contains("Pulling"), "{err}");
    // `create` pulls as well (a tag never seen here).
    let other = format!("{}/auto:v2", reg.host());
    push_image(work.path(), &other, "three");
    let id = e.ok(&["create", "--network", "none", &other]);
    assert_eq!(id.trim().len(), 64, "{id}");
    e.ok(&["rm", id.trim()]);
    e.assert_clean();
}
