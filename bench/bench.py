#!/usr/bin/env python3
"""hullc start-up benchmark against runc (issue 7). Start it with bench/run.sh.

Every sample is one process forked by a tiny static sampler (sampler.c) and
reaped with wait4: wall time from fork to reap, exit status, and ru_maxrss
(the peak RSS of the process and of the children it reaped itself). The runtimes (and the
kernel floor) are interleaved sample by sample, in a rotating order, so that
load from other processes hits all of them alike; medians are quoted.

Metrics:
  run     `RT run` of /bin/true, N containers in sequence (crun's benchmark)
  csd     create + start + delete --force of one container (youki's)
  exec    `RT exec` of /bin/true into a running container
  rss     peak RSS of the runtime process for run and exec
  floor   run/csd: `unshare <the config's namespaces> --fork chroot ROOTFS /bin/true`
          exec:    `nsenter -t PID <same namespaces> -r -w /bin/true`
All runtimes get the same config.json (from `runc spec`, terminal false),
the same rootfs, their own --root dir and unique ids. Everything is
deleted at the end, also on errors and Ctrl-C.
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36

# Targets of issue 7 (ratios are hullc / other, on medians of the same run).
TARGET_VS_RUNC = {"run": 0.25, "csd": 0.25, "exec": 0.30}
TARGET_VS_FLOOR = 1.5
TARGET_RSS_MIB = 3.0

UNSHARE_FLAG = {
    "pid": "--pid",
    "network": "--net",
    "ipc": "--ipc",
    "uts": "--uts",
    "mount": "--mount",
    "cgroup": "--cgroup",
    "user": "--user",
    "time": "--time",
}
NSENTER_FLAG = {
    "pid": "-p",
    "network": "-n",
    "ipc": "-i",
    "uts": "-u",
    "mount": "-m",
    "cgroup": "-C",
    "user": "-U",
    "time": "-T",
}


class Failed(Exception):
    pass


class Spawner:
    """Runs one command through the sampler (sampler.c: fork, exec, wait4)
    with stdin/stdout on /dev/null and stderr in a scratch file; returns
    (ms, exit code, maxrss KiB)."""

    def __init__(self, work):
        here = os.path.dirname(os.path.abspath(__file__))
        exe = os.path.join(work, "sampler")
        cc = shutil.which("cc") or shutil.which("gcc") or sys.exit("bench: needs a C compiler (cc)")
        src = os.path.join(here, "sampler.c")
        r = subprocess.run([cc, "-O2", "-static", "-o", exe, src], capture_output=True, text=True)
        if r.returncode != 0:  # no static libc: a dynamic one is only a little bigger
            subprocess.run([cc, "-O2", "-o", exe, src], check=True)
        self.errpath = os.path.join(work, "stderr")
        self.err = os.open(self.errpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.proc = subprocess.Popen([exe, self.errpath], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)
        self.out = self.proc.stdout

    def __call__(self, argv, check=True):
        os.ftruncate(self.err, 0)
        payload = b"".join(os.fsencode(x) + b"\0" for x in argv)
        self.proc.stdin.write(b"%d\n" % len(payload) + payload)
        line = self.out.readline()
        if not line:
            raise Failed("the sampler died")
        ns, rss, status = (int(x) for x in line.split())
        ms = ns / 1e6
        code = os.waitstatus_to_exitcode(status)
        if check and code != 0:
            raise Failed(f"exit {code}: {' '.join(argv)}\n{self.stderr()}")
        return ms, code, rss

    def stderr(self):
        os.lseek(self.err, 0, os.SEEK_SET)
        return os.read(self.err, 1 << 16).decode(errors="replace").strip()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def reap_orphans():
    """Container inits whose creator exited are our children (subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Runtime:
    def __init__(self, name, path, work):
        self.name = name
        self.path = path
        self.root = os.path.join(work, f"root-{name}")
        self.ids = []  # every id ever created, for the final sweep

    def cmd(self, *args):
        return [self.path, "--root", self.root, *args]

    def version(self):
        try:
            out = subprocess.run(
                [self.path, "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            return out.splitlines()[0] if out else "?"
        except Exception as e:  # noqa: BLE001 - informational only
            return f"? ({e})"


def make_bundles(work, runc):
    """busybox-static rootfs + config.json from `runc spec`, edited."""
    rootfs = os.path.join(work, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ("true", "sh", "sleep"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    spec_dir = os.path.join(work, "spec")
    os.makedirs(spec_dir)
    subprocess.run([runc, "spec"], cwd=spec_dir, check=True)
    with open(os.path.join(spec_dir, "config.json")) as f:
        spec = json.load(f)
    spec["root"]["path"] = rootfs
    spec["process"]["terminal"] = False
    bundles = {}
    for name, args in (("true", ["/bin/true"]), ("sleep", ["/bin/sleep", "86400"])):
        b = os.path.join(work, f"bundle-{name}")
        os.makedirs(b)
        spec["process"]["args"] = args
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(spec, f, indent=2)
        bundles[name] = b
    namespaces = [n["type"] for n in spec["linux"]["namespaces"] if "path" not in n]
    return rootfs, bundles, namespaces


def is_tmpfs(path):
    try:
        return _fstype(path) == "tmpfs" and not _noexec(path)
    except OSError:
        return False


def _noexec(path):
    return bool(os.statvfs(path).f_flag & os.ST_NOEXEC)


def _fstype(path):
    """The filesystem type of the mount that holds `path`."""
    best, fstype = "", None
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    return fstype


def rotate(items, i):
    k = i % len(items)
    return items[k:] + items[:k]


def fmt_ms(x):
    if x != x:  # nan
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hullc", required=True, help="hullc binary")
    ap.add_argument("-n", type=int, default=int(os.environ.get("N", "100")),
                    help="containers per metric and runtime (default 100, env N)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runtimes", default="runc,crun,youki",
                    help="others to compare with, when installed (runc is required)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="wait (up to --wait-load s) until the 1-min load average is below this")
    ap.add_argument("--wait-load", type=float, default=300)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--tmpdir", help="where the scratch dir (bundles, state roots) goes "
                    "(default: the first tmpfs of /dev/shm, /run, /tmp)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch dir (debugging)")
    a = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    if not os.path.exists("/bin/busybox"):
        sys.exit("bench: /bin/busybox missing (apt-get install busybox-static)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("bench: prctl(PR_SET_CHILD_SUBREAPER) failed")
    # SIGTERM/SIGHUP unwind like Ctrl-C, so that cleanup runs.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    if a.max_load is not None:
        end = time.time() + a.wait_load
        while os.getloadavg()[0] > a.max_load and time.time() < end:
            print(f"bench: load {os.getloadavg()[0]:.2f} > {a.max_load}, waiting...", file=sys.stderr)
            time.sleep(10)

    # State dirs on a tmpfs, as /run is on most hosts: on a disk (here /tmp
    # is ext4 with `discard`) every state-file unlink may wait for the disk.
    parent = a.tmpdir or next((d for d in ("/dev/shm", "/run", "/tmp") if is_tmpfs(d)), "/tmp")
    work = tempfile.mkdtemp(prefix="hull-bench.", dir=parent)
    tag = f"hb{os.getpid()}"
    a.work = work
    spawn = Spawner(work)
    runtimes = []
    notes = []
    try:
        runc = shutil.which("runc") or sys.exit("bench: runc not found (apt-get install runc)")
        rootfs, bundles, namespaces = make_bundles(work, runc)
        hullc = Runtime("hullc", os.path.abspath(a.hullc), work)
        runtimes.append(hullc)
        # Probe hullc on runc's own default config. runc only warns when it
        # cannot raise an ambient capability (the default config lists
        # ambient caps that are not inheritable, so it never can); should
        # hullc refuse instead, drop process.capabilities.ambient for every
        # runtime, which leaves runc's behaviour as it was, and say so.
        cid = f"{tag}-hullc-probe"
        hullc.ids.append(cid)
        _, code, _ = spawn(hullc.cmd("run", "-b", bundles["true"], cid), check=False)
        if code != 0:
            err = spawn.stderr()
            spawn(hullc.cmd("delete", "--force", cid), check=False)
            if "ambient" not in err:
                raise Failed(f"hullc cannot run the runc spec config:\n{err}")
            notes.append("hullc refuses runc's default config (runc only warns): "
                         f"{err.splitlines()[-1]} -- process.capabilities.ambient removed "
                         "from the config for all runtimes (no change for runc)")
            for b in bundles.values():
                cfg = os.path.join(b, "config.json")
                with open(cfg) as f:
                    spec = json.load(f)
                spec["process"]["capabilities"].pop("ambient", None)
                with open(cfg, "w") as f:
                    json.dump(spec, f, indent=2)
            cid = f"{tag}-hullc-probe2"
            hullc.ids.append(cid)
            spawn(hullc.cmd("run", "-b", bundles["true"], cid))
        others = []
        for name in a.runtimes.split(","):
            name = name.strip()
            path = shutil.which(name) if name else None
            if not name:
                continue
            if not path:
                if name == "runc":
                    sys.exit("bench: runc not found")
                notes.append(f"{name}: not installed, skipped")
                continue
            rt = Runtime(name, path, work)
            # Probe: one run. crun refuses hybrid cgroup hosts, say so.
            cid = f"{tag}-{name}-probe"
            rt.ids.append(cid)
            ms, code, _ = spawn(rt.cmd("run", "-b", bundles["true"], cid), check=False)
            if code != 0:
                msg = spawn.stderr().splitlines()
                notes.append(f"{name} ({rt.version()}): refused to run a container on this host, "
                             f"skipped: {msg[-1] if msg else f'exit {code}'}")
                spawn(rt.cmd("delete", "--force", cid), check=False)
                continue
            others.append(rt)
        if not any(r.name == "runc" for r in others):
            sys.exit("bench: runc failed to run the probe container:\n" + "\n".join(notes))
        runtimes += others
        unshare = shutil.which("unshare")
        nsenter = shutil.which("nsenter")
        floor_run = [unshare, *[UNSHARE_FLAG[n] for n in namespaces], "--fork",
                     "chroot", rootfs, "/bin/true"]
        host_true = [shutil.which("true")]

        load0 = os.getloadavg()
        t_start = time.time()
        res = {}  # (metric, who) -> list of (ms, maxrss KiB)

        def sample(metric, who, argv):
            ms, _, rss = spawn(argv)
            res.setdefault((metric, who), []).append((ms, rss))
            return ms

        def warm(argv_of):
            for i in range(a.warmup):
                argv_of(i)

        # 0. spawn overhead of this harness: host /bin/true.
        for i in range(max(a.n, 20)):
            sample("spawn", "host", host_true)

        # 1. run /bin/true, N in sequence, interleaved.
        def run_argv(rt, i, kind="r"):
            cid = f"{tag}-{rt.name}-{kind}{i}"
            rt.ids.append(cid)
            return rt.cmd("run", "-b", bundles["true"], cid)

        for rt in runtimes:
            for i in range(a.warmup):
                spawn(run_argv(rt, i, "w"))
        for i in range(a.warmup):
            spawn(floor_run)
        who = runtimes + ["floor"]
        for i in range(a.n):
            for w in rotate(who, i):
                if w == "floor":
                    sample("run", "floor", floor_run)
                else:
                    sample("run", w.name, run_argv(w, i))
            reap_orphans()

        # 2. create + start + delete.
        for i in range(a.n + a.warmup):
            for w in rotate(who, i):
                if w == "floor":
                    if i >= a.warmup:
                        sample("csd", "floor", floor_run)
                    continue
                cid = f"{tag}-{w.name}-c{i}"
                w.ids.append(cid)
                t = [spawn(w.cmd("create", "-b", bundles["true"], cid)),
                     spawn(w.cmd("start", cid)),
                     spawn(w.cmd("delete", "--force", cid))]
                reap_orphans()
                if i >= a.warmup:
                    for part, (ms, _, rss) in zip(("create", "start", "delete"), t):
                        res.setdefault((part, w.name), []).append((ms, rss))
                    res.setdefault(("csd", w.name), []).append(
                        (sum(x[0] for x in t), max(x[2] for x in t)))

        # 3. exec /bin/true into a running container; 6. state of it.
        pids = {}
        for rt in runtimes:
            cid = f"{tag}-{rt.name}-exec"
            rt.ids.append(cid)
            spawn(rt.cmd("run", "-d", "-b", bundles["sleep"], cid))
            st = json.loads(subprocess.run(rt.cmd("state", cid), capture_output=True,
                                           check=True, text=True).stdout)
            pids[rt.name] = (cid, st["pid"])
        ref_pid = pids["runc"][1]
        floor_exec = [nsenter, "-t", str(ref_pid), *[NSENTER_FLAG[n] for n in namespaces],
                      "-r", "-w", "/bin/true"]
        for i in range(a.n + a.warmup):
            for w in rotate(who, i):
                if w == "floor":
                    argv = floor_exec
                    name = "floor"
                else:
                    argv = w.cmd("exec", pids[w.name][0], "/bin/true")
                    name = w.name
                if i < a.warmup:
                    spawn(argv)
                else:
                    sample("exec", name, argv)
        for i in range(a.n + a.warmup):
            for w in rotate(runtimes, i):
                argv = w.cmd("state", pids[w.name][0])
                if i < a.warmup:
                    spawn(argv)
                else:
                    sample("state", w.name, argv)
        for rt in runtimes:
            spawn(rt.cmd("delete", "--force", pids[rt.name][0]))
        reap_orphans()
        load1 = os.getloadavg()
        elapsed = time.time() - t_start

        report(a, runtimes, res, notes, load0, load1, elapsed, namespaces)
    finally:
        cleanup(spawn, runtimes, tag, work, a.keep_work)


def report(a, runtimes, res, notes, load0, load1, elapsed, namespaces):
    def med(metric, who):
        return median([x[0] for x in res.get((metric, who), [])])

    def peak_mib(metric, who):
        xs = res.get((metric, who), [])
        return max(x[1] for x in xs) / 1024 if xs else float("nan")

    def total_s(metric, who):
        return sum(x[0] for x in res.get((metric, who), [])) / 1000

    others = [r.name for r in runtimes if r.name != "hullc"]
    rows = []  # (label, hullc, {other: v}, floor, target_runc, target_floor, unit)
    rows.append((f"run /bin/true x{a.n}, total (s)", total_s("run", "hullc"),
                 {o: total_s("run", o) for o in others}, total_s("run", "floor"),
                 TARGET_VS_RUNC["run"], TARGET_VS_FLOOR))
    rows.append(("run /bin/true, median (ms)", med("run", "hullc"),
                 {o: med("run", o) for o in others}, med("run", "floor"),
                 TARGET_VS_RUNC["run"], TARGET_VS_FLOOR))
    rows.append(("create+start+delete (ms)", med("csd", "hullc"),
                 {o: med("csd", o) for o in others}, med("csd", "floor"),
                 TARGET_VS_RUNC["csd"], TARGET_VS_FLOOR))
    for part in ("create", "start", "delete"):
        rows.append((f"  {part} (ms)", med(part, "hullc"), {o: med(part, o) for o in others},
                     float("nan"), None, None))
    rows.append(("exec /bin/true (ms)", med("exec", "hullc"),
                 {o: med("exec", o) for o in others}, med("exec", "floor"),
                 TARGET_VS_RUNC["exec"], TARGET_VS_FLOOR))
    rows.append(("state (ms, no target)", med("state", "hullc"),
                 {o: med("state", o) for o in others}, float("nan"), None, None))
    rss_rows = [("peak RSS run (MiB)", "run"), ("peak RSS exec (MiB)", "exec")]

    hdr = ["metric", "hullc"] + others + ["hullc/runc", "floor", "hullc/floor", "target", "verdict"]
    table = []
    verdicts = []
    for label, h, o, fl, t_runc, t_floor in rows:
        r = h / o["runc"] if o.get("runc") else float("nan")
        f = h / fl if fl == fl and fl else float("nan")
        target, verdict = "", ""
        if t_runc is not None:
            target = f"<={t_runc}x runc, <={t_floor}x floor"
            ok1, ok2 = r <= t_runc, f <= t_floor
            verdict = " ".join([("PASS" if ok1 else "MISS") + " runc", ("PASS" if ok2 else "MISS") + " floor"])
            verdicts.append((label, ok1 and ok2))
        table.append([label, fmt_ms(h)] + [fmt_ms(o[x]) for x in others]
                     + [f"{r:.2f}", fmt_ms(fl), f"{f:.2f}" if f == f else "-", target, verdict])
    for label, metric in rss_rows:
        h = peak_mib(metric, "hullc")
        o = {x: peak_mib(metric, x) for x in others}
        fl = peak_mib(metric, "floor")
        ok = h <= TARGET_RSS_MIB
        verdicts.append((label, ok))
        table.append([label, f"{h:.2f}"] + [f"{o[x]:.2f}" for x in others]
                     + [f"{h / o['runc']:.2f}", f"{fl:.2f}", f"{h / fl:.2f}",
                        f"<={TARGET_RSS_MIB} MiB", "PASS" if ok else "MISS"])

    widths = [max(len(str(row[i])) for row in [hdr] + table) for i in range(len(hdr))]
    line = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    print()
    print(f"hullc benchmark: N={a.n} per metric, medians of interleaved samples; "
          f"{os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"runtimes: " + "; ".join(f"{r.name}: {r.version()}" for r in runtimes))
    print(f"namespaces: {','.join(namespaces)}; floor = unshare {' '.join(UNSHARE_FLAG[n] for n in namespaces)} "
          f"--fork chroot ROOTFS /bin/true (exec floor: nsenter into the runc container)")
    print(f"scratch dir (bundles, --root dirs): {os.path.dirname(a.work)} ({_fstype(a.work)})")
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; took {elapsed:.0f}s")
    print(f"harness spawn+wait of host /bin/true: {fmt_ms(med('spawn', 'host'))} ms (sampler fork+exec+wait4, included in every figure)")
    for n in notes:
        print(f"note: {n}")
    print()
    print(line(hdr))
    print(line(["-" * w for w in widths]))
    for row in table:
        print(line(row))
    print()
    print("peak RSS = ru_maxrss from wait4: the runtime process and the children it reaped "
          "(for run: the container init up to execve).")
    missed = [l for l, ok in verdicts if not ok]
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))

    if a.json:
        out = {
            "n": a.n,
            "load_before": load0,
            "load_after": load1,
            "notes": notes,
            "runtimes": {r.name: r.version() for r in runtimes},
            "samples_ms": {f"{m}/{w}": [x[0] for x in v] for (m, w), v in res.items()},
            "maxrss_kib": {f"{m}/{w}": [x[1] for x in v] for (m, w), v in res.items()},
            "table": [hdr] + table,
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


def cleanup(spawn, runtimes, tag, work, keep):
    """Force-delete every container we may have made, reap, remove the
    scratch dir, and sweep cgroup dirs that carry our tag."""
    for rt in runtimes:
        try:
            names = os.listdir(rt.root)
        except FileNotFoundError:
            names = []
        for cid in set(names) | set(rt.ids if os.path.isdir(rt.root) else []):
            if cid.startswith(tag) and os.path.exists(os.path.join(rt.root, cid)):
                try:
                    spawn(rt.cmd("delete", "--force", cid), check=False)
                except Failed:
                    pass
    spawn.close()
    reap_orphans()
    leftovers = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup", topdown=False):
        for d in dirnames:
            if d.startswith(tag):
                p = os.path.join(dirpath, d)
                try:
                    os.rmdir(p)
                except OSError:
                    leftovers.append(p)
    if leftovers:
        print(f"bench: cgroups left behind: {leftovers}", file=sys.stderr)
    if keep:
        print(f"bench: scratch dir kept: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted (cleaned up)")
