//! Glue between the peer link and the rest of the instance: the server's `Cluster`
//! view of `Peers`, and the `PeerEvents` that feed the router and the intake.

use std::sync::Arc;
use std::time::Instant;

use crate::intake::Intake;
use crate::ledger::Ledger;
use crate::payment::{CorrelationId, Payment, Processor};
use crate::peer::{Cause, PeerEvents, Peers};
use crate::router::Router;
use crate::server::Cluster;

impl Cluster for Peers {
    fn owns(&self, id: &CorrelationId) -> bool {
        Peers::owns(self, id)
    }

    fn forward(&self, p: Payment) -> bool {
        Peers::forward(self, p)
    }

    fn purge_all(&self) {
        Peers::purge_all(self)
    }

    fn barrier(&self, to_us: Option<i64>, deadline: Instant) -> Box<dyn Fn() -> bool + Send> {
        let wait = Peers::barrier(self, to_us, deadline);
        Box::new(move || wait.is_done())
    }

    fn linked(&self) -> usize {
        self.linked_peers().len()
    }

    fn is_health_leader(&self) -> bool {
        Peers::is_health_leader(self)
    }

    fn replication_lag(&self) -> Vec<(u32, u64)> {
        Peers::replication_lag(self)
    }

    fn conflict(&self) -> Option<Cause> {
        Peers::conflict(self)
    }

    fn conflicts(&self) -> [bool; Cause::ALL.len()] {
        Peers::conflicts(self)
    }
}

/// What a peer tells this instance.
pub struct Events {
    pub router: Arc<Router>,
    pub intake: Arc<Intake>,
    pub ledger: Arc<Ledger>,
}

impl PeerEvents for Events {
    fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32) {
        self.router
            .on_health(p, failing, min_response_ms, crate::time::mono_ms());
    }

    fn on_forwarded(&self, p: Payment) -> bool {
        // A forward sent again after a broken link may already be paid (or queued:
        // the intake ignores ids it has accepted).
        self.ledger.contains(&p.id) || self.intake.submit(p).is_ok()
    }

    fn on_purge(&self) {
        self.intake.purge();
    }
}
