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

Tids: `pids` in the run's results names each service's pid; an instance's event loop is
its main thread (tid = pid), nginx's worker is the child of the pid listed.
"""
import argparse
import collections
import re
import sys

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


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("timehist")
    p.add_argument("threads", nargs="+", metavar="NAME=TID")
    p.add_argument("--min-ms", type=float, default=0.5, help="waits longer than this are blamed")
    a = p.parse_args(argv)
    with open(a.timehist) as f:
        rows = parse(f)
    by_cpu = collections.defaultdict(list)
    for r in rows:
        by_cpu[r[1]].append(r)
    blame, total = collections.Counter(), 0.0
    targets = {}
    for spec in a.threads:
        name, _, tid = spec.partition("=")
        if not tid.isdigit():
            sys.exit(f"sched_blame.py: {spec!r}: expected NAME=TID")
        targets[int(tid)] = name
    for tid, name in targets.items():
        mine = [r for r in rows if r[3] == tid]
        delays = sorted(r[5] for r in mine)
        if not delays:
            print(f"{name}: no switches of tid {tid}")
            continue
        print(f"{name}: {len(delays)} runs, scheduling delay p50 {quantile(delays, .5):.3f} p99 "
              f"{quantile(delays, .99):.3f} p99.9 {quantile(delays, .999):.3f} max {delays[-1]:.3f} ms; "
              f"> 1 ms: {sum(1 for d in delays if d > 1)}")
        for r in (r for r in mine if r[5] > a.min_ms):
            ran_from = r[0] - r[6] / 1000
            waited_from = ran_from - r[5] / 1000
            for o in (o for rows_of_cpu in by_cpu.values() for o in rows_of_cpu):
                overlap = min(o[0], ran_from) - max(o[0] - o[6] / 1000, waited_from)
                if overlap > 0 and o[3] not in targets:
                    blame[SUFFIX.sub("", o[2]) or o[2]] += overlap * 1000
                    total += overlap * 1000
    if total:
        print(f"ran on the CPUs while they waited > {a.min_ms} ms ({total:.1f} CPU-ms in all):")
        for who, ms in blame.most_common(12):
            print(f"  {who:<20} {ms:7.1f} ms  {100 * ms / total:4.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
