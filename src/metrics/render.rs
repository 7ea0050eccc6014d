//! The text exposition format 0.0.4: `# HELP` and `# TYPE` once per family, then its
//! samples; histograms as cumulative `_bucket{le}`, `_sum` and `_count`.

use super::{
    Counter, Gauge, HistogramSnapshot, Metrics, BOUNDS_LE, HTTP_ERRORS, LINGER_ENDS, LOOKUPS,
    OUTCOMES, SIDES,
};
use crate::payment::Processor;
use crate::refusal::Cause;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the rest of the instance holds right now, read at scrape time.
#[derive(Debug, Default)]
pub struct Live {
    pub instance_id: u32,
    pub id_derived: bool,
    pub queue: u64,
    pub busy: u64,
    pub inflight: u64,
    pub records: u64,
    pub links: u64,
    pub leader: bool,
    pub router: [RouterLive; 2],
    /// Workers parked by the router now, and their wake-ups so far.
    pub parked: u64,
    pub park_wakeups: u64,
    /// Per linked peer: records of our log not yet written to it.
    pub lag: Vec<(u32, u64)>,
    /// Misconfigurations seen recently, by `Cause` index.
    pub conflicts: [bool; Cause::ALL.len()],
    /// Payments held for an unreachable owner now, and the age (ms) of the oldest.
    pub held: (u64, u64),
}

/// The router's view of one processor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouterLive {
    pub failing: bool,
    pub latency_ms: u64,
    /// `None` if never probed.
    pub last_probe_age_ms: Option<u64>,
}

struct Out<'a> {
    b: &'a mut Vec<u8>,
    n: itoa::Buffer,
    f: ryu::Buffer,
}

impl Out<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        for part in [
            "# HELP ",
            name,
            " ",
            help,
            "\n# TYPE ",
            name,
            " ",
            kind,
            "\n",
        ] {
            self.b.extend_from_slice(part.as_bytes());
        }
    }

    fn name(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.b.extend_from_slice(name.as_bytes());
        for (i, (k, v)) in labels.iter().enumerate() {
            self.b.push(if i == 0 { b'{' } else { b',' });
            self.b.extend_from_slice(k.as_bytes());
            self.b.extend_from_slice(b"=\"");
            self.b.extend_from_slice(v.as_bytes());
            self.b.push(b'"');
        }
        if !labels.is_empty() {
            self.b.push(b'}');
        }
        self.b.push(b' ');
    }

    fn int(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.name(name, labels);
        self.b.extend_from_slice(self.n.format(v).as_bytes());
        self.b.push(b'\n');
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.name(name, labels);
        self.b.extend_from_slice(self.f.format(v).as_bytes());
        self.b.push(b'\n');
    }

    /// A family with one unlabelled sample.
    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help);
        self.int(name, &[], v);
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], s: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let last = with_le.len() - 1;
        for (le, n) in BOUNDS_LE.iter().chain(["+Inf"].iter()).zip(s.cumulative) {
            with_le[last].1 = le;
            self.int(&bucket, &with_le, n);
        }
        self.float(&format!("{name}_sum"), labels, s.sum_us as f64 / 1e6);
        self.int(&format!("{name}_count"), labels, s.count());
    }
}

/// A gauge's value as rendered: a negative one (none of ours should be) shows as 0.
fn gauge(g: &Gauge) -> u64 {
    u64::try_from(g.get()).unwrap_or(0)
}

fn per_processor(o: &mut Out<'_>, name: &str, v: impl Fn(Processor) -> u64) {
    for p in Processor::ALL {
        o.int(name, &[("processor", p.name())], v(p));
    }
}

/// Counters by processor and one more label: `counters(p)[i]` is `values[i]`'s.
fn by_processor_and<'m>(
    o: &mut Out<'_>,
    name: &str,
    label: &str,
    values: &[&str],
    counters: impl Fn(Processor) -> &'m [Counter],
) {
    for p in Processor::ALL {
        for (value, n) in values.iter().zip(counters(p)) {
            o.int(name, &[("processor", p.name()), (label, value)], n.get());
        }
    }
}

