#!/usr/bin/env bash
# Pods through containerd 1.6's CRI (issue 23), hull's handler against runc's in the same run and
# the same private stack (scripts/cri-env.sh):
#  - pod start: runp + create + start of one busybox `sleep` container, wall time per pod;
#  - teardown: stopp + rmp;
#  - shim memory: the summed PSS (/proc/PID/smaps_rollup) of the handler's shim processes while
#    one pod with 1, 2 or 5 running containers exists, measured once the shims are idle.
#
#   sudo bench/cri.sh [REPS]       # default 10
#
# Binaries: HULL_BIN_DIR (containerd-shim-hull-v2 + hullc; default target/release, built with
# scripts/release.sh when missing); crictl in HULL_CRI_TOOLS (default target/cri-tools; built by the
# developer from cri-tools v1.26.1, hull carries no recipe for it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${1:-10}
tools=${HULL_CRI_TOOLS:-$root/target/cri-tools}
bins=${HULL_BIN_DIR:-$root/target/release}
if [[ ! -x $bins/containerd-shim-hull-v2 || ! -x $bins/hullc ]]; then
  "$root/scripts/release.sh" >&2
fi
[[ -x $tools/crictl ]] || { echo "bench/cri.sh: $tools/crictl missing (cri-tools v1.26.1; HULL_CRI_TOOLS)" >&2; exit 2; }
CRICTL=$tools/crictl
work=$(mktemp -d /tmp/hull-bench-cri.XXXXXX)
env_dir=$work/env
cg=/hull-bench-cri-$$
cleanup() {
  CRICTL=$CRICTL CRI_CGROUP_PARENT=$cg "$root/scripts/cri-env.sh" down "$env_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
exec 9>/tmp/hull-net-tests.lock
flock 9
ep=$(CRICTL=$CRICTL HULL_BIN_DIR=$bins CRI_CGROUP_PARENT=$cg "$root/scripts/cri-env.sh" up "$env_dir")
c() { "$CRICTL" --timeout 60s -r "$ep" -i "$ep" "$@"; }
c pull docker.io/library/busybox:latest >/dev/null
mntns=$(cat "$env_dir/mntns")

pod_json() { # name uid
  printf '{"metadata":{"name":"%s","namespace":"bench","uid":"%s"},"linux":{"cgroup_parent":"%s"}}' \
    "$1" "$2" "$cg" >"$work/pod-$2.json"
  echo "$work/pod-$2.json"
}
ctr_json() { # name
  printf '{"metadata":{"name":"%s"},"image":{"image":"docker.io/library/busybox:latest"},"command":["sleep","100000"],"linux":{}}' \
    "$1" >"$work/ctr-$1.json"
  echo "$work/ctr-$1.json"
}
now() { date +%s.%N; }

# pod HANDLER UID NCTR: runp + NCTR × (create + start); prints the pod id.
pod() {
  local h=$1 uid=$2 n=$3 p id i
  p=$(pod_json "pod-$uid" "$uid")
  id=$(c runp --runtime "$h" "$p")
  for ((i = 0; i < n; i++)); do
    c start "$(c create "$id" "$(ctr_json "c$i")" "$p")" >/dev/null
  done
  echo "$id"
}

shim_pss_kib() { # HANDLER-shim-name: summed Pss of those shims in our namespace
  local name=$1 total=0 p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$mntns" ]] || continue
    [[ $(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -1) == *"$name" ]] || continue
    total=$((total + $(awk '/^Pss:/ {print $2}' "$p/smaps_rollup")))
  done
  echo "$total"
}
shim_count() {
  local name=$1 n=0 p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$mntns" ]] || continue
    [[ $(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -1) == *"$name" ]] && n=$((n + 1))
  done
  echo "$n"
}

declare -A shim=([hull]=containerd-shim-hull-v2 [runc]=containerd-shim-runc-v2)
declare -A start_s stop_s
handlers=(runc hull)
for h in "${handlers[@]}"; do # warm-up: images unpacked, pause image pulled
  c rmp -f "$(pod "$h" "warm-$h" 1)" >/dev/null
done
for ((r = 0; r < reps; r++)); do
  for h in "${handlers[@]}"; do
    t0=$(now)
    id=$(pod "$h" "$h-$r" 1)
    t1=$(now)
    c stopp "$id" >/dev/null
    c rmp "$id" >/dev/null
    t2=$(now)
    start_s[$h]=$(echo "${start_s[$h]:-0} + $t1 - $t0" | bc -l)
    stop_s[$h]=$(echo "${stop_s[$h]:-0} + $t2 - $t1" | bc -l)
  done
done

echo "# CRI pods, $reps repetitions each, containerd $(containerd --version | awk '{print $3}'), $(nproc) CPUs"
printf '%-6s %22s %18s\n' handler 'start (runp+create+start)' 'teardown (stopp+rmp)'
for h in "${handlers[@]}"; do
  printf '%-6s %22.0f ms %15.0f ms\n' "$h" "$(echo "${start_s[$h]} * 1000 / $reps" | bc -l)" \
    "$(echo "${stop_s[$h]} * 1000 / $reps" | bc -l)"
done
printf 'start ratio runc/hull: %.2f   teardown ratio runc/hull: %.2f\n' \
  "$(echo "${start_s[runc]} / ${start_s[hull]}" | bc -l)" "$(echo "${stop_s[runc]} / ${stop_s[hull]}" | bc -l)"

echo
printf '%-6s %12s %8s %16s\n' handler containers shims 'shim PSS (KiB)'
for h in "${handlers[@]}"; do
  for n in 1 2 5; do
    id=$(pod "$h" "$h-mem-$n" "$n")
    sleep 3 # idle: hull's shim trims at its first idle tick (1 s)
    printf '%-6s %12d %8d %16d\n' "$h" "$n" "$(shim_count "${shim[$h]}")" "$(shim_pss_kib "${shim[$h]}")"
    c stopp "$id" >/dev/null
    c rmp "$id" >/dev/null
  done
done
