//! Handshake refusals that retrying cannot fix: two instances with one id, different
//! secrets, different protocol versions, a TLS certificate the other side refuses. The link is retried forever all the same (the
//! operator may fix the other side), but a cluster that cannot link runs split — each
//! instance answers summaries with its own payments only — so each such cause is
//! logged once per streak with the flag to set, counted in `/metrics`, and reported
//! by `/health` as `degraded` while refusals keep coming.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::codec::RefuseReason;
use crate::metrics::METRICS;

pub use crate::refusal::Cause;

/// Maps the wire's refusal reasons to causes (the peer protocol's side of `Cause`).
impl Cause {
    /// The refusals that are misconfigurations (not a peer shutting down).
    pub fn of(r: RefuseReason) -> Option<Cause> {
        match r {
            RefuseReason::SameId => Some(Cause::SameId),
            RefuseReason::BadToken => Some(Cause::BadToken),
            RefuseReason::BadVersion => Some(Cause::BadVersion),
            RefuseReason::Shutdown => None,
        }
    }
}

/// A conflict is reported while its last refusal is at most this old. Dialers retry
/// at least every second (backoff capped at 1 s, plus up to 3 s of connect and
/// handshake timeouts), so a conflict that persists is never reported as healed.
pub const ACTIVE_FOR_MS: u64 = 10_000;

/// The refusals of one instance, by cause.
#[derive(Default)]
pub struct Conflicts {
    /// Monotonic ms of the last refusal plus one (0: never).
    last: [AtomicU64; Cause::ALL.len()],
}

impl Conflicts {
    /// Notes a refusal seen at `now_ms`; logs it if it starts a streak.
    /// `outbound`: this instance dialed; `our_id`: this instance's id.
    pub fn refused(&self, cause: Cause, outbound: bool, our_id: u32, now_ms: u64) {
        METRICS.peer_refused(cause, outbound);
        let prev = self.last[cause as usize].swap(now_ms + 1, Relaxed);
        if prev == 0 || now_ms >= prev + ACTIVE_FOR_MS {
            let who = if outbound {
                "a peer this instance dialed"
            } else {
                "a peer that dialed this instance"
            };
            eprintln!(
                "rinha: ERROR: cannot link with {who} ({}); this instance is id {our_id}. \
                 Until fixed the cluster runs split: each instance reports only its own \
                 payments. Fix: {}",
                cause.label(),
                cause.explain()
            );
        }
    }

    /// The most recent cause still active at `now_ms`, if any.
    pub fn active(&self, now_ms: u64) -> Option<Cause> {
        Cause::ALL
            .into_iter()
            .filter(|&c| self.is_active(c, now_ms))
            .max_by_key(|&c| self.last[c as usize].load(Relaxed))
    }

    pub fn is_active(&self, cause: Cause, now_ms: u64) -> bool {
        let last = self.last[cause as usize].load(Relaxed);
        last != 0 && now_ms < last + ACTIVE_FOR_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_active_while_refusals_keep_coming() {
        let c = Conflicts::default();
        assert_eq!(c.active(0), None);
        c.refused(Cause::SameId, true, 1, 0);
        assert_eq!(c.active(0), Some(Cause::SameId), "at time 0 too");
        assert_eq!(c.active(ACTIVE_FOR_MS), Some(Cause::SameId));
        c.refused(Cause::SameId, false, 1, 9_000);
        assert!(c.is_active(Cause::SameId, 9_000 + ACTIVE_FOR_MS));
        assert!(!c.is_active(Cause::SameId, 9_001 + ACTIVE_FOR_MS), "healed");
        assert!(!c.is_active(Cause::BadToken, 9_000));
    }

    #[test]
    fn the_latest_cause_is_reported() {
        let c = Conflicts::default();
        c.refused(Cause::BadToken, true, 1, 100);
        c.refused(Cause::SameId, true, 1, 200);
        assert_eq!(c.active(300), Some(Cause::SameId));
        c.refused(Cause::BadToken, true, 1, 400);
        assert_eq!(c.active(500), Some(Cause::BadToken));
    }

    #[test]
    fn shutdown_is_not_a_misconfiguration() {
        assert_eq!(Cause::of(RefuseReason::Shutdown), None);
        assert_eq!(Cause::of(RefuseReason::SameId), Some(Cause::SameId));
        for (i, c) in Cause::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
        }
    }
}
