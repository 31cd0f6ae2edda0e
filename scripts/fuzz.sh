#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [SECONDS] [TARGET]
# Fuzzes TARGET (default config) for SECONDS (default 300):
# - config: config.json parsing and validation (fuzz/fuzz_targets/config.rs:
#   hull_runtime::load_bundle on a bundle whose config.json is the input);
# - unpack_layer: layer unpacking (fuzz/fuzz_targets/unpack_layer.rs: the input as a
#   layer tar into a scratch snapshot; no panic, nothing written beside it).
# Crashes land in fuzz/artifacts/TARGET/ and make the script fail; the corpus
# grows in fuzz/corpus/TARGET/ (seeds: fuzz/seeds/TARGET, if any).
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address...); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
target="${2:-config}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
root="$PWD"
mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
dict=()
if [ "$target" = config ]; then dict=(-dict="$root/fuzz/config.dict"); fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM
start=$(date +%s)
status=0
HULL_FUZZ_DIR="$work" cargo fuzz run --fuzz-dir fuzz "$target" \
    "$root/fuzz/corpus/$target" "$root/fuzz/seeds/$target" -- \
    -max_total_time="$secs" "${dict[@]}" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 || status=$?
echo "fuzz: target $target, ${secs}s asked, $(( $(date +%s) - start ))s total with the build," \
    "corpus $(ls "fuzz/corpus/$target" | wc -l) inputs, exit $status"
if [ -d "fuzz/artifacts/$target" ] && [ -n "$(ls -A "fuzz/artifacts/$target")" ]; then
    echo "fuzz: crash inputs in fuzz/artifacts/$target:"
    ls -l "fuzz/artifacts/$target"
fi
exit "$status"
