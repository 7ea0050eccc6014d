"""The exact check after a run, beyond k6's: the backend's /payments-summary against
the processors' own admin summaries over every slice of the run and over the whole
run (counts and amounts, per processor, exact decimals), and — when the processor
emulator can list what it stored — that no correlationId was paid on both."""
import datetime
from decimal import Decimal

from .httpc import Client


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _totals(body):
    body = body or {}
    return int(body.get("totalRequests", 0)), Decimal(str(body.get("totalAmount", 0)))


def compare_windows(backend, processors, t_from, t_to, slice_s=5.0):
    """Returns (windows, mismatches); each window {from,to,backend:{..},processors:{..}}."""
    windows, mismatches = [], []
    bounds = []
    a = t_from
    while a < t_to:
        bounds.append((a, min(a + slice_s, t_to)))
        a += slice_s
    bounds.append((t_from, t_to))
    for a, b in bounds:
        q = f"from={iso(a)}&to={iso(b - 0.001)}"
        st, bsum = backend.get(f"/payments-summary?{q}")
        rec = {"from": iso(a), "to": iso(b - 0.001), "whole_run": (a, b) == (t_from, t_to), "diff": {}}
        for name, client in processors.items():
            pst, psum = client.get(f"/admin/payments-summary?{q}")
            b_n, b_amt = _totals((bsum or {}).get(name)) if st == 200 else (None, None)
            p_n, p_amt = _totals(psum) if pst == 200 else (None, None)
            rec[name] = {"backend": [b_n, str(b_amt)], "processor": [p_n, str(p_amt)]}
            if b_n != p_n or b_amt != p_amt:
                rec["diff"][name] = {
                    "requests": None if None in (b_n, p_n) else b_n - p_n,
                    "amount": None if None in (b_amt, p_amt) else str(b_amt - p_amt),
                }
        windows.append(rec)
        if rec["diff"]:
            mismatches.append(rec)
    return windows, mismatches


def listing(client):
    """Every correlationId the emulator stored, if it offers a listing (GET /admin/payments); else None."""
    try:
        status, body = client.get("/admin/payments")
    except Exception:
        return None
    if status != 200:
        return None
    items = body.get("payments") if isinstance(body, dict) else body
    if not isinstance(items, list):
        return None
    return {str(p.get("correlationId")) if isinstance(p, dict) else str(p) for p in items}


def run(backend_url, processor_urls, token, t_from, t_to, slice_s=5.0):
    backend = Client(backend_url, timeout=10.0)
    processors = {n: Client(u, timeout=10.0, headers={"X-Rinha-Token": token}) for n, u in processor_urls.items()}
    try:
        windows, mismatches = compare_windows(backend, processors, t_from, t_to, slice_s)
        ids = {n: listing(c) for n, c in processors.items()}
    finally:
        backend.close()
        for c in processors.values():
            c.close()
    whole = windows[-1]
    out = {
        "from": iso(t_from), "to": iso(t_to), "slice_s": slice_s,
        "windows_checked": len(windows), "windows_mismatched": len(mismatches),
        "stored": {n: whole[n]["processor"][0] for n in processor_urls},
        "backend": {n: whole[n]["backend"][0] for n in processor_urls},
        "mismatches": mismatches,
    }
    if all(v is not None for v in ids.values()):
        both = set.intersection(*ids.values()) if ids else set()
        out["double_payments"] = len(both)
        out["double_payment_ids"] = sorted(both)[:20]
    else:
        out["double_payments"] = None
        out["double_payments_note"] = "the processor emulator has no listing endpoint (GET /admin/payments); not checked"
    return out
