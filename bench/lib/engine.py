"""Container engine plumbing of bench/compose_test.py: bounded commands, podman and
podman-compose with the test's containers.conf, the Debian install, and what the host
sees of a container's process (/proc: cgroup limits, mounts, rlimits, uids)."""
import json
import os
import shutil
import socket
import subprocess
import time

from .procs import connects

PACKAGES = ["podman", "runc", "podman-compose", "netavark", "aardvark-dns", "iptables"]


class Failed(Exception):
    pass


def run(argv, timeout=60, check=True, env=None, log=None):
    """Runs argv (bounded); returns CompletedProcess. Output goes to `log` when given."""
    try:
        if log:
            with open(log, "a") as f:
                f.write(f"\n$ {' '.join(argv)}\n")
                f.flush()
                p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
        else:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise Failed(f"`{' '.join(argv)}` still running after {timeout} s")
    if check and p.returncode != 0:
        detail = f"see {log}" if log else (p.stderr or p.stdout or "").strip()[-1500:]
        raise Failed(f"`{' '.join(argv)}` exited {p.returncode}: {detail}")
    return p


class Engine:
    """podman with the given containers.conf (CONTAINERS_CONF), podman-compose on the compose
    file with the override layered on it."""

    def __init__(self, out, conf, project, compose, override):
        self.out, self.project, self.compose_file, self.override = out, project, compose, override
        self.env = dict(os.environ, CONTAINERS_CONF=conf)

    def podman(self, *args, timeout=60, check=True):
        return run(["podman", *args], timeout=timeout, check=check, env=self.env)

    def out_of(self, *args, timeout=60):
        return self.podman(*args, timeout=timeout).stdout.strip()

    def compose(self, *args, timeout=120, check=True):
        argv = ["podman-compose", "-p", self.project, "-f", self.compose_file, "-f", self.override, *args]
        return run(argv, timeout=timeout, check=check, env=self.env, log=os.path.join(self.out, "podman-compose.log"))

    def inspect(self, name):
        return json.loads(self.out_of("inspect", "--type", "container", name))[0]

    def pid(self, name):
        return int(self.inspect(name)["State"]["Pid"])


def install():
    """Debian's podman, runc, podman-compose, netavark, aardvark-dns and iptables, when missing."""
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        missing = [c for c in ("podman", "podman-compose") if not shutil.which(c)]
        if missing:
            raise Failed(f"{missing} not found and no apt-get to install them")
        return
    missing = [p for p in PACKAGES if "install ok installed" not in
               subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout]
    if not missing:
        return
    print(f"compose-test: installing {' '.join(missing)} (Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], timeout=300, env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], timeout=600, env=env)


def nginx_rootfs(root):
    """Debian's /usr/sbin/nginx, every library ldd names, users, and the dirs it writes."""
    nginx = "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise Failed("no /usr/sbin/nginx for the stand-in image (bench/setup.sh installs it)")
    files = [nginx]
    for line in run(["ldd", nginx]).stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            files.append(path)
    for f in files:
        dst = os.path.join(root, f.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(os.path.realpath(f), dst)
    for d in ("etc/nginx", "var/lib/nginx", "var/log/nginx", "var/lock", "run", "tmp"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    with open(os.path.join(root, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")
    with open(os.path.join(root, "etc/group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n")
    with open(os.path.join(root, "etc/nsswitch.conf"), "w") as f:
        f.write("passwd: files\ngroup: files\nhosts: files dns\n")


def tcp_connects(port):
    return connects(socket.AF_INET, ("127.0.0.1", port))


def unix_connects(path):
    return connects(socket.AF_UNIX, path)


def wait(pred, timeout_s, what, period=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if pred():
            return time.time() - t0
        time.sleep(period)
    raise Failed(f"{what}: not ready after {timeout_s} s")


def cgroup_limits(pid):
    """(cpu quota/period as cpus, memory limit bytes) read from the process's own cgroups."""
    paths = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ["unified"]:
                paths[c] = path
    if "cpu" in paths and "memory" in paths:  # cgroup v1 (this machine: hybrid)
        d = "/sys/fs/cgroup/cpu" + paths["cpu"]
        quota, period = (int(open(f"{d}/{n}").read()) for n in ("cpu.cfs_quota_us", "cpu.cfs_period_us"))
        mem = int(open("/sys/fs/cgroup/memory" + paths["memory"] + "/memory.limit_in_bytes").read())
    else:  # cgroup v2
        d = "/sys/fs/cgroup" + paths["unified"]
        q, period = open(f"{d}/cpu.max").read().split()
        quota = -1 if q == "max" else int(q)
        period = int(period)
        m = open(f"{d}/memory.max").read().strip()
        mem = -1 if m == "max" else int(m)
    return (quota / period if quota > 0 else None), mem


def mount_of(pid, target):
    """(fstype, device major:minor, super options) of `target` in the process's mount namespace."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields = left.split()
            if fields[4] == target:
                fstype, _source, superopts = right.split()[:3]
                return fstype, fields[2], superopts
    return None


def proc_limit(pid, name):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                return line[len(name):].split()[:2]
    return None


def proc_uids(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return set(int(x) for x in line.split()[1:])
    return set()


