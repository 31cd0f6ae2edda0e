#!/usr/bin/env bash
# Issue #18: `hull build` vs `podman build` (Debian podman/buildah, runc, overlay storage in a
# private root) on the same multi-stage Dockerfile from the same busybox base image, cold (no
# cache: fresh roots each repetition) and cached (an unchanged rebuild). Runs alternate so a
# loaded machine skews both alike; prints medians and the ratios.
# Usage: bench/build.sh [HULL_BIN]   env: REPS=5
set -euo pipefail
HULL=$(realpath "${1:-target/debug/hull}")
REPS=${REPS:-5}
WORK=$(mktemp -d /var/lib/hull-bench-build.XXXXXX)
P=(podman --root "$WORK/p/root" --runroot "$WORK/p/run" --tmpdir "$WORK/p/tmp" --runtime runc
   --cgroup-manager cgroupfs --storage-driver overlay)
export CONTAINERS_CONF=$WORK/containers.conf
cleanup() { "${P[@]}" system reset --force >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
printf '[containers]\ndefault_ulimits = ["nofile=1024:1024","nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n' > "$CONTAINERS_CONF"

# Base image: busybox-static with applet links, as a docker-archive with history.
mkdir -p "$WORK/base/rootfs"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$WORK/base/rootfs/bin/"
for a in sh echo cat ls mkdir cp rm true seq gzip tar sha256sum; do ln -s busybox "$WORK/base/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$WORK/base/rootfs/etc/passwd"
tar -C "$WORK/base/rootfs" -cf "$WORK/base/layer.tar" .
D=$(sha256sum "$WORK/base/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"base"}]}' "$D" > "$WORK/base/config.json"
printf '[{"Config":"config.json","RepoTags":["bench.local/bb:1"],"Layers":["layer.tar"]}]' > "$WORK/base/manifest.json"
tar -C "$WORK/base" -cf "$WORK/base.tar" manifest.json config.json layer.tar

# Context: 200 small source files, a multi-stage Dockerfile with RUN, COPY and config steps.
CTX=$WORK/ctx
mkdir -p "$CTX/src"
for i in $(seq 1 200); do echo "file $i" > "$CTX/src/f$i.txt"; done
cat > "$CTX/Dockerfile" <<'DF'
FROM bench.local/bb:1 AS build
WORKDIR /work
COPY src/ ./src/
RUN mkdir -p /out && cat src/*.txt > /out/all.txt && for i in $(seq 1 50); do echo $i > /out/n$i; done
RUN tar -czf /out/src.tgz src
FROM bench.local/bb:1
COPY --from=build /out /opt/app
ENV APP=/opt/app
RUN ls /opt/app > /opt/app/listing
LABEL bench=yes
CMD ["cat", "/opt/app/listing"]
DF

now() { date +%s.%N; }
declare -a HC PC HW PW
for r in $(seq 1 "$REPS"); do
  rm -rf "$WORK/h"; "${P[@]}" system reset --force >/dev/null 2>&1 || true
  "$HULL" --root "$WORK/h" load -i "$WORK/base.tar" >/dev/null
  "${P[@]}" load -i "$WORK/base.tar" >/dev/null 2>&1
  t=$(now); "$HULL" --root "$WORK/h" build -q --network none -t b:1 "$CTX" >/dev/null; HC+=("$(echo "$(now) - $t" | bc)")
  t=$(now); "${P[@]}" build -q --network none -t b:1 "$CTX" >/dev/null 2>&1; PC+=("$(echo "$(now) - $t" | bc)")
  t=$(now); "$HULL" --root "$WORK/h" build -q --network none -t b:1 "$CTX" >/dev/null; HW+=("$(echo "$(now) - $t" | bc)")
  t=$(now); "${P[@]}" build -q --network none -t b:1 "$CTX" >/dev/null 2>&1; PW+=("$(echo "$(now) - $t" | bc)")
done
"$HULL" --root "$WORK/h" system reset --force >/dev/null 2>&1 || true
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
hc=$(med "${HC[@]}") pc=$(med "${PC[@]}") hw=$(med "${HW[@]}") pw=$(med "${PW[@]}")
printf 'cold:   hull %.3f s  podman %.3f s  ratio %.2f\n' "$hc" "$pc" "$(echo "$hc / $pc" | bc -l)"
printf 'cached: hull %.3f s  podman %.3f s  ratio %.2f\n' "$hw" "$pw" "$(echo "$hw / $pw" | bc -l)"
