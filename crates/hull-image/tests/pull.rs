#![allow(clippy::unwrap_used)]
//! End-to-end pulls against a local docker-registry (root required: the
//! unpacker creates device nodes, chowns and sets trusted.* xattrs, and the
//! rootfs test mounts overlayfs).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use common::{push, run, Comp, Layer, Layout, Registry};
use hull_image::{pull, Durability, NoProgress, PullError, PullOptions, RootfsMode, Store};

/// Three layers (gzip, zstd, plain) exercising whiteouts, opaque dirs,
/// links, setuid and xattrs.
fn layers() -> Vec<(Comp, Vec<u8>)> {
    let l0 = Layer::new()
        .busybox()
        .hardlink("bin/busybox-hl", "bin/busybox")
        .file_mode("bin/suid", b"#!/bin/sh\n", 0o4755)
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
        .file_xattr("etc/keep", b"keep\n", "user.hull", b"yes")
        .dir("opt/")
        .dir("opt/a/")
        .file("opt/a/old", b"old\n")
        .file("opt/b", b"b\n")
        .tar();
    let l1 = Layer::new()
        .dir("etc/")
        .file("etc/.wh.passwd", b"")
        .dir("opt/a/")
        .file("opt/a/.wh..wh..opq", b"")
        .file("opt/a/new", b"new\n")
        .tar();
    let l2 = Layer::new()
        .dir("etc/")
        .file("etc/keep", b"changed\n")
        .tar();
    vec![(Comp::Gzip, l0), (Comp::Zstd, l1), (Comp::None, l2)]
}

fn push_image(reg: &Registry, name: &str) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let m = layout.image(layers(), "amd64");
    layout.finish(vec![m], "v1")?;
    push(
        &layout.dir,
        "v1",
        &format!("{}/{name}:v1", reg.host()),
        false,
        None,
    )?;
    Ok(dir)
}

fn check_merged(root: &Path) {
    assert!(!root.join("etc/passwd").exists(), "whiteout hides passwd");
    assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"changed\n");
    assert!(!root.join("opt/a/old").exists(), "opaque dir hides old");
    assert!(root.join("opt/a/new").exists());
    assert!(root.join("opt/b").exists());
    let suid = std::fs::metadata(root.join("bin/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!(
        std::fs::read_link(root.join("bin/ls")).unwrap(),
        Path::new("/bin/busybox")
    );
    let out = run(Command::new("chroot").arg(root).args([
        "/bin/sh",
        "-c",
        "echo hi from $(cat /opt/a/new)",
    ]))
    .unwrap();
    assert_eq!(out.trim(), "hi from new");
}

