//! Polls each processor's rate-limited `GET /payments/service-health`.
//!
//! The endpoint allows 1 call per 5 s per processor for all callers together, so only
//! the cluster's health leader polls (every `health_interval`, > 5 s) and shares each
//! reading with its peers; the others just listen, asleep until they lead.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::METRICS;
use crate::payment::Processor;
use crate::processor::{Client, Health};
use crate::router::Router;
use crate::time::mono_ms;

pub struct Poller {
    pub clients: [Client; 2],
    pub router: Arc<Router>,
    pub interval: Duration,
    /// Returns at once if this instance leads, else blocks until it does (true) or
    /// cannot tell any more (false).
    pub wait_leadership: Box<dyn Fn() -> bool + Send>,
    pub share: Box<dyn Fn(Processor, Health) + Send>,
}

impl Poller {
    /// Runs forever on its own thread.
    pub fn run(mut self) {
        loop {
            if !(self.wait_leadership)() {
                std::thread::sleep(self.interval);
                continue;
            }
            for p in Processor::ALL {
                let reading = self.clients[p.index()].health();
                METRICS.health_polled(p, reading.is_some());
                if let Some(h) = reading {
                    self.router
                        .on_health(p, h.failing, h.min_response_ms, mono_ms());
                    (self.share)(p, h);
                }
            }
            std::thread::sleep(self.interval);
        }
    }
}
