#!/usr/bin/env bash
# Fuzzes config.json parsing and validation (fuzz/fuzz_targets/config.rs:
# hull_runtime::load_bundle on a bundle whose config.json is the input) for
# SECONDS (default 300). Crashes land in fuzz/artifacts/config/ and make the
# script fail; the corpus grows in fuzz/corpus/config/ (seeds: fuzz/seeds/).
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer=address...); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
root="$PWD"
mkdir -p fuzz/corpus/config
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM
start=$(date +%s)
status=0
HULL_FUZZ_DIR="$work" cargo fuzz run --fuzz-dir fuzz config \
    "$root/fuzz/corpus/config" "$root/fuzz/seeds/config" -- \
    -max_total_time="$secs" -dict="$root/fuzz/config.dict" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 || status=$?
echo "fuzz: target config, ${secs}s asked, $(( $(date +%s) - start ))s total with the build," \
    "corpus $(ls fuzz/corpus/config | wc -l) inputs, exit $status"
if [ -d fuzz/artifacts/config ] && [ -n "$(ls -A fuzz/artifacts/config)" ]; then
    echo "fuzz: crash inputs in fuzz/artifacts/config:"
    ls -l fuzz/artifacts/config
fi
exit "$status"
