#!/usr/bin/env bash
# critest (cri-tools v1.26.1's CRI validation suite) against containerd 1.6's CRI with each given
# runtime handler, each in a fresh private stack (scripts/cri-env.sh, with critest's images built
# locally). Prints passed/failed/skipped per handler and, for hull, every spec that runc passes
# and hull does not; exits 1 if there is one.
#
#   sudo scripts/critest.sh [--results DIR] [HANDLER...]     # default handlers: runc hull
#
# Needs crictl and critest of cri-tools v1.26.1 in HULL_CRI_TOOLS (default target/cri-tools/; hull
# carries no recipe for building them: a developer builds them from a cri-tools checkout) and the debug binaries
# (cargo build -p hull-shim -p hullc), or HULL_BIN_DIR with containerd-shim-hull-v2 and hullc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=
if [[ ${1:-} == --results ]]; then results=$2; shift 2; fi
handlers=("$@")
((${#handlers[@]})) || handlers=(runc hull)
tools=${HULL_CRI_TOOLS:-$root/target/cri-tools}
bins=${HULL_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
for f in "$tools/crictl" "$tools/critest" "$bins/containerd-shim-hull-v2" "$bins/hullc"; do
  [[ -x $f ]] || { echo "critest.sh: $f missing (crictl/critest of cri-tools v1.26.1 in $tools; cargo build -p hull-shim -p hullc)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/hull-critest.XXXXXX)
results=$(realpath -m "${results:-$root/target/critest-results}")
mkdir -p "$results"
env_dir=
cleanup() {
  if [[ -n $env_dir ]]; then
    CRICTL=$tools/crictl "$root/scripts/cri-env.sh" down "$env_dir" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
exec 9>/tmp/hull-net-tests.lock
flock 9

for h in "${handlers[@]}"; do
  env_dir=$work/env-$h
  endpoint=$(CRICTL=$tools/crictl HULL_BIN_DIR=$bins CRI_ENV_CRITEST_IMAGES=1 \
    "$root/scripts/cri-env.sh" up "$env_dir")
  echo "critest: handler $h on $endpoint" >&2
  mkdir -p "$results/$h"
  set +e
  # critest runs in containerd's mount namespace: its mount propagation specs mount on "the
  # host" and look for the mount in the container, and back.
  (cd "$work" && nsenter -t "$(cat "$env_dir/containerd.pid")" -m -- "$tools/critest" --runtime-endpoint "$endpoint" --image-endpoint "$endpoint" \
    --runtime-handler "$h" --ginkgo.no-color --ginkgo.v \
    --ginkgo.junit-report "$results/$h/junit.xml" >"$results/$h/critest.log" 2>&1)
  set -e
  cp "$env_dir/containerd.log" "$results/$h/containerd.log" 2>/dev/null || true
  CRICTL=$tools/crictl "$root/scripts/cri-env.sh" down "$env_dir"
  env_dir=
  grep -E '^(Ran|FAIL!|SUCCESS!)|Passed \|' "$results/$h/critest.log" | tail -2 >&2 || true
done

# Per spec: name and outcome, from the JUnit reports.
outcomes() {
  python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    st = tc.get("status") or ("failed" if tc.find("failure") is not None else
          "skipped" if tc.find("skipped") is not None else "passed")
    print(f"{st}\t{tc.get('name')}")
EOF
}
printf '%-8s %7s %7s %8s\n' handler passed failed skipped
for h in "${handlers[@]}"; do
  outcomes "$results/$h/junit.xml" >"$results/$h/outcomes.tsv"
  o=$results/$h/outcomes.tsv
  printf '%-8s %7d %7d %8d\n' "$h" "$(grep -c '^passed' "$o")" \
    "$(grep -cE '^(failed|panicked|interrupted|timedout)' "$o")" \
    "$(grep -cE '^(skipped|pending)' "$o")"
done
rc=0
if [[ -f $results/runc/outcomes.tsv && -f $results/hull/outcomes.tsv ]]; then
  missing=$(comm -23 <(grep '^passed' "$results/runc/outcomes.tsv" | sort) \
    <(grep '^passed' "$results/hull/outcomes.tsv" | sort))
  if [[ -n $missing ]]; then
    echo "passed with runc, not with hull:"
    echo "$missing"
    rc=1
  else
    echo "hull passes every spec runc passes"
  fi
fi
echo "reports: $results"
exit $rc
