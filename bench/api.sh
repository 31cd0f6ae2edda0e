#!/usr/bin/env bash
# Docker clients through `hull system service` against a private dockerd (Debian docker.io 20.10,
# runc, --bridge=none), in the same run, interleaved:
#  - `docker run --rm IMG true` (the docker 20.10 CLI at /usr/bin/docker), wall time per run;
#    docker's default network mode is `bridge`: dockerd --bridge=none gives its containers no
#    network at all, while hull attaches them to its bridge (veth, lease, one nft run), so the
#    same run with `--network none` on both sides is timed too, the like-for-like figure;
#  - `docker-compose up -d` + `down -v` of a three-service project (a published port, the
#    project network, a named volume).
# Goals (issue 19): hull at most 0.3x dockerd for run, 0.5x for compose.
#
#   sudo bench/api.sh [REPS]       # default 5
#
# hull, hullc and the shim from HULL_BIN_DIR (default target/release, else target/debug: the
# figures say which). Private roots, sockets and cgroups; everything removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reps=${1:-5}
bins=${HULL_BIN_DIR:-}
if [[ -z $bins ]]; then
  bins=$root/target/release
  [[ -x $bins/hull ]] || bins=$root/target/debug
fi
for b in hull hullc containerd-shim-hull-v2; do
  [[ -x $bins/$b ]] || { echo "bench/api.sh: $bins/$b missing (cargo build)" >&2; exit 2; }
