#!/bin/sh
# hull vs podman (runc) benchmark and the 100-container scale run, issue 10.
#   sudo bench/hull.sh                       # 30 samples per engine and network mode, 100 containers
#   sudo bench/hull.sh -n 50 --scale 50 --no-bridge --json /tmp/hull-bench.json
#   sudo HULL_BIN_DIR=/path/to/release bench/hull.sh   # skip the cargo build
# Needs root, podman + conmon + runc, busybox-static, python3; containerd (ctr) as a yardstick
# for the scale run when installed.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/hull.sh: needs root (sudo bench/hull.sh)" >&2
    exit 1
fi
if [ -z "${HULL_BIN_DIR:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
    scripts/release.sh --quiet
    HULL_BIN_DIR="$CARGO_TARGET_DIR/release"
fi
# hull finds hullc and the shim next to itself.
exec python3 bench/hull_bench.py --hull "$HULL_BIN_DIR/hull" "$@"
