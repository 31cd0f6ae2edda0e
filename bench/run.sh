#!/bin/sh
# hullc vs runc (and crun/youki when installed) start-up benchmark, issue 7.
#   sudo bench/run.sh               # N=100 containers per metric and runtime
#   sudo N=300 bench/run.sh --max-load 0.5 --json /tmp/bench.json
#   sudo HULLC=/path/to/hullc bench/run.sh   # skip the cargo build
# Needs root, runc, busybox-static, util-linux (unshare, nsenter), python3.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: needs root (sudo bench/run.sh)" >&2
    exit 1
fi
if [ -z "${HULLC:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
    scripts/release.sh --quiet
    HULLC="$CARGO_TARGET_DIR/release/hullc"
fi
exec python3 bench/bench.py --hullc "$HULLC" "$@"
