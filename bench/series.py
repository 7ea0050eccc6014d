#!/usr/bin/env python3
"""Chosen /metrics series of a bench run, from RUN_DIR/metrics.jsonl.gz (sampled once
a second by run.py), as CSV on stdout or as an SVG line chart.

    bench/series.py bench/results/<run> rinha_queue_depth
    bench/series.py <run> 'rinha_payments_paid_total' --rate --svg paid.svg
    bench/series.py <run> --list

Each PATTERN is a regular expression searched in `name{labels}`; each column is one
instance and series. --rate turns counters into per-second rates.
"""
import argparse
import csv
import gzip
import json
import os
import re
import sys


def load(run_dir):
    """[(t, instance, {series: value})] in time order."""
    rows = []
    with gzip.open(os.path.join(run_dir, "metrics.jsonl.gz"), "rt") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:  # a torn last line
                continue
            rows.append((r["t"], r["instance"], r["series"]))
    rows.sort(key=lambda r: r[0])
    return rows


def columns(rows, patterns, rate=False):
    """{column: [(seconds since the first sample, value)]}."""
    res = [re.compile(p) for p in patterns]
    t0 = rows[0][0] if rows else 0.0
    cols, last = {}, {}
    for t, inst, series in rows:
        for name, v in series.items():
            if not any(r.search(name) for r in res):
                continue
            key = f"{inst}:{name}"
            if rate:
                prev = last.get(key)
                last[key] = (t, v)
                if prev is None or t <= prev[0]:
                    continue
                v = max(0.0, (v - prev[1]) / (t - prev[0]))
            cols.setdefault(key, []).append((round(t - t0, 3), v))
    return cols


def write_csv(cols, out):
    times = sorted({t for pts in cols.values() for t, _ in pts})
    names = sorted(cols)
    by = {n: dict(cols[n]) for n in names}
    w = csv.writer(out)
    w.writerow(["t"] + names)
    for t in times:
        w.writerow([t] + [by[n].get(t, "") for n in names])


def svg(cols, title):
    w, h, left, top, bottom = 900, 360, 70, 30, 40
    pts = [p for v in cols.values() for p in v]
    xmax = max((t for t, _ in pts), default=1.0) or 1.0
    ymax = max((v for _, v in pts), default=1.0) or 1.0
    x = lambda t: left + (w - left - 20) * t / xmax  # noqa: E731
    y = lambda v: top + (h - top - bottom) * (1 - v / ymax)  # noqa: E731
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(cols)}" font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="18">{title}</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{w - 20}" y2="{y(0)}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0)}" stroke="#999"/>',
             f'<text x="{left - 5}" y="{top + 4}" text-anchor="end">{ymax:.4g}</text>',
             f'<text x="{left - 5}" y="{y(0)}" text-anchor="end">0</text>',
             f'<text x="{w - 20}" y="{y(0) + 16}" text-anchor="end">{xmax:.0f} s</text>']
    for i, (name, values) in enumerate(sorted(cols.items())):
        color = palette[i % len(palette)]
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{left}" y="{h + 18 * i}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("patterns", nargs="*", help="regular expressions over name{labels}")
    p.add_argument("--rate", action="store_true", help="per-second rate of each series (counters)")
    p.add_argument("--svg", help="write a line chart here instead of CSV")
    p.add_argument("--list", action="store_true", help="list the series names of the run")
    a = p.parse_args(argv)
    rows = load(a.run_dir)
    if a.list:
        for name in sorted({n for _, _, s in rows for n in s}):
            print(name)
        return 0
    if not a.patterns:
        p.error("give at least one PATTERN (or --list)")
    cols = columns(rows, a.patterns, a.rate)
    if not cols:
        print(f"series.py: no series matches {a.patterns}", file=sys.stderr)
        return 1
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(cols, " | ".join(a.patterns) + (" (rate/s)" if a.rate else "")))
    else:
        write_csv(cols, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
