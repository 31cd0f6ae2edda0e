use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

fn header(kind: EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_600_000_000);
    h
}

/// Writes raw name bytes so tests can produce entries tar::Builder refuses.
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, name: &str, link: &str, data: &[u8]) {
    let mut h = header(kind, 0o644, data.len() as u64);
    let gnu = h.as_gnu_mut().expect("gnu header");
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn unpack_bytes(tar: Vec<u8>) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = unpack_layer(tar.as_slice(), dir.path(), &LayerLimits::default());
    (dir, r)
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, EntryType::Directory, "etc/", "", b"");
    raw_entry(&mut b, EntryType::Regular, "etc/.wh.passwd", "", b"");
    raw_entry(&mut b, EntryType::Regular, "opt/.wh..wh..opq", "", b"");
    raw_entry(&mut b, EntryType::Regular, "opt/new", "", b"x");
    let (dir, r) = unpack_bytes(b.into_inner().expect("tar"));
    r.expect("unpack");
    let wh = fs::symlink_metadata(dir.path().join("etc/passwd")).expect("whiteout");
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!dir.path().join("etc/.wh.passwd").exists());
    let x = fsutil::lxattrs(&dir.path().join("opt")).expect("xattrs");
    assert!(x.contains(&(b"trusted.overlay.opaque".to_vec(), b"y".to_vec())));
    assert!(dir.path().join("opt/new").exists());
}

#[test]
fn preserves_metadata_and_links() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular, 0o4755, 3);
    b.append_pax_extensions([("SCHILY.xattr.user.test", b"v".as_slice())])
        .expect("pax");
    b.append_data(&mut h, "bin/su", b"abc".as_slice())
        .expect("file");
    let mut h = header(EntryType::Link, 0o755, 0);
    b.append_link(&mut h, "bin/su2", "bin/su")
        .expect("hardlink");
    let mut h = header(EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "bin/abs", "/etc/shadow")
        .expect("symlink");
    let mut h = header(EntryType::Char, 0o666, 0);
    h.set_device_major(1).expect("major");
    h.set_device_minor(3).expect("minor");
    b.append_data(&mut h, "dev/null", [].as_slice())
        .expect("dev");
    let (dir, r) = unpack_bytes(b.into_inner().expect("tar"));
    r.expect("unpack");
    let su = fs::symlink_metadata(dir.path().join("bin/su")).expect("su");
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1000, 1001));
    assert_eq!(su.mtime(), 1_600_000_000);
    assert_eq!(su.nlink(), 2);
    let su2 = fs::symlink_metadata(dir.path().join("bin/su2")).expect("su2");
    assert_eq!(su.ino(), su2.ino());
    let x = fsutil::lxattrs(&dir.path().join("bin/su")).expect("xattrs");
    assert!(x.contains(&(b"user.test".to_vec(), b"v".to_vec())));
    let abs = fs::read_link(dir.path().join("bin/abs")).expect("symlink");
    assert_eq!(abs, Path::new("/etc/shadow"));
    let null = fs::symlink_metadata(dir.path().join("dev/null")).expect("dev");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
}

#[test]
fn rejects_path_traversal() {
    type Case = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
    let cases: Vec<Case> = vec![
        Box::new(|b| raw_entry(b, EntryType::Regular, "../evil", "", b"x")),
        Box::new(|b| raw_entry(b, EntryType::Regular, "a/../../evil", "", b"x")),
        Box::new(|b| {
            raw_entry(b, EntryType::Symlink, "link", "/tmp", b"");
            raw_entry(b, EntryType::Regular, "link/evil", "", b"x");
        }),
        Box::new(|b| {
            raw_entry(b, EntryType::Symlink, "up", "..", b"");
            raw_entry(b, EntryType::Regular, "up/evil", "", b"x");
        }),
        Box::new(|b| raw_entry(b, EntryType::Link, "hl", "../../etc/passwd", b"")),
        Box::new(|b| raw_entry(b, EntryType::Link, "hl", "/etc/passwd", b"")),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        case(&mut b);
        let (dir, r) = unpack_bytes(b.into_inner().expect("tar"));
        assert!(
            matches!(r, Err(UnpackError::Escape { .. })),
            "case {i}: {r:?}"
        );
        assert!(!dir.path().parent().expect("parent").join("evil").exists());
    }
}

#[test]
fn pax_time_parsing() {
    assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
    assert_eq!(parse_pax_time("7"), Some((7, 0)));
    assert_eq!(parse_pax_time("x"), None);
}

#[test]
fn whiteouts_of_dot_names_are_refused_and_touch_nothing_outside() {
    for name in [
        ".wh...",
        ".wh..",
        ".wh.",
        "sub/.wh...",
        "sub/.wh..",
        "./.wh...",
    ] {
        // The snapshot lives in a parent that must survive, with a sibling in it.
        let parent = tempfile::tempdir().expect("tempdir");
        let sibling = parent.path().join("sibling");
        fs::write(&sibling, b"keep").expect("sibling");
        let dest = parent.path().join("snap");
        fs::create_dir(&dest).expect("snap");
        fs::create_dir(dest.join("sub")).expect("sub");
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, EntryType::Regular, name, "", b"");
        let tar = b.into_inner().expect("tar");
        let r = unpack_layer(tar.as_slice(), &dest, &LayerLimits::default());
        let e = r.expect_err(name);
        assert!(matches!(e, UnpackError::Escape { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains(name.trim_start_matches("./")), "{e}");
        assert_eq!(fs::read(&sibling).expect("sibling kept"), b"keep", "{name}");
        assert!(dest.join("sub").is_dir(), "{name}");
    }
}

#[test]
fn limits_stop_big_layers_and_many_entries() {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..5 {
        let mut h = header(EntryType::Regular, 0o644, 4096);
        b.append_data(&mut h, format!("f{i}"), [0u8; 4096].as_slice())
            .expect("file");
    }
    let tar = b.into_inner().expect("tar");
    let unpack = |limits: LayerLimits| {
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_layer(tar.as_slice(), dir.path(), &limits)
    };
    unpack(LayerLimits::default()).expect("within the defaults");
    let e = unpack(LayerLimits {
        max_size: 10_000,
        max_files: 100,
    })
    .expect_err("too large");
    assert!(
        matches!(e, UnpackError::TooLarge { limit: 10_000 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("HULL_LAYER_MAX_SIZE"), "{e}");
    let e = unpack(LayerLimits {
        max_size: 1 << 20,
        max_files: 4,
    })
    .expect_err("too many");
    assert!(matches!(e, UnpackError::TooManyFiles { limit: 4 }), "{e:?}");
    assert!(e.to_string().contains("HULL_LAYER_MAX_FILES"), "{e}");
}
