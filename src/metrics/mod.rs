//! Prometheus metrics: process-wide counters and histograms, and the text rendering
//! of `GET /metrics` (exposition format 0.0.4, every name `rinha_*`).
//!
//! Bookkeeping is relaxed atomics in one `static` (`METRICS`): the request path and the
//! workers pay one uncontended `fetch_add` per event, never a lock or an allocation.
//! Gauges that other parts already hold (queue depth, in-flight, ledger size, router
//! state, peer links) are read at scrape time instead (`render::Live`).

mod hist;
mod render;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use hist::{Histogram, HistogramSnapshot, BOUNDS_LE, BOUNDS_US};
pub use render::{render, Live, RouterLive, CONTENT_TYPE};

use crate::payment::Processor;
use crate::processor::{Lookup, Outcome};
use crate::refusal::Cause;

/// A monotonic counter.
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// A value that goes up and down.
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge::new()
    }
}

/// `outcome` label values of `rinha_processor_attempts_total`, by `attempt_index`.
pub const OUTCOMES: [&str; 7] = [
    "200",
    "422",
    "5xx",
    "429",
    "other",
    "no_answer",
    "unreachable",
];
/// `result` label values of `rinha_reconciliations_total`.
pub const LOOKUPS: [&str; 3] = ["found", "not_found", "error"];
/// Error statuses the server answers, the `status` label of `rinha_http_errors_total`.
pub const HTTP_ERRORS: [u16; 9] = [400, 401, 404, 405, 408, 411, 413, 431, 503];
/// How a lingering close ended: the `end` label of `rinha_http_lingering_closes_total`.
pub const LINGER_ENDS: [&str; 4] = ["eof", "time", "bytes", "error"];
/// `side` label of `rinha_peer_refusals_total`: who dialed.
pub const SIDES: [&str; 2] = ["inbound", "outbound"];

/// How a lingering close ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LingerEnd {
    /// The client closed: everything it sent was read.
    Eof,
    /// Still sending at the time bound.
    Time,
    /// Still sending at the size bound.
    Bytes,
    /// A read error (reset by the client).
    Error,
}

/// Every counter and histogram of the process.
pub struct Metrics {
    pub http_connections_accepted: Counter,
    /// Closed at accept: `--max-conns` reached.
    pub http_connections_dropped: Counter,
    pub http_connections_open: Gauge,
    pub http_errors: [Counter; HTTP_ERRORS.len()],
    pub lingering_closes: [Counter; LINGER_ENDS.len()],

    /// Every `202` to `POST /payments` (new, duplicate or forwarded).
    pub payments_accepted: Counter,
    /// Accepted again: already queued or paid here, nothing queued.
    pub payments_duplicate: Counter,
    /// `400` on the body, and `503` (queue full).
    pub payments_invalid: Counter,
    pub payments_queue_full: Counter,
    /// Handed to their owner over the peer link.
    pub payments_forwarded: Counter,
    /// Accepted for an owner that was unreachable (or not known yet): held until it links.
    pub payments_held: Counter,
    /// Dropped by a worker before any attempt: another instance recorded them first.
    pub payments_recorded_elsewhere: Counter,
    /// Recorded after this instance paid them, by processor.
    pub payments_paid: [Counter; 2],

    pub attempts: [[Counter; OUTCOMES.len()]; 2],
    pub reconciliations: [[Counter; LOOKUPS.len()]; 2],
    /// Router decisions that parked a worker (no processor may take the payment now).
    pub router_parks: Counter,
    /// Attempts that waited for their slot (`pace`), and the attempts per second allowed.
    pub attempts_paced: Counter,
    pub pace_limit: Gauge,
    pub health_polls: [[Counter; 2]; 2],

    pub peer_links_established: Counter,
    pub peer_records_sent: Counter,
    pub peer_records_received: Counter,
    pub peer_forwards_received: Counter,
    pub peer_refusals: [[Counter; SIDES.len()]; Cause::ALL.len()],

    pub summary_requests: Counter,
    /// Answered at `--summary-wait-ms` without every peer or payment settled.
    pub summary_deadlines: Counter,
    pub summary_latency: Histogram,

    pub journal_bytes: Counter,
    pub journal_errors: Counter,
    pub journal_restored_records: Gauge,
    pub journal_resumed_payments: Gauge,

