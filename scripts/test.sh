#!/usr/bin/env bash
# Sets up and runs hull's whole test suite (as root, on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
scripts/vm-test.sh   # pure cgroup v2 lane: hullc and hull in a QEMU guest (README.md, Tests)
