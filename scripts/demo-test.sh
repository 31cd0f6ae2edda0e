#!/usr/bin/env bash
# Runs the README's demo command as a newcomer does on a fresh clone, and checks it (issue 25):
# the container's output and exit status, a short log, and that the release build compiled each
# dependency once (it used to build the whole tree twice: once for the three programs, again
# for hullc's static link). Part of scripts/test.sh; the time it prints is the demo's time on
# a machine whose target/release starts empty, as CI's does.
set -euo pipefail
cd "$(dirname "$0")/.."
msgs=$(mktemp /tmp/hull-demo-msgs.XXXXXX)
out=$(mktemp /tmp/hull-demo-out.XXXXXX)
trap 'rm -f "$msgs" "$out"' EXIT
start=$(date +%s)
HULL_BUILD_MESSAGES=$msgs scripts/demo.sh >"$out" 2>&1 || true
took=$(($(date +%s) - start))
cat "$out"
fail() {
    echo "demo-test: FAIL: $*" >&2
    exit 1
}
grep -q '^hello from ' "$out" || fail "no 'hello from' line from inside the container"
grep -qx 'container exited with 3' "$out" || fail "the container's exit status 3 was not reported"
lines=$(wc -l <"$out")
# A newcomer reads this: deps.sh's notes, a progress line a minute, the container's output.
[ "$lines" -le 40 ] || fail "$lines lines of output (at most 40: no per-crate 'Compiling' lines)"
! grep -q '^ *Compiling ' "$out" || fail "cargo's per-crate 'Compiling' lines are shown"
python3 - "$msgs" <<'PY' || fail "a dependency was compiled more than once"
import json, sys, collections
units = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or m.get("fresh"):
        continue
    t = m["target"]
    if "custom-build" in t["kind"]:
        continue  # a build script's compile and run are two units by design
    # Build dependencies and proc-macros are compiled for the host with the release profile's
    # build-override (opt-level 0): a crate used both ways is two units by design, told apart
    # by the profile. A second cargo invocation repeats units with the same profile.
    profile = json.dumps(m["profile"], sort_keys=True)
    units[(m["package_id"], t["name"], tuple(t["kind"]), profile)].append(m["features"])
twice = {k: v for k, v in units.items() if len(v) > 1}
for (pkg, name, kind, _), feats in sorted(twice.items()):
    print(f"compiled {len(feats)} times: {pkg} {name} {list(kind)}: features {feats}", file=sys.stderr)
print(f"demo-test: {len(units)} units compiled, {len(twice)} of them more than once")
sys.exit(1 if twice else 0)
PY
echo "demo-test: ok ($lines lines of output, ${took} s including the release build)"
