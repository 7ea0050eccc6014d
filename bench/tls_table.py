#!/usr/bin/env python3
"""Table of bench/RESULTS-tls.md: `tls_table.py LABEL=RESULTS_DIR...` prints, per run,
p99, total, inconsistencies, payments forwarded between the instances (the last
/metrics sample of each), and per service (api1, api2, nginx) the CPU-seconds and
context switches (voluntary + involuntary) during the test and per payment; then the
medians per group (the label up to its last '-', e.g. p-tcp from p1-tcp) and the
ratios of each `*-tls` group to its `*-tcp` one; last, the medians per group of the
instances' thread roles (api1 + api2: CPU-seconds / context switches)."""
import gzip
import json
import os
import re
import statistics
import sys

SERVICES = ("api1", "api2", "nginx")


def forwarded(out):
    last = {}
    try:
        with gzip.open(os.path.join(out, "metrics.jsonl.gz"), "rt") as f:
            for line in f:
                row = json.loads(line)
                v = row.get("series", {}).get("rinha_payments_forwarded_total")
                if v is not None:
                    last[row.get("instance")] = v
    except OSError:
        return None
    return int(sum(last.values()))


def figures(out):
    with open(os.path.join(out, "figures.json")) as f:
        fig = json.load(f)
    cost = fig["cost"]
    n = cost["payments"]
    r = {"p99": float(str(fig["p99"]).rstrip("ms")), "total": fig["total_liquido"],
         "incons": fig["inconsistencies"], "payments": n, "fwd": forwarded(out)}
    cpu = ctx = 0.0
    for s in SERVICES:
        svc = cost["services"][s]
        c = svc["ctx_voluntary"] + svc["ctx_involuntary"]
        r[f"{s} cpu"], r[f"{s} ctx"] = svc["cpu_s"], c
        cpu, ctx = cpu + svc["cpu_s"], ctx + c
    r["stack cpu"], r["stack ctx"] = cpu, ctx
    roles = {}
    for s in ("api1", "api2"):
        for role, v in cost["services"][s].get("roles", {}).items():
            a = roles.setdefault(role, [0.0, 0])
            a[0] += v["cpu_s"]
            a[1] += v["ctx_voluntary"] + v["ctx_involuntary"]
    r["roles"] = roles
    r["cpu ms/pay"] = 1000 * cpu / n
    r["ctx/pay"] = ctx / n
    return r


COLS = ["p99", "total", "incons", "payments", "fwd", "api1 cpu", "api2 cpu", "nginx cpu", "stack cpu",
        "api1 ctx", "api2 ctx", "nginx ctx", "stack ctx", "cpu ms/pay", "ctx/pay"]


def fmt(k, v):
    if v is None:
        return "—"
    if k in ("total",):
        return f"{v:,.0f}"
    if k in ("incons", "payments", "fwd") or k.endswith(" ctx"):
        return f"{v:,.0f}"
    if k == "p99":
        return f"{v:.2f}"
    return f"{v:.3f}" if k in ("cpu ms/pay", "ctx/pay") else f"{v:.2f}"


def main(argv):
    runs = []
    for spec in argv:
        label, _, out = spec.partition("=")
        runs.append((label, figures(out)))
    head = "| run | p99 ms | total | incons. | payments | forwarded | CPU-s api1 | api2 | nginx | stack | ctx api1 | api2 | nginx | stack | CPU-ms/payment | ctx/payment |"
    print(head)
    print("|" + "---|" * (len(COLS) + 1))
    for label, r in runs:
        print(f"| {label} | " + " | ".join(fmt(k, r[k]) for k in COLS) + " |")
    groups = {}
    for label, r in runs:
        groups.setdefault(re.sub(r"\d+-", "-", label), []).append(r)
    med = {g: {k: statistics.median([r[k] for r in rs if r[k] is not None]) if any(r[k] is not None for r in rs) else None
               for k in COLS} for g, rs in groups.items()}
    print()
    print(head.replace("| run |", "| median |"))
    print("|" + "---|" * (len(COLS) + 1))
    for g, m in med.items():
        print(f"| {g} (n={len(groups[g])}) | " + " | ".join(fmt(k, m[k]) for k in COLS) + " |")
    print()
    print(head.replace("| run |", "| TLS / plain |"))
    print("|" + "---|" * (len(COLS) + 1))
    for g in med:
        if g.endswith("-tls") and g[:-4] + "-tcp" in med:
            a, b = med[g], med[g[:-4] + "-tcp"]
            cells = [f"{a[k] / b[k]:.2f}" if a[k] is not None and b[k] else "—" for k in COLS]
            print(f"| {g[:-4]} | " + " | ".join(cells) + " |")

    names = sorted({role for _, r in runs for role in r["roles"]} - {"health", "signals", "peer-accept"})
    print()
    print("| median, api1 + api2 | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for g, rs in groups.items():
        cells = []
        for role in names:
            have = [r["roles"][role] for r in rs if role in r["roles"]]
            cells.append(f"{statistics.median(a[0] for a in have):.2f} s / {statistics.median(a[1] for a in have):,.0f}"
                         if have else "—")
        print(f"| {g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
