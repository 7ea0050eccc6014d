"""The cluster a chaos run breaks: two processor emulators, N journaled rinha instances
whose peer links each run through a LinkProxy, optionally nginx in front; every fault
the schedule names (kill -9 + restart, SIGSTOP/SIGCONT, link cut/heal, processor
failure and delay) and the heal that undoes them all. Loopback and a temp dir only."""
import json
import os
import re
import signal
import socket
import threading
import time

from . import procs, stack
from .chaos_proxy import LinkProxy
from .httpc import Client

TOKEN = "123"
PROCESSORS = {"default": "0.05", "fallback": "0.15"}


def free_port():
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


class Instance:
    """One rinha instance: its fixed argv (a restart reuses it) and what we did to it."""

    def __init__(self, iid, port, argv, log_path, unix_path):
        self.iid, self.port, self.argv, self.log_path = iid, port, argv, log_path
        self.unix_path = unix_path
        self.name = f"api{iid}"
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None
        self.killed = False  # by us: kill -9, restart pending
        self.stopped = False  # by us: SIGSTOP, SIGCONT pending
        self.exits = []  # exits we did not cause: (seconds into the run, code)


class Cluster:
    def __init__(self, args, out_dir, run_dir):
        self.args, self.out, self.run_dir = args, out_dir, run_dir
        self.sup = procs.Supervisor()
        self.t0 = time.monotonic()
        self.processors = {name: free_port() for name in PROCESSORS}
        self.proxies = {}  # (i, j): proxy that instance i dials to reach j
        self.instances = []
        self.nginx_port = None
        self.lock = threading.Lock()  # kill/restart vs the exit watcher

    # ---- start and stop

    def start(self, before_instances=lambda: None):
        """Processors, then `before_instances()`, then the instances (linked), then nginx."""
        for name, fee in PROCESSORS.items():
            port = self.processors[name]
            argv = [self.args.processor_bin, "--listen", f"127.0.0.1:{port}", "--fee", fee, "--token", TOKEN]
            p = self.sup.start(f"pp-{name}", argv, self._log(f"pp-{name}"))
            procs.wait_tcp(port, p)
        before_instances()
        self.instances = self._instances()
        for inst in self.instances:
            self._spawn(inst)
        for inst in self.instances:
            procs.wait_tcp(inst.port, inst.proc)
        self.wait_linked(30.0)
        if self.args.nginx:
            self._start_nginx()

    def _instances(self):
        n = self.args.instances
        peer_ports = {i: free_port() for i in range(1, n + 1)}
        for i in peer_ports:
            for j in peer_ports:
                if i != j:
                    self.proxies[(i, j)] = LinkProxy(peer_ports[j])
        return [self._instance(i, peer_ports[i]) for i in range(1, n + 1)]

    def _instance(self, i, peer_port):
        port = free_port()
        unix_path = os.path.join(self.run_dir, f"api{i}.sock") if self.args.nginx else None
        argv = [
            self.args.rinha_bin, "--listen", f"127.0.0.1:{port}", "--instance-id", str(i),
            "--peer-listen", f"127.0.0.1:{peer_port}", "--peer-token", "chaos-peer-token",
            "--journal", os.path.join(self.run_dir, f"journal-api{i}.bin"),
            "--default-url", f"http://127.0.0.1:{self.processors['default']}",
            "--fallback-url", f"http://127.0.0.1:{self.processors['fallback']}",
            "--workers", str(self.args.workers), "--max-defer-ms", str(self.args.max_defer_ms),
        ]
        for (a, _), proxy in sorted(self.proxies.items()):
            if a == i:
                argv += ["--peer", f"127.0.0.1:{proxy.port}"]
        if unix_path:
            argv += ["--unix", unix_path]
        return Instance(i, port, argv, self._log(f"api{i}"), unix_path)

    def _spawn(self, inst):
        with open(inst.log_path, "a") as f:
            f.write(f"==== chaos: start at +{self.elapsed():.2f}s: {' '.join(inst.argv)}\n")
        inst.proc = self.sup.start(inst.name, inst.argv, inst.log_path)

    def _start_nginx(self):
        self.nginx_port = free_port()
        conf = os.path.join(self.run_dir, "nginx.conf")
        with open(self.args.nginx_conf) as f:
            text = nginx_conf_text(f.read(), self.run_dir, self.nginx_port, self.args.instances)
        with open(conf, "w") as f:
            f.write(text)
        for inst in self.instances:
            procs.wait_unix(inst.unix_path, inst.proc)
        argv = stack.nginx_argv(self.args.nginx_bin, self.run_dir, conf, os.path.join(self.run_dir, "nginx.pid"))
        p = self.sup.start("nginx", argv, self._log("nginx"))
        procs.wait_tcp(self.nginx_port, p)

    def shutdown(self):
        for inst in self.instances:
            if inst.proc is not None and inst.proc.alive():
                os.kill(inst.proc.pid, signal.SIGCONT)  # a stopped process never sees SIGTERM
        self.sup.stop_all()
        for proxy in self.proxies.values():
            proxy.close()

    # ---- faults (each called from the schedule's thread)

    def kill(self, i):
        inst = self.instance(i)
        with self.lock:
            inst.killed = True
            os.kill(inst.proc.pid, signal.SIGKILL)
            inst.proc.popen.wait()

    def restart(self, i):
        inst = self.instance(i)
        with self.lock:
            if inst.proc.alive():
                return
            self._spawn(inst)
            inst.killed = False

    def pause(self, i):
        inst = self.instance(i)
        inst.stopped = True
        os.kill(inst.proc.pid, signal.SIGSTOP)

    def resume(self, i):
        inst = self.instance(i)
        if inst.proc.alive():
            os.kill(inst.proc.pid, signal.SIGCONT)
        inst.stopped = False

    def cut(self, i, j):
        self.proxies[(i, j)].cut()
        self.proxies[(j, i)].cut()

    def heal_link(self, i, j):
        self.proxies[(i, j)].heal()
        self.proxies[(j, i)].heal()

    def set_failure(self, name, failing):
        self._admin(name, "PUT", "/admin/configurations/failure", {"failure": failing})

    def set_delay(self, name, ms):
        self._admin(name, "PUT", "/admin/configurations/delay", {"delay": ms})

    def heal(self):
        """Undoes every fault: processors healthy and fast, links open, instances running."""
        for name in PROCESSORS:
            self.set_failure(name, False)
            self.set_delay(name, 0)
        for proxy in self.proxies.values():
            proxy.heal()
        for inst in self.instances:
            if inst.stopped:
                self.resume(inst.iid)
            if not inst.proc.alive():
                self.restart(inst.iid)
        for inst in self.instances:
            procs.wait_tcp(inst.port, inst.proc, timeout_s=30.0)

    def watch_exits(self):
        """Records each instance found dead that we did not kill (call it periodically)."""
        with self.lock:
            for inst in self.instances:
                code = inst.proc.popen.poll()
                if code is not None and not inst.killed:
                    inst.exits.append((round(self.elapsed(), 2), code))
                    inst.killed = True  # recorded once; the heal restarts it

    # ---- observation

    def instance(self, i):
        return self.instances[i - 1]

    def elapsed(self):
        return time.monotonic() - self.t0

    def admin_client(self, name):
        return Client(f"http://127.0.0.1:{self.processors[name]}", timeout=10.0, headers={"X-Rinha-Token": TOKEN})

    def _admin(self, name, method, path, body):
        c = self.admin_client(name)
        try:
            status, _ = c.request(method, path, body)
        finally:
            c.close()
        if status != 200:
            raise RuntimeError(f"{name} {method} {path} {json.dumps(body)}: HTTP {status}")

    def wait_linked(self, timeout_s):
        """Until every instance's /health reports all its peers linked; False on timeout."""
        deadline = time.monotonic() + timeout_s
        want = str(len(self.instances) - 1)
        while time.monotonic() < deadline:
            if all(_health_peers(inst) == want for inst in self.instances):
                return True
            time.sleep(0.2)
        return False

    def _log(self, name):
        return os.path.join(self.out, f"{name}.log")


