#!/usr/bin/env bash
# Sets up and runs the demo: a busybox container under hullc (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# One release build of the three programs (each dependency compiled once; several minutes on
# a fresh machine). Cargo is quiet, errors and warnings still show; a progress line instead
# of one "Compiling" line per crate.
echo "Building hull, hullc and containerd-shim-hull-v2 (release)..."
deps=${CARGO_TARGET_DIR:-target}/release/deps
start=$(date +%s)
scripts/release.sh --quiet &
build=$!
tick=0
while kill -0 "$build" 2>/dev/null; do
    # Before cargo makes the deps dir, find fails: with pipefail that would end the demo.
    n=$({ find "$deps" -maxdepth 1 -name '*.rlib' 2>/dev/null || true; } | wc -l)
    line="  $n crates built, $(($(date +%s) - start)) s"
    # A terminal gets one line rewritten in place, a log a line a minute.
    if [ -t 1 ]; then
        printf '\r%s' "$line"
    elif [ $((tick % 30)) -eq 29 ]; then
        echo "$line"
    fi
    tick=$((tick + 1))
    sleep 2
done
if [ -t 1 ]; then echo; fi
wait "$build"
echo "Built in $(($(date +%s) - start)) s."
hullc=$(realpath "${CARGO_TARGET_DIR:-target}/release/hullc")
bundle=$(mktemp -d /tmp/hull-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin"
cp /bin/busybox "$bundle/rootfs/bin/"
# busybox --list names busybox itself too: linking that would replace the binary with a loop.
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$a"
done
cd "$bundle"
"$hullc" spec
# Not a terminal, and a command that shows the container from inside.
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo hello from $(hostname); id; ls /; exit 3"]
json.dump(c, open("config.json", "w"), indent=2)
PY
set +e
"$hullc" --root /run/hullc-demo run demo
echo "container exited with $?"
