//! Request dispatch: parse every complete request in a connection's buffer and answer
//! it (payments, summaries, purge, `/health`, `/metrics`), or park a summary.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::conn::{Conn, Pending};
use super::{open_payments, App};
use crate::http::{self, Limits, Method, Parsed, Request};
use crate::intake::{Accepted, QueueFull};
use crate::json;
use crate::metrics::{self, Live, RouterLive, METRICS};
use crate::payment::{Payment, Processor};
use crate::time::{mono_ms, now_us, parse_iso_us};

/// Parses and answers every complete request in `conn.rbuf`, in order.
pub(super) fn handle_requests(conn: &mut Conn, limits: &Limits, app: &App) {
    let c = &mut *conn;
    let start = drive(
        &c.rbuf,
        limits,
        app,
        &mut c.wbuf,
        &mut c.pending,
        &mut c.closing,
    );
    conn.rbuf.copy_within(start.., 0);
    conn.rbuf.truncate(conn.rbuf.len() - start);
}

/// Answers complete requests from the front of `input` into `out` until one parks,
/// asks to close, or is incomplete; returns the bytes consumed.
fn drive(
    input: &[u8],
    limits: &Limits,
    app: &App,
    out: &mut Vec<u8>,
    pending: &mut Option<Pending>,
    closing: &mut bool,
) -> usize {
    let mut start = 0;
    while !*closing && pending.is_none() {
        match http::parse_request(&input[start..], limits) {
            Ok(Parsed::Complete(req, n)) => {
                start += n;
                *closing = req.close;
                handle(req, app, out, pending);
            }
            Ok(Parsed::Partial) => break,
            Err(e) => {
                METRICS.http_error(e.status());
                out.extend_from_slice(&e.response());
                *closing = true;
            }
        }
    }
    start
}

/// The request path without a socket (for benchmarks and fuzzing): answers what
/// `input` holds into `out` and returns the bytes consumed. A summary that would
/// park is left unanswered.
pub fn answer(app: &App, limits: &Limits, input: &[u8], out: &mut Vec<u8>) -> usize {
    let n = drive(input, limits, app, out, &mut None, &mut false);
    app.intake.wake_deferred();
    n
}

fn bad(out: &mut Vec<u8>, status: u16, reason: &str) {
    METRICS.http_error(status);
    out.extend_from_slice(&http::error_response(status, reason, false));
}

/// Answers one request into `out`, or parks it in `pending`.
fn handle(req: Request<'_>, app: &App, out: &mut Vec<u8>, pending: &mut Option<Pending>) {
    match (req.path, req.method) {
        (b"/payments", Method::Post) => payment(&req, app, out),
        (b"/payments-summary", Method::Get) => summary(&req, app, out, pending),
        (b"/purge-payments", Method::Post) => {
            if let Some(t) = &app.purge_token {
                if req.purge_token != Some(t.as_bytes()) {
                    return bad(out, 401, "purge needs a valid X-Purge-Token");
                }
            }
            app.intake.purge();
            app.ledger.purge();
            app.cluster.purge_all();
            out.extend_from_slice(http::OK_EMPTY);
        }
        (b"/health", Method::Get) => health(app, out),
        (b"/metrics", Method::Get) => metrics_page(app, out),
        (b"/payments" | b"/purge-payments", _)
        | (b"/payments-summary" | b"/health" | b"/metrics", _) => {
            bad(out, 405, "method not allowed")
        }
        _ => bad(out, 404, "not found"),
    }
}

fn payment(req: &Request<'_>, app: &App, out: &mut Vec<u8>) {
    let (id, cents) = match json::parse_payment(req.body) {
        Ok(v) => v,
        Err(e) => {
            METRICS.payments_invalid.inc();
            return bad(out, 400, e.reason());
        }
    };
    let p = Payment {
        id,
        cents,
        accepted_ms: mono_ms(),
        pin: None,
    };
    match app.cluster.admit(&app.intake, p) {
        Ok(new) => {
            if new == Accepted::Duplicate {
                METRICS.payments_duplicate.inc();
            }
            METRICS.payments_accepted.inc();
            out.extend_from_slice(http::ACCEPTED)
        }
        Err(QueueFull) => {
            METRICS.payments_queue_full.inc();
            bad(out, 503, "payment queue full, retry")
        }
    }
}

