#!/usr/bin/env bash
# Issue #24: `hull rmi` of an image with many files vs `hull load` of it.
# Builds an OCI archive with one uncompressed layer of FILES tiny files across
# DIRS directories, then loads and removes it REPS times (interleaved, so a
# loaded machine skews both alike) under a private --root next to /var/lib.
# Usage: bench/rmi.sh [HULL_BIN [OTHER_HULL_BIN]]   env: FILES=200000 DIRS=2000 REPS=3
# With two binaries each repetition runs both, one after the other.
set -euo pipefail
BINS=("${@:-target/debug/hull}")
FILES=${FILES:-200000} DIRS=${DIRS:-2000} REPS=${REPS:-3}
WORK=$(mktemp -d /var/lib/hull-bench-rmi.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/img.tar" "$FILES" "$DIRS" <<'PY'
import hashlib, io, json, sys, tarfile
out, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    for d in range(dirs):
        ti = tarfile.TarInfo(f"d{d // 50}/e{d}"); ti.type = tarfile.DIRTYPE; ti.mode = 0o755
        if d % 50 == 0:
            p = tarfile.TarInfo(f"d{d // 50}"); p.type = tarfile.DIRTYPE; p.mode = 0o755
            t.addfile(p)
        t.addfile(ti)
    for f in range(files):
        d = f % dirs
        ti = tarfile.TarInfo(f"d{d // 50}/e{d}/f{f}"); ti.size = 1; ti.mode = 0o644
        t.addfile(ti, io.BytesIO(b"x"))
blobs = {}
def blob(data):
    h = hashlib.sha256(data).hexdigest(); blobs[h] = data
    return h
lt = layer.getvalue(); lh = blob(lt)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": [f"sha256:{lh}"]}}).encode()
ch = blob(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{ch}", "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": f"sha256:{lh}", "size": len(lt)}]}).encode()
mh = blob(man)
index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": f"sha256:{mh}", "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "bench/rmi:latest"}}]}).encode()
with tarfile.open(out, "w") as t:
    for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + \
            [(f"blobs/sha256/{h}", d) for h, d in blobs.items()]:
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
PY
now() { date +%s.%N; }
for r in $(seq "$REPS"); do
  for HULL in "${BINS[@]}"; do
    t0=$(now); "$HULL" --root "$WORK/root" load -q -i "$WORK/img.tar" >/dev/null
    t1=$(now); "$HULL" --root "$WORK/root" rmi bench/rmi:latest >/dev/null
    t2=$(now)
    left=$(find "$WORK/root/snapshots" -mindepth 1 | wc -l)
    printf 'rep %s %s: load %.2fs  rmi %.2fs  (left in snapshots: %s; load avg %s)\n' "$r" "$HULL" \
        "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$left" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
