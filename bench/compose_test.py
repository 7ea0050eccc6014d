#!/usr/bin/env python3
"""`make compose-test`: the real docker-compose.yml brought up by a container engine.

Offline, with Debian's podman (runc, netavark) and podman-compose: builds rinha's image
from the binary of `make static` (Dockerfile.scratch, RINHA_BIN=prebuilt), the processor
emulator's image and, unless nginx:1.27-alpine is already in local storage, a stand-in
built from Debian's nginx; creates the external `payment-processor` network with the
two emulators on it; runs `podman-compose up` on the unmodified compose file (plus an
override of the ulimits alone, printed); then checks the limits, the shared tmpfs, a
crash of api1 (`kill -9` of its main process) in the middle of the strict smoke bench,
that `podman stop` (SIGTERM to PID 1) drains api1 to exit 0, and that `down -v` leaves
nothing behind. Stops and removes everything it started
(images stay). Exit 0 only if every check passed; the engine not starting is a failure.

Usage: compose_test.py [--kill-at SECONDS] [--keep-going]   (see --help)
"""
import argparse
import datetime
import importlib.util
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
HERE = os.path.join(BENCH, "compose")
COMPOSE = os.path.join(REPO, "docker-compose.yml")
PROJECT = "rinhatest"  # podman-compose -p: containers rinhatest_api1_1, volume rinhatest_sockets
LABEL = "rinha.compose-test=1"  # on what this script creates outside the compose project
NGINX_IMAGE = "nginx:1.27-alpine"
PROCESSOR_IMAGE = "localhost/rinha-processor:latest"
PROCESSORS = {"default": ("payment-processor-default", 8001, "0.05"),
              "fallback": ("payment-processor-fallback", 8002, "0.15")}
LB_PORT = 9999
NPROC = 4096  # highest RLIMIT_NPROC that runc may set here; see containers.conf

sys.path.insert(0, BENCH)
spec = importlib.util.spec_from_file_location("check_compose", os.path.join(REPO, ".ci", "check_compose.py"))
check_compose = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_compose)  # mem_mb(), the compose file's reading of "150MB"
import yaml  # noqa: E402  (bench/.venv, like run.py)
from lib.engine import (Engine, Failed, cgroup_limits, install, mount_of, nginx_rootfs, proc_limit,  # noqa: E402
                        proc_uids, run, tcp_connects, unix_connects, wait)


class Interrupted(Exception):
    pass


def say(msg=""):
    print(f"compose-test: {msg}" if msg else "", flush=True)


# -- setup --------------------------------------------------------------------------
def engine_starts(eng):
    """The engine must answer here; if not, say why and fail (never skip). A container that
    cannot start fails later, at the first `podman run`, with the engine's reason."""
    p = eng.podman("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.NetworkBackend}} "
                   "cgroups {{.Host.CgroupsVersion}}", timeout=60, check=False)
    if p.returncode != 0:
        raise Failed(f"the container engine does not start here: `podman info` exited {p.returncode}: "
                     f"{(p.stderr or p.stdout).strip()[-800:]}")
    say(f"engine: {eng.out_of('--version')}, {p.stdout.strip()}; "
        + " ".join(ln for ln in run(["podman-compose", "version"], check=False).stdout.splitlines()
                   if ln.startswith("podman-compose")))


