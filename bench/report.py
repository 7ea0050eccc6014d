#!/usr/bin/env python3
"""Timeline of one bench run (stdlib only): `report.py RESULTS_DIR` writes
timeline.json (one row per second) and timeline.svg from the k6 metrics CSV, the
k6 log (stage and check markers) and samples.jsonl (queue, stored/s, CPU and
context switches per service)."""
import csv
import gzip
import json
import math
import os
import sys
from html import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # also when run as a script
from lib import stats  # noqa: E402

# -- data -----------------------------------------------------------------------


def _open_csv(out):
    for name in ("k6-metrics.csv", "k6-metrics.csv.gz"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            return gzip.open(path, "rt", newline="") if name.endswith(".gz") else open(path, newline="")
    return None


def _p99(values):
    if not values:
        return None
    values.sort()
    return stats.percentile(values, 0.99)


def read_requests(out):
    """Per-second buckets (keyed by wall second) of http_req_duration samples."""
    f = _open_csv(out)
    if f is None:
        return {}, None
    buckets, t_first_payment = {}, None
    with f:
        for row in csv.DictReader(f):
            if row["metric_name"] != "http_req_duration":
                continue
            t = int(row["timestamp"]) / 1000.0
            ms = float(row["metric_value"])
            b = buckets.setdefault(int(t), {"ok": [], "payments": 0, "failed": 0})
            expected = row.get("expected_response") == "true"
            if expected:
                b["ok"].append(ms)
            if row.get("scenario") == "payments":
                b["payments"] += 1
                if not expected or row.get("status") not in ("200", "201", "202", "204"):
                    b["failed"] += 1
                if t_first_payment is None or t - ms / 1000 < t_first_payment:
                    t_first_payment = t - ms / 1000
    return buckets, t_first_payment


def read_markers(out):
    """Stage applications and consistency checks logged by the scenarios (RINHA_STAGE / RINHA_CHECK)."""
    stages, checks = [], []
    path = os.path.join(out, "k6-log.jsonl")
    if not os.path.exists(path):
        return stages, checks
    with open(path, errors="replace") as f:
        for line in f:
            if "RINHA_" not in line:
                continue
            try:
                msg = json.loads(line)["msg"]
                kind, payload = msg.split(" ", 1)
                rec = json.loads(payload)
            except (ValueError, KeyError):
                continue
            (stages if kind == "RINHA_STAGE" else checks).append(rec)
    return stages, checks


def read_samples(out):
    path = os.path.join(out, "samples.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def build_timeline(out):
    with open(os.path.join(out, "scenario.json")) as f:
        cfg = json.load(f)
    buckets, t0 = read_requests(out)
    stage_marks, checks = read_markers(out)
    samples = read_samples(out)
    if t0 is None:
        t0 = samples[0]["t"] if samples else 0.0
    t0 = math.floor(t0)
    end = max([int(k) for k in buckets] + [int(s["t"]) for s in samples] + [t0 + int(cfg["duration_s"])]) + 1
    rows = [{"s": s} for s in range(0, end - t0)]
    for sec, b in buckets.items():
        if 0 <= sec - t0 < len(rows):
            r = rows[sec - t0]
            r["p99_ms"] = _p99(b["ok"])
            r["requests"] = len(b["ok"]) + 0
            r["payments"] = b["payments"]
            r["failed"] = b["failed"]
    prev = {}
    for smp in samples:
        if "mark" in smp:  # an extra reading at k6's start or end, not a second of its own
            continue
        i = int(smp["t"]) - t0
        if not 0 <= i < len(rows):
            continue
        r = rows[i]
        for name, h in smp.get("health", {}).items():
            if h:
                r.setdefault("queue", {})[name] = h.get("queue")
                r.setdefault("inflight", {})[name] = h.get("inflight")
        for name, n in smp.get("stored", {}).items():
            if n is not None and name in prev.get("stored", {}) and prev["stored"][name] is not None:
                r.setdefault("paid", {})[name] = max(0, n - prev["stored"][name])
        for name, ns in smp.get("cpu_ns", {}).items():
            if name in prev.get("cpu_ns", {}):
                dt = smp["t"] - prev["t"]
                r.setdefault("cpu", {})[name] = round((ns - prev["cpu_ns"][name]) / 1e9 / dt, 3) if dt > 0 else None
        for name, (vol, invol) in smp.get("ctx", {}).items():
            before = prev.get("ctx", {}).get(name)
            dt = smp["t"] - prev.get("t", smp["t"])
            if before is not None and dt > 0:
                r.setdefault("ctx", {})[name] = round((vol + invol - sum(before)) / dt)
                r.setdefault("ctx_invol", {})[name] = round((invol - before[1]) / dt)
        prev = smp
    applied = {m["i"]: m["t"] / 1000.0 - t0 for m in stage_marks}
    stages = []
    for i, st in enumerate(cfg["stages"]):
        stages.append({**st, "start_s": applied.get(i, st["at_s"]), "planned_s": st["at_s"]})
    for i, st in enumerate(stages):
        st["end_s"] = stages[i + 1]["start_s"] if i + 1 < len(stages) else len(rows)
    marks = [{"s": c["t"] / 1000.0 - t0, "n": c["n"], "dd": c.get("dd"), "df": c.get("df")} for c in checks]
    return {"scenario": cfg.get("name"), "t0": t0, "rows": rows, "stages": stages, "checks": marks,
            "budget": cfg.get("budget") or {}}


# -- drawing --------------------------------------------------------------------

W, LEFT, RIGHT, PANEL_H, GAP, TOP = 1280, 70, 150, 150, 34, 92
PANELS = 5
COLORS = {"default": "#1f77b4", "fallback": "#ff7f0e", "requests": "#7f7f7f", "p99": "#d62728",
          "failed": "#d62728", "api1": "#2ca02c", "api2": "#9467bd", "nginx": "#8c564b",
          "k6": "#bcbd22", "processor-default": "#17becf", "processor-fallback": "#e377c2", "backend": "#2ca02c",
          "noise": "#7f7f7f"}
EXTRA = ["#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2", "#bcbd22"]


def _color(name, i=0):
    return COLORS.get(name, EXTRA[i % len(EXTRA)])


def _stage_fill(st):
    d, f = st["default"], st["fallback"]
    if d["failure"] and f["failure"]:
        return "#f4b6b6"
    if d["failure"]:
        return "#fbd5d5"
    if d["delay"] >= 1000:
        return "#fde3c4"
    if d["delay"] >= 100:
        return "#fff3c4"
    if f["failure"] or f["delay"] >= 1000:
        return "#e6e0f5"
    return "#f2f7f2"


def _stage_label(st):
    def one(tag, p):
        return f"{tag} {p['delay']}ms" + (" FAIL" if p["failure"] else "")
    return one("D", st["default"]), one("F", st["fallback"])


class Panel:
    def __init__(self, svg, index, title, xmax, ymax, log=False, unit="", ymin=0.1):
        self.svg, self.title, self.xmax, self.log, self.unit = svg, title, max(xmax, 1), log, unit
        self.y0 = TOP + index * (PANEL_H + GAP)
        self.ymax = ymax if ymax and ymax > 0 else 1
        self.ymin = ymin if log else 0

    def x(self, s):
        return LEFT + (W - LEFT - RIGHT) * s / self.xmax

    def y(self, v):
        if self.log:
            v = max(v, self.ymin)
            frac = (math.log10(v) - math.log10(self.ymin)) / (math.log10(self.ymax) - math.log10(self.ymin))
        else:
            frac = v / self.ymax
        return self.y0 + PANEL_H - PANEL_H * min(max(frac, 0), 1)

    def frame(self, stages, checks):
        a = self.svg.append
        for st in stages:
            x1, x2 = self.x(st["start_s"]), self.x(min(st["end_s"], self.xmax))
            a(f'<rect x="{x1:.1f}" y="{self.y0}" width="{max(x2 - x1, 0):.1f}" height="{PANEL_H}" fill="{_stage_fill(st)}"/>')
        a(f'<rect x="{LEFT}" y="{self.y0}" width="{W - LEFT - RIGHT}" height="{PANEL_H}" fill="none" stroke="#999"/>')
        a(f'<text x="{LEFT}" y="{self.y0 - 6}" class="t">{escape(self.title)}</text>')
        for v in self._ticks():
            yy = self.y(v)
            a(f'<line x1="{LEFT - 4}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd" stroke-width="0.5"/>')
            a(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" class="ax" text-anchor="end">{_fmt(v)}{self.unit}</text>')
        for c in checks:
            xx = self.x(c["s"])
            color = "#d62728" if c["n"] else "#2ca02c"
            a(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.y0}" y2="{self.y0 + PANEL_H}" stroke="{color}" '
              f'stroke-width="{2 if c["n"] else 1}" stroke-dasharray="{"none" if c["n"] else "3,3"}"/>')

    def _ticks(self):
        if self.log:
            return [10 ** e for e in range(int(math.log10(self.ymin)), int(math.ceil(math.log10(self.ymax))) + 1)
                    if self.ymin <= 10 ** e <= self.ymax]
        step = _nice(self.ymax / 4)
        return [i * step for i in range(0, int(self.ymax / step) + 1)]

    def line(self, points, color, width=1.5, dash=None):
        pts, segs = [], []
        for s, v in points:
            if v is None:
                if pts:
                    segs.append(pts)
                pts = []
                continue
            pts.append(f"{self.x(s + 0.5):.1f},{self.y(v):.1f}")
        if pts:
            segs.append(pts)
        d = f' stroke-dasharray="{dash}"' if dash else ""
        for s, v in points:  # values above the panel are drawn at its top edge, with their value
            if v is not None and not self.log and v > self.ymax:
                self.svg.append(f'<text x="{self.x(s + 0.5) + 3:.1f}" y="{self.y0 + 10}" class="ax" fill="{color}">{_fmt(v)}</text>')
        for seg in segs:
            if len(seg) == 1:
                x, y = seg[0].split(",")
                self.svg.append(f'<circle cx="{x}" cy="{y}" r="1.8" fill="{color}"/>')
            else:
                self.svg.append(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" stroke-width="{width}"{d}/>')

    def bars(self, points, color, opacity=0.35):
        bw = (W - LEFT - RIGHT) / self.xmax
        for s, v in points:
            if v:
                y = self.y(v)
                self.svg.append(f'<rect x="{self.x(s):.1f}" y="{y:.1f}" width="{max(bw - 0.5, 0.5):.1f}" '
                                f'height="{self.y0 + PANEL_H - y:.1f}" fill="{color}" fill-opacity="{opacity}"/>')

    def legend(self, items):
        for i, (name, color) in enumerate(items):
            yy = self.y0 + 14 + i * 15
            self.svg.append(f'<rect x="{W - RIGHT + 10}" y="{yy - 9}" width="10" height="10" fill="{color}"/>')
            self.svg.append(f'<text x="{W - RIGHT + 24}" y="{yy}" class="ax">{escape(name)}</text>')


def _nice(x):
    if x <= 0:
        return 1
    e = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def _fmt(v):
    return f"{v:g}" if v < 10000 else f"{v / 1000:g}k"


def _names(rows, key):
    seen = []
    for r in rows:
        for n in r.get(key, {}):
            if n not in seen:
                seen.append(n)
    return seen


def draw(tl, figures=None, limits=None):
    rows, stages, checks = tl["rows"], tl["stages"], tl["checks"]
    xmax = len(rows)
    svg = []
    panels = []

    p99s = [r.get("p99_ms") for r in rows if r.get("p99_ms") is not None]
    p = Panel(svg, 0, "p99 of each second, all expected responses (ms, log scale); red bars: failed/timed-out payments",
              xmax, max(p99s + [10]) * 1.3, log=True, unit="")
    panels.append(p)
    p.frame(stages, checks)
    fails = [(r["s"], r.get("failed", 0)) for r in rows]
    if any(v for _, v in fails):
        pf = Panel(svg, 0, "", xmax, max(v for _, v in fails) * 3)
        pf.bars(fails, COLORS["failed"], 0.5)
    p.line([(r["s"], r.get("p99_ms")) for r in rows], COLORS["p99"])
    p.legend([("p99 ms", COLORS["p99"]), ("failed payments", COLORS["failed"])])

    paid_names = _names(rows, "paid")
    # Scaled to what k6 requests: a burst of paid/s after an outage is clipped and labelled.
    peak = max([r.get("payments", 0) for r in rows] + [1])
    p = Panel(svg, 1, "payments/s: requested by k6 (grey bars) and stored by each processor (lines; clipped bursts labelled)",
              xmax, peak * 1.5)
    p.frame(stages, checks)
    p.bars([(r["s"], r.get("payments", 0)) for r in rows], COLORS["requests"])
    for n in paid_names:
        p.line([(r["s"], r.get("paid", {}).get(n)) for r in rows], _color(n))
    p.legend([("requested/s", COLORS["requests"])] + [(f"{n} paid/s", _color(n)) for n in paid_names])

    q_names = _names(rows, "queue")
    qmax = max([(r.get("queue", {}).get(n) or 0) + (r.get("inflight", {}).get(n) or 0) for r in rows for n in q_names] + [1])
    p = Panel(svg, 2, "backend backlog per instance: queue (solid) and in flight to processors (dashed), from /health", xmax, qmax * 1.1)
    p.frame(stages, checks)
    for i, n in enumerate(q_names):
        p.line([(r["s"], r.get("queue", {}).get(n)) for r in rows], _color(n, i))
        p.line([(r["s"], r.get("inflight", {}).get(n)) for r in rows], _color(n, i), 1, "4,3")
    p.legend([(n, _color(n, i)) for i, n in enumerate(q_names)] or [("no /health samples", "#ccc")])

    cpu_names = [n for n in _names(rows, "cpu") if n != "noise"]  # --noise burners: a core each, not drawn
    cmax = max([r.get("cpu", {}).get(n) or 0 for r in rows for n in cpu_names] + [0.1])
    p = Panel(svg, 3, "CPU per service (cores, cgroup accounting); dotted: its limit", xmax, cmax * 1.15)
    p.frame(stages, checks)
    for i, n in enumerate(cpu_names):
        p.line([(r["s"], r.get("cpu", {}).get(n)) for r in rows], _color(n, i), 1.2)
        lim = ((limits or {}).get(n) or {}).get("cpus")
        if lim and lim <= cmax * 1.15:
            p.line([(0, lim), (xmax - 1, lim)], _color(n, i), 1, "1,3")
    p.legend([(n, _color(n, i)) for i, n in enumerate(cpu_names)] or [("no cgroup samples", "#ccc")])

    _switches_panel(svg, 4, rows, stages, checks, xmax, (tl.get("budget") or {}).get("instance_peak_ctx_per_s"))
    return _document(svg, tl, stages, xmax, panels[0], figures)


def _switches_panel(svg, index, rows, stages, checks, xmax, budget):
    """Context switches per second per service (log scale); dashed: the involuntary ones."""
    names = [n for n in _names(rows, "ctx") if n != "noise"]
    cmax = max([r.get("ctx", {}).get(n) or 0 for r in rows for n in names] + [budget or 0, 100])
    p = Panel(svg, index, "context switches/s per service (all threads, voluntary + involuntary; dashed: involuntary; "
              "log scale)" + (f"; dotted: budget {budget:,}/s per instance" if budget else ""),
              xmax, cmax * 1.5, log=True, ymin=10)
    p.frame(stages, checks)
    if budget:
        p.line([(0, budget), (xmax - 1, budget)], "#d62728", 1, "1,3")
    for i, n in enumerate(names):
        p.line([(r["s"], r.get("ctx", {}).get(n)) for r in rows], _color(n, i), 1.2)
        p.line([(r["s"], r.get("ctx_invol", {}).get(n)) for r in rows], _color(n, i), 0.8, "3,2")
    p.legend([(n, _color(n, i)) for i, n in enumerate(names)] or [("no context-switch samples", "#ccc")])


def _document(body, tl, stages, xmax, p0, figures):
    height = TOP + PANELS * (PANEL_H + GAP) + 20
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
            'font-family="sans-serif">',
            '<style>.t{font-size:12px;fill:#333}.ax{font-size:10px;fill:#555}.h{font-size:14px;font-weight:bold}</style>',
            f'<rect width="{W}" height="{height}" fill="white"/>']
    title = f"Rinha bench — {tl['scenario']}"
    if figures:
        title += (f" — p99 {figures['p99']}, total_liquido {figures['total_liquido']:,.2f}, default/fallback "
                  f"{figures['default']}/{figures['fallback']}, inconsistencies {figures['inconsistencies']}, lag {figures['lag']}")
    head.append(f'<text x="{LEFT}" y="20" class="h">{escape(title)}</text>')
    head.append(f'<text x="{LEFT}" y="36" class="ax">Bands: processor stage (red: default failing, orange: default ≥ 1 s, '
                'yellow: default ≥ 100 ms, violet: fallback failing/slow). Vertical lines: k6 consistency checks '
                '(green dashed: 0, red: inconsistencies). x: seconds since the first payment.</text>')
    cost = (figures or {}).get("cost")
    if cost:
        st = cost["stack"]
        per = ", ".join(f"{n} {cost['services'][n]['cpu_ms_per_1k']}" for n in st["services"])
        # No stack services when the backend runs elsewhere (--no-backend, --backend-cmd).
        peak = "n/a" if st["peak_ctx_per_s"] is None else f"{st['peak_ctx_per_s']:,}/s ({st['peak_instance']})"
        line = (f"Cost during the test ({cost['payments']:,} payments, noise {figures.get('noise', 0)}): stack "
                f"{st['cpu_s']} CPU-s; CPU-ms per 1,000 payments: {per}; {st['ctx_per_payment']} context switches "
                f"per payment; peak {peak}")
        over = (figures.get("budget") or {}).get("over")
        head.append(f'<text x="{LEFT}" y="50" class="ax" fill="{"#d62728" if over else "#555"}">'
                    f'{escape(line + ("; over budget" if over else ""))}</text>')
    for st in stages:
        x = p0.x(st["start_s"])
        d, f = _stage_label(st)
        head.append(f'<text x="{x + 2:.1f}" y="{TOP - 30}" class="ax">{escape(d)}</text>')
        head.append(f'<text x="{x + 2:.1f}" y="{TOP - 19}" class="ax">{escape(f)}</text>')
    tail = []
    yb = TOP + PANELS * (PANEL_H + GAP) - GAP + 14
    step = _nice(xmax / 12)
    s = 0
    while s <= xmax:
        tail.append(f'<text x="{p0.x(s):.1f}" y="{yb}" class="ax" text-anchor="middle">{s:g}s</text>')
        s += step
    for c in tl["checks"]:
        if c["n"]:
            tail.append(f'<text x="{p0.x(c["s"]) + 3:.1f}" y="{TOP + 12}" class="ax" fill="#d62728">Δ{c["n"]}</text>')
    return "\n".join(head + body + tail + ["</svg>"]) + "\n"


def build(out):
    """Writes timeline.json and timeline.svg into a results directory; returns the SVG path."""
    tl = build_timeline(out)
    with open(os.path.join(out, "timeline.json"), "w") as f:
        json.dump(tl, f)
    figures, limits = None, None
    fig_path = os.path.join(out, "figures.json")
    if os.path.exists(fig_path):
        with open(fig_path) as f:
            figures = json.load(f)
    svc_path = os.path.join(out, "services.json")
    if os.path.exists(svc_path):
        with open(svc_path) as f:
            limits = {n: s.get("limits") for n, s in json.load(f).items()}
    path = os.path.join(out, "timeline.svg")
    with open(path, "w") as f:
        f.write(draw(tl, figures, limits))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_DIR")
    print(build(sys.argv[1]))
