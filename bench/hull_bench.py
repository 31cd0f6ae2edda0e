#!/usr/bin/env python3
"""hull vs podman (and containerd) benchmark, issue 10. Start it with bench/hull.sh.

Two parts, on one busybox image loaded into every engine from the same OCI archive:

  run    `hull run --rm IMG true` against `podman --runtime runc run --rm IMG true`,
         interleaved sample by sample in a rotating order, medians and ratios; once with
         `--network none` and once with each engine's default network (`--network bridge`
         for hull, podman's default netavark/CNI bridge) unless --no-bridge.
  scale  start S detached `sleep` containers one after the other with each engine, report
         the time and the memory of the per-container monitors: hull's
         containerd-shim-hull-v2, podman's conmon, containerd's Go runc shim (when
         containerd is installed). Memory is the sum of RSS and of PSS
         (/proc/PID/smaps_rollup) over those processes: RSS counts the shared binary once per
         process, PSS splits it.

Every engine gets a private root in a scratch dir, its cgroups under this process's own
cgroup, and everything is removed at the end (also on errors and Ctrl-C).
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

IMAGE = "localhost/hullbench:latest"
TARGET_VS_PODMAN = 0.4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def sh(args, env=None, check=True, timeout=300):
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise Failed(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-800:]}")
    return r


# ---------------------------------------------------------------- image

def busybox_archive(work):
    """An OCI image archive whose one layer is busybox-static with a few applets."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ["bin", "dev", "etc", "proc", "sys", "tmp"]:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        with open(busybox, "rb") as f:
            data = f.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size, ti.mode = len(data), 0o755
        t.addfile(ti, io.BytesIO(data))
        for a in ["sh", "true", "sleep", "echo", "cat"]:
            ti = tarfile.TarInfo(f"bin/{a}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
    blobs = {}

    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        blobs[h] = data
        return {"digest": f"sha256:{h}", "size": len(data)}

    lay = blob(layer.getvalue())
    cfg = blob(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [lay["digest"]]},
    }).encode())
    man = blob(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **lay}],
    }).encode())
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
        "annotations": {"org.opencontainers.image.ref.name": IMAGE,
                        "io.containerd.image.name": IMAGE},
    }]}).encode()
    path = os.path.join(work, "busybox.tar")
    with tarfile.open(path, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for h, data in blobs.items():
            add(f"blobs/sha256/{h}", data)
    return path


# ---------------------------------------------------------------- cgroups

def own_cgroup():
    """This process's cgroup path in the hierarchy where it is deepest (v1 memory here)."""
    best = "/"
    with open("/proc/self/cgroup") as f:
        for line in f:
            path = line.rstrip("\n").split(":", 2)[2]
            if len(path) > len(best):
                best = path
    return best


def cgroup_trees(tag):
    """The cgroup dirs of this run: every dir named `tag`* and what lies under it."""
    out = set()
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in list(dirs):
            if d.startswith(tag):
                for r2, d2, _ in os.walk(os.path.join(root, d)):
                    out.update(os.path.join(r2, x) for x in d2)
                out.add(os.path.join(root, d))
                dirs.remove(d)
    return out


def ancestors_missing(parent):
    """The dirs on the way to `parent` that do not exist yet in each hierarchy (an engine
    given an absolute cgroup parent creates them in every v1 hierarchy)."""
    missing = []
    for h in os.listdir("/sys/fs/cgroup"):
        path = os.path.join("/sys/fs/cgroup", h)
        for part in parent.strip("/").split("/"):
            path = os.path.join(path, part)
            if not os.path.isdir(path):
                missing.append(path)
    return missing


def remove_cgroups(tag, created):
    """rmdir, deepest first, this run's (empty) cgroup dirs; a busy one is reported."""
    for d in sorted(cgroup_trees(tag) | set(created), key=len, reverse=True):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            log(f"bench: cgroup {d} left: {e.strerror}")


# ---------------------------------------------------------------- engines

class Hull:
    name = "hull"

    def __init__(self, work, hull, tag):
        # Short: the shim socket lives under the root (sun_path holds 108 bytes).
        self.root = os.path.join(work, "h")
        self.bin = hull
        self.env = dict(os.environ, HULL_CGROUP_PARENT=f"{tag}-hull")

    def cmd(self, *args):
        return [self.bin, "--root", self.root, *args]

    def load(self, archive):
        sh(self.cmd("load", "-i", archive), env=self.env)

    def run_args(self, net):
        return self.cmd("run", "--rm", "--network", net, IMAGE, "true")

    def start_detached(self, i, net):
        sh(self.cmd("run", "-d", "--network", net, "--name", f"scale{i}", IMAGE,
                    "sleep", "3600"), env=self.env)

    def monitors(self):
        # The shim's socket is under /run/hull/s; its working directory is the container's.
        return pids_named("containerd-shim-hull-v2", self.root, cwd=True)

    def clean(self):
        if os.path.isdir(self.root):
            r = sh(self.cmd("ps", "-a", "-q"), env=self.env, check=False)
            ids = r.stdout.split()
            for i in range(0, len(ids), 50):
                sh(self.cmd("rm", "-f", *ids[i:i + 50]), env=self.env, check=False)
            sh(self.cmd("system", "reset", "-f"), env=self.env, check=False)
            sh(self.cmd("rmi", "-f", IMAGE), env=self.env, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class Podman:
    name = "podman"

    def __init__(self, work, parent):
        self.dir = os.path.join(work, "podman")
        os.makedirs(self.dir)
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            # This host needs hard ulimits in containers.conf (see the developers' guide).
            f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024","nproc=1024:1024"]\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.parent = f"{parent}-podman"
        self.base = ["podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/runroot",
                     "--tmpdir", f"{self.dir}/tmp", "--runtime", "runc",
                     "--cgroup-manager", "cgroupfs", "--storage-driver", "overlay"]

    def cmd(self, *args):
        return [*self.base, *args]

    def load(self, archive):
        sh(self.cmd("load", "-i", archive), env=self.env)

    def run_args(self, net):
        return self.cmd("run", "--rm", "--cgroup-parent", self.parent, "--network", net,
                        IMAGE, "true")

    def start_detached(self, i, net):
        sh(self.cmd("run", "-d", "--cgroup-parent", self.parent, "--network", net,
                    "--name", f"scale{i}", IMAGE, "sleep", "3600"), env=self.env)

    def monitors(self):
        return pids_named("conmon", self.dir)

    def clean(self):
        if os.path.isdir(self.dir):
            sh(self.cmd("rm", "-a", "-f", "-t", "0"), env=self.env, check=False)
            sh(self.cmd("rmi", "-a", "-f"), env=self.env, check=False)
            sh(self.cmd("system", "reset", "-f"), env=self.env, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Containerd:
    """A private containerd (root, state, sockets in the scratch dir) with the Go runc shim."""
    name = "containerd"

    def __init__(self, work, parent):
        self.dir = os.path.join(work, "containerd")
        os.makedirs(self.dir)
        self.sock = f"{self.dir}/c.sock"
        self.ns = f"hullbench{os.getpid()}"
        self.parent = f"{parent}-containerd"
        with open(f"{self.dir}/config.toml", "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n')
        self.logf = open(f"{self.dir}/containerd.log", "w")
        self.proc = subprocess.Popen(["containerd", "--config", f"{self.dir}/config.toml"],
                                     stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 20
        while sh(self.cmd("version"), check=False).returncode != 0:
            if time.time() > deadline:
                raise Failed("containerd did not start")
            time.sleep(0.1)

    def cmd(self, *args):
        return ["ctr", "-a", self.sock, "-n", self.ns, *args]

    def load(self, archive):
        sh(self.cmd("images", "import", archive))

    def start_detached(self, i, net):
        sh(self.cmd("run", "-d", "--cgroup", f"{self.parent}/scale{i}", IMAGE, f"scale{i}",
                    "sleep", "3600"))

    def monitors(self):
        return pids_named("containerd-shim-runc-v2", self.ns)

    def clean(self):
        r = sh(self.cmd("task", "ls", "-q"), check=False)
        for t in r.stdout.split():
            sh(self.cmd("task", "kill", "-s", "KILL", t), check=False)
        for t in r.stdout.split():
            for _ in range(50):
                if sh(self.cmd("task", "rm", "-f", t), check=False).returncode == 0:
                    break
                time.sleep(0.1)
        r = sh(self.cmd("containers", "ls", "-q"), check=False)
        ids = r.stdout.split()
        if ids:
            sh(self.cmd("containers", "rm", *ids), check=False)
        sh(self.cmd("images", "rm", IMAGE), check=False)
        self.proc.terminate()
        self.proc.wait()
        self.logf.close()
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(f"/run/containerd/io.containerd.runtime.v2.task/{self.ns}",
                      ignore_errors=True)


def nft_tables():
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return set(r.stdout.splitlines()) if r.returncode == 0 else set()


def remove_netavark_tables(before):
    """podman's netavark leaves its iptables-nft chains (NETAVARK-*) in `ip nat` and
    `ip filter` after its last container; remove such tables if this run created them."""
    for t in sorted(nft_tables() - before):
        fam_name = t.split()[1:]  # "table ip nat" -> ["ip", "nat"]
        r = subprocess.run(["nft", "list", "table", *fam_name], capture_output=True, text=True)
        if "NETAVARK" in r.stdout:
            subprocess.run(["nft", "delete", "table", *fam_name], capture_output=True)


def unmount_under(d):
    with open("/proc/self/mountinfo") as f:
        targets = [l.split(" ")[4] for l in f if l.split(" ")[4].startswith(d)]
    for t in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", t], capture_output=True)


def pids_named(comm, needle, cwd=False):
    """PIDs whose /proc/PID/comm starts with `comm` (15-char kernel limit) and whose
    command line (or, with `cwd`, working directory) mentions `needle` (the engine's
    private root)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                c = f.read().strip()
            if cwd:
                line = os.readlink(f"/proc/{p}/cwd")
            else:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith(c) and needle in line:
            out.append(int(p))
    return out


def memory_kib(pids):
    """(sum of RSS, sum of PSS) in KiB over `pids`, from smaps_rollup."""
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "Rss":
                        rss += int(v.split()[0])
                    elif k == "Pss":
                        pss += int(v.split()[0])
        except OSError:
            pass
    return rss, pss


# ---------------------------------------------------------------- measurements

def timed(args, env):
    t = time.perf_counter()
    r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    ms = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise Failed(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-800:]}")
    return ms


def bench_run(engines, nets, n):
    """{(engine, net): [ms, ...]} with samples interleaved in a rotating order."""
    samples = {}
    for i in range(n):
        order = engines[i % len(engines):] + engines[:i % len(engines)]
        for e in order:
            net = nets[e.name]
            samples.setdefault(e.name, []).append(timed(e.run_args(net), e.env))
    return samples


def bench_scale(engine, s, net):
    t = time.perf_counter()
    for i in range(s):
        engine.start_detached(i, net)
    secs = time.perf_counter() - t
    time.sleep(1)  # let every monitor settle after its last request
    pids = engine.monitors()
    rss, pss = memory_kib(pids)
    return {"seconds": secs, "monitors": len(pids), "rss_kib": rss, "pss_kib": pss}


def fmt_ms(v):
    return f"{v:.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hull", required=True)
    ap.add_argument("-n", type=int, default=30, help="samples per engine and network mode")
    ap.add_argument("--scale", type=int, default=100, help="detached containers per engine")
    ap.add_argument("--no-bridge", action="store_true", help="only --network none")
    ap.add_argument("--skip", default="", help="comma list: run,scale,containerd")
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    if os.geteuid() != 0:
        sys.exit("hull_bench: needs root")
    for b in ["podman", "conmon", "runc"]:
        if not shutil.which(b):
            sys.exit(f"hull_bench: needs {b} (apt-get install podman conmon runc)")

    work = tempfile.mkdtemp(prefix="hb-", dir="/tmp")
    own = own_cgroup()
    tag = f"hullbench{os.getpid()}"
    # hull takes a parent relative to its caller's cgroup; podman and ctr an absolute one, so
    # they get this process's own (deepest) cgroup; the dirs that creates elsewhere go at the end.
    created = ancestors_missing(own)
    tables = nft_tables()
    engines = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results = {"load_before": os.getloadavg()[0]}
    try:
        archive = busybox_archive(work)
        hull = Hull(work, a.hull, tag)
        podman = Podman(work, f"{own.rstrip('/')}/{tag}")
        engines = [hull, podman]
        for e in engines:
            e.load(archive)
        if "run" not in skip:
            modes = [("none", {"hull": "none", "podman": "none"})]
            if not a.no_bridge:
                modes.append(("bridge", {"hull": "bridge", "podman": "bridge"}))
            for mode, nets in modes:
                for e in engines:  # warm-up: page cache, first network setup
                    timed(e.run_args(nets[e.name]), e.env)
                log(f"run --rm true, --network {mode}: {a.n} samples per engine ...")
                s = bench_run(engines, nets, a.n)
                results[f"run_{mode}"] = {k: statistics.median(v) for k, v in s.items()}
        if "scale" not in skip:
            if "containerd" not in skip and shutil.which("containerd"):
                ctd = Containerd(work, f"{own.rstrip('/')}/{tag}")
                engines.append(ctd)
                ctd.load(archive)
            for e in engines:
                log(f"scale: {a.scale} detached containers with {e.name} ...")
                results[f"scale_{e.name}"] = bench_scale(e, a.scale, "none")
                e.clean()
        results["load_after"] = os.getloadavg()[0]
    except (Failed, subprocess.TimeoutExpired) as err:
        log(f"hull_bench: {err}")
        results["error"] = str(err)
    except KeyboardInterrupt:
        results["error"] = "interrupted"
    finally:
        for e in engines:
            try:
                e.clean()
            except Exception as err:  # cleanup carries on with the next engine
                log(f"hull_bench: cleaning {e.name}: {err}")
        remove_cgroups(tag, created)
        remove_netavark_tables(tables)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    report(results, a.scale)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(1 if "error" in results else 0)


def report(r, s):
    print(f"load average {r['load_before']:.2f} before, {r.get('load_after', 0):.2f} after")
    print("\n| metric | hull | podman (runc) | hull/podman | target |")
    print("| --- | --- | --- | --- | --- |")
    for mode in ["none", "bridge"]:
        m = r.get(f"run_{mode}")
        if not m:
            continue
        ratio = m["hull"] / m["podman"]
        verdict = "PASS" if ratio <= TARGET_VS_PODMAN else "MISS"
        print(f"| run --rm true, --network {mode}, median | {fmt_ms(m['hull'])} | "
              f"{fmt_ms(m['podman'])} | {ratio:.2f} | ≤{TARGET_VS_PODMAN} ({verdict}) |")
    rows = [(k[6:], v) for k, v in r.items() if k.startswith("scale_")]
    if rows:
        print(f"\n| {s} detached containers | start all | monitors | RSS sum | PSS sum | PSS each |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, v in rows:
            mon = {"hull": "containerd-shim-hull-v2", "podman": "conmon",
                   "containerd": "containerd-shim-runc-v2"}[name]
            each = v["pss_kib"] / max(v["monitors"], 1) / 1024
            print(f"| {name} | {v['seconds']:.1f} s | {v['monitors']} × {mon} | "
                  f"{v['rss_kib'] / 1024:.1f} MiB | {v['pss_kib'] / 1024:.1f} MiB | "
                  f"{each:.2f} MiB |")
    if "error" in r:
        print(f"\nerror: {r['error']}")


if __name__ == "__main__":
    main()