def build_images(eng, out):
    say("images: rinha-rust:latest by `make image-local` (Dockerfile.scratch, RINHA_BIN=prebuilt)")
    log = os.path.join(out, "build.log")
    run(["make", "--no-print-directory", "-C", REPO, "image-local", "ENGINE=podman"],
        timeout=1500, env=eng.env, log=log)
    static = os.path.join(REPO, "target", "static-image", "x86_64-unknown-linux-gnu", "release")
    tmp = tempfile.mkdtemp(prefix="rinha-compose-test-")
    try:
        return build_other_images(eng, static, tmp, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_other_images(eng, static, tmp, log):
    ctx = os.path.join(tmp, "processor")
    os.makedirs(ctx)
    shutil.copy(os.path.join(static, "processor"), ctx)
    say(f"images: {PROCESSOR_IMAGE} (bench/compose/processor.Containerfile, FROM scratch)")
    run(["podman", "build", "-f", os.path.join(HERE, "processor.Containerfile"), "-t", PROCESSOR_IMAGE, ctx],
        timeout=300, env=eng.env, log=log)
    if eng.podman("image", "exists", f"docker.io/library/{NGINX_IMAGE}", check=False).returncode == 0:
        say(f"images: {NGINX_IMAGE}: the real one is in local storage, used as is")
        return
    ctx = os.path.join(tmp, "nginx")
    nginx_rootfs(os.path.join(ctx, "rootfs"))
    nginx_v = run(["/usr/sbin/nginx", "-v"]).stderr.strip()
    say(f"images: {NGINX_IMAGE} cannot be pulled here (no registry): STAND-IN localhost/{NGINX_IMAGE} "
        f"built from Debian's {nginx_v.split(': ')[-1]} and its libraries "
        "(bench/compose/nginx-standin.Containerfile); the compose file's image name finds it")
    run(["podman", "build", "-f", os.path.join(HERE, "nginx-standin.Containerfile"),
         "-t", f"localhost/{NGINX_IMAGE}", ctx], timeout=300, env=eng.env, log=log)


def write_override(eng, doc):
    """The ulimits alone: the compose file's nofile is above this machine's hard limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    asked = max(int(svc["ulimits"]["nofile"]["hard"]) for svc in doc["services"].values() if svc.get("ulimits"))
    nofile = asked if hard == resource.RLIM_INFINITY else min(asked, hard)
    services = {name: {"ulimits": {"nofile": {"soft": nofile, "hard": nofile},
                                   "nproc": {"soft": NPROC, "hard": NPROC}}}
                for name, svc in doc["services"].items() if svc.get("ulimits")}
    text = ("# Written by bench/compose_test.py: the ulimits alone. Here no process may raise\n"
            f"# RLIMIT_NOFILE above {hard} (the compose file asks {asked}), and podman applies an\n"
            "# explicit nofile only together with an explicit nproc.\n"
            + yaml.safe_dump({"services": services}, sort_keys=False))
    with open(eng.override, "w") as f:
        f.write(text)
    say(f"OVERRIDE layered on docker-compose.yml for the ulimits alone: nofile {nofile}:{nofile} "
        f"(the file says {asked}; this machine's hard limit is {hard}), nproc {NPROC}:{NPROC} "
        f"(podman needs it beside an explicit nofile) on {', '.join(services)}; {eng.override}")
    return nofile


def sockets_volume(eng, doc):
    """podman-compose 1.0.3 creates named volumes without their driver_opts: create it as
    Docker compose would (same name and labels, the compose file's own options)."""
    vol = doc["volumes"]["sockets"]
    opts = dict(vol.get("driver_opts") or {})
    args = ["volume", "create", "--driver", vol.get("driver", "local"),
            "--label", f"io.podman.compose.project={PROJECT}", "--label", f"com.docker.compose.project={PROJECT}"]
    note = ""
    if opts.get("type") == "tmpfs" and "o" in opts:
        # podman < 4.8 takes o=size=... for an XFS project quota and refuses it on tmpfs
        # (podman issue 20449): the same size in pages, which tmpfs takes as nr_blocks.
        page = os.sysconf("SC_PAGE_SIZE")
        parts = []
        for o in str(opts["o"]).split(","):
            if o.startswith("size="):
                n = int(check_compose.mem_mb(o[5:]) * 2**20) // page
                parts.append(f"nr_blocks={n}")
                note = f"; o={opts['o']} given as {o} = nr_blocks={n} ({page}-byte pages): podman 4.3 reads size= as a quota"
            else:
                parts.append(o)
        opts["o"] = ",".join(parts)
    for k, v in opts.items():
        args += ["--opt", f"{k}={v}"]
    eng.podman(*args, f"{PROJECT}_sockets")
    say(f"volume {PROJECT}_sockets created before `up` with the compose file's driver_opts: podman-compose "
        f"1.0.3 would create it without them (a directory on disk, not tmpfs){note}")


def start_processors(eng, nofile):
    eng.podman("network", "create", "--label", LABEL, "payment-processor")
    for name, (cname, port, fee) in PROCESSORS.items():
        eng.podman("run", "-d", "--name", cname, "--label", LABEL, "--network", "payment-processor",
                   "-p", f"127.0.0.1:{port}:8080", "--ulimit", f"nofile={nofile}:{nofile}",
                   "--ulimit", f"nproc={NPROC}:{NPROC}", PROCESSOR_IMAGE, "--fee", fee)
    for _, port, _ in PROCESSORS.values():
        wait(lambda p=port: tcp_connects(p), 20, f"emulator on 127.0.0.1:{port}")
    say("external network payment-processor: payment-processor-default (fee 5 %, host :8001), "
        "payment-processor-fallback (fee 15 %, host :8002)")


def cleanup(eng, quiet=False):
    """Idempotent: the stack, the emulators, the networks and the volume (images stay)."""
    if os.path.exists(eng.override):
        eng.compose("down", "-v", "-t", "2", timeout=120, check=False)
    for filt in (f"label=io.podman.compose.project={PROJECT}", f"label={LABEL}"):
        ids = eng.podman("ps", "-aq", "--filter", filt, check=False).stdout.split()
        if ids:
            eng.podman("rm", "-f", "-t", "0", *ids, timeout=120, check=False)
    for net in (f"{PROJECT}_backend", "payment-processor"):
        p = eng.podman("network", "inspect", net, check=False)
        if p.returncode == 0:
            labels = json.loads(p.stdout)[0].get("labels") or {}
            if net.startswith(PROJECT) or labels.get("rinha.compose-test") == "1":
                eng.podman("network", "rm", "-f", net, check=False)
            elif not quiet:
                say(f"note: network {net} exists and is not this test's: left alone")
    if eng.podman("volume", "exists", f"{PROJECT}_sockets", check=False).returncode == 0:
        eng.podman("volume", "rm", "-f", f"{PROJECT}_sockets", check=False)


def preflight(eng):
    for cname, _, _ in PROCESSORS.values():
        p = eng.podman("inspect", "--type", "container", "--format", "{{index .Config.Labels \"rinha.compose-test\"}}",
                       cname, check=False)
        if p.returncode == 0 and p.stdout.strip() != "1":
            raise Failed(f"a container named {cname} exists and is not this test's: not touching it")
    cleanup(eng, quiet=True)  # leftovers of an interrupted run
    for port in (LB_PORT,) + tuple(p for _, p, _ in PROCESSORS.values()):
        if tcp_connects(port):
            raise Failed(f"port {port} is busy: the compose file publishes 9999 and the emulators 8001/8002")


# -- the test -----------------------------------------------------------------------
class Test:
    def __init__(self, args):
        self.args = args
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = os.path.join(BENCH, "results", f"{stamp}-compose-test")
        os.makedirs(self.out, exist_ok=True)
        self.override = os.path.join(self.out, "compose.override.yml")
        self.eng = Engine(self.out, os.path.join(HERE, "containers.conf"), PROJECT, COMPOSE, self.override)
        self.doc = yaml.safe_load(open(COMPOSE))
        self.passed, self.failed = [], []
        self.names = {svc: f"{PROJECT}_{svc}_1" for svc in self.doc["services"]}
        self.bench = None
        self.figures = {}

    def check(self, name, ok, detail):
        (self.passed if ok else self.failed).append(name)
        say(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok and not self.args.keep_going:
            raise Failed(f"check failed: {name}")

    def up(self):
        say(f"podman-compose -p {PROJECT} -f docker-compose.yml -f compose.override.yml up -d --no-build "
            "(the images are built above; the compose file's build: needs rust:1-bookworm)")
        t0 = time.time()
        self.eng.compose("up", "-d", "--no-build", timeout=180)
        for svc, cname in self.names.items():
            st = self.eng.inspect(cname)["State"]
            if not st.get("Running"):
                logs = self.eng.podman("logs", cname, check=False)
                raise Failed(f"{cname} is not running ({st.get('Status')}): {(logs.stdout + logs.stderr)[-1500:]}")
        wait(lambda: tcp_connects(LB_PORT), 30, "nginx on :9999")
        wait(lambda: http_ok("/payments-summary"), 30, "GET /payments-summary through nginx")
        say(f"stack up in {time.time() - t0:.1f} s: {', '.join(self.names.values())}")

    def check_limits(self, services=None, when=""):
        for svc in services or self.names:
            cname = self.names[svc]
            lim = self.doc["services"][svc]["deploy"]["resources"]["limits"]
            want_cpus, want_mem = float(lim["cpus"]), int(check_compose.mem_mb(lim["memory"]) * 2**20)
            host = self.eng.inspect(cname)["HostConfig"]
            cpus, mem = cgroup_limits(self.eng.pid(cname))
            ok = (cpus is not None and abs(cpus - want_cpus) < 1e-6 and mem == want_mem
                  and host.get("Memory") == want_mem and host.get("CpuQuota") == round(want_cpus * host.get("CpuPeriod", 100000)))
            self.check(f"limits {svc}{when}", ok, f"cgroup cpu {cpus} CPU, memory {mem} B; compose "
                       f"{lim['cpus']} CPU / {lim['memory']} = {want_mem} B")

    def check_process(self, nofile):
        for svc in ("api1", "api2"):
            pid = self.eng.pid(self.names[svc])
            uids = proc_uids(pid)
            lim = proc_limit(pid, "Max open files")
            self.check(f"user and ulimit {svc}", uids == {10001} and lim == [str(nofile)] * 2,
                       f"uid {sorted(uids)}, open files {lim}, restart policy "
                       f"{self.eng.inspect(self.names[svc])['HostConfig']['RestartPolicy']['Name']}")

    def check_tmpfs(self):
        devs, detail = set(), []
        for svc in self.names:
            m = mount_of(self.eng.pid(self.names[svc]), "/sockets")
            if m is None or m[0] != "tmpfs":
                self.check("sockets on the shared tmpfs", False, f"{svc}: /sockets is {m}")
                return
            devs.add(m[1])
            detail.append(f"{svc} {m[0]} {m[1]} {m[2]}")
        root = f"/proc/{self.eng.pid(self.names['api2'])}/root/sockets"
        entries = {}
        for name in sorted(os.listdir(root)):
            st = os.lstat(os.path.join(root, name))
            kind = "socket" if stat.S_ISSOCK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"
            entries[name] = (kind, st.st_uid, oct(st.st_mode & 0o777), st.st_size)
        env = {svc: self.doc["services"][svc]["environment"] for svc in ("api1", "api2")}
        want = {}
        for e in env.values():
            want[os.path.basename(e["RINHA_UNIX"])] = "socket"
            want[os.path.basename(e["RINHA_PEER_LISTEN"].split(":", 1)[1])] = "socket"
            want[os.path.basename(e["RINHA_JOURNAL"])] = "file"
        ok = len(devs) == 1 and all(entries.get(n, ("missing",))[0] == k and entries[n][1] == 10001 for n, k in want.items())
        self.check("sockets and journals on the shared tmpfs", ok,
                   f"one device {sorted(devs)} in all {len(self.names)} containers ({'; '.join(detail)}); "
                   + ", ".join(f"{n} {e[0]} uid {e[1]} {e[2]}" for n, e in entries.items()))

    def sockets_dir(self):
        """/sockets as nginx's container sees it (nginx is never restarted here)."""
        return f"/proc/{self.eng.pid(self.names['nginx'])}/root/sockets"

    def bench_with_crash(self):
        smoke = os.path.join(self.out, "smoke")
        socks = self.sockets_dir()
        argv = [sys.executable, os.path.join(BENCH, "run.py"), "--scenario", "smoke", "--strict",
                "--no-backend", "--no-processors", "--ports", f"8001,8002,{LB_PORT}", "--out", smoke,
                "--health", f"api1=unix:{socks}/api1.sock", "--health", f"api2=unix:{socks}/api2.sock"]
        say(f"strict smoke bench against :{LB_PORT}: bench/run.py --scenario smoke --strict --no-backend "
            f"--no-processors; api1 crashes {self.args.kill_at} s into k6")
        self.bench = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        wait(lambda: os.path.exists(os.path.join(smoke, "k6-stdout.txt")) or self.bench.poll() is not None,
             60, "k6 start")
        if self.bench.poll() is not None:
            raise Failed(f"bench/run.py exited {self.bench.returncode} before k6 started")
        time.sleep(self.args.kill_at)
        api1 = self.names["api1"]
        before = self.eng.inspect(api1)
        old_pid, restarts0 = before["State"]["Pid"], before.get("RestartCount", 0)
        # A crash, not an engine stop: `podman kill` (like `docker kill`) marks the
        # container stopped by the user, and no restart policy restarts it then.
        os.kill(old_pid, signal.SIGKILL)
        t_kill = time.time()
        say(f"kill -9 {old_pid} (api1's main process, from the host) at {time.strftime('%H:%M:%S')}")

        def restarted():
            st = self.eng.inspect(api1)
            return (st.get("RestartCount", 0) > restarts0 and st["State"].get("Running")
                    and st["State"]["Pid"] not in (0, old_pid))
        wait(restarted, 30, "api1 restarted by its restart policy", period=0.05)
        t_restart = time.time() - t_kill
        wait(lambda: unix_connects(f"{socks}/api1.sock"), 30, "api1.sock accepting again", period=0.05)
        t_serving = time.time() - t_kill
        after = self.eng.inspect(api1)
        self.restart = {"restart_count": after.get("RestartCount"), "old_pid": old_pid,
                        "new_pid": after["State"]["Pid"], "restarted_s": round(t_restart, 2),
                        "serving_s": round(t_serving, 2)}
        say(f"api1 restarted (RestartCount {after.get('RestartCount')}, pid {old_pid} -> {after['State']['Pid']}) "
            f"{t_restart:.2f} s after the kill, its socket accepting {t_serving:.2f} s after")
        try:
            rc = self.bench.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.bench.terminate()
            raise Failed("bench/run.py still running after 300 s; stopped")
        fig_path = os.path.join(smoke, "figures.json")
        self.figures = json.load(open(fig_path)) if os.path.exists(fig_path) else {}
        f = self.figures
        self.check("strict smoke bench through the crash", rc == 0 and bool(f),
                   f"run.py exit {rc}; payments ok/failed {f.get('requested_ok')}/{f.get('requested_failed')}, "
                   f"default/fallback {f.get('default')}/{f.get('fallback')}, lost {f.get('ids_lost')}, "
                   f"paid twice {f.get('double_payments')}, inconsistencies {f.get('inconsistencies')}, "
                   f"lag {f.get('lag')}, windows differing {f.get('windows_mismatched')}/{f.get('windows_checked')}, "
                   f"p99 {f.get('p99')}")
        self.check_links()
        logs = self.eng.podman("logs", api1, check=False)
        text = (logs.stdout + logs.stderr).splitlines()
        starts = [ln for ln in text if re.match(r"rinha \d+\.\d+\.\d+: ", ln)]  # main.rs's start-up line
        lines = [ln for ln in text if "journal:" in ln and "restored" in ln]
        self.restart["journal"] = lines[-1] if lines else None
        self.check("api1 restarted and resumed from its journal", len(starts) >= 2 and bool(lines),
                   f"{len(starts)} starts in its log; after the crash: {lines[-1] if lines else 'nothing restored'}")
        self.check_limits(["api1"], " after the restart")

    def check_links(self):
        """The instances' only routes: processors by name over the external network (both
        stored payments), and each other over the peer sockets on the shared volume."""
        from lib.httpc import Client
        peers = {}
        for svc in ("api1", "api2"):
            c = Client(f"unix:{self.sockets_dir()}/{svc}.sock", timeout=2.0)
            try:
                st, body = c.get("/health")
                peers[svc] = (body or {}).get("peers") if st == 200 else None
            finally:
                c.close()
        f = self.figures
        ok = (f.get("default") or 0) > 0 and (f.get("fallback") or 0) > 0 and all((n or 0) >= 1 for n in peers.values())
        self.check("processors by name, peers linked", ok,
                   f"payment-processor-default stored {f.get('default')}, payment-processor-fallback "
                   f"{f.get('fallback')} (the smoke's slow default sends some to fallback); /health peers {peers}")

    def check_sigterm_stop(self):
        """`podman stop` sends SIGTERM to the container's PID 1: rinha drains and exits 0,
        well before the stop timeout would SIGKILL it (exit 137)."""
        api1 = self.names["api1"]
        t0 = time.time()
        self.eng.podman("stop", "-t", "10", api1, timeout=60)
        dt = time.time() - t0
        code = self.eng.inspect(api1)["State"].get("ExitCode")
        self.check("SIGTERM drains rinha as PID 1", code == 0 and dt < 9,
                   f"`podman stop -t 10 {api1}`: exit code {code} after {dt:.1f} s (137 after 10 s "
                   "would be the timeout's SIGKILL)")

    def engine_kill_note(self):
        """Informational: what `podman kill` does to the restart policy (not a check)."""
        api2 = self.names["api2"]
        self.eng.podman("kill", api2, check=False)
        time.sleep(2)
        st = self.eng.inspect(api2)
        self.podman_kill = f"{st['State']['Status']}, RestartCount {st.get('RestartCount')}"
        say(f"note: `podman kill {api2}` -> {self.podman_kill} after 2 s: the engine treats its own kill "
            "as a stop by the user (Docker's `docker kill` too), so the crash above is a kill -9 from the host")

    def save_logs(self):
        os.makedirs(os.path.join(self.out, "logs"), exist_ok=True)
        for cname in list(self.names.values()) + [c for c, _, _ in PROCESSORS.values()]:
            p = self.eng.podman("logs", cname, check=False, timeout=30)
            with open(os.path.join(self.out, "logs", f"{cname}.log"), "w") as f:
                f.write(p.stdout + p.stderr)

    def down(self):
        self.save_logs()
        t0 = time.time()
        say("podman-compose down -v -t 2 (rinha drains on SIGTERM, within the 2 s once nothing is open)")
        self.eng.compose("down", "-v", "-t", "2", timeout=120)
        dt = time.time() - t0
        left = self.eng.podman("ps", "-aq", "--filter", f"label=io.podman.compose.project={PROJECT}").stdout.split()
        vols = self.eng.podman("volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}").stdout.split()
        mounts = [ln for ln in open("/proc/self/mountinfo") if f"/volumes/{PROJECT}_sockets/" in ln]
        nets = [n for n in self.eng.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                if n.startswith(PROJECT + "_")]
        if nets:
            say(f"note: podman-compose 1.0.3 leaves the project's networks {nets} after down (docker compose "
                "removes them): removed here")
            for n in nets:
                self.eng.podman("network", "rm", n)
        busy = tcp_connects(LB_PORT)
        self.check("down -v leaves nothing behind", not (left or vols or mounts or busy),
                   f"{dt:.1f} s; containers {left or 'none'}, volumes {vols or 'none'}, tmpfs mounts "
                   f"{len(mounts)}, :{LB_PORT} {'busy' if busy else 'free'}")

    def main(self):
        eng = self.eng
        t0 = time.time()
        install()
        engine_starts(eng)
        preflight(eng)
        build_images(eng, self.out)
        say(f"images built in {time.time() - t0:.0f} s")
        nofile = write_override(eng, self.doc)
        start_processors(eng, nofile)
        sockets_volume(eng, self.doc)
        self.up()
        self.check_limits()
        self.check_process(nofile)
        self.check_tmpfs()
        self.bench_with_crash()
        self.check_sigterm_stop()
        self.engine_kill_note()
        self.down()
        cleanup(eng)
        self.summary(time.time() - t0)

    def summary(self, seconds):
        f = self.figures
        row = {"seconds": round(seconds), "restart": getattr(self, "restart", None),
               "podman_kill": getattr(self, "podman_kill", None),
               "figures": {k: f.get(k) for k in ("requested_ok", "requested_failed", "default", "fallback",
                                                 "stored_after_drain", "ids_lost", "double_payments",
                                                 "inconsistencies", "lag", "windows_mismatched", "p99")}}
        with open(os.path.join(self.out, "compose-test.json"), "w") as fh:
            json.dump(row, fh, indent=2)
        say(f"done in {seconds:.0f} s -> {self.out}")


def http_get(path, port=LB_PORT):
    from lib.httpc import Client
    c = Client(f"http://127.0.0.1:{port}", timeout=2.0)
    try:
        return c.get(path)
    finally:
        c.close()


def http_ok(path):
    try:
        return http_get(path)[0] == 200
    except Exception:  # noqa: BLE001 — not up yet
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kill-at", type=float, default=7.5,
                   help="seconds after k6 starts to kill -9 api1 (smoke: default fails from 6 s to 9 s) [7.5]")
    p.add_argument("--keep-going", action="store_true", help="run every check even after one failed")
    args = p.parse_args()

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.geteuid() != 0:
        say("needs root (rootful podman: cgroup limits, published port 9999, /proc of the containers)")
        return 1
    test = Test(args)
    code = 1
    try:
        test.main()
        code = 0 if not test.failed else 1
    except Interrupted as e:
        say(f"interrupted ({e}); cleaning up")
        code = 130
    except Failed as e:
        say(f"FAILED: {e}")
    except Exception as e:  # noqa: BLE001 — report, then still clean up
        import traceback
        traceback.print_exc()
        say(f"FAILED: {e!r}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if test.bench is not None and test.bench.poll() is None:
            test.bench.terminate()
            try:
                test.bench.wait(timeout=60)
            except subprocess.TimeoutExpired:
                test.bench.kill()
        try:
            if test.failed or code != 0:
                test.save_logs()
            cleanup(test.eng)
        except Exception as e:  # noqa: BLE001
            say(f"cleanup: {e!r}")
    if code == 0 and test.failed:
        code = 1
    say(f"{len(test.passed)} passed, {len(test.failed)} failed")
    return code


if __name__ == "__main__":
    sys.exit(main())
