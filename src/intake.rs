//! The door between the HTTP server and the workers: a bounded crossbeam channel plus
//! the set of correlationIds accepted since the last purge.
//!
//! The set makes a repeated `POST /payments` idempotent (accepted once, paid once); the
//! bound makes back-pressure explicit: a full queue is a 503, never a silent drop.

use std::collections::HashSet;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, TrySendError};

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
    seen: Mutex<HashSet<CorrelationId>>,
}

impl Intake {
    /// A channel of `capacity` payments and its receiving end for the workers.
    pub fn new(capacity: usize) -> (Intake, Receiver<Payment>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (
            Intake {
                tx,
                seen: Mutex::new(HashSet::new()),
            },
            rx,
        )
    }

    pub fn submit(&self, p: Payment) -> Result<Accepted, QueueFull> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(&p.id) {
            return Ok(Accepted::Duplicate);
        }
        match self.tx.try_send(p) {
            Ok(()) => {
                seen.insert(p.id);
                Ok(Accepted::New)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(QueueFull),
        }
    }

    /// Payments waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Forgets accepted ids (payments already queued are still paid).
    pub fn purge(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        }
    }

    #[test]
    fn bounded_and_idempotent() {
        let (intake, rx) = Intake::new(2);
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
