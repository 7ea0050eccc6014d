"""The fault schedule of a chaos run: a pure function of (seed, seconds, instances), so a
seed replays the same faults at the same offsets, and the thread that applies it.

Every 1.5-4 s one fault starts on something not already faulted: kill -9 an instance
and restart it 0.3-3 s later; SIGSTOP one for 0.5-6 s; cut a peer link (and refuse
reconnects) for 1-6 s; fail one processor for 1-6 s; set a processor's delay to
0-1500 ms (kept until the next delay); fail both processors for 2-8 s."""
import random
import threading
import time
from collections import namedtuple

# t: seconds after the load starts (< 0: before the instances start); target: instance id, (i, j) link, or processor name.
Event = namedtuple("Event", "t action target value")

PROCESSORS = ("default", "fallback")
FAULTS = ("kill", "pause", "cut", "fail", "delay", "fail_both")


def generate(seed, secs, instances):
    """The events of one seeded run, sorted by time (undo events may fall after `secs`)."""
    rng = random.Random(seed)
    busy = {}  # resource -> busy until
    events = []
    t = rng.uniform(1.5, 4.0)
    while t < secs:
        fault = rng.choice(FAULTS)
        events += _fault(rng, fault, t, instances, busy)
        t += rng.uniform(1.5, 4.0)
    return sorted(events, key=lambda e: e.t)


def _fault(rng, fault, t, instances, busy):
    """Events of one fault at `t`, or none when every candidate target is busy."""
    ids = range(1, instances + 1)

    def free(keys):
        return [k for k in keys if busy.get(k, 0.0) <= t]

    if fault == "delay":
        return [Event(t, "delay", rng.choice(PROCESSORS), rng.randrange(0, 1501, 10))]
    if fault == "fail_both":
        if len(free(PROCESSORS)) < 2:
            return []
        return _window(rng, t, (2.0, 8.0), busy, PROCESSORS, "fail", "recover", PROCESSORS)
    candidates = {
        "kill": free(ids),
        "pause": free(ids),
        "cut": free([(i, j) for i in ids for j in ids if i < j]),
        "fail": free(PROCESSORS),
    }[fault]
    if not candidates:
        return []
    target = rng.choice(candidates)
    start, end, span = {
        "kill": ("kill", "restart", (0.3, 3.0)),
        "pause": ("pause", "resume", (0.5, 6.0)),
        "cut": ("cut", "heal", (1.0, 6.0)),
        "fail": ("fail", "recover", (1.0, 6.0)),
    }[fault]
    return _window(rng, t, span, busy, [target], start, end, [target])


def _window(rng, t, span, busy, resources, start, end, targets):
    until = round(t + rng.uniform(*span), 2)
    for r in resources:
        busy[r] = until
    t = round(t, 2)
    return [Event(t, start, x, None) for x in targets] + [Event(until, end, x, None) for x in targets]


def repro():
    """Issue 17's minimal repro: default failing with a 2 s delay (from before the
    instances start) while 50 payments
    owned by api2 are forwarded from api1; api2 is killed at 1 s, restarted at 1.5 s;
    default heals at 13.5 s."""
    return [
        Event(-1.0, "delay", "default", 2000),
        Event(-1.0, "fail", "default", None),
        Event(1.0, "kill", 2, None),
        Event(1.5, "restart", 2, None),
        Event(13.5, "recover", "default", None),
        Event(13.5, "delay", "default", 0),
    ]


def describe(e):
    target = e.target
    if isinstance(target, tuple):
        target = f"link api{target[0]}-api{target[1]}"
    elif isinstance(target, int):
        target = f"api{target}"
    value = "" if e.value is None else f" {e.value}ms"
    return f"+{e.t:6.2f}s {e.action} {target}{value}"


def apply(cluster, e):
    """Performs one event on the cluster."""
    actions = {
        "kill": lambda: cluster.kill(e.target),
        "restart": lambda: cluster.restart(e.target),
        "pause": lambda: cluster.pause(e.target),
        "resume": lambda: cluster.resume(e.target),
        "cut": lambda: cluster.cut(*e.target),
        "heal": lambda: cluster.heal_link(*e.target),
        "fail": lambda: cluster.set_failure(e.target, True),
        "recover": lambda: cluster.set_failure(e.target, False),
        "delay": lambda: cluster.set_delay(e.target, e.value),
    }
    actions[e.action]()


class Runner(threading.Thread):
    """Applies the events due from `t0` to `until` seconds after it, printing each; stops
    early when `stop` is set. `done` lists (event, error or None) as applied."""

    def __init__(self, cluster, events, t0, until, log):
        super().__init__(daemon=True, name="chaos-schedule")
        self.cluster, self.events, self.t0, self.until, self.log = cluster, events, t0, until, log
        self.stop = threading.Event()
        self.done = []

    def run(self):
        for e in (e for e in self.events if e.t >= 0):
            if e.t > self.until or self.stop.wait(max(0.0, self.t0 + e.t - time.monotonic())):
                return
            try:
                apply(self.cluster, e)
                error = None
            except Exception as exc:  # noqa: BLE001 — logged; the run goes on
                error = f"{type(exc).__name__}: {exc}"
            self.done.append((e, error))
            late = time.monotonic() - self.t0 - e.t
            self.log(f"[chaos] {describe(e)}" + (f"  (applied {late:.2f}s late)" if late > 0.2 else "")
                     + (f"  FAILED: {error}" if error else ""))
