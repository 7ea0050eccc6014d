"""What one service costs: CPU time and context switches, summed over all its threads.

Linux counts context switches per thread only (`voluntary_ctxt_switches` and
`nonvoluntary_ctxt_switches` in /proc/<tid>/status; a process's own status shows its
main thread's, and cgroup v1 has no such counter). A `Meter` remembers every thread it
has read and adds up the growth since the previous read, so a thread that exits loses
only what it did after the last read (at most one sampling period); a thread first seen
counts from its birth. CPU comes from the service's cgroup when it has one
(exact, includes exited threads), else from /proc/<pid>/stat of its processes.
"""
import os
import re
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_VOL = b"\nvoluntary_ctxt_switches:"
_INVOL = b"\nnonvoluntary_ctxt_switches:"


def _field(data, key):
    i = data.find(key)
    if i < 0:
        return None
    i += len(key)
    j = data.find(b"\n", i)
    return int(data[i:] if j < 0 else data[i:j])


def _read(path):
    """A small /proc file: os.read, not open(): a third less CPU, which matters at
    ~1,500 threads a second."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)


def thread_switches(tid):
    """(voluntary, involuntary) of one thread, or None once it is gone."""
    try:
        data = _read(f"/proc/{tid}/status")
    except OSError:
        return None
    vol, invol = _field(data, _VOL), _field(data, _INVOL)
    return None if vol is None or invol is None else (vol, invol)


def role(comm):
    """A thread's role: its name without a trailing number ('worker-17' -> 'worker')."""
    return re.sub(r"[-_]?\d+$", "", comm) or comm


def process_cpu_ns(pid):
    """utime + stime of a whole process (exited threads included), clock-tick resolution."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK


_children = {"t": 0.0, "map": {}}


def _child_map(max_age_s=0.5):
    """ppid -> [pid] over the machine, one /proc scan shared by every meter of a sample."""
    now = time.monotonic()
    if now - _children["t"] < max_age_s:
        return _children["map"]
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    _children.update(t=now, map=children)
    return children


def descendants(pid):
    """`pid` and every process below it."""
    children = _child_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def process_tids(pids):
    tids = []
    for p in pids:
        try:
            tids.extend(int(t) for t in os.listdir(f"/proc/{p}/task"))
        except OSError:
            continue
    return tids


class Meter:
    """One service: a cgroup (`group`, a cgroups.Group) or a process tree rooted at `pid`."""

    def __init__(self, name, group=None, pid=None):
        if group is None and pid is None:
            raise ValueError(f"meter {name}: needs a cgroup or a pid")
        self.name, self.group, self.pid = name, group, pid
        self.lock = threading.Lock()
        self.last = {}  # tid -> (voluntary, involuntary) at the previous read
        self.total = [0, 0]
        self.threads = 0
        self.exited = 0  # threads seen once and gone later: their last period is lost
        self.cpu_seen = 0  # without a cgroup: the most seen, kept when the processes are gone

    def _pids(self):
        return self.group.pids() if self.group is not None else descendants(self.pid)

    def _tids(self):
        if self.group is not None:
            return self.group.tids()
        return process_tids(descendants(self.pid))

    def cpu_ns(self):
        if self.group is not None:
            return self.group.cpu_ns()
        self.cpu_seen = max(self.cpu_seen, sum(process_cpu_ns(p) for p in self._pids()))
        return self.cpu_seen

    def switches(self):
        """Context switches (voluntary, involuntary) of the threads seen so far, each from its birth."""
        with self.lock:
            try:
                tids = self._tids()
            except OSError:
                tids = []
            now = {}
            for tid in tids:
                c = thread_switches(tid)
                if c is not None:
                    now[tid] = c
            for tid, (vol, invol) in now.items():
                pv, pi = self.last.get(tid, (0, 0))
                if vol < pv or invol < pi:  # a reused thread id: a new thread
                    pv, pi = 0, 0
                self.total[0] += vol - pv
                self.total[1] += invol - pi
            self.exited += sum(1 for tid in self.last if tid not in now)
            self.last = now
            self.threads = len(now)
            return tuple(self.total)

    def roles(self):
        """{role: [cpu_ns, voluntary, involuntary]} of the live threads, each since its
        birth (CPU from /proc/<tid>/schedstat, ns). Read at the marks only: what each
        kind of thread (event loop, workers, peer link...) cost during the test."""
        out = {}
        try:
            tids = self._tids()
        except OSError:
            return out
        for tid in tids:
            try:
                comm = _read(f"/proc/{tid}/comm").decode(errors="replace").strip()
                cpu = int(_read(f"/proc/{tid}/schedstat").split()[0])
            except (OSError, ValueError, IndexError):
                continue
            sw = thread_switches(tid)
            if sw is None:
                continue
            acc = out.setdefault(role(comm), [0, 0, 0])
            acc[0] += cpu
            acc[1] += sw[0]
            acc[2] += sw[1]
        return out
