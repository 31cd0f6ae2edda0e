#!/usr/bin/env bash
# Sets up and runs hull's whole test suite (as root, on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
# The README's demo command on this clone, as a newcomer runs it (issue 25): its release build
# must compile each dependency once, its output stay short, and the container report exit 3.
scripts/demo-test.sh
# The pure cgroup v2 lane: hullc and hull in a QEMU guest (docs/testing.md), with the release
# binaries the demo just built (hullc static, as shipped).
scripts/vm-test.sh
# The systemd lane: hullc --systemd-cgroup under systemd as init, in a QEMU guest booted from a
# Debian root (scripts/vm-systemd.sh; 77 s here with the release hullc, under TCG).
scripts/vm-systemd.sh
