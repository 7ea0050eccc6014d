"""Once a second during the run: each instance's /health, each processor's stored
total (admin summary over all time) and each service's CPU time. One JSON line per
second in samples.jsonl, read by bench/report.py for the timeline."""
import json
import threading
import time

from .httpc import Client

ALL_TIME = "from=2000-01-01T00:00:00.000Z&to=2100-01-01T00:00:00.000Z"


class Sampler(threading.Thread):
    def __init__(self, out_path, health, processors, groups, token="123", period_s=1.0):
        """`health`: name -> base of an instance ('unix:/…sock'); `processors`: name -> base URL;
        `groups`: service name -> cgroups.Group."""
        super().__init__(name="sampler", daemon=True)
        self.out_path, self.period_s = out_path, period_s
        self.health = {n: Client(b, timeout=0.5) for n, b in health.items()}
        self.processors = {n: Client(b, timeout=0.5, headers={"X-Rinha-Token": token}) for n, b in processors.items()}
        self.groups = groups
        self.stop_event = threading.Event()
        self.last = {}

    def run(self):
        with open(self.out_path, "a") as out:
            next_t = time.time()
            while not self.stop_event.is_set():
                out.write(json.dumps(self.sample(), default=str) + "\n")
                out.flush()
                next_t += self.period_s
                self.stop_event.wait(max(0.0, next_t - time.time()))

    def sample(self):
        rec = {"t": time.time(), "health": {}, "stored": {}, "cpu_ns": {}}
        for name, c in self.health.items():
            rec["health"][name] = self._get(c, "/health")
        for name, c in self.processors.items():
            s = self._get(c, f"/admin/payments-summary?{ALL_TIME}")
            rec["stored"][name] = None if s is None else int(s.get("totalRequests", 0))
        for name, g in self.groups.items():
            try:
                rec["cpu_ns"][name] = g.cpu_ns()
            except OSError:
                pass
        self.last = rec
        return rec

    @staticmethod
    def _get(client, path):
        try:
            status, body = client.get(path)
            return body if status == 200 else None
        except Exception:  # a busy or restarting service: a gap in the timeline, not a failure
            return None

    def stop(self):
        self.stop_event.set()
        self.join(timeout=5)
        for c in list(self.health.values()) + list(self.processors.values()):
            c.close()
