//! The routing policy: which processor pays a payment now, or how long it waits.
//!
//! The backend is never told the fees, only that default is cheaper, and the
//! processors change behaviour without notice. The policy reads what it observes:
//!
//! 1. default healthy and not slow → default (cheapest, and fast enough);
//! 2. default healthy but slow (latency > `slow_ms`) and fallback healthy and
//!    `speedup` times faster → fallback: a slow default costs in-flight capacity, lag
//!    at the end of a test, and consistency races past the 1.5–2 s window offset;
//! 3. default failing → the payment waits for it (one paced probe per
//!    `probe_interval_ms` finds the recovery), unless it has waited `max_defer_ms`
//!    already and fallback is healthy: then fallback pays it, so a long outage
//!    costs the fee difference rather than the whole payment;
//! 4. a slow default still gets a probe per interval (or per its latency, if longer:
//!    about one in flight) so its recovery is seen;
//! 5. no probe goes to a processor whose latency is above `max_probe_latency_ms`: its
//!    answer, stored when failure is switched off during its delay, would land inside
//!    the checkers' window (1.5–2 s before now) while the checks run, a race with
//!    their concurrent summaries (seen: 1 inconsistency in a preview run from 2 s
//!    probes at the 40 s stage). Such a processor's recovery is seen through the
//!    health endpoint, polled every 5.1 s.
//!
//! A payment whose outcome is unknown is pinned to the processor that may hold it.
//!
//! Waiting is cheap: a waiting worker parks on a condition variable until its own
//! defer deadline; one worker per processor (the lead) wakes for the next probe, and a
//! recovery wakes them all. (Sleeping in short steps instead cost most of the
//! instances' CPU in context switches during an outage.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::config::RouterConfig;
use crate::payment::Processor;

/// What a worker does with a payment now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Send(Processor),
    /// Wait for `target`: its next probe is due in `probe_in`, and this payment may go
    /// elsewhere in `defer_in` (see `Router::park`).
    Wait {
        target: Processor,
        probe_in: Duration,
        defer_in: Duration,
    },
}

/// What a worker saw from a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Answered 2xx/422 after this many milliseconds.
    Answered(u64),
    /// 5xx or 429 after this many milliseconds (`None`: unreachable, or no answer).
    Failed(Option<u64>),
}

#[derive(Default)]
struct State {
    failing: AtomicBool,
    /// Smoothed latency (ms) of answered requests, or the health report's minimum.
    latency_ms: AtomicU64,
    /// Monotonic ms of the last probe taken (failing or slow processor).
    last_probe_ms: AtomicU64,
    /// Monotonic ms of the last failing → healthy transition.
    healthy_since_ms: AtomicU64,
}

pub struct Router {
    cfg: RouterConfig,
    state: [State; 2],
    /// Held to notify `wake` on a failing → healthy transition.
    recovery: Mutex<()>,
    wake: Condvar,
    /// Per processor: a parked worker is already waiting to take its next probe.
    lead: [AtomicBool; 2],
}

const MIN_WAIT: Duration = Duration::from_millis(5);
/// Longest park: a bound on any missed wake-up.
const MAX_PARK: Duration = Duration::from_millis(1000);

impl Router {
    pub fn new(cfg: RouterConfig) -> Router {
        Router {
            cfg,
            state: Default::default(),
            recovery: Mutex::new(()),
            wake: Condvar::new(),
            lead: Default::default(),
        }
    }

    fn st(&self, p: Processor) -> &State {
        &self.state[p.index()]
    }

    pub fn is_failing(&self, p: Processor) -> bool {
        self.st(p).failing.load(Relaxed)
    }

    pub fn latency_ms(&self, p: Processor) -> u64 {
        self.st(p).latency_ms.load(Relaxed)
    }

    /// True if a probe's answer would come back before the checkers' window closes on it.
    fn probe_ok(&self, p: Processor) -> bool {
        self.latency_ms(p) <= self.cfg.max_probe_latency_ms
    }

    fn slow(&self, p: Processor) -> bool {
        self.latency_ms(p) > self.cfg.slow_ms
    }

