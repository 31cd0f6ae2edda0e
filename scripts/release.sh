#!/bin/sh
# Release build of the three programs into ${CARGO_TARGET_DIR:-target}/release.
#   scripts/release.sh [--hullc-only] [--quiet]
# hullc is linked statically (glibc, as runc's own release binaries are static): without
# ld.so, relocations against libc.so and libc's pages it starts faster and its peak RSS is
# lower (figures in bench/README.md). `cargo rustc` applies the flags to the final binary
# only: RUSTFLAGS would also make the proc-macro crates static, which rustc refuses unless
# --target is given.
# And not position-independent: a static-pie applies its relocations at start-up, which
# writes (copies) every page of its 244 KiB .data.rel.ro, 56 page faults per process
# (`hullc state` 1.85 -> 1.48 ms, bench/README.md item 17). The price is a fixed address for
# hullc's own image (stack, heap and mmaps stay randomized); HULLC_PIE=1 builds static-pie.
# bench/hullc.order (made by bench/order.sh) lists the functions hullc runs on its common
# paths; the linker (LLD, Rust's default on x86_64 Linux) places them first and together, so
# the kernel's 64 KiB fault-around maps hot code instead of cold neighbours (peak RSS).
# HULLC_RUSTC_ARGS adds rustc flags for hullc (bench/order.sh: -C strip=none; a flag here,
# unlike a profile setting, leaves the symbol names as they are in the release build).
set -eu
cd "$(dirname "$0")/.."
only_hullc=false
if [ "${1:-}" = "--hullc-only" ]; then
    only_hullc=true
    shift
fi
if ! $only_hullc; then
    cargo build --release "$@" -p hull -p hull-shim
fi
out="${CARGO_TARGET_DIR:-target}/release"
set -- "$@" -p hullc --bin hullc -- -C target-feature=+crt-static
if [ -z "${HULLC_PIE:-}" ]; then
    set -- "$@" -C relocation-model=static
fi
if [ -f bench/hullc.order ]; then
    set -- "$@" -C "link-arg=-Wl,--symbol-ordering-file=$PWD/bench/hullc.order" \
        -C link-arg=-Wl,--no-warn-symbol-ordering
    # Cargo doesn't track the file: relink when it is newer than the binary.
    if [ "$out/hullc" -ot bench/hullc.order ]; then
        rm -f "$out/hullc" "$out"/deps/hullc-*
    fi
fi
# shellcheck disable=SC2086 # word splitting of the extra flags is wanted
cargo rustc --release "$@" ${HULLC_RUSTC_ARGS:-}
