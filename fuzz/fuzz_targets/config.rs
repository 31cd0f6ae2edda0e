//! Fuzzes config.json parsing and validation: `hull_runtime::load_bundle`
//! on a bundle whose config.json is the input (parse_spec is private to
//! hull-runtime, so the public entry point is the one fuzzed; it does the
//! same parse plus the root.path and semantic checks). Every input must end
//! in `Ok` or a `ConfigError` that says something — never a panic, abort or
//! hang. The same bytes also go through `validate_id`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One bundle dir per fuzzing process, with an empty rootfs/ (the default
/// root.path) so that valid configs get past the rootfs check to validation.
fn bundle() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("HULL_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("hull-fuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).expect("create the fuzz bundle dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = bundle();
    std::fs::write(dir.join("config.json"), data).expect("write config.json");
    match hull_runtime::load_bundle(dir) {
        Ok(_) => {}
        Err(e) => assert!(!e.to_string().is_empty(), "an error that says nothing"),
    }
    if let Ok(id) = std::str::from_utf8(data) {
        let _ = hull_runtime::validate_id(id);
    }
});
