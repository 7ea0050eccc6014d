"""Where the p99 tail is: inside nginx and the instances, or outside them (`--tail`).

k6 times a request from its write to its last byte read; nginx's access log times the
same request from the moment nginx reads it to the moment it writes the answer
(`$request_time`), and the part spent waiting on an instance (`$upstream_response_time`).
Comparing the share of payments at or above k6's p99 with the share that nginx saw at
or above it tells how much of the tail the stack behind port 9999 could even be
responsible for; the rest is k6 itself and the kernel handing bytes to nginx or k6.
nginx logs whole milliseconds, so its threshold is k6's p99 rounded down: its shares
are upper bounds.

Run as a script with --self-test to check the arithmetic on a synthetic log.
"""
import csv
import gzip
import json
import math
import os
import sys

if __name__ == "__main__":  # run as a script (--self-test): lib's modules by name
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lib.stats import percentile  # noqa: E402

LOG_FORMAT = "$msec $request_time $upstream_response_time $request_method"


def nginx_directives(path):
    """The http-block lines that make nginx log each request's timing to `path`, buffered
    (written every 256 kB or 2 s, not once per request)."""
    return f"log_format tail '{LOG_FORMAT}';\n    access_log {path} tail buffer=256k flush=2s;"


def k6_payment_ms(metrics_csv_gz):
    """Durations (ms) of the expected POST /payments responses in k6's CSV output."""
    out = []
    with gzip.open(metrics_csv_gz, "rt") as f:
        for row in csv.DictReader(f):
            if (row["metric_name"] == "http_req_duration" and row["method"] == "POST"
                    and row["expected_response"] == "true" and row["name"].endswith("/payments")):
                out.append(float(row["metric_value"]))
    return out


def nginx_payment_ms(lines):
    """(request ms, upstream ms or None) of each POST in nginx's log, in that format."""
    out = []
    for line in lines:
        f = line.split()
        if len(f) < 4 or f[-1] != "POST":
            continue
        # "-" when no instance was reached; "a, b" (one field per attempt) when nginx
        # retried on the other instance: the attempts add up.
        tries = [t.rstrip(",") for t in f[2:-1] if t.rstrip(",") != "-"]
        try:
            request = float(f[1]) * 1000
            upstream = sum(float(t) for t in tries) * 1000 if tries else None
        except ValueError:
            continue
        out.append((request, upstream))
    return out


def analyse(k6_ms, nginx_ms):
    """Shares (%) of payments at or above k6's p99, as k6 and as nginx saw them."""
    if not k6_ms or not nginx_ms:
        return None
    p99 = percentile(sorted(k6_ms), 0.99)
    floor_ms = math.floor(p99)
    k6_share = 100 * sum(1 for v in k6_ms if v >= p99) / len(k6_ms)
    in_nginx = 100 * sum(1 for r, _ in nginx_ms if r >= floor_ms) / len(nginx_ms)
    upstream = 100 * sum(1 for _, u in nginx_ms if u is not None and u >= floor_ms) / len(nginx_ms)
    return {
        "k6_p99_ms": round(p99, 3),
        "nginx_threshold_ms": floor_ms,
        "k6_share_pct": round(k6_share, 3),
        "nginx_share_pct": round(in_nginx, 3),
        "upstream_share_pct": round(upstream, 3),
        # Both nginx times are whole ms from different clocks: either may read higher.
        "outside_pct_at_least": round(max(0.0, 100 * (1 - max(in_nginx, upstream) / k6_share)), 1)
        if k6_share else None,
        "payments_k6": len(k6_ms),
        "payments_nginx": len(nginx_ms),
    }


def run(metrics_csv_gz, access_log, out_json):
    with open(access_log) as f:
        result = analyse(k6_payment_ms(metrics_csv_gz), nginx_payment_ms(f))
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
    return result


def line(t):
    """The one line run.py prints."""
    if t is None:
        return "tail: no payments logged"
    return (f"tail: at or above k6's p99 ({t['k6_p99_ms']} ms): {t['k6_share_pct']} % of payments in k6; "
            f">= {t['nginx_threshold_ms']} ms inside nginx {t['nginx_share_pct']} %, waiting on an "
            f"instance {t['upstream_share_pct']} %: at least {t['outside_pct_at_least']} % of the tail is "
            f"outside nginx and the instances")


def self_test():
    k6 = [1.0] * 980 + [5.0] * 20          # p99 5.0 ms; 2 % at or above it
    log = ["1.0 0.001 0.001 POST"] * 995 + ["1.0 0.005 0.004 POST"] * 4 + \
          ["1.0 0.006 - POST", "1.0 0.009 0.009 GET", "garbage", "1.0 0.00x 0.001 POST"]
    got = analyse(k6, nginx_payment_ms(log))
    assert got["k6_p99_ms"] == 5.0 and got["nginx_threshold_ms"] == 5, got
    assert got["payments_nginx"] == 1000, got            # the GET and the garbage are not payments
    retried = nginx_payment_ms(["1.0 0.007 0.002, 0.004 POST", "1.0 0.001 -, 0.001 POST"])
    assert [round(u) for _, u in retried] == [6, 1], retried
    assert got["nginx_share_pct"] == 0.5, got             # 4 at 5 ms + 1 at 6 ms of 1000
    assert got["upstream_share_pct"] == 0.0, got          # 4 ms < 5: below the threshold
    assert got["outside_pct_at_least"] == 75.0, got       # 1 - 0.5 / 2
    assert analyse([], []) is None
    print("tail.py: self-test ok")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    else:
        sys.exit("usage: tail.py --self-test")