    /// Claims the probe slot of `p` if `probe_interval_ms` has passed since the last one.
    fn take_probe(&self, p: Processor, now_ms: u64) -> bool {
        self.probe_ok(p) && self.take_probe_every(p, now_ms, self.cfg.probe_interval_ms)
    }

    fn take_probe_every(&self, p: Processor, now_ms: u64, interval_ms: u64) -> bool {
        let st = self.st(p);
        let last = st.last_probe_ms.load(Relaxed);
        let due = last == 0 || now_ms >= last + interval_ms;
        due && st
            .last_probe_ms
            .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
            .is_ok()
    }

    /// Time to the next probe of `p`; never, if it is too slow to probe.
    fn until_probe(&self, p: Processor, now_ms: u64) -> u64 {
        if !self.probe_ok(p) {
            return u64::MAX;
        }
        (self.st(p).last_probe_ms.load(Relaxed) + self.cfg.probe_interval_ms).saturating_sub(now_ms)
    }

    /// Decides for a payment accepted at `accepted_ms`, optionally pinned to a processor.
    pub fn decide(&self, accepted_ms: u64, pinned: Option<Processor>, now_ms: u64) -> Decision {
        use Processor::{Default as D, Fallback as F};
        if let Some(p) = pinned {
            return if !self.is_failing(p) || self.take_probe(p, now_ms) {
                Decision::Send(p)
            } else {
                self.wait(p, self.until_probe(p, now_ms), u64::MAX)
            };
        }
        let fallback_ok = !self.is_failing(F);
        if !self.is_failing(D) {
            let fallback_faster = self.latency_ms(F) * self.cfg.speedup < self.latency_ms(D);
            // A slow default is probed about once per its own latency: about one probe
            // in flight, so few payments are left waiting on it when traffic stops.
            let slow_probe = self.cfg.probe_interval_ms.max(self.latency_ms(D));
            let probe = self.probe_ok(D) && self.take_probe_every(D, now_ms, slow_probe);
            if self.slow(D) && fallback_ok && fallback_faster && !probe {
                return Decision::Send(F);
            }
            return Decision::Send(D);
        }
        if self.take_probe(D, now_ms) {
            return Decision::Send(D);
        }
        let waited = now_ms.saturating_sub(accepted_ms);
        // A fallback that just recovered waits out two probe rounds of default first (a
        // health period if default is too slow to probe): when both recover together (a
        // common stage change), default gets the backlog.
        let grace = if self.probe_ok(D) {
            2 * self.cfg.probe_interval_ms
        } else {
            self.cfg.health_interval_ms
        };
        let fallback_settled = now_ms >= self.st(F).healthy_since_ms.load(Relaxed) + grace;
        if waited >= self.cfg.max_defer_ms
            && ((fallback_ok && fallback_settled) || (!fallback_ok && self.take_probe(F, now_ms)))
        {
            return Decision::Send(F);
        }
        let until_defer = self.cfg.max_defer_ms.saturating_sub(waited);
        self.wait(D, self.until_probe(D, now_ms), until_defer)
    }

    fn wait(&self, target: Processor, probe_ms: u64, defer_ms: u64) -> Decision {
        let bound = |ms: u64| Duration::from_millis(ms).clamp(MIN_WAIT, MAX_PARK);
        Decision::Wait {
            target,
            probe_in: bound(probe_ms),
            defer_in: bound(defer_ms),
        }
    }

    /// Blocks the calling worker as a `Wait` decision says: until the payment's defer
    /// deadline, or — for the one lead worker of `target` — until its next probe, or
    /// until any processor recovers.
    pub fn park(&self, decision: Decision) {
        let Decision::Wait {
            target,
            probe_in,
            defer_in,
        } = decision
        else {
            return;
        };
        let lead = &self.lead[target.index()];
        let leading = lead.compare_exchange(false, true, Relaxed, Relaxed).is_ok();
        let timeout = if leading {
            probe_in.min(defer_in)
        } else {
            defer_in
        };
        let guard = self.recovery.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that a recovery notifies under: no wake-up is lost.
        // One wait, not a loop: a hand-off, a recovery or the timeout all end it.
        if self.is_failing(target) {
            drop(self.wake.wait_timeout(guard, timeout));
        }
        if leading {
            lead.store(false, Relaxed);
            // Hand the lead on: another parked worker waits for the probe after this one.
            self.wake.notify_one();
        }
    }

