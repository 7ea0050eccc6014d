#!/usr/bin/env python3
"""Static checks of the submission against the contest rules (rinha-spec.md, "Constraints").

docker-compose.yml: CPU and memory limits on every service summing to <= 1.5 CPU and
<= 350 MB, no privileged, no host networking, no replicas/scale, port 9999 published, at
least two API instances, the external `payment-processor` network, linux/amd64 only.
Cross-checks nginx.conf's upstream sockets and the peer sockets against the instances'
environment, and that Dockerfile.scratch ends in a non-root scratch image shared by both
ways in (the `build` stage of `make image`, the `prebuilt` one of `make image-local`).

Usage: check_compose.py [--self-test] [COMPOSE] (needs PyYAML; exit 1 on any violation)
"""

import copy
import re
import sys
from pathlib import Path

import yaml

MAX_CPUS = 1.5
MAX_MEM_MB = 350.0
PORT = "9999"
UNITS = {"": 1 / 2**20, "b": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}


def mem_mb(value):
    """Compose byte value ("150MB", "150m", "1g", 157286400) in MiB."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([bkmg]?)b?\s*", str(value).lower())
    if not m:
        raise ValueError(f"unreadable memory limit {value!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def host_port(p):
    """The host side of a ports entry: "9999:9999", "127.0.0.1:9999:9999" or long form."""
    if isinstance(p, dict):
        return str(p.get("published"))
    parts = str(p).split("/")[0].split(":")
    return parts[-2] if len(parts) >= 2 else None


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: str(v) for k, v in env.items()}


def check_services(doc, verbose=False):
    errs, cpus, mem = [], 0.0, 0.0
    services = doc.get("services") or {}
    for name, svc in services.items():
        deploy = svc.get("deploy") or {}
        limits = (deploy.get("resources") or {}).get("limits") or {}
        if "cpus" not in limits or "memory" not in limits:
            errs.append(f"{name}: needs deploy.resources.limits.cpus and .memory")
        else:
            cpus += float(limits["cpus"])
            mem += mem_mb(limits["memory"])
        if svc.get("privileged"):
            errs.append(f"{name}: privileged is forbidden")
        if str(svc.get("network_mode", "bridge")).startswith(("host", "service:")):
            errs.append(f"{name}: network_mode {svc['network_mode']} is forbidden (bridge only)")
        if "replicas" in deploy or "scale" in svc:
            errs.append(f"{name}: replicas/scale are forbidden")
        if svc.get("platform", "linux/amd64") != "linux/amd64":
            errs.append(f"{name}: platform must be linux/amd64")
        if "image" not in svc:
            errs.append(f"{name}: needs an image name (the submission pulls public images)")
    if cpus > MAX_CPUS + 1e-9:
        errs.append(f"CPU limits sum to {cpus:g} > {MAX_CPUS}")
    if mem > MAX_MEM_MB + 1e-9:
        errs.append(f"memory limits sum to {mem:g} MB > {MAX_MEM_MB:g} MB")
    if verbose:
        print(f"  limits: {cpus:g} CPU, {mem:g} MB over {len(services)} services")
    return errs


def check_topology(doc, nginx_conf):
    errs = []
    services = doc.get("services") or {}
    published = [n for n, s in services.items()
                 if any(host_port(p) == PORT for p in s.get("ports") or [])]
    if len(published) != 1:
        errs.append(f"exactly one service must publish port {PORT}, found {published}")
    apis = {n: env_of(s) for n, s in services.items() if "RINHA_UNIX" in env_of(s)}
    if len(apis) < 2:
        errs.append(f"need at least two API instances behind the balancer, found {list(apis)}")
    nets = doc.get("networks") or {}
    if not (nets.get("payment-processor") or {}).get("external"):
        errs.append("networks.payment-processor must be declared external")
    for n in apis:
        if "payment-processor" not in (services[n].get("networks") or []):
            errs.append(f"{n}: must join the payment-processor network")
    ids = [e.get("RINHA_INSTANCE_ID") for e in apis.values()]
    if len(set(ids)) != len(ids) or None in ids:
        errs.append(f"RINHA_INSTANCE_ID must be set and unique, got {ids}")
    upstream = set(re.findall(r"server\s+unix:(\S+?)[\s;]", nginx_conf))
    sockets = {e["RINHA_UNIX"] for e in apis.values()}
    if upstream != sockets:
        errs.append(f"nginx upstream {sorted(upstream)} != instance sockets {sorted(sockets)}")
    listens = {e.get("RINHA_PEER_LISTEN") for e in apis.values()}
    for n, e in apis.items():
        peers = {p.strip() for p in e.get("RINHA_PEERS", "").split(",") if p.strip()}
        if not peers <= listens - {e.get("RINHA_PEER_LISTEN")}:
            errs.append(f"{n}: RINHA_PEERS {sorted(peers)} must be other instances' peer sockets")
        if peers and not e.get("RINHA_PEER_TOKEN"):
            errs.append(f"{n}: peers need RINHA_PEER_TOKEN")
    return errs


def check_dockerfile(text):
    stages = re.split(r"(?im)^FROM\s+", text)
    last = stages[-1] if len(stages) > 1 else ""
    errs = []
    if not last.lower().startswith("scratch"):
        errs.append("Dockerfile.scratch: the last stage must be FROM scratch")
    user = re.search(r"(?im)^USER\s+(\S+)", last)
    if not user or user.group(1).split(":")[0] in ("0", "root"):
        errs.append("Dockerfile.scratch: the final image must run as a non-root USER")
    if not re.search(r'(?im)^ENTRYPOINT\s+\["/rinha"', last):
        errs.append('Dockerfile.scratch: ENTRYPOINT ["/rinha"] expected')
    names = set(re.findall(r"(?im)^FROM\s.*\sAS\s+(\S+)\s*$", text))
    if not {"build", "prebuilt"} <= names or not re.search(r"(?im)^FROM\s+\$\{RINHA_BIN\}\s+AS\s+bin\s*$", text):
        errs.append("Dockerfile.scratch: stages build and prebuilt, and `FROM ${RINHA_BIN} AS bin`, expected")
    if not re.search(r"(?im)^COPY\s+--from=bin\s+/rinha\s+/rinha\s*$", last):
        errs.append("Dockerfile.scratch: the final stage must take /rinha from the bin stage (both ways in)")
    return errs


def check(doc, nginx_conf, dockerfile, verbose=False):
    return check_services(doc, verbose) + check_topology(doc, nginx_conf) + check_dockerfile(dockerfile)


def self_test(doc, nginx_conf, dockerfile):
    """Each mutation of a valid stack must be rejected."""
    def cpus(d): d["services"]["api1"]["deploy"]["resources"]["limits"]["cpus"] = "0.7"
    def mem(d): d["services"]["api1"]["deploy"]["resources"]["limits"]["memory"] = "171MB"
    def priv(d): d["services"]["api2"]["privileged"] = True
    def host(d): d["services"]["nginx"]["network_mode"] = "host"
    def repl(d): d["services"]["api1"]["deploy"]["replicas"] = 2
    def port(d): d["services"]["nginx"]["ports"] = ["8080:9999"]
    def peer(d): d["services"]["api2"]["environment"]["RINHA_PEERS"] = "unix:/sockets/peer2.sock"
    def ext(d): d["networks"]["payment-processor"]["external"] = False
    cases = [cpus, mem, priv, host, repl, port, peer, ext]
    failed = []
    for mutate in cases:
        d = copy.deepcopy(doc)
        mutate(d)
        if not check(d, nginx_conf, dockerfile):
            failed.append(mutate.__name__)
    if check(doc, nginx_conf, dockerfile.replace("USER 10001", "USER 0")) == []:
        failed.append("root user")
    if check(doc, nginx_conf, dockerfile.replace("--from=bin /rinha", "--from=build /rinha")) == []:
        failed.append("final stage bypassing RINHA_BIN")
    assert mem_mb("150MB") == 150 and mem_mb("1g") == 1024 and mem_mb(157286400) == 150
    return failed


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    root = Path(__file__).resolve().parent.parent
    compose = Path(args[0]) if args else root / "docker-compose.yml"
    doc = yaml.safe_load(compose.read_text())
    nginx_conf = (root / "nginx.conf").read_text()
    dockerfile = (root / "Dockerfile.scratch").read_text()
    if "--self-test" in argv:
        failed = self_test(doc, nginx_conf, dockerfile)
        if failed:
            print(f"check_compose self-test: mutations not caught: {failed}")
            return 1
        print("  self-test: every mutation rejected")
    errs = check(doc, nginx_conf, dockerfile, verbose=True)
    for e in errs:
        print(f"  VIOLATION: {e}")
    print(f"  {compose.name}: {'FAIL' if errs else 'ok'}")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
