#!/usr/bin/env bash
# Runs the leak test (crates/hullc/tests/reliability.rs,
# create_start_delete_cycles_leak_nothing) with N create/start/delete cycles
# (default 1000; CI runs 200): mountinfo lines, cgroup dirs, state entries,
# fds and zombies must be the same before and after. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
# The repo's nextest profile ends a test after 4 minutes; 1000 cycles may
# need longer, so this run gets its own limit (1 hour).
cfg="$(mktemp)"
trap 'rm -f "$cfg"' EXIT
cat > "$cfg" <<'TOML'
[profile.default]
slow-timeout = { period = "60s", terminate-after = 60 }
fail-fast = false
TOML
cargo build -p hullc --tests --quiet
start=$(date +%s)
status=0
HULL_CYCLES="$n" cargo nextest run --config-file "$cfg" -p hullc --test reliability \
    create_start_delete_cycles_leak_nothing || status=$?
secs=$(( $(date +%s) - start ))
if [ "$status" -eq 0 ]; then
    echo "cycles: $n create/start/delete cycles leaked nothing in ${secs}s"
else
    echo "cycles: FAILED ($n cycles, exit $status, ${secs}s)"
fi
exit "$status"
