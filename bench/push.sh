#!/usr/bin/env bash
# Issue 18: `hull push` vs `skopeo copy` of the same image to the same kind of local registry.
# One OCI layout (a busybox layer and a SIZE_MB layer of random bytes, both gzip) is loaded
# into a private hull root; each sample starts a fresh Debian docker-registry (storage on
# /dev/shm, so the registry's disk writes do not dominate) and times one push into it:
#   hull push IMG 127.0.0.1:PORT/bench:hull      (from hull's store)
#   skopeo copy oci:LAYOUT:bench docker://127.0.0.1:PORT/bench:skopeo
# Samples are interleaved (hull, skopeo, hull, ...) and medians printed with the ratio; both
# pushes must give the same manifest digest. Needs root, docker-registry, skopeo, python3.
# Usage: sudo bench/push.sh [HULL_BIN]     env: N=7 SIZE_MB=64
set -euo pipefail
HULL=${1:-target/release/hull}
N=${N:-7} SIZE_MB=${SIZE_MB:-64}
WORK=$(mktemp -d /dev/shm/hull-bench-push.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK" "$HULL" "$N" "$SIZE_MB" <<'PY'
import gzip, hashlib, io, json, os, socket, statistics, subprocess, sys, tarfile, time
work, hull, n, size_mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
layout = f"{work}/layout"
os.makedirs(f"{layout}/blobs/sha256")
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{h}", "wb").write(data)
    return h, len(data)
def layer(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        for name, data, mode in files:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode
            t.addfile(ti, io.BytesIO(data))
    raw = b.getvalue()
    return hashlib.sha256(raw).hexdigest(), gzip.compress(raw, 6, mtime=0)
layers = [layer([("bin/busybox", open("/bin/busybox", "rb").read(), 0o755)]),
          layer([("data/random", os.urandom(size_mb << 20), 0o644)])]
descs, diffs = [], []
for diff, gz in layers:
    h, s = blob(gz)
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{h}", "size": s})
    diffs.append(f"sha256:{diff}")
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/busybox", "sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
ch, cs = blob(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{ch}", "size": cs},
    "layers": descs}).encode()
mh, ms = blob(man)
open(f"{layout}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(f"{layout}/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{mh}", "size": ms,
     "annotations": {"org.opencontainers.image.ref.name": "bench",
                     "io.containerd.image.name": "bench.local/push:1"}}]}))
with tarfile.open(f"{work}/img.tar", "w") as t:
    t.add(layout, arcname=".")
root = f"{work}/root"
subprocess.run([hull, "--root", root, "load", "-q", "-i", f"{work}/img.tar"], check=True, stdout=subprocess.DEVNULL)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def registry(i):
    port = free_port(); d = f"{work}/reg{i}"; os.makedirs(d)
    open(f"{d}/config.yml", "w").write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    p = subprocess.Popen(["docker-registry", "serve", f"{d}/config.yml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close(); break
        except OSError:
            time.sleep(0.05)
    return p, port, d
def sample(kind, i):
    p, port, d = registry(f"{kind}{i}")
    try:
        if kind == "hull":
            cmd = [hull, "--root", root, "push", "-q", "bench.local/push:1", f"127.0.0.1:{port}/bench:hull"]
        else:
            cmd = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                   f"oci:{layout}:bench", f"docker://127.0.0.1:{port}/bench:skopeo"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if kind == "hull":
            got = out.stdout.split("digest: ")[1].split()[0]
            assert got == f"sha256:{mh}", (got, mh)
        return dt
    finally:
        p.kill(); p.wait()
        subprocess.run(["rm", "-rf", d])
load = lambda: open("/proc/loadavg").read().split()[0]
print(f"image: busybox + {size_mb} MiB random, gzip; {n} samples each, interleaved; load avg {load()}")
times = {"hull": [], "skopeo": []}
for i in range(n):
    for kind in (("hull", "skopeo") if i % 2 == 0 else ("skopeo", "hull")):
        times[kind].append(sample(kind, i))
h, s = statistics.median(times["hull"]), statistics.median(times["skopeo"])
for k, v in times.items():
    print(f"{k:7} median {statistics.median(v):.3f}s  min {min(v):.3f}s  max {max(v):.3f}s")
print(f"hull/skopeo = {h / s:.2f}  (load avg after: {load()})")
PY