fn mounted(path: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
fn pull_unpack_and_overlay_rootfs() -> Result<()> {
    let reg = Registry::start(None)?;
    let _src = push_image(&reg, "multi")?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let r = pull(
        &mut store,
        &format!("{}/multi:v1", reg.host()),
        &PullOptions::default(),
        &NoProgress,
    )?;
    assert_eq!(r.layers_fetched, 3);
    let l0 = store.snapshot_dir(&r.image.layers[0].chain_id);
    let bb = std::fs::metadata(l0.join("bin/busybox"))?;
    assert_eq!(
        bb.ino(),
        std::fs::metadata(l0.join("bin/busybox-hl"))?.ino()
    );
    let keep = Command::new("getfattr")
        .args(["-n", "user.hull", "--only-values"])
        .arg(l0.join("etc/keep"))
        .output();
    if let Ok(o) = keep {
        assert_eq!(o.stdout, b"yes");
    }
    let l1 = store.snapshot_dir(&r.image.layers[1].chain_id);
    let wh = std::fs::symlink_metadata(l1.join("etc/passwd"))?;
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    let rootfs = store
        .prepare_rootfs("multi:v1", "c1", RootfsMode::Overlay)
        .err();
    assert!(
        rootfs.is_some(),
        "short names resolve to docker.io, not the local registry"
    );
    let name = format!("{}/multi:v1", reg.host());
    let fs = store.prepare_rootfs(&name, "c1", RootfsMode::Overlay)?;
    assert!(mounted(&fs.path));
    check_merged(&fs.path);
    std::fs::write(fs.path.join("opt/b"), b"written")?;
    let copy = store.prepare_rootfs(&name, "c2", RootfsMode::Copy)?;
    check_merged(&copy.path);
    assert_eq!(
        std::fs::read(copy.path.join("opt/b"))?,
        b"b\n",
        "containers are isolated"
    );
    // `--rm`'s volatile overlay: mounted with the option, marked by overlayfs, torn down alike.
    let vol = store.prepare_rootfs_with(&name, "c3", RootfsMode::Overlay, Durability::Volatile)?;
    assert_eq!(vol.durability, Durability::Volatile);
    check_merged(&vol.path);
    let opts = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(vol.path.to_str().unwrap_or("")))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(opts.contains("volatile"), "{opts}");
    assert!(vol.path.join("../work/work/incompat/volatile").is_dir());
    assert_eq!(fs.durability, Durability::Durable);
    store.teardown_rootfs("c1")?;
    store.teardown_rootfs("c2")?;
    store.teardown_rootfs("c3")?;
    assert!(!mounted(&fs.path) && !mounted(&vol.path));
    assert!(!fs.path.exists() && !copy.path.exists() && !vol.path.exists());

    // Second pull: everything present, nothing fetched.
    let again = pull(&mut store, &name, &PullOptions::default(), &NoProgress)?;
    assert_eq!((again.layers_fetched, again.layers_skipped), (0, 3));

    // By digest into a fresh store: same image.
    let digest = r.image.manifest_digest.clone();
    let root2 = tempfile::tempdir()?;
    let mut store2 = Store::open(root2.path())?;
    let by_digest = format!("{}/multi@{digest}", reg.host());
    let r2 = pull(
        &mut store2,
        &by_digest,
        &PullOptions::default(),
        &NoProgress,
    )?;
    assert_eq!(r2.image.id, r.image.id);
    assert!(store2.lookup(&by_digest).is_ok());

    // rmi removes snapshots and blobs nothing else uses.
    let rm = store.remove_image(&name, false)?;
    assert!(rm.deleted.is_some());
    assert_eq!(rm.snapshots_removed, 3);
    assert_eq!(std::fs::read_dir(root.path().join("snapshots"))?.count(), 0);
    assert_eq!(
        std::fs::read_dir(root.path().join("blobs/sha256"))?.count(),
        0
    );
    Ok(())
}

