#!/usr/bin/env python3
"""Medians of several bench runs: `median.py [--json] RESULTS_DIR...` reads each run's
figures.json (bench/run.py) and prints every key figure per run and its median: p99,
total_liquido, payments, inconsistencies, lag, and the cost (stack CPU-seconds, CPU-ms
per 1,000 payments and context switches per payment and peak per second, per service).
On 2 shared cores one run says little; compare the medians of interleaved runs."""
import json
import os
import statistics
import sys


def load(out):
    with open(os.path.join(out, "figures.json")) as f:
        return json.load(f)


def rows(fig):
    """(label, value) of one run, in display order; None where the run lacks the figure."""
    out = [
        ("p99 ms", float(str(fig["p99"]).rstrip("ms"))),
        ("total_liquido", fig["total_liquido"]),
        ("default", fig["default"]), ("fallback", fig["fallback"]),
        ("inconsistencies", fig["inconsistencies"]), ("lag", fig["lag"]),
        ("stack CPU-s (whole run)", fig["stack_cpu_seconds"]),
        ("noise", fig.get("noise", 0)),
    ]
    cost = fig.get("cost")
    if not cost:
        return out
    stack = cost["stack"]
    out += [("payments posted", cost["payments"]), ("stack CPU-s (test)", stack["cpu_s"]),
            ("stack CPU-ms/1k", stack["cpu_ms_per_1k"]), ("stack ctx/payment", stack["ctx_per_payment"])]
    for name, s in cost["services"].items():
        out += [(f"{name} CPU-ms/1k", s["cpu_ms_per_1k"]), (f"{name} ctx/payment", s["ctx_per_payment"]),
                (f"{name} peak ctx/s", s["peak_ctx_per_s"])]
    out.append(("budget items over", len((fig.get("budget") or {}).get("over") or [])))
    return out


def medians(figs):
    """label -> ([value per run], median of the runs that have it)."""
    table = {}
    for i, fig in enumerate(figs):
        for label, v in rows(fig):
            table.setdefault(label, [None] * len(figs))[i] = v
    return {k: (vs, statistics.median([v for v in vs if v is not None]) if any(v is not None for v in vs) else None)
            for k, vs in table.items()}


def _fmt(v):
    if v is None:
        return "—"
    return f"{v:,.2f}" if isinstance(v, float) and not v.is_integer() else f"{v:,.0f}"


def main(argv):
    as_json = "--json" in argv
    dirs = [a for a in argv if a != "--json"]
    if not dirs:
        sys.exit(__doc__)
    figs = [load(d) for d in dirs]
    table = medians(figs)
    if as_json:
        json.dump({"runs": dirs, "median": {k: m for k, (_, m) in table.items()},
                   "values": {k: vs for k, (vs, _) in table.items()}}, sys.stdout, indent=2)
        print()
        return 0
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    width = max(14, *(len(n) for n in names))
    label_w = max(len(k) for k in table)
    print(f"{'':<{label_w}}  " + "  ".join(f"{n:>{width}}" for n in names) + f"  {'median':>{width}}")
    for label, (vs, m) in table.items():
        print(f"{label:<{label_w}}  " + "  ".join(f"{_fmt(v):>{width}}" for v in vs) + f"  {_fmt(m):>{width}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
