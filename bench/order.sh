#!/bin/sh
# Regenerates bench/hullc.order, the list of functions hullc runs on its common
# paths, which scripts/release.sh hands to the linker (--symbol-ordering-file):
# builds an unstripped hullc the way release.sh does, then bench/order.py
# profiles it with uprobes. Run it again after large changes to hullc; stale
# entries are harmless (the linker skips names it doesn't find), only less
# effective.
#   sudo bench/order.sh
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "bench/order.sh: needs root (uprobes in tracefs)" >&2
    exit 1
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-order}"
HULLC_RUSTC_ARGS="-C strip=none" scripts/release.sh --hullc-only --quiet
exec python3 bench/order.py --hullc "$CARGO_TARGET_DIR/release/hullc" "$@"
