//! Glue between the peer link and the rest of the instance: the server's `Cluster`
//! view of `Peers`, and the `PeerEvents` that feed the router and the intake.

use std::sync::Arc;
use std::time::Instant;

use crate::intake::{Accepted, Intake, QueueFull};
use crate::journal::Journal;
use crate::payment::{CorrelationId, Payment, Processor};
use crate::peer::{Cause, PeerEvents, Peers};
use crate::router::Router;
use crate::server::Cluster;

impl Cluster for Peers {
    fn admit(&self, intake: &Intake, p: Payment) -> Result<Accepted, QueueFull> {
        if self.owns(&p.id) {
            intake.submit_unwoken(p)
        } else if self.handed_off_full() {
            Err(QueueFull)
        } else {
            Ok(intake.admit_for_owner(p, |p| self.hand_off(p)))
        }
    }

    fn held(&self) -> (usize, u64) {
        Peers::held(self)
    }

    fn members_known(&self) -> bool {
        Peers::members_known(self)
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
    pub journal: Option<Arc<Journal>>,
}

impl PeerEvents for Events {
    fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32) {
        self.router
            .on_health(p, failing, min_response_ms, crate::time::mono_ms());
    }

    fn on_forwarded(&self, p: Payment) -> bool {
        // A forward sent again after a broken link may already be queued or paid: the
        // intake's gate lets it through once.
        self.intake.submit(p).is_ok()
    }

    fn pay_here(&self, p: Payment) {
        self.intake.queue_admitted(p);
    }

    fn handed_over(&self, ids: &[CorrelationId]) {
        self.intake.handed_over(ids);
    }

    fn on_member(&self, id: u32) {
        if let Some(j) = &self.journal {
            j.member(id);
        }
    }

    fn on_purge(&self) {
        self.intake.purge();
    }
}
