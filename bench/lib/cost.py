"""What a run cost, per service and for the stack, and the check against a scenario's budget.

The test is the time between the `test_start` and `test_end` marks of samples.jsonl
(k6 started / k6 exited). Per service: CPU-seconds, CPU-ms per 1,000 payments,
context switches (voluntary, involuntary, per payment) and the most in any one second
(between two consecutive once-a-second samples inside the test). The stack is every
service but the reference ones (k6, the processor emulators, the noise burners).
"""
REFERENCE = ("k6", "processor-default", "processor-fallback", "noise")
BUDGET_KEYS = {
    "stack_cpu_s": "stack CPU-seconds during the test",
    "stack_ctx_per_payment": "context switches per payment, summed over the stack",
    "instance_peak_ctx_per_s": "context switches of one stack service in any one second",
}


def is_stack(name):
    return name not in REFERENCE


def _mark(samples, name):
    return next((s for s in samples if s.get("mark") == name), None)


def _per(value, payments, scale=1):
    return None if value is None or not payments else value * scale / payments


def peaks(samples, t_from, t_to):
    """service -> (peak context switches per second, seconds after t_from) over the periodic samples."""
    periodic = [s for s in samples if "mark" not in s and t_from - 0.5 <= s["t"] <= t_to + 0.5]
    out = {}
    for a, b in zip(periodic, periodic[1:]):
        dt = b["t"] - a["t"]
        if dt < 0.5:
            continue
        for name, cb in b.get("ctx", {}).items():
            ca = a.get("ctx", {}).get(name)
            if ca is None:
                continue
            rate = (sum(cb) - sum(ca)) / dt
            if name not in out or rate > out[name][0]:
                out[name] = (rate, round(a["t"] - t_from, 1))
    return out


def compute(samples, payments):
    """The cost dict written into figures.json; None when the run has no test marks."""
    start, end = _mark(samples, "test_start"), _mark(samples, "test_end")
    if start is None or end is None:
        return None
    peak = peaks(samples, start["t"], end["t"])
    services = {}
    for name in end.get("ctx", {}):
        cpu = None
        began = start["cpu_ns"].get(name, 0 if name not in start["ctx"] else None)  # 0: started during the test
        if began is not None and name in end.get("cpu_ns", {}):
            cpu = (end["cpu_ns"][name] - began) / 1e9
        vol, invol = (e - s for e, s in zip(end["ctx"][name], start["ctx"].get(name, (0, 0))))
        rate, at = peak.get(name, (None, None))
        services[name] = {
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_ms_per_1k": _round(_per(cpu, payments, 1e6)),
            "ctx_voluntary": vol, "ctx_involuntary": invol,
            "ctx_per_payment": _round(_per(vol + invol, payments)),
            "peak_ctx_per_s": None if rate is None else round(rate),
            "peak_at_s": at,
            "threads": end.get("threads", {}).get(name),
            "threads_exited": end.get("exited", {}).get(name, 0) - start.get("exited", {}).get(name, 0),
        }
        roles = _roles(start.get("roles", {}).get(name), end.get("roles", {}).get(name), payments)
        if roles:
            services[name]["roles"] = roles
    stack = [n for n in services if is_stack(n)]
    cpus = [services[n]["cpu_s"] for n in stack]
    cpu = None if not stack or None in cpus else sum(cpus)
    ctx = sum(services[n]["ctx_voluntary"] + services[n]["ctx_involuntary"] for n in stack)
    top = max(stack, key=lambda n: services[n]["peak_ctx_per_s"] or 0, default=None)
    return {
        "test_seconds": round(end["t"] - start["t"], 2),
        "payments": payments,
        "services": services,
        "stack": {
            "services": stack,
            "cpu_s": None if cpu is None else round(cpu, 3),
            "cpu_ms_per_1k": _round(_per(cpu, payments, 1e6)),
            "ctx": ctx,
            "ctx_per_payment": _round(_per(ctx, payments)),
            "peak_ctx_per_s": None if top is None else services[top]["peak_ctx_per_s"],
            "peak_instance": top,
        },
    }