/// Renders every family into `out`.
pub fn render(m: &Metrics, live: &Live, out: &mut Vec<u8>) {
    let mut o = Out {
        b: out,
        n: itoa::Buffer::new(),
        f: ryu::Buffer::new(),
    };
    instance(&mut o, live);
    http(&mut o, m);
    payments(&mut o, m, live);
    processors(&mut o, m, live);
    peers(&mut o, m, live);
    summaries_and_journal(&mut o, m);
}

fn instance(o: &mut Out<'_>, live: &Live) {
    o.family(
        "rinha_instance_info",
        "gauge",
        "This instance: its id in the cluster and whether it was derived or set.",
    );
    let id = live.instance_id.to_string();
    let source = if live.id_derived { "derived" } else { "flag" };
    let labels = [
        ("instance_id", id.as_str()),
        ("id_source", source),
        ("version", env!("CARGO_PKG_VERSION")),
    ];
    o.int("rinha_instance_info", &labels, 1);
}

fn http(o: &mut Out<'_>, m: &Metrics) {
    let c = Counter::get;
    o.one(
        "rinha_http_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        c(&m.http_connections_accepted),
    );
    o.one(
        "rinha_http_connections_dropped_total",
        "counter",
        "Client connections closed at accept because --max-conns were open.",
        c(&m.http_connections_dropped),
    );
    o.one(
        "rinha_http_connections_open",
        "gauge",
        "Client connections open.",
        gauge(&m.http_connections_open),
    );
    o.family(
        "rinha_http_errors_total",
        "counter",
        "Error responses by status.",
    );
    for (status, n) in HTTP_ERRORS.iter().zip(&m.http_errors) {
        o.int(
            "rinha_http_errors_total",
            &[("status", &status.to_string())],
            n.get(),
        );
    }
    o.family(
        "rinha_http_lingering_closes_total",
        "counter",
        "Connections closed after an error with input unread: drained until the client closed, or cut at the time or size bound.",
    );
    for (end, n) in LINGER_ENDS.iter().zip(&m.lingering_closes) {
        o.int(
            "rinha_http_lingering_closes_total",
            &[("end", end)],
            n.get(),
        );
    }
}

fn payments(o: &mut Out<'_>, m: &Metrics, live: &Live) {
    let c = Counter::get;
    o.one(
        "rinha_payments_accepted_total",
        "counter",
        "POST /payments answered 202 (new, duplicate or forwarded).",
        c(&m.payments_accepted),
    );
    o.one(
        "rinha_payments_duplicate_total",
        "counter",
        "Payments accepted again: already accepted here, nothing queued.",
        c(&m.payments_duplicate),
    );
    o.family(
        "rinha_payments_rejected_total",
        "counter",
        "POST /payments refused, by reason.",
    );
    o.int(
        "rinha_payments_rejected_total",
        &[("reason", "invalid")],
        c(&m.payments_invalid),
    );
    o.int(
        "rinha_payments_rejected_total",
        &[("reason", "queue_full")],
        c(&m.payments_queue_full),
    );
    o.one(
        "rinha_payments_forwarded_total",
        "counter",
        "Payments handed to their owner instance over the peer link.",
        c(&m.payments_forwarded),
    );
    o.one(
        "rinha_payments_held_total",
        "counter",
        "Payments accepted for an owner instance that was unreachable: held until it links.",
        c(&m.payments_held),
    );
    o.one(
        "rinha_payments_recorded_elsewhere_total",
        "counter",
        "Payments a worker dropped before any attempt: another instance had recorded them.",
        c(&m.payments_recorded_elsewhere),
    );
    o.one(
        "rinha_payments_held_now",
        "gauge",
        "Payments held now for an owner instance that is not linked (only the owner pays).",
        live.held.0,
    );
    o.one(
        "rinha_payments_held_oldest_seconds",
        "gauge",
        "Age of the oldest payment held for an unlinked owner (0 if none).",
        live.held.1 / 1000,
    );
    o.family(
        "rinha_payments_paid_total",
        "counter",
        "Payments this instance paid and recorded, by processor.",
    );
    per_processor(o, "rinha_payments_paid_total", |p| {
        m.payments_paid[p.index()].get()
    });
    o.one(
        "rinha_queue_depth",
        "gauge",
        "Accepted payments waiting for a worker.",
        live.queue,
    );
    o.one(
        "rinha_workers_busy",
        "gauge",
        "Workers settling a payment (sending, reconciling or waiting for a processor).",
        live.busy,
    );
    o.one(
        "rinha_workers",
        "gauge",
        "Worker threads (--workers).",
        gauge(&m.workers),
    );
    o.one(
        "rinha_payments_in_flight",
        "gauge",
        "Requests sent to a processor whose outcome is not known yet.",
        live.inflight,
    );
    o.one(
        "rinha_ledger_records",
        "gauge",
        "Payments recorded (paid here or replicated from peers).",
        live.records,
    );
    o.family(
        "rinha_payment_accept_to_record_seconds",
        "histogram",
        "Time from a payment's 202 to its record (own payments).",
    );
    o.histogram(
        "rinha_payment_accept_to_record_seconds",
        &[],
        &m.accept_to_record.snapshot(),
    );
}

