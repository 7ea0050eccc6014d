"""The stack docker-compose.yml defines, translated to bare metal.

Only addresses change: the socket volume `/sockets/` becomes a per-run directory,
the processors' compose names become 127.0.0.1:8001/8002, nginx gets a per-run
prefix, pid and temp paths, and a rinha service's bind mounts (`./certs:/certs:ro`,
source relative to the compose file) become their host paths in its env and command.
Limits (cpus, memory) and ulimits are read as written.
"""
import os
import re
import shlex

import yaml

from . import cgroups

SOCKET_DIR = "/sockets/"
PROCESSOR_HOSTS = {
    "http://payment-processor-default:8080": "http://127.0.0.1:{default}",
    "http://payment-processor-fallback:8080": "http://127.0.0.1:{fallback}",
}


class Service:
    """One compose service: `kind` is 'nginx' or 'api' (a rinha instance)."""

    def __init__(self, name, kind, env, command, cpus, mem, nofile, binds=None):
        self.name, self.kind, self.env, self.command = name, kind, env, command
        self.cpus, self.mem, self.nofile = cpus, mem, nofile
        self.binds = binds or {}  # container path -> host path (bind mounts)


def load(compose_path):
    with open(compose_path) as f:
        doc = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(compose_path))
    services = []
    for name, svc in (doc.get("services") or {}).items():
        image = str(svc.get("image", ""))
        kind = "nginx" if name == "nginx" or image.startswith("nginx") else "api"
        if kind == "api" and not any(k.startswith("RINHA_") for k in _env(svc)):
            raise ValueError(f"service {name!r} is neither nginx nor a rinha instance; the bench cannot run it")
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        services.append(Service(
            name, kind, _env(svc), _command(svc.get("command")),
            cgroups.parse_cpus(limits.get("cpus")), cgroups.parse_memory(limits.get("memory")),
            _nofile(svc), _binds(name, svc, base) if kind == "api" else {},
        ))
    return services


def _binds(name, svc, base):
    """Bind mounts (`./src:/target[:ro]`, relative to the compose file): target -> host path."""
    binds = {}
    for v in svc.get("volumes") or []:
        if not isinstance(v, str):
            continue
        src, _, rest = v.partition(":")
        if not src.startswith((".", "/")) or not rest:
            continue  # a named volume (sockets:/sockets) or no target
        target = rest.split(":")[0].rstrip("/")
        host = os.path.normpath(os.path.join(base, src))
        if not os.path.exists(host):
            raise ValueError(f"service {name!r}: bind mount source {host} does not exist")
        binds[target] = host
    return binds


def _env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(cmd):
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _nofile(svc):
    n = ((svc.get("ulimits") or {}).get("nofile"))
    if isinstance(n, dict):
        return int(n.get("hard", n.get("soft")))
    return int(n) if n else None


def adapt(value, sock_dir, ports, binds=None):
    """Rewrites one address-bearing string for bare metal (`binds`: Service.binds)."""
    for host, repl in PROCESSOR_HOSTS.items():
        value = value.replace(host, repl.format(**ports))
    for target in sorted(binds or {}, key=len, reverse=True):
        if value == target or value.startswith(target + "/"):
            return binds[target] + value[len(target):]
    return value.replace(SOCKET_DIR, sock_dir.rstrip("/") + "/")


def nginx_conf(src_path, dst_path, sock_dir, access_log=None):
    """Copies nginx.conf with socket paths moved; drops pid/daemon/user, which the runner sets with -g.
    `access_log`: directives that replace `access_log off;` (bench/lib/tail.py)."""
    with open(src_path) as f:
        text = f.read()
    text = text.replace(SOCKET_DIR, sock_dir.rstrip("/") + "/")
    if access_log is not None:
        text, found = re.subn(r"(?m)^(\s*)access_log off;", lambda m: m.group(1) + access_log, text, count=1)
        if not found:
            raise RuntimeError(f"--tail: no 'access_log off;' line to replace in {src_path}")
    text = re.sub(r"(?m)^\s*(pid|daemon|user)\s+[^;]*;", "", text)
    with open(dst_path, "w") as f:
        f.write(text)
    mime = "/etc/nginx/mime.types"
    if "mime.types" in text and os.path.exists(mime):
        with open(mime) as s, open(os.path.join(os.path.dirname(dst_path), "mime.types"), "w") as d:
            d.write(s.read())
    return dst_path


def nginx_argv(nginx_bin, prefix, conf, pid_path):
    directives = f"pid {pid_path}; daemon off; user root root;"
    return [nginx_bin, "-p", prefix.rstrip("/") + "/", "-c", conf, "-g", directives]
