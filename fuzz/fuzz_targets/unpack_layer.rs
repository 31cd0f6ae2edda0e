//! Fuzzes layer unpacking: `hull_image::unpack_layer` on the input as a tar stream, into a
//! fresh scratch snapshot directory. Every input must end in `Ok` or an `UnpackError`, never
//! a panic, abort or hang, and nothing outside the snapshot may change: its parent holds a
//! sentinel file and nothing else. (The CI counterpart with a few thousand deterministic
//! cases is crates/hull-image/tests/unpack_random.rs.)
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use hull_image::{unpack_layer, LayerLimits};
use libfuzzer_sys::fuzz_target;

/// One scratch dir per fuzzing process: `sentinel` and, during a run, `snap/`.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("HULL_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("hull-fuzz-unpack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch dir");
        std::fs::write(dir.join("sentinel"), b"keep").expect("write the sentinel");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let snap = dir.join("snap");
    std::fs::create_dir(&snap).expect("create the snapshot dir");
    let limits = LayerLimits {
        max_size: 16 << 20,
        max_files: 10_000,
    };
    if let Err(e) = unpack_layer(data, &snap, &limits) {
        assert!(!e.to_string().is_empty(), "an error that says nothing");
    }
    std::fs::remove_dir_all(&snap).expect("remove the snapshot dir");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("list the scratch dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["sentinel"], "something was written beside the snapshot");
    assert_eq!(std::fs::read(dir.join("sentinel")).expect("sentinel"), b"keep");
});
