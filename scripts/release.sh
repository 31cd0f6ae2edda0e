#!/bin/sh
# Release build of the three programs into ${CARGO_TARGET_DIR:-target}/release.
#   scripts/release.sh [--hullc-only] [--quiet]
# hullc is linked statically (glibc, as runc's own release binaries are static): without
# ld.so, relocations against libc.so and libc's pages it starts faster and its peak RSS is
# lower (figures in bench/README.md). The flags go to hullc's final link only, through
# scripts/rustc-hullc.sh (a RUSTC_WORKSPACE_WRAPPER): RUSTFLAGS would also make the proc-macro
# crates static, which rustc refuses unless --target is given, and a second `cargo rustc -p
# hullc` would resolve features for hullc alone and so build every dependency twice. One
# `cargo build` of the three programs compiles each dependency once.
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
out="${CARGO_TARGET_DIR:-target}/release"
flags="-C target-feature=+crt-static"
if [ -z "${HULLC_PIE:-}" ]; then
    flags="$flags -C relocation-model=static"
fi
if [ -f bench/hullc.order ]; then
    flags="$flags -C link-arg=-Wl,--symbol-ordering-file=$PWD/bench/hullc.order"
    flags="$flags -C link-arg=-Wl,--no-warn-symbol-ordering"
    # Cargo doesn't track the file: relink when it is newer than the binary.
    if [ "$out/hullc" -ot bench/hullc.order ]; then
        rm -f "$out/hullc" "$out"/deps/hullc-*
    fi
fi
HULLC_LINK_FLAGS="$flags ${HULLC_RUSTC_ARGS:-}"
# Cargo doesn't see the wrapper's flags either: relink when they changed since the last build.
mkdir -p "$out"
if [ "$(cat "$out/.hullc-flags" 2>/dev/null)" != "$HULLC_LINK_FLAGS" ]; then
    rm -f "$out/hullc" "$out"/deps/hullc-*
fi
RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/rustc-hullc.sh"
export HULLC_LINK_FLAGS RUSTC_WORKSPACE_WRAPPER
# HULL_BUILD_MESSAGES=FILE appends cargo's JSON messages (a line per compiled unit) to FILE, for
# scripts/demo-test.sh to check that each dependency was compiled once.
messages=/dev/stdout
if [ -n "${HULL_BUILD_MESSAGES:-}" ]; then
    messages=$HULL_BUILD_MESSAGES
    set -- "$@" --message-format=json-render-diagnostics
fi
if $only_hullc; then
    cargo build --release "$@" -p hullc --bin hullc >>"$messages"
else
    cargo build --release "$@" -p hull -p hull-shim -p hullc >>"$messages"
fi
printf '%s\n' "$HULLC_LINK_FLAGS" >"$out/.hullc-flags"
