#!/bin/sh
# Release build of the three programs into ${CARGO_TARGET_DIR:-target}/release.
#   scripts/release.sh [--quiet]
# hullc is linked statically (static-pie glibc, as runc's own release binaries are static):
# it starts twice per create/run/exec (the CVE-2019-5736 re-exec from a read-only copy), and
# without ld.so, relocations against libc.so and libc's pages it starts faster and its peak RSS
# is lower (figures in bench/README.md). `cargo rustc` applies the flag to the final binary
# only: RUSTFLAGS would also make the proc-macro crates static, which rustc refuses unless
# --target is given.
set -eu
cd "$(dirname "$0")/.."
cargo build --release "$@" -p hull -p hull-shim
cargo rustc --release "$@" -p hullc --bin hullc -- -C target-feature=+crt-static