def _health_peers(inst):
    c = Client(inst.url, timeout=2.0)
    try:
        status, body = c.get("/health")
    except OSError:
        return None
    finally:
        c.close()
    return str((body or {}).get("peers")) if status == 200 else None


def nginx_conf_text(text, run_dir, port, instances):
    """The project's nginx.conf for this run: sockets in `run_dir`, listening on
    127.0.0.1:`port`, temp files in `run_dir`, one server line per instance in id order."""
    text = text.replace("/sockets/", run_dir.rstrip("/") + "/")
    text = re.sub(r"listen 9999\b", f"listen 127.0.0.1:{port}", text)
    text = re.sub(r"worker_rlimit_nofile \d+;", "worker_rlimit_nofile 4096;", text)
    text = text.replace("http {", f"http {{\n    client_body_temp_path {run_dir}/body;\n"
                                  f"    proxy_temp_path {run_dir}/proxy;", 1)
    last = re.search(r"(?m)^(\s*)server unix:(\S*)api2\.sock( [^;]*)?;\n", text)
    if last is None:
        raise RuntimeError("nginx.conf: no 'server unix:...api2.sock' line to extend")
    extra = "".join(f"{last.group(1)}server unix:{last.group(2)}api{i}.sock{last.group(3) or ''};\n"
                    for i in range(3, instances + 1))
    return text[:last.end()] + extra + text[last.end():]
