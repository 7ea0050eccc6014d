"""Once a second during the run: every instance's GET /metrics (Prometheus text), one
JSON line per instance and sample in metrics.jsonl.gz: {"t", "instance", "series":
{"name{labels}": value}}. bench/series.py turns chosen series into CSV or an SVG."""
import gzip
import json
import threading
import time

from .httpc import Client
from .sampler import run_when_idle


def parse(text):
    """Prometheus text format -> {"name{labels}": float}; comments and bad lines skipped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


class MetricsSampler(threading.Thread):
    def __init__(self, out_path, instances, period_s=1.0, when_idle=True):
        """`instances`: name -> base of an instance ('unix:/…sock' or 'http://…')."""
        super().__init__(name="metrics-sampler", daemon=True)
        self.out_path, self.period_s = out_path, period_s
        self.clients = {n: Client(b, timeout=0.5) for n, b in instances.items()}
        self.stop_event = threading.Event()
        self.cpu_s = 0.0  # this thread's own CPU time: what the sampling costs
        self.when_idle = when_idle

    def run(self):
        run_when_idle(self.when_idle)
        t_cpu = time.thread_time()
        with gzip.open(self.out_path, "at") as out:
            next_t = time.time()
            while not self.stop_event.is_set():
                t = time.time()  # one time per round: the instances line up in a CSV
                for name, c in self.clients.items():
                    try:
                        status, body = c.raw("GET", "/metrics")
                    except Exception:  # a busy or restarting instance: a gap, not a failure
                        continue
                    if status == 200:
                        rec = {"t": t, "instance": name, "series": parse(body.decode("utf-8", "replace"))}
                        out.write(json.dumps(rec) + "\n")
                self.cpu_s = time.thread_time() - t_cpu
                next_t += self.period_s
                self.stop_event.wait(max(0.0, next_t - time.time()))

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)
        for c in self.clients.values():
            c.close()
