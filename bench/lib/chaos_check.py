"""The verdict of a chaos run, from evidence only: every POST the load sent, what each
processor stored for every id posted (GET /payments/{id}), each instance's
/payments-summary beside the processors' admin summaries over the same windows, and
the instances that exited on their own. `verdict` is pure; `self_test` proves that it
detects each violation and passes a clean run."""
import datetime
import random
import threading
from decimal import Decimal

from .httpc import Client

OK = {200, 201, 202, 204}
CHECKS = ("lost", "paid twice", "paid without a 2xx", "wrong amount", "summary mismatch", "died on its own")


def iso(t):
    """Epoch seconds -> the k6 spelling, 2025-07-15T12:34:56.000Z."""
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# ---- the verdict (pure)

def verdict(posts, stores, summaries, exits):
    """{check: [offence, ...]} for every check in CHECKS (empty list: passed).
    posts: [{id, amount, status}] (status None: no answer; "refused": never sent); stores: {processor: {id: amount}}
    holding only ids found; summaries: [{instance, window, backend, processors}] with
    {processor: (count, amount)} each; exits: ["api2 exited with 101 at +12.3s", ...]."""
    by_id = {}
    for p in posts:
        by_id.setdefault(p["id"], []).append(p)
    out = {name: [] for name in CHECKS}
    for cid, sent in sorted(by_id.items()):
        where = {name: s[cid] for name, s in stores.items() if cid in s}
        statuses = [p["status"] for p in sent]
        if not where and any(s in OK for s in statuses):
            out["lost"].append(cid)
        if len(where) > 1:
            out["paid twice"].append(cid)
        if where and not any(s in OK for s in statuses) and None not in statuses:
            out["paid without a 2xx"].append(f"{cid} (answers {statuses})")
        for name, amount in where.items():
            if Decimal(str(amount)) != Decimal(sent[0]["amount"]):
                out["wrong amount"].append(f"{cid} {name} stored {amount}, posted {sent[0]['amount']}")
    for s in summaries:
        for name, theirs in s["processors"].items():
            ours = s["backend"].get(name) if s["backend"] else None
            if ours is None or ours[0] != theirs[0] or Decimal(ours[1]) != Decimal(theirs[1]):
                out["summary mismatch"].append(
                    f"{s['instance']} {s['window']} {name}: backend {_pair(ours)} processor {_pair(theirs)}")
    out["died on its own"] = list(exits)
    return out


def _pair(v):
    return "no answer" if v is None else f"{v[0]} / {v[1]}"


def report(result, show=5):
    """Printable lines, one verdict per check with the first offences."""
    lines = []
    for name in CHECKS:
        bad = result[name]
        if not bad:
            lines.append(f"  PASS  {name}")
            continue
        lines.append(f"  FAIL  {name}: {len(bad)}")
        lines += [f"          {x}" for x in bad[:show]]
        if len(bad) > show:
            lines.append(f"          ... {len(bad) - show} more")
    return lines


def failed(result):
    return any(result[name] for name in CHECKS)


# ---- the evidence (I/O)