fn assert_clean(root: &Path) {
    for sub in ["snapshots", "blobs/sha256", "tmp"] {
        let left: Vec<_> = std::fs::read_dir(root.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{sub} not empty: {left:?}");
    }
}

#[test]
fn corrupt_blob_is_rejected_and_leaves_nothing() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let tar = Layer::new().file("a", &[7u8; 5000]).tar();
    let m = layout.image(
        vec![
            (Comp::None, tar.clone()),
            (Comp::Gzip, Layer::new().file("b", b"b").tar()),
        ],
        "amd64",
    );
    layout.finish(vec![m], "v1")?;
    push(
        &layout.dir,
        "v1",
        &format!("{}/bad:v1", reg.host()),
        false,
        None,
    )?;
    // Flip a byte in the middle of the big layer in the registry's storage.
    // skopeo may recompress layers, so ask the registry what it serves.
    let resp = ureq::get(&format!("http://{}/v2/bad/manifests/v1", reg.host()))
        .set("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()?;
    let m: serde_json::Value = serde_json::from_reader(resp.into_reader())?;
    let biggest = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .and_then(|l| l["digest"].as_str())
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let data = reg.blob_data(&biggest);
    let mut bytes = std::fs::read(&data)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes)?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let err = pull(
        &mut store,
        &format!("{}/bad:v1", reg.host()),
        &PullOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    // Either inflate fails first or the digest check does; both name the blob.
    assert!(
        matches!(
            err,
            PullError::DigestMismatch { .. } | PullError::Layer { .. }
        ),
        "{err:?}"
    );
    assert!(store.images()?.is_empty());
    let blobs: Vec<_> = std::fs::read_dir(root.path().join("blobs/sha256"))?
        .flatten()
        .collect();
    // The verified layer that did land belongs to no image: the failed pull
    // sweeps it with the rest, so nothing at all is left.
    assert!(blobs.is_empty(), "a failed pull leaves no blob: {blobs:?}");
    assert_eq!(std::fs::read_dir(root.path().join("tmp"))?.count(), 0);
    assert_eq!(std::fs::read_dir(root.path().join("snapshots"))?.count(), 0);
    Ok(())
}

#[test]
fn traversal_layer_is_rejected() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let evil = Layer::new()
        .file("ok", b"x")
        .raw("../../escape", b"pwned")
        .tar();
    let m = layout.image(vec![(Comp::Gzip, evil)], "amd64");
    layout.finish(vec![m], "v1")?;
    push(
        &layout.dir,
        "v1",
        &format!("{}/evil:v1", reg.host()),
        false,
        None,
    )?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let err = pull(
        &mut store,
        &format!("{}/evil:v1", reg.host()),
        &PullOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(format!("{:?}", err).contains("Escape"), "{err:?}");
    assert!(!root.path().join("escape").exists() && !root.path().join("../escape").exists());
    assert_clean(root.path());
    Ok(())
}

#[test]
fn manifest_list_platform_selection() -> Result<()> {
    let reg = Registry::start(None)?;
    let dir = tempfile::tempdir()?;
    let mut layout = Layout::new(&dir.path().join("layout"));
    let amd = layout.image(
        vec![(Comp::Gzip, Layer::new().file("arch", b"amd64").tar())],
        "amd64",
    );
    let arm = layout.image(
        vec![(Comp::Zstd, Layer::new().file("arch", b"arm64").tar())],
        "arm64",
    );
    layout.finish(vec![amd, arm], "multi")?;
    push(
        &layout.dir,
        "multi",
        &format!("{}/ml:multi", reg.host()),
        true,
        None,
    )?;
    let name = format!("{}/ml:multi", reg.host());
    for (platform, want) in [("linux/arm64", "arm64"), ("linux/amd64", "amd64")] {
        let root = tempfile::tempdir()?;
        let mut store = Store::open(root.path())?;
        let opts = PullOptions {
            platform: Some(platform.parse().map_err(anyhow::Error::msg)?),
            ..Default::default()
        };
        let r = pull(&mut store, &name, &opts, &NoProgress)?;
        assert_eq!(r.image.config.architecture, want);
        let snap = store.snapshot_dir(&r.image.layers[0].chain_id);
        assert_eq!(std::fs::read(snap.join("arch"))?, want.as_bytes());
    }
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let opts = PullOptions {
        platform: Some("linux/s390x".parse().map_err(anyhow::Error::msg)?),
        ..Default::default()
    };
    let err = pull(&mut store, &name, &opts, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("linux/s390x"), "{err}");
    Ok(())
}

#[test]
fn clear_errors_for_bad_input() -> Result<()> {
    let reg = Registry::start(None)?;
    let root = tempfile::tempdir()?;
    let mut store = Store::open(root.path())?;
    let o = PullOptions::default();
    let e = pull(&mut store, "Bad Ref!", &o, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("invalid reference"), "{e}");
    let e = pull(
        &mut store,
        &format!("{}/nope:v1", reg.host()),
        &o,
        &NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
    let dead = format!("127.0.0.1:{}/x:v1", common::free_port());
    let e = pull(&mut store, &dead, &o, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("cannot reach registry"), "{e}");
    assert_clean(root.path());
    Ok(())
}
