"""The exact check after a run, beyond k6's: the backend's /payments-summary against
the processors' own admin summaries over every slice of the run and over the whole
run (counts and amounts, per processor, exact decimals), and — when k6 logged the
ids it sent — each payment asked of both processors: none paid twice, none lost."""
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


def run(backend_url, processor_urls, token, t_from, t_to, slice_s=5.0, ids=None):
    """The window comparison, plus the per-payment check when k6 logged its ids."""
    backend = Client(backend_url, timeout=10.0)
    processors = {n: Client(u, timeout=10.0, headers={"X-Rinha-Token": token}) for n, u in processor_urls.items()}
    try:
        windows, mismatches = compare_windows(backend, processors, t_from, t_to, slice_s)
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
    if ids:
        out["ids"] = check_ids(ids, processor_urls)
        out["double_payments"] = out["ids"]["double_payments"]
    else:
        out["double_payments"] = None
        out["double_payments_note"] = ("not checked: k6 logged no ids (run with --check-ids); the emulator "
                                       "has no listing endpoint, so each id is asked with GET /payments/{id}")
    return out


def read_ids(log_path):
    """correlationId -> k6's HTTP status for it, from the RINHA_ID lines of k6-log.jsonl (LOG_IDS=1)."""
    import json
    ids = {}
    with open(log_path, errors="replace") as f:
        for line in f:
            if "RINHA_ID " not in line:
                continue
            try:
                _, cid, status = json.loads(line)["msg"].split(" ")
                ids[cid] = int(status)
            except (ValueError, KeyError):
                continue
    return ids


def check_ids(ids, processor_urls, threads=4):
    """Asks every processor GET /payments/{id} for each payment k6 sent. Returns counts:
    paid on both (double), accepted by k6 but stored nowhere (lost), failed/timed out in k6
    but stored (stored_after_k6_failure), and an example of each."""
    import threading
    items = sorted(ids.items())
    found = {}
    lock = threading.Lock()
    errors = []

    def work(chunk):
        clients = {n: Client(u, timeout=10.0) for n, u in processor_urls.items()}
        local = {}
        try:
            for cid, _ in chunk:
                local[cid] = [n for n, c in clients.items() if c.get(f"/payments/{cid}")[0] == 200]
        except Exception as e:  # noqa: BLE001 — reported, the check is then incomplete
            errors.append(str(e))
        finally:
            for c in clients.values():
                c.close()
        with lock:
            found.update(local)

    workers = [threading.Thread(target=work, args=(items[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ok = {200, 201, 202, 204}
    double = [c for c, where in found.items() if len(where) > 1]
    lost = [c for c, where in found.items() if not where and ids[c] in ok]
    extra = [c for c, where in found.items() if where and ids[c] not in ok]
    return {
        "ids_sent": len(ids), "ids_checked": len(found), "errors": errors[:5],
        "double_payments": len(double), "lost": len(lost), "stored_after_k6_failure": len(extra),
        "examples": {"double": double[:5], "lost": lost[:5], "stored_after_k6_failure": extra[:5]},
    }
