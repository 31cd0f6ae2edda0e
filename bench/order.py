#!/usr/bin/env python3
"""Writes bench/hullc.order: the functions hullc runs on its common paths,
for the linker's --symbol-ordering-file (scripts/release.sh).

Why: the kernel's fault-around maps 64 KiB of page cache around every page
fault in a file mapping, so hot code scattered over hullc's 4 MB .text left
~3 MiB of it resident (bench/README.md items 8 and 12; the peak RSS target is
3 MiB). Linked first and together, the functions that run fill a few
hundred KiB instead.

How: a uprobe on the entry of every function of an unstripped release build
(tracefs `uprobe_events`), one pass of the benchmark's commands (run,
create/start/state/delete, run -d + exec + kill, list), then the functions
with hits in `uprobe_profile`. Only our own probe group is added and removed.

    sudo bench/order.sh            # builds the unstripped hullc, then runs this
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import make_bundles  # noqa: E402  (same bundles as the benchmark)

TRACEFS = "/sys/kernel/tracing"
GROUP = f"hullord{os.getpid()}"


def probe_point(binary, f, off, vaddr):
    """Where to probe a function that starts at file offset `off`: its entry,
    or its second instruction when the first is VEX/EVEX-encoded (glibc's
    AVX2 string functions): uprobes cannot step over those and register
    such a probe without error, but it never fires."""
    f.seek(off)
    if f.read(1)[0] not in (0x62, 0xC4, 0xC5):
        return off
    dis = subprocess.run(["objdump", "-d", f"--start-address={vaddr:#x}",
                          f"--stop-address={vaddr + 16:#x}", binary],
                         capture_output=True, text=True).stdout
    addrs = [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\t", dis, re.M)]
    return off + (addrs[1] - vaddr) if len(addrs) > 1 else off


def functions(binary):
    """{probe file offset: [symbol names]} for every sized function symbol."""
    segs = []
    for line in subprocess.run(["readelf", "-lW", binary], check=True,
                               capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            segs.append((int(f[2], 16), int(f[1], 16), int(f[5], 16)))  # vaddr, offset, filesz
    entries, out = {}, {}
    nm = subprocess.run(["nm", "--defined-only", "-S", binary], check=True,
                        capture_output=True, text=True).stdout
    for line in nm.splitlines():
        f = line.split()
        if len(f) != 4 or f[2] not in "tTwW":
            continue
        addr, size, name = int(f[0], 16), int(f[1], 16), f[3]
        if size == 0:
            continue
        for vaddr, off, filesz in segs:
            if vaddr <= addr < vaddr + filesz:
                entries.setdefault(addr - vaddr + off, (addr, []))[1].append(name)
    with open(binary, "rb") as f:
        for off, (addr, names) in entries.items():
            out.setdefault(probe_point(binary, f, off, addr), []).extend(names)
    return out


def tracefs(name, text, mode="w"):
    with open(os.path.join(TRACEFS, name), mode) as f:
        f.write(text)


def events_fd():
    # O_APPEND without O_TRUNC keeps every other user's probes (Python's "a"
    # mode would also seek, which tracefs refuses).
    return os.open(os.path.join(TRACEFS, "uprobe_events"), os.O_WRONLY | os.O_APPEND)


def add_probes(binary, offsets):
    # One write per probe: the kernel parses uprobe_events a line at a time.
    fd = events_fd()
    try:
        for i, off in enumerate(offsets):
            os.write(fd, f"p:{GROUP}/f{i} {binary}:0x{off:x}\n".encode())
    finally:
        os.close(fd)


def remove_probes(n):
    enable = os.path.join(TRACEFS, "events", GROUP, "enable")
    if not os.path.exists(enable):
        return
    tracefs(f"events/{GROUP}/enable", "0")
    fd = events_fd()
    try:
        # "-:GROUP/" removes the whole group at once; older kernels want
        # one line per event.
        try:
            os.write(fd, f"-:{GROUP}/\n".encode())
        except OSError:
            for i in range(n):
                try:
                    os.write(fd, f"-:{GROUP}/f{i}\n".encode())
                except OSError:
                    pass
    finally:
        os.close(fd)


def hits(binary):
    """{probe index: hit count} of our probes (lines: path, event, hits)."""
    out = {}
    with open(os.path.join(TRACEFS, "uprobe_profile")) as f:
        for line in f:
            m = re.match(rf"\s*{re.escape(binary)}\s+f(\d+)\s+(\d+)", line)
            if m and int(m.group(2)) > 0:
                out[int(m.group(1))] = int(m.group(2))
    return out


def scenario(hullc, work, bundles):
    root = os.path.join(work, "state")

    def h(*args, check=True):
        # No pipes: create hands its stdio to the container, whose init
        # would hold a pipe open until it exits.
        return subprocess.run([hullc, "--root", root, *args], check=check,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    tag = f"hullord{os.getpid()}"
    try:
        for i in range(2):
            h("run", "-b", bundles["true"], f"{tag}-r{i}")
        h("create", "-b", bundles["true"], f"{tag}-c")
        h("start", f"{tag}-c")
        h("state", f"{tag}-c")
        h("delete", f"{tag}-c")
        h("run", "-d", "-b", bundles["sleep"], f"{tag}-d")
        h("exec", f"{tag}-d", "/bin/true")
        h("state", f"{tag}-d")
        h("list")
        h("kill", f"{tag}-d", "KILL")
        h("delete", "--force", f"{tag}-d")
    finally:
        for cid in os.listdir(root) if os.path.isdir(root) else []:
            h("delete", "--force", cid, check=False)
        # Containers without cgroupsPath get /<id> in each hierarchy; delete
        # removes them, this catches a run that failed half-way.
        for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup", topdown=False):
            for d in dirnames:
                if d.startswith(tag):
                    try:
                        os.rmdir(os.path.join(dirpath, d))
                    except OSError as e:
                        print(f"order: cgroup left behind: {dirpath}/{d}: {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hullc", required=True, help="unstripped release build")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "hullc.order"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hullorder-", dir="/dev/shm")
    binary = os.path.join(work, "hullc")
    offsets = []
    try:
        shutil.copy2(a.hullc, binary)
        funcs = functions(binary)
        offsets = sorted(funcs)
        add_probes(binary, offsets)
        tracefs(f"events/{GROUP}/enable", "1")
        # runc's default config when runc is there, as the benchmark uses:
        # its fields (devices, rlimits, masked paths) are code that runs.
        _, bundles, _ = make_bundles(work, shutil.which("runc") or binary)
        scenario(binary, work, bundles)
        got = hits(binary)
    finally:
        try:
            remove_probes(len(offsets))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    names = [n for i in sorted(got) for n in funcs[offsets[i]]]
    with open(a.out, "w") as f:
        f.write("".join(n + "\n" for n in names))
    print(f"order: {len(got)} of {len(offsets)} functions ran; {len(names)} symbols -> {a.out}")


if __name__ == "__main__":
    main()