fn processors(o: &mut Out<'_>, m: &Metrics, live: &Live) {
    o.family(
        "rinha_processor_attempts_total",
        "counter",
        "POST /payments sent to a processor, by outcome.",
    );
    by_processor_and(
        o,
        "rinha_processor_attempts_total",
        "outcome",
        &OUTCOMES,
        |p| &m.attempts[p.index()],
    );
    o.family(
        "rinha_processor_latency_seconds",
        "histogram",
        "Latency of answered POST /payments, by processor.",
    );
    for p in Processor::ALL {
        let s = m.processor_latency[p.index()].snapshot();
        o.histogram(
            "rinha_processor_latency_seconds",
            &[("processor", p.name())],
            &s,
        );
    }
    o.family(
        "rinha_reconciliations_total",
        "counter",
        "GET /payments/{id} after a 422 or no answer, by result.",
    );
    by_processor_and(o, "rinha_reconciliations_total", "result", &LOOKUPS, |p| {
        &m.reconciliations[p.index()]
    });
    o.one(
        "rinha_router_parks_total",
        "counter",
        "Router decisions that parked a worker: no processor may take the payment now.",
        m.router_parks.get(),
    );
    o.one(
        "rinha_attempts_paced_total",
        "counter",
        "Attempts that waited for their slot: a backlog drained at the pace limit.",
        m.attempts_paced.get(),
    );
    o.one(
        "rinha_pace_limit_per_second",
        "gauge",
        "Attempts per second the workers may start now (a multiple of arrivals).",
        gauge(&m.pace_limit),
    );
    o.one(
        "rinha_router_parked",
        "gauge",
        "Workers parked by the router now (waiting for a processor).",
        live.parked,
    );
    o.one(
        "rinha_router_park_wakeups_total",
        "counter",
        "Wake-ups of parked workers.",
        live.park_wakeups,
    );
    o.family(
        "rinha_router_failing",
        "gauge",
        "1 while the router believes the processor is failing.",
    );
    per_processor(o, "rinha_router_failing", |p| {
        u64::from(live.router[p.index()].failing)
    });
    o.family(
        "rinha_router_latency_ewma_seconds",
        "gauge",
        "The router's smoothed latency of the processor (or its health report's minimum).",
    );
    for p in Processor::ALL {
        let ms = live.router[p.index()].latency_ms;
        let labels = [("processor", p.name())];
        o.float(
            "rinha_router_latency_ewma_seconds",
            &labels,
            ms as f64 / 1e3,
        );
    }
    o.family(
        "rinha_router_last_probe_age_seconds",
        "gauge",
        "Time since the last probe payment sent to a failing or slow processor (absent: never).",
    );
    for p in Processor::ALL {
        if let Some(ms) = live.router[p.index()].last_probe_age_ms {
            let labels = [("processor", p.name())];
            o.float(
                "rinha_router_last_probe_age_seconds",
                &labels,
                ms as f64 / 1e3,
            );
        }
    }
    o.family(
        "rinha_health_polls_total",
        "counter",
        "GET /payments/service-health made by this instance, by result.",
    );
    for p in Processor::ALL {
        for (i, result) in ["ok", "failed"].iter().enumerate() {
            let labels = [("processor", p.name()), ("result", *result)];
            let n = m.health_polls[p.index()][i].get();
            o.int("rinha_health_polls_total", &labels, n);
        }
    }
    o.one(
        "rinha_health_leader",
        "gauge",
        "1 if this instance polls the processors' health for the cluster.",
        u64::from(live.leader),
    );
}