fn summary(req: &Request<'_>, app: &App, out: &mut Vec<u8>, pending: &mut Option<Pending>) {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let mut bound = |key: &str| -> Result<Option<i64>, http::BadQuery> {
        match http::query_param(req.query, key, &mut buf)? {
            None => Ok(None),
            Some(v) => parse_iso_us(v).map(Some).ok_or(http::BadQuery),
        }
    };
    let (Ok(from), Ok(to)) = (bound("from"), bound("to")) else {
        return bad(out, 400, "from/to must be ISO-8601 timestamps");
    };
    // Every summary first has each reachable peer flush what it recorded (a barrier
    // round trip, bounded by `summary_wait`). With `summary_settle` it also waits until
    // no payment with requestedAt <= min(to, now) is in flight here or there; without,
    // `i64::MIN` is a bound nothing in flight can be under.
    let settle_to = if app.summary_settle {
        to.unwrap_or(i64::MAX).min(now_us())
    } else {
        i64::MIN
    };
    let deadline = started + app.summary_wait;
    let barrier = app.cluster.barrier(Some(settle_to), deadline);
    if !(app.inflight.settled_until(Some(settle_to)) && barrier()) {
        *pending = Some(Pending {
            from,
            to,
            settle_to,
            started,
            deadline,
            barrier,
        });
        return;
    }
    write_summary(app, from, to, started, out);
}

/// Answers a summary (now, or once its wait is over).
pub(super) fn write_summary(
    app: &App,
    from: Option<i64>,
    to: Option<i64>,
    started: Instant,
    out: &mut Vec<u8>,
) {
    let mut body = Vec::with_capacity(160);
    app.ledger.summary(from, to).write_json(&mut body);
    http::write_json(out, 200, &body);
    METRICS.summary_requests.inc();
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    METRICS.summary_latency.observe_us(us);
}

fn health(app: &App, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    let mut b = Vec::with_capacity(256);
    let mut field = |b: &mut Vec<u8>, name: &str, v: u64| {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(b"\":");
        b.extend_from_slice(n.format(v).as_bytes());
    };
    match app.cluster.conflict() {
        None if !app.cluster.members_known() => b.extend_from_slice(
            b"{\"status\":\"degraded\",\"problem\":\"members_unknown\",\"fix\":\"\
              not every --peer has linked once: payments are held until they have\"",
        ),
        None => b.extend_from_slice(b"{\"status\":\"ok\""),
        Some(cause) => {
            b.extend_from_slice(b"{\"status\":\"degraded\",\"problem\":\"");
            b.extend_from_slice(cause.label().as_bytes());
            b.extend_from_slice(b"\",\"fix\":\"");
            b.extend_from_slice(cause.explain().as_bytes());
            b.push(b'"');
        }
    }
    field(&mut b, "instance", u64::from(app.instance_id));
    field(&mut b, "queue", open_payments(&app.intake, &app.busy));
    field(&mut b, "inflight", app.inflight.len() as u64);
    field(&mut b, "parked", app.router.parked() as u64);
    field(&mut b, "parkWakeups", app.router.wakeups());
    field(&mut b, "records", app.ledger.len() as u64);
    field(&mut b, "peers", app.cluster.linked() as u64);
    field(&mut b, "unreplicated", app.cluster.unreplicated());
    field(&mut b, "heldForOwners", app.cluster.held().0 as u64);
    for p in Processor::ALL {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(p.name().as_bytes());
        b.extend_from_slice(b"\":{\"failing\":");
        b.extend_from_slice(if app.router.is_failing(p) {
            b"true"
        } else {
            b"false"
        });
        b.extend_from_slice(b",\"latencyMs\":");
        b.extend_from_slice(
            itoa::Buffer::new()
                .format(app.router.latency_ms(p))
                .as_bytes(),
        );
        b.push(b'}');
    }
    b.push(b'}');
    http::write_json(out, 200, &b);
}

fn metrics_page(app: &App, out: &mut Vec<u8>) {
    let now = mono_ms();
    let router = Processor::ALL.map(|p| {
        let probed = app.router.last_probe_ms(p);
        RouterLive {
            failing: app.router.is_failing(p),
            latency_ms: app.router.latency_ms(p),
            last_probe_age_ms: (probed != 0).then(|| now.saturating_sub(probed)),
        }
    });
    let live = Live {
        instance_id: app.instance_id,
        id_derived: app.id_derived,
        queue: app.intake.queued() as u64,
        busy: app.busy.load(Relaxed) as u64,
        inflight: app.inflight.len() as u64,
        records: app.ledger.len() as u64,
        links: app.cluster.linked() as u64,
        leader: app.cluster.is_health_leader(),
        router,
        parked: app.router.parked() as u64,
        park_wakeups: app.router.wakeups(),
        lag: app.cluster.replication_lag(),
        conflicts: app.cluster.conflicts(),
        held: {
            let (n, oldest_ms) = app.cluster.held();
            (n as u64, oldest_ms)
        },
    };
    let mut body = Vec::with_capacity(16 * 1024);
    metrics::render(&METRICS, &live, &mut body);
    http::write_head(out, 200, metrics::CONTENT_TYPE, body.len(), "");
    out.extend_from_slice(&body);
}