def fetch_stores(ids, processor_urls, threads=8):
    """{processor: {id: stored amount}} for the ids each processor answers 200 for."""
    ids = sorted(set(ids))
    stores = {name: {} for name in processor_urls}
    lock = threading.Lock()
    errors = []

    def work(chunk):
        clients = {n: Client(u, timeout=10.0) for n, u in processor_urls.items()}
        try:
            for cid in chunk:
                for name, c in clients.items():
                    status, body = c.get(f"/payments/{cid}")
                    if status == 200:
                        with lock:
                            stores[name][cid] = str(body["amount"])
                    elif status != 404:
                        raise RuntimeError(f"GET /payments/{cid} on {name}: HTTP {status}")
        except Exception as e:  # noqa: BLE001 — re-raised below, after every thread ended
            errors.append(e)
        finally:
            for c in clients.values():
                c.close()

    workers = [threading.Thread(target=work, args=(ids[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"asking the processors for each id: {errors[0]}")
    return stores


def windows(seed, t_from, t_to, count=8):
    """The whole run (no from/to) and `count` seeded windows inside [t_from, t_to]."""
    rng = random.Random(f"windows-{seed}")
    out = [None]
    for _ in range(count):
        a = rng.uniform(t_from, t_to)
        b = min(t_to, a + rng.uniform(1.0, 15.0))
        out.append((iso(a), iso(b)))
    return out


def fetch_summaries(instance_urls, admin_clients, wins):
    """One observation per instance and window (see `verdict`)."""
    out = []
    for w in wins:
        query = "" if w is None else f"?from={w[0]}&to={w[1]}"
        theirs = {}
        for name, c in admin_clients.items():
            status, body = c.get(f"/admin/payments-summary{query}")
            if status != 200:
                raise RuntimeError(f"{name} admin summary{query}: HTTP {status}")
            theirs[name] = _totals(body)
        for inst, url in instance_urls.items():
            out.append({"instance": inst, "window": "whole run" if w is None else f"{w[0]}..{w[1]}",
                        "backend": _backend_summary(url, query, theirs), "processors": theirs})
    return out


def _backend_summary(url, query, names):
    c = Client(url, timeout=10.0)
    try:
        status, body = c.get(f"/payments-summary{query}")
    except OSError:
        return None
    finally:
        c.close()
    if status != 200 or not isinstance(body, dict):
        return None
    return {name: _totals(body.get(name)) for name in names}


def _totals(body):
    body = body or {}
    return int(body.get("totalRequests", 0)), str(body.get("totalAmount", 0))


# ---- self test

def self_test():
    """Each violation kind detected on its own; a clean run passes."""
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(8)]
    posts = [
        {"id": ids[0], "amount": "19.90", "status": 202},  # clean, default
        {"id": ids[1], "amount": "1.05", "status": 202},  # clean, posted twice, fallback
        {"id": ids[1], "amount": "1.05", "status": None},
        {"id": ids[2], "amount": "3.00", "status": None},  # no answer, stored: allowed
        {"id": ids[3], "amount": "4.00", "status": 503},  # refused, not stored: clean
        {"id": ids[6], "amount": "7.00", "status": "refused"},  # never sent, not stored: clean
    ]
    stores = {"default": {ids[0]: "19.9", ids[2]: "3.00"}, "fallback": {ids[1]: "1.05"}}
    sums = [{"instance": "api1", "window": "whole run", "backend": {"default": (2, "22.90"), "fallback": (1, "1.05")},
             "processors": {"default": (2, "22.9"), "fallback": (1, "1.05")}}]
    clean = verdict(posts, stores, sums, [])
    assert not failed(clean), report(clean)

    def only(check, posts=posts, stores=stores, sums=sums, exits=()):
        result = verdict(posts, stores, sums, list(exits))
        bad = [name for name in CHECKS if result[name]]
        assert bad == [check], (check, bad)

    lost = {"id": ids[4], "amount": "5.00", "status": 200}
    only("lost", posts=posts + [lost])
    only("paid twice", stores={**stores, "fallback": {ids[1]: "1.05", ids[0]: "19.90"}})
    refused = {"id": ids[5], "amount": "6.00", "status": 500}
    only("paid without a 2xx", posts=posts + [refused], stores={**stores, "default": {**stores["default"], ids[5]: "6"}})
    only("paid without a 2xx", stores={**stores, "default": {**stores["default"], ids[6]: "7.00"}})
    only("wrong amount", stores={**stores, "fallback": {ids[1]: "1.06"}})
    off_by_one = [{**sums[0], "backend": {"default": (1, "19.90"), "fallback": (1, "1.05")}}]
    only("summary mismatch", sums=off_by_one)
    only("summary mismatch", sums=[{**sums[0], "backend": None}])
    only("summary mismatch", sums=[{**sums[0], "backend": {"default": (2, "22.91"), "fallback": (1, "1.05")}}])
    only("died on its own", exits=["api2 exited with code 101 at +3.2s"])
    assert iso(1752582896.0) == "2025-07-15T12:34:56.000Z", iso(1752582896.0)
    print("chaos_check self-test: ok (clean run passes; lost, paid twice, paid without a 2xx, "
          "wrong amount, summary mismatch x3, died on its own detected)")
