#!/usr/bin/env bash
# Sets up and runs the demo: a busybox container under hullc (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/release.sh
hullc=$PWD/target/release/hullc
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
