//! Link-time settings for the hullc binary, which is started several times
//! per container (create, start, delete): its start-up is on the hot path.

fn main() {
    // Pack the ~10k relative relocations of a PIE into DT_RELR (glibc 2.36+,
    // binutils 2.38+): the dynamic loader applies them in a fraction of the
    // time and the relocation section shrinks from ~230 KB to a few KB.
    // Only asked for when the linker knows the flag (older toolchains do not).
    if linker_supports("-Wl,-z,pack-relative-relocs") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    commit();
    println!("cargo:rerun-if-changed=build.rs");
}

/// The git commit being built, for `hullc --version` (`commit:`, which
/// `docker info` shows), when built from a git checkout; rebuilt when HEAD
/// or its branch moves.
fn commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let Some(sha) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=HULLC_COMMIT={sha}");
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]));
    for p in [head, branch].into_iter().flatten() {
        if std::path::Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// Whether `cc` accepts `flag` when linking an empty program.
fn linker_supports(flag: &str) -> bool {
    let dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let src = std::path::Path::new(&dir).join("probe.c");
    if std::fs::write(&src, "int main(void){return 0;}\n").is_err() {
        return false;
    }
    std::process::Command::new("cc")
        .args([src.to_str().unwrap_or_default(), flag, "-o"])
        .arg(std::path::Path::new(&dir).join("probe"))
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
