#!/usr/bin/env python3
"""Who held the CPU while a thread waited to run: the p99 question on a shared machine.

Reads `perf sched timehist` output (one line per context switch: time, CPU, task, wait
time, scheduling delay, run time) and, for the threads given by tid, prints their
scheduling delay (time from wake-up to running) as percentiles, then which tasks ran on
the machine's CPUs while they waited longer than --min-ms. Every CPU, not only the one
each ran on at last: a woken thread may wait on one CPU's queue and then be moved to
another, and timehist does not say which queue it waited on. A SCHED_IDLE task in that
list was not in the way (any waking thread preempts it) but on a CPU the waiting thread
was not queued on.

    perf sched record -a -o sched.data -- sleep 40      # during a bench run
    perf sched timehist -i sched.data > timehist.txt
    bench/sched_blame.py timehist.txt nginx=TID loop1=TID loop2=TID
    bench/sched_blame.py --self-test

Tids: `pids` in the run's results names each service's pid; an instance's event loop is
its main thread (tid = pid), nginx's worker is the child of the pid listed.
"""
import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib.stats import percentile  # noqa: E402

LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.*?)\[(\d+)(?:/\d+)?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
# A thread's number at the end of a task name: worker-17, kworker/1:1-events, kdamond.0.
SUFFIX = re.compile(r"(?:[-/.]\d.*)$")


def parse(lines):
    """(switch-out time s, cpu, task name, tid, wait ms, sched delay ms, run ms) per line."""
    rows = []
    for line in lines:
        m = LINE.match(line)
        if m:
            t, cpu, name, tid, wait, delay, run = m.groups()
            rows.append((float(t), cpu, name.strip(), int(tid), float(wait), float(delay), float(run)))
    return rows


def blame(rows, targets, min_ms):
    """Per target tid: its scheduling delays (sorted ms); and CPU-ms per task name that
    ran on any CPU while a target waited more than `min_ms`."""
    delays = {tid: sorted(r[5] for r in rows if r[3] == tid) for tid in targets}
    who = collections.Counter()
    for r in rows:
        if r[3] not in targets or r[5] <= min_ms:
            continue
        ran_from = r[0] - r[6] / 1000
        waited_from = ran_from - r[5] / 1000
        for o in rows:
            overlap = min(o[0], ran_from) - max(o[0] - o[6] / 1000, waited_from)
            if overlap > 0 and o[3] not in targets:
                who[SUFFIX.sub("", o[2]) or o[2]] += overlap * 1000
    return delays, who


def self_test():
    lines = [
        "    10.000000 [0000]  nginx[7]     0.000  0.000  0.100",
        "    10.004000 [0000]  k6[30/28]    0.000  0.000  3.000",   # ran 10.001-10.004
        "    10.004000 [0001]  python[41]   0.000  0.000  1.000",   # ran 10.003-10.004
        "    10.004100 [0001]  worker-17[50/49]  0.000  0.000  0.050",  # after the wait
        "    10.005000 [0000]  nginx[7]     2.000  2.000  1.000",   # waited 10.002-10.004
        "    10.005000 [0000]  <idle>       0.000  0.000  0.900",
        "garbage",
    ]
    rows = parse(lines)
    assert len(rows) == 5 and rows[1][2:4] == ("k6", 30), rows
    delays, who = blame(rows, {7}, 0.5)
    assert delays == {7: [0.0, 2.0]}, delays
    assert {k: round(v, 3) for k, v in who.items()} == {"k6": 2.0, "python": 1.0}, who
    print("sched_blame.py: self-test ok")


def main(argv):
    if argv == ["--self-test"]:
        self_test()
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("timehist")
    p.add_argument("threads", nargs="+", metavar="NAME=TID")
    p.add_argument("--min-ms", type=float, default=0.5, help="waits longer than this are blamed")
    a = p.parse_args(argv)
    targets = {}
    for spec in a.threads:
        name, _, tid = spec.partition("=")
        if not tid.isdigit():
            sys.exit(f"sched_blame.py: {spec!r}: expected NAME=TID")
        targets[int(tid)] = name
    with open(a.timehist) as f:
        delays, who = blame(parse(f), targets, a.min_ms)
    for tid, name in targets.items():
        d = delays[tid]
        if not d:
            print(f"{name}: no switches of tid {tid}")
            continue
        print(f"{name}: {len(d)} runs, scheduling delay p50 {percentile(d, .5):.3f} p99 {percentile(d, .99):.3f} "
              f"p99.9 {percentile(d, .999):.3f} max {d[-1]:.3f} ms; > 1 ms: {sum(1 for x in d if x > 1)}")
    total = sum(who.values())
    if total:
        print(f"ran on the CPUs while they waited > {a.min_ms} ms ({total:.1f} CPU-ms in all):")
        for task, ms in who.most_common(12):
            print(f"  {task:<20} {ms:7.1f} ms  {100 * ms / total:4.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
