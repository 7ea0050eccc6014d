"""Per-service CPU and memory limits and accounting with cgroups v1 or v2.

One group per service under a per-run parent, created inside the runner's own
cgroup of each hierarchy; processes join it from `preexec` (so forked children,
e.g. nginx workers, are inside from the start). Removed again by `cleanup()`.
"""
import os
import re
import time

ROOT = "/sys/fs/cgroup"
PERIOD_US = 100_000


def parse_cpus(value):
    return float(value) if value not in (None, "") else None


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def parse_memory(value):
    """Docker's reading of a memory limit: '30MB' and '30m' are both 30 MiB."""
    if value in (None, ""):
        return None
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"memory limit not understood: {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _own_paths():
    """controller -> this process's cgroup path, from /proc/self/cgroup."""
    out = {}
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


class Group:
    """One service's cgroup: `dirs` maps a role (cpu, cpuacct, memory, unified) to its directory."""

    def __init__(self, name, version, dirs, cpus, mem):
        self.name, self.version, self.dirs, self.cpus, self.mem = name, version, dirs, cpus, mem

    def join(self, pid):
        for d in dict.fromkeys(self.dirs.values()):
            _write(os.path.join(d, "cgroup.procs"), pid)

    def cpu_ns(self):
        if self.version == 1:
            return int(_read(os.path.join(self.dirs["cpuacct"], "cpuacct.usage"), "0"))
        stat = self._kv(os.path.join(self.dirs["unified"], "cpu.stat"))
        return stat.get("usage_usec", 0) * 1000

    def stats(self):
        if self.version == 1:
            cpu = self._kv(os.path.join(self.dirs["cpu"], "cpu.stat"))
            mem = self.dirs["memory"]
            oom = self._kv(os.path.join(mem, "memory.oom_control"))
            return {
                "cpu_seconds": self.cpu_ns() / 1e9,
                "peak_memory_bytes": int(_read(os.path.join(mem, "memory.max_usage_in_bytes"), "0")),
                "memory_limit_hits": int(_read(os.path.join(mem, "memory.failcnt"), "0")),
                "oom_kills": oom.get("oom_kill", 0),
                "nr_periods": cpu.get("nr_periods", 0),
                "nr_throttled": cpu.get("nr_throttled", 0),
                "throttled_seconds": cpu.get("throttled_time", 0) / 1e9,
            }
        d = self.dirs["unified"]
        cpu = self._kv(os.path.join(d, "cpu.stat"))
        events = self._kv(os.path.join(d, "memory.events"))
        return {
            "cpu_seconds": cpu.get("usage_usec", 0) / 1e6,
            "peak_memory_bytes": int(_read(os.path.join(d, "memory.peak"), "0") or 0),
            "memory_limit_hits": events.get("max", 0),
            "oom_kills": events.get("oom_kill", 0),
            "nr_periods": cpu.get("nr_periods", 0),
            "nr_throttled": cpu.get("nr_throttled", 0),
            "throttled_seconds": cpu.get("throttled_usec", 0) / 1e6,
        }

    def pids(self):
        d = next(iter(self.dirs.values()))
        return [int(p) for p in (_read(os.path.join(d, "cgroup.procs"), "") or "").split()]

    def tids(self):
        """Every thread of every process in the group."""
        d = next(iter(self.dirs.values()))
        name = "tasks" if self.version == 1 else "cgroup.threads"
        return [int(t) for t in (_read(os.path.join(d, name), "") or "").split()]

    @staticmethod
    def _kv(path):
        out = {}
        for line in (_read(path, "") or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
        return out


class Cgroups:
    """The per-run parent group and its service groups. `version` is 1, 2 or None (unavailable)."""

    def __init__(self, tag):
        self.tag = tag
        self.groups = {}
        self.parents = []
        self.version = None
        self.warning = None
        if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
            self.version = 2
        elif os.path.isdir(os.path.join(ROOT, "cpu")) and os.path.isdir(os.path.join(ROOT, "memory")):
            self.version = 1
        else:
            self.warning = "no cgroup v1 cpu/memory hierarchy nor cgroup v2 mount found"

    def _parent_dirs(self):
        own = _own_paths()
        if self.version == 1:
            dirs = {}
            for role in ("cpu", "cpuacct", "memory"):
                mount = os.path.realpath(os.path.join(ROOT, role))
                dirs[role] = os.path.join(mount, own.get(role, "/").lstrip("/"), self.tag)
            return dirs
        base = os.path.join(ROOT, own.get("", "/").lstrip("/"))
        return {"unified": os.path.join(base, self.tag)}

    def create(self, name, cpus=None, mem=None):
        """Creates (or returns) a service's group with the given limits; None when unavailable."""
        if self.version is None:
            return None
        if name in self.groups:
            return self.groups[name]
        try:
            if not self.parents:
                self._make_parents()
            group = self._make_group(name, cpus, mem)
        except OSError as e:
            self.warning = f"cgroups unavailable ({e}); running without limits"
            self.version = None
            return None
        self.groups[name] = group
        return group

    def _make_parents(self):
        try:
            self._make_parents_at(self._parent_dirs())
        except OSError:
            if self.version != 2:
                raise
            # v2 forbids enabling controllers below a non-root group that holds processes
            # (this runner's own group): fall back to a group under the root.
            self._remove_parents()
            self._make_parents_at({"unified": os.path.join(ROOT, self.tag)})

    def _remove_parents(self):
        for d in reversed(self.parents):
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.parents.clear()

    def _make_parents_at(self, dirs):
        for d in dict.fromkeys(dirs.values()):
            os.makedirs(d, exist_ok=True)
            self.parents.append(d)
        if self.version == 2:
            parent = os.path.dirname(dirs["unified"])
            want = {"cpu", "memory"} - set((_read(os.path.join(parent, "cgroup.subtree_control"), "") or "").split())
            if want:
                _write(os.path.join(parent, "cgroup.subtree_control"), " ".join("+" + c for c in sorted(want)))
            _write(os.path.join(dirs["unified"], "cgroup.subtree_control"), "+cpu +memory")
        self._parent = dirs

    def _make_group(self, name, cpus, mem):
        dirs = {role: os.path.join(p, name) for role, p in self._parent.items()}
        for d in dict.fromkeys(dirs.values()):
            os.makedirs(d, exist_ok=True)
        if self.version == 1:
            if cpus:
                _write(os.path.join(dirs["cpu"], "cpu.cfs_period_us"), PERIOD_US)
                _write(os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), int(cpus * PERIOD_US))
            if mem:
                _write(os.path.join(dirs["memory"], "memory.limit_in_bytes"), mem)
        else:
            d = dirs["unified"]
            if cpus:
                _write(os.path.join(d, "cpu.max"), f"{int(cpus * PERIOD_US)} {PERIOD_US}")
            if mem:
                _write(os.path.join(d, "memory.max"), mem)
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    _write(os.path.join(d, "memory.swap.max"), 0)
        return Group(name, self.version, dirs, cpus, mem)

    def cleanup(self, wait_s=3.0):
        """Removes the groups once their processes are gone (the runner kills them first)."""
        deadline = time.monotonic() + wait_s
        dirs = [d for g in self.groups.values() for d in dict.fromkeys(g.dirs.values())] + list(reversed(self.parents))
        for d in dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
        self.groups.clear()
        self.parents.clear()
