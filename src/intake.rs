//! The door between the HTTP server and the workers: a bounded crossbeam channel plus
//! the set of correlationIds accepted since the last purge.
//!
//! The set makes a repeated `POST /payments` idempotent (accepted once, paid once); the
//! bound makes back-pressure explicit: a full queue is a 503, never a silent drop.
//! With a `Journal`, an accepted payment is on disk before the 202 leaves.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::journal::Journal;
use crate::pace::Pacer;
use crate::payment::{CorrelationId, Payment};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// Seen before: nothing queued, the first acceptance stands.
    Duplicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

pub struct Intake {
    tx: Sender<Payment>,
    pacer: Arc<Pacer>,
    seen: Mutex<HashSet<CorrelationId>>,
    journal: Option<Arc<Journal>>,
}

impl Intake {
    /// A channel of `capacity` payments and its receiving end for the workers; each new
    /// payment counts as an arrival for `pacer`.
    pub fn new(
        capacity: usize,
        journal: Option<Arc<Journal>>,
        pacer: Arc<Pacer>,
    ) -> (Intake, Receiver<Payment>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let seen = Mutex::new(HashSet::new());
        (
            Intake {
                tx,
                pacer,
                seen,
                journal,
            },
            rx,
        )
    }

    pub fn submit(&self, p: Payment) -> Result<Accepted, QueueFull> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&p.id) {
            return Ok(Accepted::Duplicate);
        }
        // Journaled before a worker can see it, so that its attempts follow it on disk.
        if let Some(j) = &self.journal {
            j.accepted(&p);
        }
        match self.tx.try_send(p) {
            Ok(()) => {
                seen.insert(p.id);
                self.pacer.arrived();
                Ok(Accepted::New)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if let Some(j) = &self.journal {
                    j.cancelled(&p.id);
                }
                Err(QueueFull)
            }
        }
    }

    /// Queues a payment replayed from the journal (already journaled; waits for room).
    pub fn resume(&self, p: Payment) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id);
        if self.tx.send(p).is_err() {
            eprintln!("rinha: no worker left to resume {:?}", p.id);
        }
    }

    /// Payments waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Forgets accepted ids (payments already queued are still paid).
    pub fn purge(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(j) = &self.journal {
            j.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(n: u8) -> Payment {
        Payment {
            id: CorrelationId([n; 16]),
            cents: 100,
            accepted_ms: 0,
            pin: None,
        }
    }

    #[test]
    fn bounded_and_idempotent() {
        let (intake, rx) = Intake::new(2, None, Arc::new(Pacer::new(0, 1)));
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::New));
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::Duplicate));
        assert_eq!(intake.submit(pay(2)), Ok(Accepted::New));
        assert_eq!(intake.submit(pay(3)), Err(QueueFull));
        assert_eq!(intake.queued(), 2);
        assert_eq!(rx.recv(), Ok(pay(1)));
        assert_eq!(
            intake.submit(pay(3)),
            Ok(Accepted::New),
            "a refused payment can come back"
        );
        intake.purge();
        assert_eq!(rx.try_iter().count(), 2);
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::New));
    }
}
