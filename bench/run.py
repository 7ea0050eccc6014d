#!/usr/bin/env python3
"""Runs the official Rinha 2025 test (k6 ports in bench/scenarios/) on bare metal.

Starts the two processor emulators, the stack docker-compose.yml defines (nginx from
Debian + two rinha instances, addresses moved to a per-run directory, cgroup limits as
written), samples it every second, runs k6, then checks every window exactly, stops
everything it started and writes bench/results/<timestamp>/. See bench/RESULTS.md.
"""
import argparse
import datetime
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
VENV_PY = os.path.join(BENCH, ".venv", "bin", "python")

try:
    import yaml  # noqa: F401  (bench/lib/stack.py reads docker-compose.yml with it)
except ImportError:
    if os.path.exists(VENV_PY) and os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("run.py: PyYAML missing; run bench/setup.sh first")

sys.path.insert(0, BENCH)
from lib import cgroups, cost, procs, stack, tail, verify  # noqa: E402
from lib.httpc import Client  # noqa: E402
from lib.meters import Meter  # noqa: E402
from lib.sampler import Sampler  # noqa: E402
from lib.metrics_sampler import MetricsSampler  # noqa: E402
import report  # noqa: E402

TOKEN = "123"


class Interrupted(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="smoke", help="preview | final | smoke | PATH.json")
    p.add_argument("--backend-cmd", help="run this shell command as the backend instead of the compose stack (must listen on the LB port)")
    p.add_argument("--no-backend", action="store_true", help="start no backend: something already listens on the LB port")
    p.add_argument("--no-processors", action="store_true",
                   help="start no processor emulators: processors (token 123) already listen on the first two --ports")
    p.add_argument("--health", action="append", default=[], metavar="NAME=ADDR",
                   help="an instance's /health address (unix:PATH or http://HOST:PORT) for the drain and the samples "
                        "when the backend is not started here (repeatable)")
    p.add_argument("--out", help="results directory (default bench/results/<timestamp>-<scenario>)")
    p.add_argument("--no-cgroups", action="store_true", help="no CPU/memory limits nor cgroup accounting")
    p.add_argument("--strict", action="store_true", help="exit non-zero on any inconsistency, lag != 0 or double payment (smoke.json sets it)")
    p.add_argument("--check-ids", action="store_true",
                   help="k6 logs every correlationId; afterwards each is asked of both processors (on with --strict)")
    p.add_argument("--record", action="store_true", help="append a row to bench/RESULTS.md and keep the SVG in bench/timelines/")
    p.add_argument("--budget", action="store_true",
                   help="exit 1 when the run exceeds the scenario's \"budget\" (stack CPU-s, context switches per payment, peak per second)")
    p.add_argument("--noise", type=int, default=0, metavar="N",
                   help="keep N cores busy (busy-loop processes) while k6 runs: p99 on a shared machine")
    p.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                   help="also meter a process this runner did not start (and its children), e.g. with --no-backend")
    p.add_argument("--tail", action="store_true",
                   help="nginx logs each request's timing (buffered; a few %% more nginx CPU) and the run tells how much "
                        "of k6's p99 tail was inside nginx and the instances (tail.json)")
    p.add_argument("--compose", default=os.path.join(REPO, "docker-compose.yml"))
    p.add_argument("--nginx-conf", default=os.path.join(REPO, "nginx.conf"))
    p.add_argument("--rinha-bin", default=os.path.join(REPO, "target", "release", "rinha"))
    p.add_argument("--processor-bin", default=os.path.join(REPO, "target", "release", "processor"))
    p.add_argument("--nginx-bin", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--k6-bin", default=os.path.join(BENCH, ".venv", "bin", "k6"))
    p.add_argument("--ports", default="8001,8002,9999", help="default processor, fallback processor, load balancer")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait after k6 for the backend's queue to empty")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per window of the exact check")
    return p.parse_args(argv)


def load_scenario(name):
    path = name if name.endswith(".json") else os.path.join(BENCH, "scenarios", f"{name}.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["_path"] = os.path.abspath(path)
    return cfg


def git_commit():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock", "nginx.conf", "docker-compose.yml"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def port_free(port):
    import socket
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Run:
    """One bench run: owns every process, cgroup and temporary directory it creates."""

    def __init__(self, args, cfg):
        self.args, self.cfg = args, cfg
        self.pp_default, self.pp_fallback, self.lb = (int(x) for x in args.ports.split(","))
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = os.path.abspath(args.out or os.path.join(BENCH, "results", f"{stamp}-{cfg.get('name', 'custom')}"))
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="rinha-bench-")
        os.chmod(self.tmp, 0o755)  # nginx workers must traverse it to reach the sockets
        self.sock_dir = os.path.join(self.tmp, "sockets")
        self.access_log = os.path.join(self.out, "nginx-access.log") if args.tail else None  # --tail
        os.makedirs(self.sock_dir)
        os.chmod(self.sock_dir, 0o1777)
        self.sup = procs.Supervisor()
        self.cg = None if args.no_cgroups else cgroups.Cgroups(f"rinha-bench-{os.getpid()}")
        self.groups = {}
        self.meters = {}  # service -> Meter: CPU and context switches, read by the sampler
        self.limits = {}
        self.health = {}
        self.sampler = None
        self.metrics = None
        self.check_ids = args.check_ids or args.strict or cfg.get("strict", False)

    def log(self, name):
        return os.path.join(self.out, "logs", f"{name}.log")

    def start(self, name, argv, log, group=None, **kw):
        """Starts a service and meters it (by its cgroup, else by its process tree)."""
        p = self.sup.start(name, argv, log, group=group, **kw)
        self.meters[name] = Meter(name, group=group, pid=p.pid)
        return p

    def group(self, name, cpus=None, mem=None):
        self.limits[name] = {"cpus": cpus, "memory_bytes": mem}
        if self.cg is None:
            return None
        g = self.cg.create(name, cpus, mem)
        if g is not None:
            self.groups[name] = g
        return g

    # -- starting ---------------------------------------------------------------
    def start_processors(self):
        if self.args.no_processors:
            for port in (self.pp_default, self.pp_fallback):
                procs.wait_tcp(port, None, timeout_s=2)
            return
        if not os.access(self.args.processor_bin, os.X_OK):
            raise RuntimeError(f"{self.args.processor_bin} missing: cargo build --release --bin processor")
        for name, port in (("default", self.pp_default), ("fallback", self.pp_fallback)):
            argv = [self.args.processor_bin, "--listen", f"127.0.0.1:{port}", "--fee", str(self.cfg["fees"][name]),
                    "--token", TOKEN, "--rate-limit-seconds", "5"]
            p = self.start(f"processor-{name}", argv, self.log(f"processor-{name}"), group=self.group(f"processor-{name}"))
            procs.wait_tcp(port, p)

    def start_stack(self):
        if not os.access(self.args.rinha_bin, os.X_OK):
            raise RuntimeError(f"{self.args.rinha_bin} missing: cargo build --release --bin rinha")
        services = stack.load(self.args.compose)
        ports = {"default": self.pp_default, "fallback": self.pp_fallback}
        for svc in [s for s in services if s.kind == "api"]:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            env.update({k: stack.adapt(v, self.sock_dir, ports, svc.binds) for k, v in svc.env.items()})
            argv = [self.args.rinha_bin] + [stack.adapt(a, self.sock_dir, ports, svc.binds) for a in svc.command]
            p = self.start(svc.name, argv, self.log(svc.name), env=env, cwd=self.tmp,
                           group=self.group(svc.name, svc.cpus, svc.mem), nofile=svc.nofile)
            sock = env.get("RINHA_UNIX")
            if sock:
                procs.wait_unix(sock, p)
                self.health[svc.name] = f"unix:{sock}"
            elif env.get("RINHA_PORT"):
                procs.wait_tcp(int(env["RINHA_PORT"]), p)
                self.health[svc.name] = f"http://127.0.0.1:{env['RINHA_PORT']}"
        for svc in [s for s in services if s.kind == "nginx"]:
            prefix = os.path.join(self.tmp, "nginx")
            os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
            conf = stack.nginx_conf(self.args.nginx_conf, os.path.join(prefix, "nginx.conf"), self.sock_dir,
                                    tail.nginx_directives(self.access_log) if self.access_log else None)
            if self.lb != 9999:
                with open(conf) as f:
                    text = f.read().replace("listen 9999", f"listen {self.lb}")
                with open(conf, "w") as f:
                    f.write(text)
            argv = stack.nginx_argv(self.args.nginx_bin, prefix, conf, os.path.join(prefix, "nginx.pid"))
            p = self.start(svc.name, argv, self.log(svc.name), group=self.group(svc.name, svc.cpus, svc.mem), nofile=svc.nofile)
            procs.wait_tcp(self.lb, p)

    def start_backend(self):
        if self.args.no_backend:
            procs.wait_tcp(self.lb, None, timeout_s=2)
            for spec in self.args.health:
                name, _, addr = spec.partition("=")
                self.health[name] = addr
        elif self.args.backend_cmd:
            p = self.start("backend", ["/bin/sh", "-c", self.args.backend_cmd], self.log("backend"), group=self.group("backend"))
            procs.wait_tcp(self.lb, p, timeout_s=60)
        else:
            self.start_stack()

    # -- the test ---------------------------------------------------------------
    def run_k6(self):
        script = os.path.join(BENCH, "scenarios", self.cfg["script"])
        env = dict(os.environ, K6_CSV_TIME_FORMAT="unix_milli", K6_NO_USAGE_REPORT="true")
        argv = [self.args.k6_bin, "run", "--no-usage-report", "--log-format", "json",
                "--system-tags", "status,method,name,scenario,expected_response",
                "--out", f"csv={os.path.join(self.out, 'k6-metrics.csv')}",
                "-e", f"SCENARIO={self.cfg['_path']}",
                "-e", f"RESULTS_FILE={os.path.join(self.out, 'partial-results.json')}",
                "-e", f"BACKEND_URL=http://127.0.0.1:{self.lb}",
                "-e", f"PP_DEFAULT_URL=http://127.0.0.1:{self.pp_default}",
                "-e", f"PP_FALLBACK_URL=http://127.0.0.1:{self.pp_fallback}",
                "-e", f"TOKEN={TOKEN}", "-e", f"LOG_IDS={'1' if self.check_ids else '0'}", script]
        noise = self.start_noise()
        self.sampler.mark("test_start")
        self.k6_started = time.time()
        p = self.start("k6", argv, os.path.join(self.out, "k6-log.jsonl"), env=env, cwd=self.out,
                       group=self.group("k6"), stdout_path=os.path.join(self.out, "k6-stdout.txt"))
        limit = self.cfg["duration_s"] + 120
        try:
            p.popen.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.sup.stop(p)
            raise RuntimeError(f"k6 still running after {limit} s; stopped")
        finally:
            self.sampler.mark("test_end")
            if noise is not None:
                self.sup.stop(noise)
        self.k6_ended = time.time()
        return p.popen.returncode

    def start_noise(self):
        """--noise N: N busy loops beside the stack while k6 runs, stopped right after it by PID."""
        if self.args.noise <= 0:
            return None
        seconds = self.cfg["duration_s"] + 180  # a bound of its own, beyond k6's
        return self.start("noise", procs.noise_argv(sys.executable, self.args.noise, seconds),
                          self.log("noise"), group=self.group("noise"))

    def drain(self):
        """Waits until every instance reports an empty queue and nothing in flight."""
        t0 = time.time()
        if not self.health:
            time.sleep(min(3.0, self.args.drain_timeout))
            return None
        clients = [Client(b, timeout=1.0) for b in self.health.values()]
        try:
            while time.time() - t0 < self.args.drain_timeout:
                pending = 0
                for c in clients:
                    try:
                        st, h = c.get("/health")
                        pending += int(h.get("queue", 0)) + int(h.get("inflight", 0)) if st == 200 and h else 1
                    except Exception:
                        pending += 1
                if pending == 0:
                    return time.time() - t0
                time.sleep(0.2)
            return None
        finally:
            for c in clients:
                c.close()

    def service_stats(self):
        out = {}
        for name, g in self.groups.items():
            try:
                s = g.stats()
            except OSError as e:
                s = {"error": str(e)}
            s["vm_hwm_bytes"] = sum(_vm_hwm(pid) for pid in g.pids())
            s["limits"] = self.limits.get(name)
            out[name] = s
        return out

    def execute(self):
        meta = {"scenario": self.cfg.get("name"), "scenario_file": self.cfg["_path"], "commit": git_commit(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(), "ports": self.args.ports,
                "backend": "none" if self.args.no_backend else (self.args.backend_cmd or "compose"),
                "processors": "external" if self.args.no_processors else "emulators",
                "cgroups": None if self.cg is None else self.cg.version, "noise": self.args.noise}
        shutil.copy(self.cfg["_path"], os.path.join(self.out, "scenario.json"))
        ours = (() if self.args.no_processors else (self.pp_default, self.pp_fallback)) + (() if self.args.no_backend else (self.lb,))
        for port in ours:
            if not port_free(port):
                raise RuntimeError(f"port {port} is busy (another bench or test?); pick others with --ports")
        self.start_processors()
        self.start_backend()
        with open(os.path.join(self.out, "pids"), "w") as f:  # for profilers (scripts/flame.sh)
            f.writelines(f"{p.name} {p.pid}\n" for p in self.sup.procs)
        if self.cg is not None and self.cg.warning:
            print(f"run.py: warning: {self.cg.warning}", file=sys.stderr)
            meta["cgroups_warning"] = self.cg.warning
        for spec in self.args.watch:
            name, _, pid = spec.partition("=")
            if not name or not pid.isdigit():
                raise RuntimeError(f"--watch {spec!r}: expected NAME=PID")
            self.meters[name] = Meter(name, pid=int(pid))
        when_idle = self.args.noise < (os.cpu_count() or 1)  # SCHED_IDLE unless every CPU is kept busy
        self.sampler = Sampler(os.path.join(self.out, "samples.jsonl"), self.health,
                               {"default": f"http://127.0.0.1:{self.pp_default}", "fallback": f"http://127.0.0.1:{self.pp_fallback}"},
                               self.meters, token=TOKEN, detailed=cost.is_stack, when_idle=when_idle)
        self.sampler.start()
        self.metrics = MetricsSampler(os.path.join(self.out, "metrics.jsonl.gz"), self.health, when_idle=when_idle)
        self.metrics.start()
        print(f"run.py: k6 {self.cfg['script']} ({self.cfg['duration_s']} s, {self.cfg['vus']} VUs) -> {self.out}", flush=True)
        meta["k6_exit"] = self.run_k6()
        meta["drain_seconds"] = self.drain()
        self.sampler.stop()
        self.metrics.stop()
        meta["sampler_cpu_s"] = round(self.sampler.cpu_s + self.metrics.cpu_s, 3)  # both samplers
        meta["verify"] = verify.run(f"http://127.0.0.1:{self.lb}",
                                    {"default": f"http://127.0.0.1:{self.pp_default}", "fallback": f"http://127.0.0.1:{self.pp_fallback}"},
                                    TOKEN, self.k6_started, time.time(), self.args.slice,
                                    verify.read_ids(os.path.join(self.out, "k6-log.jsonl")) if self.check_ids else None)
        services = self.service_stats()
        with open(os.path.join(self.out, "services.json"), "w") as f:
            json.dump(services, f, indent=2)
        for p in list(self.sup.procs):
            if p.name not in ("k6", "noise") and not p.alive():  # both stopped on purpose
                meta.setdefault("died", []).append(f"{p.name} (exit {p.popen.returncode})")
        return meta

    def close(self):
        if self.sampler is not None and self.sampler.is_alive():
            self.sampler.stop()
        if self.metrics is not None and self.metrics.is_alive():
            self.metrics.stop()
        self.sup.stop_all()
        if self.cg is not None:
            self.cg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _vm_hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def compress_csv(out):
    src = os.path.join(out, "k6-metrics.csv")
    if os.path.exists(src):
        with open(src, "rb") as s, gzip.open(src + ".gz", "wb", compresslevel=5) as d:
            shutil.copyfileobj(s, d)
        os.remove(src)


def figures(out, meta):
    """The key numbers of a finished run (also what --record writes)."""
    with open(os.path.join(out, "partial-results.json")) as f:
        res = json.load(f)
    services = json.load(open(os.path.join(out, "services.json"))) if os.path.exists(os.path.join(out, "services.json")) else {}
    stack_names = [n for n in services if cost.is_stack(n)]
    with open(os.path.join(out, "scenario.json")) as f:
        budget = json.load(f).get("budget") or {}
    posted = res["pagamentos_solicitados"]["qtd_sucesso"] + res["pagamentos_solicitados"]["qtd_falha"]
    paid = cost.compute(report.read_samples(out), posted)
    v = meta.get("verify", {})
    return {
        "p99": res["p99"]["valor"], "total_liquido": res["total_liquido"],
        "default": res["pagamentos_realizados_default"]["num_pagamentos"],
        "fallback": res["pagamentos_realizados_fallback"]["num_pagamentos"],
        "inconsistencies": res["multa"]["composicao"]["num_inconsistencias"],
        "lag": res["lag"]["lag"],
        "requested_ok": res["pagamentos_solicitados"]["qtd_sucesso"],
        "requested_failed": res["pagamentos_solicitados"]["qtd_falha"],
        "stored_after_drain": sum(x or 0 for x in v.get("stored", {}).values()),
        "windows_mismatched": v.get("windows_mismatched"),
        "windows_checked": v.get("windows_checked"),
        "double_payments": v.get("double_payments"),
        "ids_lost": (v.get("ids") or {}).get("lost"),
        "ids_stored_after_k6_failure": (v.get("ids") or {}).get("stored_after_k6_failure"),
        "cpu_seconds": {n: round(services[n].get("cpu_seconds", 0), 2) for n in services},
        "stack_cpu_seconds": round(sum(services[n].get("cpu_seconds", 0) for n in stack_names), 2),
        "stack_peak_mem_mb": round(sum(services[n].get("peak_memory_bytes", 0) for n in stack_names) / 2**20, 1),
        "stack_throttled_s": round(sum(services[n].get("throttled_seconds", 0) for n in stack_names), 2),
        "peak_mem_mb": {n: round(services[n].get("peak_memory_bytes", 0) / 2**20, 1) for n in services},
        "noise": meta.get("noise", 0),
        "cost": paid,
        "budget": {"limits": budget, "over": cost.check_budget(paid, budget)},
        "sampler_cpu_s": meta.get("sampler_cpu_s"),
    }


def failures(fig, meta):
    bad = []
    if meta.get("k6_exit") not in (0, None):
        bad.append(f"k6 exited {meta['k6_exit']}")
    if fig["inconsistencies"]:
        bad.append(f"{fig['inconsistencies']} inconsistencies in k6's checks")
    if fig["lag"] != 0:
        bad.append(f"lag {fig['lag']}")
    if fig["windows_mismatched"]:
        bad.append(f"{fig['windows_mismatched']} of {fig['windows_checked']} windows differ from the processors")
    if fig["double_payments"]:
        bad.append(f"{fig['double_payments']} correlationIds paid on both processors")
    if fig["ids_lost"]:
        bad.append(f"{fig['ids_lost']} payments answered 2xx to k6 but stored on no processor")
    if meta.get("died"):
        bad.append("died during the run: " + ", ".join(meta["died"]))
    return bad


def print_figures(fig, meta, out):
    drain = "n/a" if meta.get("drain_seconds") is None else f"{meta['drain_seconds']:.1f} s"
    print(f"\n== {meta['scenario']} @ {meta['commit']} -> {out}")
    print(f"p99 {fig['p99']}  total_liquido {fig['total_liquido']:,.2f}  default/fallback {fig['default']}/{fig['fallback']}  "
          f"inconsistencies {fig['inconsistencies']}  lag {fig['lag']}")
    print(f"payments ok/failed {fig['requested_ok']}/{fig['requested_failed']}  stored after drain {fig['stored_after_drain']}  "
          f"(drain {drain})  exact windows {fig['windows_checked'] - (fig['windows_mismatched'] or 0)}/{fig['windows_checked']} equal  "
          f"double payments {fig['double_payments'] if fig['double_payments'] is not None else 'not checked'}"
          + (f", lost {fig['ids_lost']}, stored after a k6 failure {fig['ids_stored_after_k6_failure']}" if fig['ids_lost'] is not None else ""))
    print(f"CPU-s {fig['cpu_seconds']}  stack {fig['stack_cpu_seconds']} CPU-s, peak {fig['stack_peak_mem_mb']} MB, throttled {fig['stack_throttled_s']} s")
    if fig["cost"]:
        for line in cost.table(fig["cost"]):
            print(line)
        print(f"  noise: {fig['noise']} busy cores; sampling cost the runner {fig['sampler_cpu_s']} CPU-s")
    b = fig["budget"]
    if b["limits"]:
        print("budget: " + ("within " + json.dumps(b["limits"]) if not b["over"] else "OVER: " + "; ".join(b["over"])))
    print(f"timeline: {os.path.join(out, 'timeline.svg')}")


STACK_ORDER = ("api1", "api2", "nginx")  # the order of RESULTS.md's per-instance cells


def cost_cells(fig):
    """RESULTS.md's cost columns: test CPU-s | CPU-ms/1k per instance | ctx/payment | peak ctx/s per instance | noise."""
    c = fig.get("cost")
    if not c:
        return " | ".join(["—"] * 4 + [str(fig.get("noise", 0))])
    names = c["stack"]["services"]

    def each(key, fmt):
        vals = {n: c["services"][n][key] for n in names}
        shown = {n: "—" if v is None else format(v, fmt) for n, v in vals.items()}
        if sorted(names) == sorted(STACK_ORDER):
            return "/".join(shown[n] for n in STACK_ORDER)
        return ", ".join(f"{n} {v}" for n, v in shown.items())

    s = c["stack"]
    return " | ".join([
        "—" if s["cpu_s"] is None else f"{s['cpu_s']:.2f}", each("cpu_ms_per_1k", ".0f"),
        "—" if s["ctx_per_payment"] is None else f"{s['ctx_per_payment']:.2f}", each("peak_ctx_per_s", ","),
        str(fig.get("noise", 0)),
    ])


def record(fig, meta, out):
    os.makedirs(os.path.join(BENCH, "timelines"), exist_ok=True)
    svg_name = os.path.basename(out) + ".svg"
    shutil.copy(os.path.join(out, "timeline.svg"), os.path.join(BENCH, "timelines", svg_name))
    row = (f"| {meta['started'][:16].replace('T', ' ')} | {meta['commit']} | {meta['scenario']} | {fig['p99']} | "
           f"{fig['total_liquido']:,.2f} | {fig['default']}/{fig['fallback']} | {fig['inconsistencies']} | {fig['lag']} | "
           f"{fig['stack_cpu_seconds']} | {fig['stack_peak_mem_mb']} MB | {cost_cells(fig)} | [svg](timelines/{svg_name}) |\n")
    # After the last recorded row, so that notes written below the table stay below it.
    path = os.path.join(BENCH, "RESULTS.md")
    with open(path) as f:
        lines = f.readlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("| 20")), default=len(lines) - 1)
    lines.insert(last + 1, row)
    with open(path, "w") as f:
        f.writelines(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = load_scenario(args.scenario)
    strict = args.strict or cfg.get("strict", False)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run = Run(args, cfg)
    meta = {"scenario": cfg.get("name")}
    try:
        meta = run.execute()
    except Interrupted as e:
        print(f"run.py: interrupted ({e}); stopping everything", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 — any failure still stops everything below
        traceback.print_exc()
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        run.close()
        with open(os.path.join(run.out, "run.json"), "w") as f:
            json.dump(meta, f, indent=2, default=str)
    if not os.path.exists(os.path.join(run.out, "partial-results.json")):
        report.build(run.out)
        compress_csv(run.out)
        print("run.py: k6 wrote no partial-results.json; see k6-log.jsonl", file=sys.stderr)
        return 2
    fig = figures(run.out, meta)
    with open(os.path.join(run.out, "figures.json"), "w") as f:
        json.dump(fig, f, indent=2)
    report.build(run.out)
    compress_csv(run.out)
    print_figures(fig, meta, run.out)
    if run.access_log and os.path.exists(run.access_log):  # complete: nginx stopped in run.close()
        print(tail.line(tail.run(os.path.join(run.out, "k6-metrics.csv.gz"), run.access_log,
                                 os.path.join(run.out, "tail.json"))))
    bad = failures(fig, meta)
    for b in bad:
        print(f"run.py: FAIL: {b}" if strict else f"run.py: note: {b}")
    over = fig["budget"]["over"] if args.budget else []
    if args.budget and not fig["budget"]["limits"]:
        over = [f"--budget: scenario {cfg.get('name')} has no \"budget\""]
    for b in over:
        print(f"run.py: OVER BUDGET: {b}")
    if args.record:
        record(fig, meta, run.out)
    return 1 if (strict and bad) or over else 0


if __name__ == "__main__":
    sys.exit(main())
