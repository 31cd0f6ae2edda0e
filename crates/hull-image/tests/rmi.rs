#![allow(clippy::unwrap_used)]
//! `hull rmi` deletes a whole snapshot tree (issue #24: fd-based, parallel)
//! without following symlinks a hostile image planted in it.

mod common;

use anyhow::Result;
use common::{Comp, Layer, Layout};
use hull_image::{archive, NoProgress, Store};

#[test]
fn rmi_removes_the_whole_snapshot_and_follows_no_symlink() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Files a followed symlink would reach: they must survive the rmi.
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(victim.join("sub"))?;
    std::fs::write(victim.join("keep"), b"x")?;
    std::fs::write(victim.join("sub/keep"), b"x")?;
    let v = victim.to_str().unwrap();

    // Enough directories that the removal shares subtrees between threads,
    // with symlinks to the victim at every level and in place of a dir.
    let mut layer = Layer::new().dir("top").symlink("link-top", v);
    for d in 0..80 {
        layer = layer
            .dir(&format!("top/d{d}"))
            .dir(&format!("top/d{d}/e"))
            .symlink(&format!("top/d{d}/e/abs"), v)
            .symlink(&format!("top/d{d}/rel"), "../../../../../../../../..")
            .file(&format!("top/d{d}/e/f"), b"data");
    }
    let mut layout = Layout::new(&dir.path().join("layout"));
    let m = layout.image(vec![(Comp::None, layer.tar())], "amd64");
    layout.finish(vec![m], "hostile/rmi:1")?;
    let arch = dir.path().join("img.tar");
    layout.archive(&arch)?;

    let root = dir.path().join("root");
    let mut store = Store::open(&root)?;
    let img = archive::load(&mut store, &arch, &NoProgress)?.remove(0);
    let snap = store.snapshot_dir(&img.layers[0].chain_id);
    assert!(snap.exists(), "{} missing after load", snap.display());

    let rm = store.remove_image("hostile/rmi:1", false)?;
    assert_eq!(rm.snapshots_removed, 1);
    assert!(!snap.exists(), "{} left after rmi", snap.display());
    assert_eq!(std::fs::read_dir(root.join("snapshots"))?.count(), 0);
    let tmp: Vec<_> = std::fs::read_dir(root.join("tmp"))?.flatten().collect();
    assert!(tmp.is_empty(), "left in tmp/: {tmp:?}");
    assert!(victim.join("keep").exists(), "a symlink was followed");
    assert!(victim.join("sub/keep").exists(), "a symlink was followed");
    Ok(())
}