def _roles(began, ended, payments):
    """Per thread role, what it cost between the marks (a thread born in between counts
    from its birth; one gone by the end is not counted)."""
    if not ended:
        return None
    out = {}
    for r, (cpu, vol, invol) in sorted(ended.items(), key=lambda kv: -kv[1][0]):
        c0, v0, i0 = (began or {}).get(r, (0, 0, 0))
        cpu_s = (cpu - c0) / 1e9
        out[r] = {"cpu_s": round(cpu_s, 3), "cpu_ms_per_1k": _round(_per(cpu_s, payments, 1e6)),
                  "ctx_voluntary": vol - v0, "ctx_involuntary": invol - i0}
    return out


def _round(v):
    return None if v is None else round(v, 2)


def check_budget(cost, budget):
    """The budget items a run exceeded (empty: within budget). A figure the run lacks counts as exceeded."""
    over = [f"unknown budget key {k!r} (known: {', '.join(BUDGET_KEYS)})" for k in budget if k not in BUDGET_KEYS]
    if cost is None:
        return over + ["no cost figures (the run has no test marks)"] if budget else over
    stack = cost["stack"]
    checks = [("stack_cpu_s", "stack CPU-seconds", stack["cpu_s"], ".2f")]
    checks.append(("stack_ctx_per_payment", "stack context switches per payment", stack["ctx_per_payment"], ".2f"))
    checks += [("instance_peak_ctx_per_s", f"{n} context switches in one second", cost["services"][n]["peak_ctx_per_s"], ",")
               for n in stack["services"]]
    for key, what, value, fmt in checks:
        lim = budget.get(key)
        if lim is None:
            continue
        if value is None:
            over.append(f"{what}: not measured (budget {lim:,})")
        elif value > lim:
            over.append(f"{what}: {format(value, fmt)} > {lim:,}")
    return over


def table(cost):
    """The cost as printed lines: one per service, the stack total after its services."""
    head = f"  {'service':<20}{'CPU-s':>8}{'CPU-ms/1k':>11}{'ctx vol':>10}{'ctx invol':>11}{'ctx/payment':>13}{'peak ctx/s':>12}  threads"
    lines = [f"cost during the test ({cost['test_seconds']:.1f} s, {cost['payments']:,} payments posted):", head]

    def row(name, s, ctx_vol, ctx_invol, threads=""):
        lines.append(f"  {name:<20}{_cell(s['cpu_s'], '.2f'):>8}{_cell(s['cpu_ms_per_1k'], ',.1f'):>11}"
                     f"{_cell(ctx_vol, ','):>10}{_cell(ctx_invol, ','):>11}{_cell(s['ctx_per_payment'], '.2f'):>13}"
                     f"{_cell(s['peak_ctx_per_s'], ','):>12}  {threads}")

    svc = cost["services"]
    stack = cost["stack"]
    for name in stack["services"]:
        s = svc[name]
        row(name, s, s["ctx_voluntary"], s["ctx_involuntary"], _threads(s))
        roles = s.get("roles") or {}
        for r, x in roles.items() if len(roles) > 1 else ():
            if x["cpu_s"] >= 0.005 or x["ctx_voluntary"] + x["ctx_involuntary"] >= 100:
                lines.append(f"    {r:<18}{_cell(x['cpu_s'], '.2f'):>8}{_cell(x['cpu_ms_per_1k'], ',.1f'):>11}"
                             f"{_cell(x['ctx_voluntary'], ','):>10}{_cell(x['ctx_involuntary'], ','):>11}")
    if stack["services"]:  # none with --no-backend: nothing of the stack was metered
        vol = sum(svc[n]["ctx_voluntary"] for n in stack["services"])
        row("stack", stack, vol, stack["ctx"] - vol, f"(peak: {stack['peak_instance']})")
    else:
        lines.append("  stack                not metered (no backend started; --watch NAME=PID meters one)")
    for name in [n for n in svc if not is_stack(n)]:
        s = svc[name]
        row(f"({name})", s, s["ctx_voluntary"], s["ctx_involuntary"], _threads(s))
    return lines


def _threads(s):
    gone = f", {s['threads_exited']} exited" if s.get("threads_exited") else ""
    return f"{s['threads']}{gone}" if s.get("threads") is not None else ""


def _cell(v, fmt):
    return "—" if v is None else format(v, fmt)
