//! The worker pool: fixed threads that drain the intake channel, each paying one
//! payment at a time through its own keep-alive clients, until the payment is settled.
//!
//! Settled means exactly one of: recorded with what the processor stored, or (never)
//! dropped. Outcomes: 200 → record what we sent; 500/429/unreachable → nothing stored,
//! route again; 422 or no answer → ask `GET /payments/{id}` and record what it holds, or
//! pin the payment to that processor and send it again there (a duplicate there is
//! refused with 422, so a payment is never stored twice nor on both processors).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inflight::InFlight;
use crate::intake::Outlet;
use crate::journal::Journal;
use crate::ledger::Ledger;
use crate::metrics::METRICS;
use crate::pace::Pacer;
use crate::payment::{Payment, Processor, Record};
use crate::processor::{Client, Lookup, Outcome};
use crate::router::{Decision, Lead, Observation, Router};
use crate::time::{mono_ms, now_us};

/// What every worker shares.
pub struct Shared {
    pub router: Arc<Router>,
    pub ledger: Arc<Ledger>,
    pub inflight: Arc<InFlight>,
    pub journal: Option<Arc<Journal>>,
    /// Called after each own record is inserted (peer replication).
    pub on_record: Box<dyn Fn() + Send + Sync>,
    /// Payments taken from the channel and not yet settled.
    pub busy: Arc<AtomicUsize>,
    /// Spaces the attempts when a backlog drains.
    pub pacer: Arc<Pacer>,
}

/// Pause before re-asking a processor that gave no usable answer, doubled per failed
/// lookup up to `MAX_RETRY_PAUSE`: a processor that is down costs each waiting worker a
/// few wake-ups a second, not fifty.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Logged once if the kernel refuses `SCHED_BATCH` (a seccomp profile may).
static BATCH_REFUSED: std::sync::Once = std::sync::Once::new();

pub struct Worker {
    shared: Arc<Shared>,
    clients: [Client; 2],
}

impl Worker {
    pub fn new(shared: Arc<Shared>, default: Client, fallback: Client) -> Worker {
        Worker {
            shared,
            clients: [default, fallback],
        }
    }

    /// Runs until the intake is gone and its queue empty.
    pub fn run(mut self, mut outlet: Outlet) {
        if let Err(e) = crate::sched::batch_this_thread() {
            BATCH_REFUSED.call_once(|| eprintln!("rinha: workers stay in SCHED_OTHER: {e}"));
        }
        while let Some(p) = outlet.next_payment() {
            self.shared.busy.fetch_add(1, Relaxed);
            self.settle(p);
            self.shared.busy.fetch_sub(1, Relaxed);
        }
    }

    /// Pays `p` exactly once, however long that takes.
    fn settle(&mut self, p: Payment) {
        let mut pinned: Option<Processor> = p.pin;
        // requestedAt of every attempt whose outcome is not known yet (see `inflight`).
        let mut open: Vec<i64> = Vec::new();
        let router = self.shared.router.clone();
        let mut lead = Lead::default();
        loop {
            // Recorded meanwhile by another instance (its record replicated here): that
            // is the one payment. Only while no attempt of ours may be stored.
            if pinned.is_none() && self.shared.ledger.contains(&p.id) {
                METRICS.payments_recorded_elsewhere.inc();
                break;
            }
            // Before deciding: the decision (and a probe it takes) is for the moment
            // the attempt is made, not for when its slot was reserved.
            let slot = self.shared.pacer.reserve();
            if !slot.is_zero() {
                METRICS.attempts_paced.inc();
                std::thread::sleep(slot);
            }
            let proc = match router.decide(p.accepted_ms, pinned, mono_ms()) {
                Decision::Wait(wait) => {
                    METRICS.router_parks.inc();
                    router.park(&wait, &mut lead);
                    continue;
                }
                Decision::Send(proc) => proc,
            };
            router.sending(proc, &mut lead);
            // Millisecond precision: what we send is what we record, to the digit.
            let at = now_us() / 1000 * 1000;
            if let Some(j) = &self.shared.journal {
                j.attempt(&p.id, proc);
            }
            self.shared.inflight.begin(at);
            open.push(at);
            let started = Instant::now();
            let outcome = self.clients[proc.index()].pay(&p.id, p.cents, at);
            let took = started.elapsed();
            METRICS.attempt(proc, outcome, took);
            let elapsed = took.as_millis() as u64;
            match outcome {
                Outcome::Stored => {
                    self.shared
                        .router
                        .observe(proc, Observation::Answered(elapsed), mono_ms());
                    self.record(Record {
                        id: p.id,
                        requested_at_us: at,
                        cents: p.cents,
                        processor: proc,
                    });
                    break;
                }
                Outcome::Refused(_) | Outcome::Unreachable => {
                    let took = matches!(outcome, Outcome::Refused(_)).then_some(elapsed);
                    self.shared
                        .router
                        .observe(proc, Observation::Failed(took), mono_ms());
                    self.shared.inflight.end(at);
                    open.pop();
                }
                Outcome::Duplicate | Outcome::Unknown => {
                    if outcome == Outcome::Duplicate {
                        self.shared
                            .router
                            .observe(proc, Observation::Answered(elapsed), mono_ms());
                    }
                    if pinned.is_none() {
                        let what = if outcome == Outcome::Duplicate {
                            "422"
                        } else {
                            "no answer"
                        };
                        eprintln!(
                            "rinha: payment {:?}: {what} from {} after {elapsed} ms; asking it",
                            p.id,
                            proc.name()
                        );
                    }
                    pinned = Some(proc);
                    if self.reconcile(&p, proc) {
                        break;
                    }
                }
            }
        }
        router.settled(&mut lead);
        for at in open {
            self.shared.inflight.end(at);
        }
        let waited = mono_ms().saturating_sub(p.accepted_ms);
        METRICS.accept_to_record.observe_ms(waited);
    }

    /// Asks `proc` what it stored for `p`; records it and returns true if found.
    fn reconcile(&mut self, p: &Payment, proc: Processor) -> bool {
        let mut pause = RETRY_PAUSE;
        loop {
            let found = self.clients[proc.index()].lookup(&p.id);
            METRICS.reconciled(proc, &found);
            match found {
                Lookup::Found {
                    cents,
                    requested_at_us,
                } => {
                    self.record(Record {
                        id: p.id,
                        requested_at_us,
                        cents,
                        processor: proc,
                    });
                    return true;
                }
                Lookup::NotFound => return false,
                Lookup::Error => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }

    fn record(&self, r: Record) {
        if let Some(j) = &self.shared.journal {
            j.recorded(&r);
        }
        self.shared.ledger.insert(r);
        METRICS.payments_paid[r.processor.index()].inc();
        (self.shared.on_record)();
    }
}
