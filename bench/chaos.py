#!/usr/bin/env python3
"""A seeded, randomized fault campaign ("Jepsen-style") against a rinha cluster.

One run: two processor emulators, N journaled rinha instances (explicit ids, a full
peer mesh whose every link runs through a loopback proxy this script can cut), and
optionally the real nginx with the project's nginx.conf in front, all on 127.0.0.1
with sockets and journals in a temp dir. ~150 payments/s for --secs seconds (fresh
UUIDs, random 2-decimal amounts), posted to a random instance (about half are then
forwarded to their owner) or to nginx; ~2 % of ids are posted twice (to two instances,
or to nginx 1 s apart like a retrying client). Every POST is recorded (status, or no
answer after k6's 1.5 s). Meanwhile a seeded schedule breaks something every 1.5-4 s
(bench/lib/chaos_schedule.py): kill -9 + restart from the journal, SIGSTOP/SIGCONT, a
peer link cut and healed, a processor failing, slow (0-1500 ms) or both failing.

Then everything is healed, the instances drain (bounded), and the checker
(bench/lib/chaos_check.py) asks both processors for every id posted and compares each
instance's /payments-summary with the processors' admin summaries (whole run and 8
seeded windows). Violations: lost (a 2xx id stored nowhere), paid twice (stored on both
processors), paid without a 2xx (stored, every POST of it answered non-2xx), wrong
amount, summary mismatch, an instance that died on its own. Exit status 1 on any.
Each run keeps every process's log, the schedule, the POST log and the verdict in
bench/results/chaos-<seed>-<time>/.

Knobs (make variables in brackets):
  --seed N [SEED]          replay seed N: same faults at the same offsets, same ids and
                           amounts, same targets (default: a random seed, printed)
  --seeds A-B | A,B,C | N  one run per seed (N: 1..N), a table at the end [SEEDS]
  --campaign ci|long       the matrices of `make chaos-ci` and `make chaos-long` (CAMPAIGNS;
                           --seeds and --secs override every row's seeds and length)
  --instances 2|3 [INSTANCES], --nginx [NGINX=1], --secs S [SECS]
  --no-faults              the same load with no faults: must pass clean
  --scenario repro [SCENARIO=repro]  issue 17's fixed repro instead of a random run
  --self-test              the checker against synthetic evidence (no processes)

Replay a failing run: `make chaos SEED=<seed> INSTANCES=<n> NGINX=<0|1> SECS=<s>` (the
run prints this line). Timing under load is not replayed exactly: a seed replays the
faults and the load, not the interleaving.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
from lib import chaos_check, chaos_load, chaos_schedule  # noqa: E402
from lib.chaos_cluster import Cluster  # noqa: E402
from lib.httpc import Client  # noqa: E402

RATE = 150
DRAIN_GAUGES = ("rinha_queue_depth", "rinha_payments_in_flight", "rinha_workers_busy", "rinha_router_parked")


# Campaigns: (first seed, seed count, instances, nginx, secs, no faults) per row.
# ci: a quiet run that must pass, then one seed per shape; seed 8 (2 instances, no nginx)
# paid 2-4 payments twice in 2 runs of 2 at e6169e9 (issue 17). long: 50 seeds x 45 s for 2 instances and 20 for 3, each with and without nginx
# (140 runs of ~75 s: about 3 hours). --seeds N sets every row's count, --secs its length.
CAMPAIGNS = {
    "ci": [(1, 1, 2, False, 10, True), (8, 1, 2, False, 15, False), (2, 1, 2, True, 15, False),
           (3, 1, 3, False, 15, False), (4, 1, 3, True, 15, False)],
    "long": [(1, 50, 2, False, 45, False), (1, 50, 2, True, 45, False),
             (1, 20, 3, False, 45, False), (1, 20, 3, True, 45, False)],
}


class Interrupted(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, help="the run's seed (default: random, printed)")
    p.add_argument("--seeds", help="one run per seed: A-B, A,B,C or N (1..N)")
    p.add_argument("--campaign", choices=sorted(CAMPAIGNS), help="a fixed matrix of runs (see CAMPAIGNS)")
    p.add_argument("--secs", type=float, help="seconds of load and faults [45]")
    p.add_argument("--instances", type=int, choices=(2, 3), default=2)
    p.add_argument("--nginx", action="store_true", help="post through nginx (the project's nginx.conf)")
    p.add_argument("--no-faults", action="store_true", help="the load alone: a clean run must pass")
    p.add_argument("--scenario", choices=("random", "repro"), default="random")
    p.add_argument("--rate", type=float, default=RATE, help=f"payments/s [{RATE}]")
    p.add_argument("--threads", type=int, default=160, help="load connections (threads) [160]")
    p.add_argument("--workers", type=int, default=16, help="each instance's --workers [16]")
    p.add_argument("--max-defer-ms", type=int, default=1000, help="each instance's --max-defer-ms [1000]")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--self-test", action="store_true", help="test the checker on synthetic evidence and exit")
    p.add_argument("--results", default=os.path.join(BENCH, "results"))
    p.add_argument("--rinha-bin", default=os.path.join(REPO, "target", "release", "rinha"))
    p.add_argument("--processor-bin", default=os.path.join(REPO, "target", "release", "processor"))
    p.add_argument("--nginx-bin", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--nginx-conf", default=os.path.join(REPO, "nginx.conf"))
    args = p.parse_args(argv)
    if args.scenario == "repro":
        args.instances, args.nginx, args.secs = 2, False, 14.0
    elif args.secs is None and not args.campaign:
        args.secs = 45.0
    return args


def seed_list(spec):
    """"A-B" -> A..B, "A,B,C" -> those, "N" -> 1..N."""
    if "-" in spec:
        a, b = spec.split("-", 1)
        return list(range(int(a), int(b) + 1))
    if "," in spec:
        return [int(s) for s in spec.split(",")]
    return list(range(1, int(spec) + 1))


def plans(args):
    """[(args of a run, its seeds)]: one row, or a campaign's rows with --seeds/--secs applied."""
    if not args.campaign:
        if args.seeds:
            return [(args, seed_list(args.seeds))]
        return [(args, [args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)])]
    rows = []
    for first, count, instances, nginx, secs, quiet in CAMPAIGNS[args.campaign]:
        row = argparse.Namespace(**{**vars(args), "instances": instances, "nginx": nginx,
                                    "secs": args.secs or secs, "no_faults": quiet})
        seeds = seed_list(args.seeds) if args.seeds else list(range(first, first + count))
        rows.append((row, seeds))
    return rows