fn peers(o: &mut Out<'_>, m: &Metrics, live: &Live) {
    let c = Counter::get;
    o.one(
        "rinha_peer_links_up",
        "gauge",
        "Peers linked right now.",
        live.links,
    );
    o.one(
        "rinha_peer_links_established_total",
        "counter",
        "Peer links established (a count above the number of peers means reconnections).",
        c(&m.peer_links_established),
    );
    o.one(
        "rinha_peer_records_sent_total",
        "counter",
        "Ledger records written to peers.",
        c(&m.peer_records_sent),
    );
    o.one(
        "rinha_peer_records_received_total",
        "counter",
        "Ledger records received from peers (duplicates included).",
        c(&m.peer_records_received),
    );
    o.one(
        "rinha_peer_forwards_received_total",
        "counter",
        "Payments forwarded here by a peer (this instance owns them).",
        c(&m.peer_forwards_received),
    );
    o.family(
        "rinha_peer_replication_lag_records",
        "gauge",
        "Records of this instance's log not yet written to a linked peer.",
    );
    for (peer, lag) in &live.lag {
        let id = peer.to_string();
        o.int("rinha_peer_replication_lag_records", &[("peer", &id)], *lag);
    }
    o.family(
        "rinha_peer_refusals_total",
        "counter",
        "Peer handshakes refused for a reason retrying cannot fix, by cause and by who dialed.",
    );
    for cause in Cause::ALL {
        for (side, n) in SIDES.iter().zip(&m.peer_refusals[cause as usize]) {
            let labels = [("cause", cause.label()), ("side", *side)];
            o.int("rinha_peer_refusals_total", &labels, n.get());
        }
    }
    o.family(
        "rinha_peer_misconfigured",
        "gauge",
        "1 while peer handshakes keep failing for this cause: the cluster runs split.",
    );
    for cause in Cause::ALL {
        let v = u64::from(live.conflicts[cause as usize]);
        o.int("rinha_peer_misconfigured", &[("cause", cause.label())], v);
    }
}

fn summaries_and_journal(o: &mut Out<'_>, m: &Metrics) {
    let c = Counter::get;
    o.one(
        "rinha_summaries_total",
        "counter",
        "GET /payments-summary answered.",
        c(&m.summary_requests),
    );
    o.one(
        "rinha_summaries_at_deadline_total",
        "counter",
        "Summaries answered at --summary-wait-ms with a peer or payment not settled.",
        c(&m.summary_deadlines),
    );
    o.family(
        "rinha_summaries_duration_seconds",
        "histogram",
        "Time to answer GET /payments-summary (peer barrier included).",
    );
    o.histogram(
        "rinha_summaries_duration_seconds",
        &[],
        &m.summary_latency.snapshot(),
    );
    o.one(
        "rinha_journal_bytes_total",
        "counter",
        "Bytes appended to the crash journal.",
        c(&m.journal_bytes),
    );
    o.one(
        "rinha_journal_write_errors_total",
        "counter",
        "Failed journal appends.",
        c(&m.journal_errors),
    );
    o.one(
        "rinha_journal_restored_records",
        "gauge",
        "Recorded payments restored from the journal at start-up.",
        gauge(&m.journal_restored_records),
    );
    o.one(
        "rinha_journal_resumed_payments",
        "gauge",
        "Open payments resumed from the journal at start-up.",
        gauge(&m.journal_resumed_payments),
    );
}

#[cfg(test)]
mod tests;
