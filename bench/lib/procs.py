"""Starting, waiting for and stopping the processes of one bench run.

Each process gets its own session (so its children share its process group),
optionally joins a cgroup before exec, and is stopped by its own PID/PGID only.
"""
import os
import resource
import signal
import socket
import subprocess
import time


class Proc:
    def __init__(self, name, popen, log_path, group):
        self.name, self.popen, self.log_path, self.group = name, popen, log_path, group

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Supervisor:
    """Every process the runner started, stopped in reverse order by `stop_all`."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log_path, env=None, cwd=None, group=None, nofile=None, stdout_path=None):
        def preexec():
            if nofile:
                # Like compose's ulimits, but within the hard limit this runner may not raise.
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                n = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            if group is not None:
                group.join(os.getpid())

        out = open(stdout_path or log_path, "ab")
        err = out if stdout_path is None else open(log_path, "ab")
        try:
            popen = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=preexec,
            )
        finally:
            out.close()
            if err is not out:
                err.close()
        proc = Proc(name, popen, log_path, group)
        self.procs.append(proc)
        return proc

    def stop(self, proc, grace_s=5.0):
        if proc.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(proc.pid, sig)  # the session/group this runner created for it
            except ProcessLookupError:
                return
            try:
                proc.popen.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()


def wait_tcp(port, proc, timeout_s=15.0, host="127.0.0.1"):
    _wait(lambda: connects(socket.AF_INET, (host, port)), proc, timeout_s, f"{host}:{port}")


def wait_unix(path, proc, timeout_s=15.0):
    _wait(lambda: connects(socket.AF_UNIX, path), proc, timeout_s, path)


def connects(family, addr):
    """True if a connection to `addr` succeeds within 0.5 s (closed at once)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(addr)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _wait(ready, proc, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited (code {proc.popen.returncode}) before {what} was up:\n{proc.tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} not up after {timeout_s:.0f} s" + (f":\n{proc.tail()}" if proc else ""))


# `--noise N`: N busy-looping children of one parent, so one PID (its process group) stops
# them all; each also stops by itself after the given seconds should the runner die.
_NOISE = """
import os, sys, time
n, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
for _ in range(n):
    if os.fork() == 0:
        while time.monotonic() < end:
            for _ in range(20000):
                pass
        os._exit(0)
for _ in range(n):
    os.wait()
"""


def noise_argv(python, n, seconds):
    """argv of a process that keeps `n` cores busy for at most `seconds`."""
    return [python, "-c", _NOISE, str(n), str(seconds)]