done
DOCKER=/usr/bin/docker
DOCKERD=$(command -v dockerd || echo /usr/sbin/dockerd)
command -v docker-compose >/dev/null || { echo "bench/api.sh: docker-compose missing (apt-get install docker-compose)" >&2; exit 2; }
work=$(mktemp -d /tmp/hull-bench-api.XXXXXX)
hull_pid='' dockerd_pid='' cg_parent=''
cleanup() {
  set +e
  DOCKER_HOST=unix://$work/hull.sock docker-compose -p hb -f "$work/proj/docker-compose.yml" down -v -t 0 >/dev/null 2>&1
  DOCKER_HOST=unix://$work/docker.sock docker-compose -p hb -f "$work/proj/docker-compose.yml" down -v -t 0 >/dev/null 2>&1
  [[ -n $hull_pid ]] && kill "$hull_pid" && wait "$hull_pid"
  [[ -n $dockerd_pid ]] && kill "$dockerd_pid" && wait "$dockerd_pid"
  "$bins/hull" --root "$work/hull" system reset --force >/dev/null 2>&1
  umount -R "$work/docker" "$work/dexec" 2>/dev/null
  [[ -n ${cg_parent:-} ]] && find /sys/fs/cgroup -depth -type d -path "*/$cg_parent*" -exec rmdir {} + 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
exec 9>/tmp/hull-net-tests.lock
flock 9

# One busybox-static rootfs imported into both engines under one name.
mkdir -p "$work/rfs/bin" "$work/proj"
cp /bin/busybox "$work/rfs/bin/"
for a in sh true sleep echo cat; do ln -s busybox "$work/rfs/bin/$a"; done
tar -C "$work/rfs" -cf "$work/rfs.tar" .
img=hull-bench/bb:1

# Containers' cgroups under a parent of the bench's own (relative: below the service's cgroup),
# removed at the end, instead of hull's default /hull, which outlives the run.
cg_parent=hull-bench-api-$$
PATH=$bins:$PATH HULL_CGROUP_PARENT=$cg_parent "$bins/hull" --root "$work/hull" system service --time 0 "unix://$work/hull.sock" \
  >"$work/hull.log" 2>&1 &
hull_pid=$!
"$DOCKERD" --bridge=none --iptables=false --ip-masq=false --data-root "$work/docker" \
  --exec-root "$work/dexec" -H "unix://$work/docker.sock" --pidfile "$work/docker.pid" \
  >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for s in hull docker; do
  for _ in $(seq 200); do [[ -S $work/$s.sock ]] && break; sleep 0.1; done
  [[ -S $work/$s.sock ]] || { echo "bench/api.sh: $s did not come up:" >&2; tail "$work/$s"*.log >&2; exit 1; }
done
for _ in $(seq 100); do DOCKER_HOST=unix://$work/docker.sock $DOCKER version >/dev/null 2>&1 && break; sleep 0.2; done
d() { local s=$1; shift; DOCKER_HOST=unix://$work/$s.sock DOCKER_CONFIG=$work "$DOCKER" "$@"; }
"$bins/hull" --root "$work/hull" import -c 'ENV PATH=/bin' "$work/rfs.tar" "$img" >/dev/null
d docker import -c 'ENV PATH=/bin' "$work/rfs.tar" "$img" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/proj/docker-compose.yml" <<YML
version: "3.7"
services:
  web:
    image: $img
    command: ["sh", "-c", "exec busybox httpd -f -p 80"]
    ports: ["127.0.0.1:$port:80"]
    volumes: ["data:/data"]
  client:
    image: $img
    depends_on: [web]
    command: ["sleep", "600"]
  worker:
    image: $img
    depends_on: [web]
    environment: {K: v}
    command: ["sleep", "600"]
volumes:
  data: {}
YML
# The same project with services that exit on SIGTERM: as PID 1, httpd and sleep ignore it, so
# `down -t 1` waits the full second for two rounds of stops on both engines; this variant shows
# the engines' own cost without that fixed wait.
mkdir -p "$work/proj2"
sed -e 's|\["sh", "-c", "exec busybox httpd -f -p 80"\]|["sh", "-c", "trap \x27exit 0\x27 TERM; busybox httpd -f -p 80 \& wait"]|' \
  -e 's|\["sleep", "600"\]|["sh", "-c", "trap \x27exit 0\x27 TERM; sleep 600 \& wait"]|' \
  "$work/proj/docker-compose.yml" >"$work/proj2/docker-compose.yml"
grep -q trap "$work/proj2/docker-compose.yml" || { echo "bench/api.sh: proj2 not made" >&2; exit 1; }
comp() { local s=$1; shift; DOCKER_HOST=unix://$work/$s.sock DOCKER_CONFIG=$work \
  docker-compose --ansi never -p hb -f "$work/${proj:-proj}/docker-compose.yml" "$@" >/dev/null 2>&1; }
now() { date +%s.%N; }
declare -A run_t none_t compose_t term_t
engines=(docker hull)
for s in "${engines[@]}"; do d "$s" run --rm "$img" true; done # warm-up
for ((r = 0; r < reps; r++)); do
  for s in "${engines[@]}"; do
    t0=$(now); d "$s" run --rm "$img" true; t1=$(now)
    run_t[$s]="${run_t[$s]:-} $(echo "$t1 - $t0" | bc -l)"
    t0=$(now); d "$s" run --rm --network none "$img" true; t1=$(now)
    none_t[$s]="${none_t[$s]:-} $(echo "$t1 - $t0" | bc -l)"
    t0=$(now); comp "$s" up -d; comp "$s" down -v -t 1; t1=$(now)
    compose_t[$s]="${compose_t[$s]:-} $(echo "$t1 - $t0" | bc -l)"
    t0=$(now); proj=proj2 comp "$s" up -d; proj=proj2 comp "$s" down -v -t 1; t1=$(now)
    term_t[$s]="${term_t[$s]:-} $(echo "$t1 - $t0" | bc -l)"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
build=$(basename "$bins")
echo "# docker clients through hull system service ($build build) vs dockerd $($DOCKERD --version | awk '{print $3}' | tr -d ,) (runc, --bridge=none); $reps reps, medians, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-32s %12s %12s %10s %6s\n' what dockerd hull hull/dockerd goal
for k in run none compose term; do
  if [[ $k == run ]]; then
    dk=$(echo "${run_t[docker]}" | median); hk=$(echo "${run_t[hull]}" | median); goal=0.3
    what='docker run --rm IMG true'
  elif [[ $k == none ]]; then
    dk=$(echo "${none_t[docker]}" | median); hk=$(echo "${none_t[hull]}" | median); goal=0.3
    what='  ... --network none'
  elif [[ $k == term ]]; then
    dk=$(echo "${term_t[docker]}" | median); hk=$(echo "${term_t[hull]}" | median); goal=0.5
    what='  ... services exit on SIGTERM'
  else
    dk=$(echo "${compose_t[docker]}" | median); hk=$(echo "${compose_t[hull]}" | median); goal=0.5
    what='compose up -d + down -v (3 svc)'
  fi
  printf '%-32s %9.0f ms %9.0f ms %10.2f %6s\n' "$what" "$(echo "$dk * 1000" | bc -l)" \
    "$(echo "$hk * 1000" | bc -l)" "$(echo "$hk / $dk" | bc -l)" "$goal"
done
