#!/bin/sh
# Where hullc's time goes: syscall counts and timelines of run, create, start,
# delete and exec (strace), CPU counters (perf stat, when installed).
#   sudo bench/profile.sh [OUTDIR]          # default /tmp/hullc-profile
#   sudo HULLC=/path/to/hullc bench/profile.sh
# Writes OUTDIR/<cmd>.summary (strace -f -c), OUTDIR/<cmd>.trace
# (strace -f -tt -T), OUTDIR/<cmd>.perf (perf stat -r 20), OUTDIR/run.offcpu
# (where `run` blocks: perf sched_switch stacks, bench/offcpu.py), and prints
# the summaries. Not a benchmark: strace slows every syscall down.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench/profile.sh: needs root" >&2; exit 1; }
if [ -z "${HULLC:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
    scripts/release.sh --quiet
    HULLC="$CARGO_TARGET_DIR/release/hullc"
fi
OUT=${1:-/tmp/hullc-profile}
mkdir -p "$OUT"
W=$(mktemp -d /dev/shm/hull-profile.XXXXXX 2>/dev/null || mktemp -d /tmp/hull-profile.XXXXXX)
ROOT=$W/root
trap 'for c in $("$HULLC" --root "$ROOT" list -q 2>/dev/null); do "$HULLC" --root "$ROOT" delete --force "$c"; done; rm -rf "$W"' EXIT INT TERM

mkdir -p "$W/rootfs/bin" "$W/rootfs/proc" "$W/rootfs/sys" "$W/rootfs/dev" "$W/rootfs/tmp" "$W/bundle" "$W/sleep"
cp /bin/busybox "$W/rootfs/bin/"
for a in true sh sleep; do ln -s busybox "$W/rootfs/bin/$a"; done
(cd "$W/bundle" && runc spec)
python3 - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
c = json.load(open(f"{w}/bundle/config.json"))
c["root"]["path"] = f"{w}/rootfs"
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
# hullc refuses ambient caps that are not inheritable (runc only warns)
c["process"]["capabilities"].pop("ambient", None)
json.dump(c, open(f"{w}/bundle/config.json", "w"))
c["process"]["args"] = ["/bin/sleep", "86400"]
json.dump(c, open(f"{w}/sleep/config.json", "w"))
EOF

H="$HULLC --root $ROOT"
$H run -b "$W/bundle" warm >/dev/null
PREP=':'
strace -f -c -o "$OUT/run.summary" $H run -b "$W/bundle" r1 >/dev/null
strace -f -tt -T -o "$OUT/run.trace" $H run -b "$W/bundle" r2 >/dev/null
# strace -f on create follows init, which waits for `start`: start it from
# here once create has returned (the create figures include init's wait).
created() { $H state "$1" 2>/dev/null | grep -q '"status": "created"'; }
csd() { # id, strace output options for create/start/delete
    id=$1; shift
    strace -f "$@" -o "$OUT/create.$S" $H create -b "$W/bundle" "$id" >/dev/null &
    sp=$!
    i=0
    until created "$id"; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "create $id: timed out" >&2; kill $sp; exit 1; }
        sleep 0.05
    done
    strace -f "$@" -o "$OUT/start.$S" $H start "$id" >/dev/null
    wait $sp
    strace -f "$@" -o "$OUT/delete.$S" $H delete --force "$id" >/dev/null
}
S=summary csd c1 -c
S=trace csd c2 -tt -T
$H run -d -b "$W/sleep" sl >/dev/null
strace -f -c -o "$OUT/exec.summary" $H exec sl /bin/true >/dev/null
strace -f -tt -T -o "$OUT/exec.trace" $H exec sl /bin/true >/dev/null
if command -v perf >/dev/null 2>&1; then
    perf stat -r 20 -o "$OUT/exec.perf" $H exec sl /bin/true >/dev/null 2>&1 || true
    cat > "$W/loop.sh" <<EOF
#!/bin/sh
i=\$(cat $W/i 2>/dev/null || echo 0); echo \$((i + 1)) > $W/i
exec $H run -b $W/bundle p\$i
EOF
    chmod +x "$W/loop.sh"
    perf stat -r 20 -o "$OUT/run.perf" "$W/loop.sh" >/dev/null 2>&1 || true
fi
$H delete --force sl
if command -v perf >/dev/null 2>&1; then
    # Off-CPU: where run blocks (RCU grace periods, cgroup attach, I/O).
    printf '#!/bin/sh\nfor i in $(seq 1 30); do %s run -b %s off$i >/dev/null || exit 1; done\n' \
        "$H" "$W/bundle" > "$W/runs.sh"
    chmod +x "$W/runs.sh"
    perf record -q -a -g -e sched:sched_switch -o "$W/off.data" "$W/runs.sh" >/dev/null 2>&1 &&
        perf script -i "$W/off.data" -F comm,pid,tid,time,event,trace,ip,sym > "$W/off.txt" 2>/dev/null &&
        python3 bench/offcpu.py "$W/off.txt" "^($(basename "$HULLC" | cut -c1-15)|true|busybox)" 30 \
            > "$OUT/run.offcpu"
fi
for f in run create start delete exec; do
    echo "== $f: $(grep -c . "$OUT/$f.trace") trace lines"
    sed -n '1,25p' "$OUT/$f.summary"
done
[ -f "$OUT/run.offcpu" ] && { echo "== run: off-CPU (30 runs)"; cat "$OUT/run.offcpu"; }
echo "traces: $OUT/*.trace"
