#!/usr/bin/env bash
# Sets up and runs hull's whole test suite (as root, on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
# The pure cgroup v2 lane: hullc and hull in a QEMU guest (README.md, Tests), with the debug
# binaries built above (a release build would add the slowest step of the whole suite).
HULL_VM_PROFILE=debug scripts/vm-test.sh
