#!/usr/bin/env python3
"""Where hullc waits: reads `perf script` output of a system-wide
`perf record -a -g -e sched:sched_switch` and prints, per run, the on-CPU
time of the matching tasks, the time they were runnable but waiting for a
CPU (load from others), and the time they were blocked, by kernel stack.

  offcpu.py SCRIPT_TXT COMM_REGEX RUNS
(bench/profile.sh runs it.) Blocked time of a parent waiting for its child
overlaps with the child's on-CPU time: read the leaf waits (RCU grace
periods, I/O) as the cost, the socket waits as hand-offs.
"""
import collections
import re
import sys

SKIP = {
    "__schedule", "schedule", "schedule_timeout", "__wait_for_common",
    "wait_for_completion_state", "wait_for_completion", "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64", "schedule_preempt_disabled", "io_schedule", "__cond_resched",
    "preempt_schedule_common", "schedule_hrtimeout_range_clock", "io_schedule_timeout",
    "wait_for_completion_io_timeout", "bit_wait_io", "__wait_on_bit",
    "out_of_line_wait_on_bit", "_cond_resched",
}
HEAD = re.compile(r"\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):.*prev_comm=(\S+) prev_pid=(\d+) .*"
                  r"prev_state=(\S+) ==> next_comm=(\S+) next_pid=(\d+)")


def main():
    path, comm, runs = sys.argv[1], re.compile(sys.argv[2]), int(sys.argv[3])
    out, since = {}, {}
    oncpu = rq = 0.0
    agg = collections.defaultdict(lambda: [0.0, 0])
    with open(path) as f:
        blocks = f.read().split("\n\n")
    for blk in blocks:
        lines = blk.strip().split("\n")
        m = HEAD.match(lines[0]) if lines else None
        if not m:
            continue
        t, prev, state, pcomm = float(m[4]), int(m[6]), m[7], m[5]
        ncomm, nxt = m[8], int(m[9])
        if prev in since:
            oncpu += (t - since.pop(prev)) * 1000
        if nxt in out:
            t0, key = out.pop(nxt)
            if key == "RQ":
                rq += (t - t0) * 1000
            else:
                agg[key][0] += (t - t0) * 1000
                agg[key][1] += 1
        if comm.search(ncomm):
            since[nxt] = t
        if comm.search(pcomm):
            if state.startswith("R"):
                out[prev] = (t, "RQ")
            else:
                frames = [ln.split()[1] for ln in lines[1:] if len(ln.split()) > 1]
                frames = [x for x in frames if x not in SKIP][:4]
                out[prev] = (t, state + " " + " < ".join(frames))
    blocked = sum(v[0] for v in agg.values())
    print(f"per run: on-cpu {oncpu / runs:.2f} ms, runnable but waiting for a CPU "
          f"{rq / runs:.2f} ms, blocked {blocked / runs:.2f} ms")
    for key, (ms, n) in sorted(agg.items(), key=lambda kv: -kv[1][0])[:12]:
        print(f"{ms / runs:7.2f} ms/run {n / runs:5.2f}x/run  {key[:150]}")


if __name__ == "__main__":
    main()
