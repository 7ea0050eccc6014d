"""The load of a chaos run: a seeded plan of POST /payments (fresh UUIDs, random amounts
with 2 decimals, ~2 % of ids posted twice) and the threads that send it over keep-alive
connections with k6's 1.5 s timeout, recording every POST's outcome."""
import json
import queue
import random
import threading
import time
import uuid
import zlib
from collections import namedtuple

from .httpc import Client, NotSent

# t: seconds after the load starts; target: an instance name or "nginx".
Job = namedtuple("Job", "t id amount target")

CLIENT_TIMEOUT_S = 1.5


def new_id(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def new_amount(rng):
    cents = rng.randrange(1, 100000)
    return f"{cents // 100}.{cents % 100:02d}"


def owner(cid, instances):
    """The owner instance id (1-based) of a correlationId: rinha's and nginx's hash."""
    return ((zlib.crc32(cid.encode()) >> 16) & 0x7FFF) % instances + 1


def plan(seed, secs, rate, targets, nginx, dup_ratio=0.02):
    """The jobs of one run, sorted by time. Without nginx each id goes to a random
    instance and a duplicate to another one 0-1 s later; with nginx both go to nginx,
    the copy 1 s later (a client retrying)."""
    rng = random.Random(f"load-{seed}")
    jobs = []
    for k in range(int(secs * rate)):
        t = k / rate
        cid, amount = new_id(rng), new_amount(rng)
        target = "nginx" if nginx else rng.choice(targets)
        jobs.append(Job(t, cid, amount, target))
        if rng.random() < dup_ratio:
            if nginx:
                jobs.append(Job(t + 1.0, cid, amount, "nginx"))
            else:
                other = rng.choice([x for x in targets if x != target])
                jobs.append(Job(t + rng.uniform(0.0, 1.0), cid, amount, other))
    return sorted(jobs, key=lambda j: j.t)


def repro_plan(instances=2, count=50):
    """Issue 17's load: `count` payments owned by api2, all posted to api1 at once."""
    rng = random.Random("repro")
    jobs = []
    while len(jobs) < count:
        cid = new_id(rng)
        if owner(cid, instances) == 2:
            jobs.append(Job(0.1, cid, "19.90", "api1"))
    return jobs


class Load:
    """Sends `jobs` at their times from `threads` workers; `posts` gets one record per
    POST: id, amount, target, status (an HTTP status; "refused": the connect was refused,
    or the kept-alive connection was found broken while sending, so nothing was sent;
    None: no answer), error, sent (epoch s), latency (s)."""

    def __init__(self, jobs, urls, threads=160):
        self.jobs, self.urls, self.threads = jobs, urls, threads
        self.queue = queue.Queue()
        self.posts = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self, t0):
        workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for job in self.jobs:
            if self.stop.wait(max(0.0, t0 + job.t - time.monotonic())):
                break
            self.queue.put(job)
        for _ in workers:
            self.queue.put(None)
        for w in workers:
            w.join()

    def _work(self):
        clients = {}
        while (job := self.queue.get()) is not None:
            client = clients.get(job.target)
            if client is None:
                client = clients[job.target] = Client(self.urls[job.target], timeout=CLIENT_TIMEOUT_S)
            record = self._post(client, job)
            with self.lock:
                self.posts.append(record)
        for c in clients.values():
            c.close()

    @staticmethod
    def _post(client, job):
        body = json.dumps({"correlationId": job.id}).rstrip("}") + f',"amount":{job.amount}}}'
        sent, start = time.time(), time.monotonic()
        error = None
        try:
            status, _ = client.once("POST", "/payments", body.encode())
        except ConnectionRefusedError:
            status, error = "refused", "refused"  # at connect: the request was never sent
        except NotSent as e:
            status, error = "refused", str(e)  # a broken keep-alive connection: never sent
        except Exception as e:  # noqa: BLE001 — timeout, reset: the client saw no answer
            status, error = None, type(e).__name__
        return {"id": job.id, "amount": job.amount, "target": job.target, "status": status, "error": error,
                "sent": round(sent, 3), "latency": round(time.monotonic() - start, 3)}
