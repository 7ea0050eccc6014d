#!/usr/bin/env python3
"""Sums up the runs of a fault campaign (`make chaos-long`, or any `bench/chaos.py`
runs): per cluster kind (instances, nginx or direct), the runs, the violations of each
check, the faults applied and the POSTs, from the run directories chaos.py leaves.

Usage: bench/chaos_table.py [--secs S] DIR...   (e.g. bench/results/chaos-*)
"""
import argparse
import collections
import json
import os
import re
import sys

CHECKS = ("lost", "paid twice", "paid without a 2xx", "wrong amount", "summary mismatch", "died on its own")
FAULTS = ("kill", "pause", "cut", "fail", "delay")
OK = (200, 201, 202, 204)
RUN = re.compile(r"chaos-(\d+)-n(\d)(-nginx)?-\d{8}-\d{6}$")
APPLIED = re.compile(r"^\+\s*[\d.]+s (\w+) .*\[applied\]", re.M)


def one(run_dir):
    """(kind, Counter) of one finished run, or None if it is not one."""
    m = RUN.search(os.path.basename(os.path.normpath(run_dir)))
    verdict = os.path.join(run_dir, "verdict.json")
    if not m or not os.path.exists(verdict):
        return None
    with open(verdict) as f:
        v = json.load(f)
    c = collections.Counter(runs=1, failed=int(any(v.get(k) for k in CHECKS)))
    for k in CHECKS:
        c[k] = len(v.get(k, []))
    with open(os.path.join(run_dir, "schedule.txt")) as f:
        c.update(a for a in APPLIED.findall(f.read()) if a in FAULTS)
    with open(os.path.join(run_dir, "posts.jsonl")) as f:
        posts = [json.loads(line) for line in f]
    c["posts"] = len(posts)
    c["2xx"] = sum(p.get("status") in OK for p in posts)
    c["ids posted twice"] = len(posts) - len({p["id"] for p in posts})
    secs = re.search(r"SECS=([\d.]+)", v.get("replay", ""))
    return (f"{m.group(2)} instances, {'nginx' if m.group(3) else 'direct'}",
            float(secs.group(1)) if secs else None, c)


def table(dirs, secs=None):
    rows = collections.defaultdict(collections.Counter)
    for d in dirs:
        r = one(d)
        if r and (secs is None or r[1] == secs):
            rows[r[0]].update(r[2])
    cols = ("runs", "failed") + CHECKS + FAULTS + ("posts", "2xx", "ids posted twice")
    out = ["| cluster | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for kind in sorted(rows):
        out.append(f"| {kind} | " + " | ".join(f"{rows[kind][c]:,}" for c in cols) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--secs", type=float, help="only runs of this length (SECS of their replay line)")
    p.add_argument("dirs", nargs="+")
    a = p.parse_args()
    print(table(a.dirs, a.secs))


if __name__ == "__main__":
    sys.exit(main())