    fn mark_healthy(&self, p: Processor, now_ms: u64) {
        let st = self.st(p);
        if st.failing.swap(false, Relaxed) {
            st.healthy_since_ms.store(now_ms, Relaxed);
            let _held = self.recovery.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_all();
        }
    }

    /// Feeds back what a request to `p` did.
    pub fn observe(&self, p: Processor, o: Observation, now_ms: u64) {
        let st = self.st(p);
        match o {
            Observation::Answered(ms) => {
                self.mark_healthy(p, now_ms);
                self.smooth_latency(p, ms);
            }
            Observation::Failed(took) => {
                st.failing.store(true, Relaxed);
                if let Some(ms) = took {
                    self.smooth_latency(p, ms);
                }
            }
        }
    }

    /// EWMA with weight 1/4: follows a stage change within a handful of answers.
    fn smooth_latency(&self, p: Processor, ms: u64) {
        let st = self.st(p);
        let old = st.latency_ms.load(Relaxed);
        let new = if old == 0 { ms } else { (old * 3 + ms) / 4 };
        st.latency_ms.store(new, Relaxed);
    }

    /// A health report (ours or a peer's): the processor's own view of itself.
    pub fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32, now_ms: u64) {
        let st = self.st(p);
        if failing {
            st.failing.store(true, Relaxed);
        } else {
            self.mark_healthy(p, now_ms);
        }
        st.latency_ms.store(u64::from(min_response_ms), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Processor::{Default as D, Fallback as F};

    /// The defaults: slow 600 ms, speedup 3, defer 8 s, probes every 250 ms up to
    /// 1.2 s of latency, health every 5.1 s.
    fn router() -> Router {
        Router::new(crate::config::Config::default().router)
    }

    #[test]
    fn healthy_default_pays() {
        let r = router();
        assert_eq!(r.decide(0, None, 1_000), Decision::Send(D));
        r.observe(D, Observation::Answered(100), 0);
        assert_eq!(r.decide(0, None, 1_000), Decision::Send(D));
    }

    #[test]
    fn slow_default_moves_to_a_much_faster_fallback_with_probes() {
        let r = router();
        r.on_health(D, false, 1_000, 0);
        r.on_health(F, false, 5, 0);
        assert_eq!(
            r.decide(0, None, 1_000),
            Decision::Send(D),
            "first probe of the slow default"
        );
        assert_eq!(r.decide(0, None, 1_001), Decision::Send(F));
        assert_eq!(r.decide(0, None, 1_100), Decision::Send(F));
        assert_eq!(
            r.decide(0, None, 1_250),
            Decision::Send(F),
            "one probe per latency"
        );
        assert_eq!(r.decide(0, None, 2_000), Decision::Send(D), "next probe");
        r.on_health(F, false, 800, 0);
        assert_eq!(
            r.decide(0, None, 2_001),
            Decision::Send(D),
            "fallback not fast enough to pay more"
        );
    }

    #[test]
    fn failing_default_waits_then_defers_to_fallback() {
        let r = router();
        r.observe(D, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, None, 10_000), Decision::Send(D), "probe");
        assert!(matches!(
            r.decide(9_000, None, 10_001),
            Decision::Wait { .. }
        ));
        assert_eq!(
            r.decide(2_000, None, 10_002),
            Decision::Send(F),
            "waited max_defer"
        );
        r.observe(F, Observation::Failed(None), 0);
        assert_eq!(
            r.decide(2_000, None, 10_003),
            Decision::Send(F),
            "fallback probe"
        );
        assert!(
            matches!(r.decide(2_000, None, 10_004), Decision::Wait { .. }),
            "both failing"
        );
        r.observe(D, Observation::Answered(20), 0);
        assert_eq!(
            r.decide(2_000, None, 10_005),
            Decision::Send(D),
            "recovered"
        );
    }

    #[test]
    fn waits_are_bounded_and_paced() {
        let r = router();
        r.observe(D, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, None, 100), Decision::Send(D));
        match r.decide(100, None, 101) {
            Decision::Wait {
                target,
                probe_in,
                defer_in,
            } => {
                assert_eq!(target, D);
                assert_eq!(probe_in, Duration::from_millis(249));
                assert_eq!(
                    defer_in, MAX_PARK,
                    "7,999 ms to the defer deadline, bounded"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pinned_payments_stay_with_their_processor() {
        let r = router();
        r.observe(F, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, Some(F), 500), Decision::Send(F), "probe");
        assert!(matches!(r.decide(0, Some(F), 501), Decision::Wait { .. }));
        r.observe(F, Observation::Answered(3), 0);
        assert_eq!(r.decide(0, Some(F), 502), Decision::Send(F));
    }

    #[test]
    fn default_gets_the_backlog_when_both_recover_together() {
        let r = router();
        r.observe(D, Observation::Failed(None), 0);
        r.observe(F, Observation::Failed(None), 0);
        r.observe(F, Observation::Answered(20), 40_000);
        assert!(
            matches!(
                r.decide(0, None, 40_010),
                Decision::Send(D) | Decision::Wait { .. }
            ),
            "fallback just recovered: default gets its probe rounds first"
        );
        r.observe(D, Observation::Answered(20), 40_100);
        assert_eq!(r.decide(0, None, 40_101), Decision::Send(D));
        r.observe(D, Observation::Failed(None), 40_200);
        assert_eq!(r.decide(0, None, 40_600), Decision::Send(D), "probe");
        assert_eq!(
            r.decide(0, None, 40_601),
            Decision::Send(F),
            "after the grace"
        );
    }

    #[test]
    fn park_returns_at_once_when_the_target_has_recovered() {
        let r = router();
        r.observe(D, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, None, 10), Decision::Send(D), "probe");
        let wait = r.decide(0, None, 11);
        assert!(matches!(wait, Decision::Wait { .. }));
        r.observe(D, Observation::Answered(5), 12);
        r.park(wait);
        assert!(!r.lead[0].load(Relaxed), "the lead is handed back");
    }

    #[test]
    fn no_probe_whose_answer_would_land_in_the_checkers_window() {
        let r = router();
        r.observe(D, Observation::Failed(Some(2_000)), 0);
        assert!(r.latency_ms(D) > 1_200);
        assert!(
            matches!(r.decide(9_000, None, 10_000), Decision::Wait { .. }),
            "no probe"
        );
        assert_eq!(
            r.decide(0, None, 10_001),
            Decision::Send(F),
            "deferred payments still go"
        );
        r.on_health(D, false, 20, 10_002);
        assert_eq!(
            r.decide(9_000, None, 10_003),
            Decision::Send(D),
            "recovery seen by health"
        );
        r.on_health(D, false, 2_000, 10_004);
        r.on_health(F, false, 5, 10_004);
        for t in 0..20 {
            assert_eq!(
                r.decide(9_000, None, 20_000 + t * 500),
                Decision::Send(F),
                "no slow probe"
            );
        }
    }

    #[test]
    fn an_unprobeable_default_gets_a_health_period_before_fallback_takes_the_backlog() {
        let r = router();
        r.observe(D, Observation::Failed(Some(2_000)), 0);
        r.observe(F, Observation::Failed(Some(1_000)), 0);
        r.observe(F, Observation::Answered(20), 40_000);
        assert!(matches!(r.decide(0, None, 44_000), Decision::Wait { .. }));
        r.on_health(D, false, 20, 44_500);
        assert_eq!(r.decide(0, None, 44_501), Decision::Send(D));
        r.on_health(D, true, 2_000, 44_600);
        assert_eq!(
            r.decide(0, None, 45_200),
            Decision::Send(F),
            "a health period later"
        );
    }
}