    pub workers: Gauge,
    pub processor_latency: [Histogram; 2],
    pub accept_to_record: Histogram,
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            http_connections_accepted: Counter::new(),
            http_connections_dropped: Counter::new(),
            http_connections_open: Gauge::new(),
            http_errors: [const { Counter::new() }; HTTP_ERRORS.len()],
            lingering_closes: [const { Counter::new() }; LINGER_ENDS.len()],
            payments_accepted: Counter::new(),
            payments_duplicate: Counter::new(),
            payments_invalid: Counter::new(),
            payments_queue_full: Counter::new(),
            payments_forwarded: Counter::new(),
            payments_held: Counter::new(),
            payments_recorded_elsewhere: Counter::new(),
            payments_paid: [const { Counter::new() }; 2],
            attempts: [const { [const { Counter::new() }; OUTCOMES.len()] }; 2],
            reconciliations: [const { [const { Counter::new() }; LOOKUPS.len()] }; 2],
            router_parks: Counter::new(),
            attempts_paced: Counter::new(),
            pace_limit: Gauge::new(),
            health_polls: [const { [const { Counter::new() }; 2] }; 2],
            peer_links_established: Counter::new(),
            peer_records_sent: Counter::new(),
            peer_records_received: Counter::new(),
            peer_forwards_received: Counter::new(),
            peer_refusals: [const { [const { Counter::new() }; SIDES.len()] }; Cause::ALL.len()],
            summary_requests: Counter::new(),
            summary_deadlines: Counter::new(),
            summary_latency: Histogram::new(),
            journal_bytes: Counter::new(),
            journal_errors: Counter::new(),
            journal_restored_records: Gauge::new(),
            journal_resumed_payments: Gauge::new(),
            workers: Gauge::new(),
            processor_latency: [const { Histogram::new() }; 2],
            accept_to_record: Histogram::new(),
        }
    }

    /// Counts an error response by status (statuses outside `HTTP_ERRORS` are not counted).
    #[inline]
    pub fn http_error(&self, status: u16) {
        if let Some(i) = HTTP_ERRORS.iter().position(|&s| s == status) {
            self.http_errors[i].inc();
        }
    }

    pub fn lingering_closed(&self, end: LingerEnd) {
        self.lingering_closes[end as usize].inc();
    }

    /// One `POST /payments` to a processor: its outcome and, if it answered, its latency.
    #[inline]
    pub fn attempt(&self, p: Processor, o: Outcome, took: Duration) {
        self.attempts[p.index()][attempt_index(o)].inc();
        if !matches!(o, Outcome::Unknown | Outcome::Unreachable) {
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.processor_latency[p.index()].observe_us(us);
        }
    }

    /// A `GET /payments/{id}` after an unknown outcome.
    #[inline]
    pub fn reconciled(&self, p: Processor, l: &Lookup) {
        let i = match l {
            Lookup::Found { .. } => 0,
            Lookup::NotFound => 1,
            Lookup::Error => 2,
        };
        self.reconciliations[p.index()][i].inc();
    }

    /// A router decision that makes a worker wait.
    #[inline]
    pub fn health_polled(&self, p: Processor, ok: bool) {
        self.health_polls[p.index()][usize::from(!ok)].inc();
    }

    /// A peer handshake refused for a reason retrying cannot fix.
    pub fn peer_refused(&self, cause: Cause, outbound: bool) {
        self.peer_refusals[cause as usize][usize::from(outbound)].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Index of an outcome in `OUTCOMES`.
pub fn attempt_index(o: Outcome) -> usize {
    match o {
        Outcome::Stored => 0,
        Outcome::Duplicate => 1,
        Outcome::Refused(s) if (500..600).contains(&s) => 2,
        Outcome::Refused(429) => 3,
        Outcome::Refused(_) => 4,
        Outcome::Unknown => 5,
        Outcome::Unreachable => 6,
    }
}

/// The process's metrics.
pub static METRICS: Metrics = Metrics::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_their_labels() {
        let label = |o| OUTCOMES[attempt_index(o)];
        assert_eq!(label(Outcome::Stored), "200");
        assert_eq!(label(Outcome::Duplicate), "422");
        assert_eq!(label(Outcome::Refused(500)), "5xx");
        assert_eq!(label(Outcome::Refused(503)), "5xx");
        assert_eq!(label(Outcome::Refused(429)), "429");
        assert_eq!(label(Outcome::Refused(415)), "other");
        assert_eq!(label(Outcome::Unknown), "no_answer");
        assert_eq!(label(Outcome::Unreachable), "unreachable");
    }

    #[test]
    fn latency_is_observed_only_for_answers() {
        let m = Metrics::new();
        let d = Processor::Default;
        m.attempt(d, Outcome::Stored, Duration::from_millis(2));
        m.attempt(d, Outcome::Refused(500), Duration::from_millis(2));
        m.attempt(d, Outcome::Unknown, Duration::from_secs(10));
        assert_eq!(m.processor_latency[0].snapshot().count(), 2);
        assert_eq!(m.attempts[0][5].get(), 1);
        assert_eq!(m.attempts[1].iter().map(Counter::get).sum::<u64>(), 0);
    }

    #[test]
    fn http_errors_count_known_statuses() {
        let m = Metrics::new();
        m.http_error(431);
        m.http_error(431);
        m.http_error(299);
        let i = HTTP_ERRORS.iter().position(|&s| s == 431).unwrap();
        assert_eq!(m.http_errors[i].get(), 2);
        assert_eq!(m.http_errors.iter().map(Counter::get).sum::<u64>(), 2);
    }
}
