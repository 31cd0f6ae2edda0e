//! The `hull` image commands end to end against a local docker-registry.
#![allow(clippy::unwrap_used)]

#[path = "../../hull-image/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use anyhow::Result;
use common::{push, Comp, Layer, Layout, Registry};

fn hull(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hull"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("run hull")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "hull failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn image_commands() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let m = layout.image(
        vec![
            (Comp::Gzip, Layer::new().busybox().tar()),
            (
                Comp::Zstd,
                Layer::new().dir("etc/").file("etc/motd", b"hi\n").tar(),
            ),
        ],
        "amd64",
    );
    layout.finish(vec![m], "v1")?;
    let name = format!("{}/cli:v1", reg.host());
    push(&layout.dir, "v1", &name, false, None)?;
    let root = tempfile::tempdir()?;
    let r = root.path();

    let id = ok(hull(r, &["pull", &name]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let q = ok(hull(r, &["images", "-q"]));
    assert_eq!(q.trim(), &id.trim()[7..19]);
    let table = ok(hull(r, &["images"]));
    assert!(
        table.contains(&format!("{}/cli", reg.host())) && table.contains("v1"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(hull(r, &["images", "--format", "json"])))?;
    assert_eq!(json[0]["Id"].as_str(), Some(id.trim()));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(hull(r, &["image", "inspect", &name])))?;
    assert_eq!(inspect[0]["Config"]["Cmd"][0].as_str(), Some("/bin/sh"));
    assert_eq!(
        inspect[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2)
    );

    let archive = dir.path().join("out.tar");
    ok(hull(r, &["save", "-o", archive.to_str().unwrap(), &name]));
    let rmi = ok(hull(r, &["rmi", &name]));
    assert!(rmi.contains("Deleted:"), "{rmi}");
    assert_eq!(std::fs::read_dir(r.join("snapshots"))?.count(), 0);
    let loaded = ok(hull(r, &["load", "-i", archive.to_str().unwrap()]));
    assert!(loaded.contains(&name), "{loaded}");

    // Errors: non-zero exit and a message naming the input.
    let bad = hull(r, &["pull", "Not/A Ref"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid reference"));
    let missing = hull(r, &["pull", &format!("{}/missing:v1", reg.host())]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("missing") && err.contains("404"), "{err}");
    let unknown = hull(r, &["image", "inspect", "nothere"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not known"));
    Ok(())
}