def replay_line(args, seed):
    if args.scenario == "repro":
        return "make chaos SCENARIO=repro"
    extra = " NO_FAULTS=1" if args.no_faults else ""
    return f"make chaos SEED={seed} INSTANCES={args.instances} NGINX={int(args.nginx)} SECS={args.secs:g}{extra}"


class Run:
    """One seed: start, load + faults, heal, drain, check; every process stopped on the way out."""

    def __init__(self, args, seed):
        self.args, self.seed = args, seed
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        tag = "repro" if args.scenario == "repro" else f"{seed}-n{args.instances}{'-nginx' if args.nginx else ''}"
        self.out = os.path.join(args.results, f"chaos-{tag}-{stamp}")
        os.makedirs(self.out, exist_ok=True)
        self.log_file = open(os.path.join(self.out, "chaos.log"), "a")

    def log(self, line):
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def events(self):
        if self.args.no_faults:
            return []
        if self.args.scenario == "repro":
            return chaos_schedule.repro()
        return chaos_schedule.generate(self.seed, self.args.secs, self.args.instances)

    def jobs(self):
        if self.args.scenario == "repro":
            return chaos_load.repro_plan()
        names = [f"api{i}" for i in range(1, self.args.instances + 1)]
        return chaos_load.plan(self.seed, self.args.secs, self.args.rate, names, self.args.nginx)

    def execute(self):
        """Returns the verdict dict (chaos_check.verdict) plus figures."""
        args = self.args
        self.log(f"[chaos] seed {self.seed}: {args.instances} instances, nginx {'on' if args.nginx else 'off'}, "
                 f"{args.secs:g} s, scenario {args.scenario}{', no faults' if args.no_faults else ''}")
        self.log(f"[chaos] replay: {replay_line(args, self.seed)}")
        self.log(f"[chaos] results: {self.out}")
        events, jobs = self.events(), self.jobs()
        with tempfile.TemporaryDirectory(prefix="rinha-chaos-") as run_dir:
            os.chmod(run_dir, 0o755)
            cluster = Cluster(args, self.out, run_dir)
            try:
                cluster.start(lambda: self._setup(cluster, events))
                return self._campaign(cluster, events, jobs)
            finally:
                cluster.shutdown()

    def _setup(self, cluster, events):
        """The events dated before the load (t < 0), applied before the instances start."""
        for e in events:
            if e.t < 0:
                chaos_schedule.apply(cluster, e)
                self.log(f"[chaos] {chaos_schedule.describe(e)}")

    def _campaign(self, cluster, events, jobs):
        urls = {inst.name: inst.url for inst in cluster.instances}
        if cluster.nginx_port:
            urls["nginx"] = f"http://127.0.0.1:{cluster.nginx_port}"
        load = chaos_load.Load(jobs, urls, threads=self.args.threads)
        t0, t_start = time.monotonic(), time.time()
        runner = chaos_schedule.Runner(cluster, events, t0, self.args.secs, self.log)
        watching = threading.Event()
        watcher = threading.Thread(target=_watch, args=(cluster, watching), daemon=True)
        runner.start()
        watcher.start()
        try:
            load.run(t0)
            time.sleep(max(0.0, t0 + self.args.secs - time.monotonic()))
        finally:
            load.stop.set()
            runner.stop.set()
            runner.join()
        self.log(f"[chaos] load done: {len(load.posts)} POSTs; healing")
        watching.set()
        watcher.join()
        cluster.watch_exits()  # before the heal restarts what is down
        cluster.heal()
        if not cluster.wait_linked(30.0):
            self.log("[chaos] warning: peers not all linked 30 s after the heal")
        drained = drain(cluster, self.args.drain_timeout)
        self.log(f"[chaos] drained in {drained:.1f} s" if drained is not None
                 else f"[chaos] warning: not drained after {self.args.drain_timeout:g} s")
        self._write_schedule(events, runner.done)
        return self._check(cluster, load.posts, t_start)

    def _check(self, cluster, posts, t_start):
        processor_urls = {name: f"http://127.0.0.1:{port}" for name, port in cluster.processors.items()}
        stores = chaos_check.fetch_stores([p["id"] for p in posts], processor_urls)
        admin = {name: cluster.admin_client(name) for name in cluster.processors}
        try:
            wins = chaos_check.windows(self.seed, t_start, time.time())
            summaries = chaos_check.fetch_summaries({i.name: i.url for i in cluster.instances}, admin, wins)
        finally:
            for c in admin.values():
                c.close()
        cluster.watch_exits()
        exits = [f"{i.name} exited with code {code} at +{t:.2f}s (not killed by the campaign)"
                 for i in cluster.instances for t, code in i.exits]
        result = chaos_check.verdict(posts, stores, summaries, exits)
        self._write_evidence(posts, stores, summaries, result)
        result["figures"] = figures(posts, stores)
        return result

    def _write_schedule(self, events, done):
        applied = {id(e): err for e, err in done}
        lines = [f"seed {self.seed}; replay: {replay_line(self.args, self.seed)}"]
        for e in events:
            state = "applied" if id(e) in applied else "not applied (after the load: undone by the heal)"
            if e.t < 0:
                state = "applied before the instances started"
            if applied.get(id(e)):
                state = f"FAILED: {applied[id(e)]}"
            lines.append(f"{chaos_schedule.describe(e)}  [{state}]")
        with open(os.path.join(self.out, "schedule.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log("[chaos] schedule:\n  " + "\n  ".join(lines))

    def _write_evidence(self, posts, stores, summaries, result):
        with open(os.path.join(self.out, "posts.jsonl"), "w") as f:
            for p in sorted(posts, key=lambda p: p["sent"]):
                f.write(json.dumps(p) + "\n")
        with open(os.path.join(self.out, "evidence.json"), "w") as f:
            json.dump({"stores": stores, "summaries": summaries}, f, indent=1, default=list)
        with open(os.path.join(self.out, "verdict.json"), "w") as f:
            json.dump({"seed": self.seed, "replay": replay_line(self.args, self.seed), **result}, f, indent=1)


def _watch(cluster, stop):
    while not stop.wait(0.2):
        cluster.watch_exits()


def metrics_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def busy(inst):
    """Payments an instance still holds (queued, in flight, at a worker, parked); None if it does not answer."""
    c = Client(inst.url, timeout=2.0)
    try:
        status, body = c.raw("GET", "/metrics")
    except OSError:
        return None
    finally:
        c.close()
    text = body.decode(errors="replace") if status == 200 else ""
    return sum(metrics_sum(text, g) for g in DRAIN_GAUGES) if text else None


def stored_total(cluster):
    total = 0
    for name in cluster.processors:
        c = cluster.admin_client(name)
        try:
            _, body = c.get("/admin/payments-summary")
        finally:
            c.close()
        total += int((body or {}).get("totalRequests", 0))
    return total


def drain(cluster, timeout_s):
    """Seconds until every instance holds nothing and the processors' totals stayed put
    for 3 polls 1 s apart; None after `timeout_s`."""
    start = time.monotonic()
    quiet, last = 0, None
    while time.monotonic() - start < timeout_s:
        held = [busy(inst) for inst in cluster.instances]
        total = stored_total(cluster)
        quiet = quiet + 1 if all(h == 0 for h in held) and total == last else 0
        if quiet >= 3:
            return time.monotonic() - start
        last = total
        time.sleep(1.0)
    return None


def figures(posts, stores):
    statuses = {}
    for p in posts:
        key = "no answer" if p["status"] is None else str(p["status"])
        if p["error"] and p["error"] != "refused":
            key += f" ({p['error']})"
        statuses[key] = statuses.get(key, 0) + 1
    return {"posts": len(posts), "ids": len({p["id"] for p in posts}), "statuses": statuses,
            "stored": {name: len(s) for name, s in stores.items()}}


def run_seed(args, seed):
    """One run, bounded by SIGALRM; returns (seed, failed, summary line)."""
    run = Run(args, seed)
    started = time.monotonic()
    try:
        signal.alarm(int(args.secs + args.drain_timeout + 240))
        try:
            result = run.execute()
        finally:
            signal.alarm(0)
        return _verdict(run, seed, result, time.monotonic() - started)
    except Interrupted as e:
        run.log(f"[chaos] interrupted: {e}")
        raise
    except Exception as e:  # noqa: BLE001 — a harness failure fails the seed, the campaign goes on
        run.log(f"[chaos] seed {seed}: the campaign itself failed: {type(e).__name__}: {e}")
        return seed, True, f"seed {seed}: harness error: {e}"
    finally:
        run.log_file.close()


def _verdict(run, seed, result, took):
    """Prints the verdict; returns (seed, failed, summary line)."""
    bad = chaos_check.failed(result)
    fig = result["figures"]
    run.log(f"[chaos] seed {seed}: {fig['posts']} POSTs of {fig['ids']} ids, answers {fig['statuses']}, "
            f"stored {fig['stored']}")
    for line in chaos_check.report(result):
        run.log(line)
    counts = ", ".join(f"{name} {len(result[name])}" for name in chaos_check.CHECKS if result[name])
    run.log(f"[chaos] seed {seed}: {'FAIL (' + counts + ')' if bad else 'PASS'} in {took:.0f} s; "
            f"results {run.out}")
    if bad:
        run.log(f"[chaos] replay: {replay_line(run.args, seed)}")
    return seed, bad, f"seed {seed}: {'FAIL ' + counts if bad else 'pass'}"


def _raise(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv=None):
    args = parse_args(argv)
    if args.self_test:
        chaos_check.self_test()
        return 0
    signal.signal(signal.SIGALRM, _raise)
    signal.signal(signal.SIGTERM, _raise)
    rows = [(row, run_seed(row, seed)) for row, seeds in plans(args) for seed in seeds]
    if len(rows) > 1:
        failed = sum(bad for _, (_, bad, _) in rows)
        print(f"\n[chaos] campaign: {len(rows)} runs, {failed} failed")
        for row, (_, _, line) in rows:
            quiet = ", no faults" if row.no_faults else ""
            print(f"  {row.instances} instances, nginx {'on ' if row.nginx else 'off'}, {row.secs:g} s{quiet}: {line}")
    return 1 if any(bad for _, (_, bad, _) in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
