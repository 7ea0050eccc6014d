"""Once a second during the run: each instance's /health, each processor's stored
total (admin summary over all time) and each service's CPU time and context switches
(bench/lib/meters.py). One JSON line per second in samples.jsonl, read by
bench/report.py for the timeline; `mark()` adds an immediate line naming a moment
(the start and end of k6), between which bench/lib/cost.py computes the run's cost.

Context switches are read thread by thread (/proc/<tid>/status): about 1,600 files a
second with the two emulators' ~500 threads each, 25 ms of CPU in one burst every
second on the 2 cores the stack is measured on. So only the services `detailed(name)`
says yes to (the stack) are read every second; the others (emulators, k6, noise) every
`coarse_every` samples and at every mark, which is all their cost totals need (their
timeline panel and peak per second are then absent)."""
import json
import os
import threading
import time

from .httpc import Client

ALL_TIME = "from=2000-01-01T00:00:00.000Z&to=2100-01-01T00:00:00.000Z"


def run_when_idle(enabled=True):
    """Moves the calling thread to SCHED_IDLE: it gets a CPU only when nothing else wants
    one, so its once-a-second burst of /proc reads never delays nginx, an instance or k6
    (`bench/sched_blame.py` found the bench's Python running in 11 % of the time those
    threads waited to run). The machine is mostly idle, so it still samples every
    second; each record's time is taken when it is read. Not `enabled` when `--noise`
    keeps every CPU busy (it would starve). Without the right or the policy: unchanged."""
    if not enabled:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass


class Sampler(threading.Thread):
    def __init__(self, out_path, health, processors, meters, token="123", period_s=1.0,
                 detailed=lambda name: True, coarse_every=10, when_idle=True):
        """`health`: name -> base of an instance ('unix:/…sock'); `processors`: name -> base URL;
        `meters`: service name -> meters.Meter."""
        super().__init__(name="sampler", daemon=True)
        self.out_path, self.period_s = out_path, period_s
        self.health = {n: Client(b, timeout=0.5) for n, b in health.items()}
        self.processors = {n: Client(b, timeout=0.5, headers={"X-Rinha-Token": token}) for n, b in processors.items()}
        self.meters = meters
        self.detailed, self.coarse_every, self.n = detailed, coarse_every, 0
        self.when_idle = when_idle
        self.stop_event = threading.Event()
        self.write_lock = threading.Lock()
        self.out = open(out_path, "a")
        self.last = {}
        self.cpu_s = 0.0  # this thread's own CPU time: what the sampling costs

    def run(self):
        run_when_idle(self.when_idle)
        t_cpu = time.thread_time()
        next_t = time.time()
        while not self.stop_event.is_set():
            self.sample()
            self.cpu_s = time.thread_time() - t_cpu
            next_t += self.period_s
            self.stop_event.wait(max(0.0, next_t - time.time()))

    def sample(self):
        rec = {"health": {}, "stored": {}}
        for name, c in self.health.items():
            rec["health"][name] = self._get(c, "/health")
        for name, c in self.processors.items():
            s = self._get(c, f"/admin/payments-summary?{ALL_TIME}")
            rec["stored"][name] = None if s is None else int(s.get("totalRequests", 0))
        self._write(rec)
        self.last = rec
        return rec

    def mark(self, name):
        """Writes the meters now, tagged `name`; returns that record."""
        return self._write({"mark": name})

    def _write(self, rec):
        with self.write_lock:
            if self.out.closed:
                return rec
            rec["t"] = time.time()
            rec["cpu_ns"], rec["ctx"], rec["threads"], rec["exited"] = {}, {}, {}, {}
            every = "mark" in rec or self.n % self.coarse_every == 0
            self.n += "mark" not in rec
            for name, m in list(self.meters.items()):  # the runner adds meters (k6, noise) while this runs
                try:
                    rec["cpu_ns"][name] = m.cpu_ns()
                except OSError:
                    pass
                if not (every or self.detailed(name)):
                    continue
                rec["ctx"][name] = list(m.switches())
                rec["threads"][name] = m.threads
                rec["exited"][name] = m.exited
                if "mark" in rec and self.detailed(name):
                    rec.setdefault("roles", {})[name] = m.roles()
            self.out.write(json.dumps(rec, default=str) + "\n")
            self.out.flush()
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
        with self.write_lock:
            if not self.out.closed:
                self.out.close()
