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
//! Waiting costs nothing until something it waits for can have changed (`park`).

mod park;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use park::{Lead, Wait};

use crate::config::RouterConfig;
use crate::payment::Processor;
use park::WaitingRoom;

/// What a worker does with a payment now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Send(Processor),
    /// Park until something in `Wait` may have changed (see `Router::park`).
    Wait(Wait),
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
    room: WaitingRoom,
}

impl Router {
    pub fn new(cfg: RouterConfig) -> Router {
        Router {
            cfg,
            state: Default::default(),
            room: WaitingRoom::default(),
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

    /// Monotonic ms of the last probe sent to `p` (0: never).
    pub fn last_probe_ms(&self, p: Processor) -> u64 {
        self.st(p).last_probe_ms.load(Relaxed)
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

    /// Time to the next probe of `p`, if `p` is failing and fast enough to probe.
    fn probe_in(&self, p: Processor, now_ms: u64) -> Option<Duration> {
        if !self.is_failing(p) || !self.probe_ok(p) {
            return None;
        }
        let due = self.st(p).last_probe_ms.load(Relaxed) + self.cfg.probe_interval_ms;
        Some(Duration::from_millis(due.saturating_sub(now_ms)))
    }

    /// Decides for a payment accepted at `accepted_ms`, optionally pinned to a processor.
    pub fn decide(&self, accepted_ms: u64, pinned: Option<Processor>, now_ms: u64) -> Decision {
        use Processor::{Default as D, Fallback as F};
        // Read before the state it guards: a change after this makes the wait stale.
        let gen = self.room.gen();
        if let Some(p) = pinned {
            return if !self.is_failing(p) || self.take_probe(p, now_ms) {
                Decision::Send(p)
            } else {
                let only = [p == D, p == F];
                self.wait(gen, only, now_ms, None)
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
        if waited < self.cfg.max_defer_ms {
            let defer_in = self.cfg.max_defer_ms - waited;
            return self.wait(gen, [true, false], now_ms, Some(defer_in));
        }
        // A fallback that just recovered waits out two probe rounds of default first (a
        // health period if default is too slow to probe): when both recover together (a
        // common stage change), default gets the backlog.
        let grace = if self.probe_ok(D) {
            2 * self.cfg.probe_interval_ms
        } else {
            self.cfg.health_interval_ms
        };
        let settled_at = self.st(F).healthy_since_ms.load(Relaxed) + grace;
        if (fallback_ok && now_ms >= settled_at) || (!fallback_ok && self.take_probe(F, now_ms)) {
            return Decision::Send(F);
        }
        let settle_in = fallback_ok.then(|| settled_at - now_ms);
        self.wait(gen, [true, true], now_ms, settle_in)
    }

    fn wait(&self, gen: u64, may_use: [bool; 2], now_ms: u64, until_ms: Option<u64>) -> Decision {
        let probe = |p: Processor| {
            may_use[p.index()]
                .then(|| self.probe_in(p, now_ms))
                .flatten()
        };
        Decision::Wait(Wait {
            may_use,
            probe_in: [probe(Processor::Default), probe(Processor::Fallback)],
            until: until_ms.map(Duration::from_millis),
            gen,
        })
    }

    /// Blocks the calling worker once, as a `Wait` decision says: until the payment's
    /// own deadline, a recovery, or — for the worker holding a processor's probe lead —
    /// that processor's next probe. The caller decides again afterwards.
    pub fn park(&self, wait: &Wait, lead: &mut Lead) {
        self.room.park(wait, lead);
    }

    /// The worker's payment is being sent to `p`: probe leads of the other are handed on.
    pub fn sending(&self, p: Processor, lead: &mut Lead) {
        self.room.sending(p, lead);
    }

    /// The worker's payment is settled: its probe leads are handed on.
    pub fn settled(&self, lead: &mut Lead) {
        self.room.release(lead);
    }

    /// Times a parked worker woke up: what waiting costs.
    pub fn wakeups(&self) -> u64 {
        self.room.wakeups()
    }

    /// Workers parked right now.
    pub fn parked(&self) -> usize {
        self.room.parked()
    }

    fn mark_healthy(&self, p: Processor, now_ms: u64) {
        let st = self.st(p);
        if st.failing.swap(false, Relaxed) {
            st.healthy_since_ms.store(now_ms, Relaxed);
            self.room.changed();
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
        let old = self.latency_ms(p);
        self.set_latency(p, if old == 0 { ms } else { (old * 3 + ms) / 4 });
    }

    /// A processor that becomes fast enough to probe again wakes the waiters: one of
    /// them may take its lead.
    fn set_latency(&self, p: Processor, ms: u64) {
        let was_ok = self.probe_ok(p);
        self.st(p).latency_ms.store(ms, Relaxed);
        if !was_ok && self.probe_ok(p) && self.is_failing(p) {
            self.room.changed();
        }
    }

    /// A health report (ours or a peer's): the processor's own view of itself.
    pub fn on_health(&self, p: Processor, failing: bool, min_response_ms: u32, now_ms: u64) {
        let st = self.st(p);
        if failing {
            st.failing.store(true, Relaxed);
        } else {
            self.mark_healthy(p, now_ms);
        }
        self.set_latency(p, u64::from(min_response_ms));
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
        assert!(matches!(r.decide(9_000, None, 10_001), Decision::Wait(_)));
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
            matches!(r.decide(2_000, None, 10_004), Decision::Wait(_)),
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
    fn waits_name_their_probe_and_deadline() {
        let r = router();
        r.observe(D, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, None, 100), Decision::Send(D));
        let Decision::Wait(w) = r.decide(100, None, 101) else {
            panic!("a payment waits for the failing default");
        };
        assert_eq!(w.may_use, [true, false]);
        assert_eq!(w.probe_in, [Some(Duration::from_millis(249)), None]);
        assert_eq!(
            w.until,
            Some(Duration::from_millis(7_999)),
            "its defer deadline"
        );
        r.observe(F, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, None, 9_000), Decision::Send(D), "probe");
        assert_eq!(
            r.decide(0, None, 9_001),
            Decision::Send(F),
            "fallback probe"
        );
        let Decision::Wait(w) = r.decide(0, None, 9_002) else {
            panic!("both failing");
        };
        assert_eq!(w.may_use, [true, true]);
        assert_eq!(
            w.probe_in,
            [
                Some(Duration::from_millis(248)),
                Some(Duration::from_millis(249))
            ]
        );
        assert_eq!(
            w.until, None,
            "deferred already: only a change or a probe wakes it"
        );
    }

    #[test]
    fn pinned_payments_stay_with_their_processor() {
        let r = router();
        r.observe(F, Observation::Failed(None), 0);
        assert_eq!(r.decide(0, Some(F), 500), Decision::Send(F), "probe");
        assert!(matches!(r.decide(0, Some(F), 501), Decision::Wait(_)));
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
                Decision::Send(D) | Decision::Wait(_)
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
        let Decision::Wait(wait) = r.decide(0, None, 11) else {
            panic!("a payment waits for the failing default");
        };
        r.observe(D, Observation::Answered(5), 12);
        let mut lead = Lead::default();
        r.park(&wait, &mut lead);
        assert_eq!(r.wakeups(), 0, "the decision was stale: no sleep");
        assert!(!lead.holds(D));
    }

    #[test]
    fn no_probe_whose_answer_would_land_in_the_checkers_window() {
        let r = router();
        r.observe(D, Observation::Failed(Some(2_000)), 0);
        assert!(r.latency_ms(D) > 1_200);
        assert!(
            matches!(r.decide(9_000, None, 10_000), Decision::Wait(_)),
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
        assert!(matches!(r.decide(0, None, 44_000), Decision::Wait(_)));
        r.on_health(D, false, 20, 44_500);
        assert_eq!(r.decide(0, None, 44_501), Decision::Send(D));
        r.on_health(D, true, 2_000, 44_600);
        assert_eq!(
            r.decide(0, None, 45_200),
            Decision::Send(F),
            "a health period later"
        );
    }

    /// 256 payments parked while both processors fail cost wake-ups per probe, not per
    /// payment per timer tick: the old 5 ms re-park cost 51,200 wake-ups a second.
    #[test]
    fn parked_payments_wake_for_events_not_timers() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        use std::time::Instant;
        let mut cfg = crate::config::Config::default().router;
        cfg.max_defer_ms = 200;
        cfg.probe_interval_ms = 100;
        let r = Arc::new(Router::new(cfg));
        let t0 = crate::time::mono_ms();
        r.observe(D, Observation::Failed(Some(5)), t0);
        r.observe(F, Observation::Failed(Some(5)), t0);
        let probes = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        for _ in 0..256 {
            let (r, probes, done) = (r.clone(), probes.clone(), done_tx.clone());
            std::thread::spawn(move || {
                let mut lead = Lead::default();
                loop {
                    let now = crate::time::mono_ms();
                    match r.decide(t0, None, now) {
                        Decision::Wait(w) => r.park(&w, &mut lead),
                        Decision::Send(p) if r.is_failing(p) => {
                            r.sending(p, &mut lead);
                            probes.fetch_add(1, Relaxed);
                            r.observe(p, Observation::Failed(Some(1)), now);
                        }
                        Decision::Send(_) => break,
                    }
                }
                r.settled(&mut lead);
                let _ = done.send(());
            });
        }
        // Every payment deferred (200 ms), then a window with only probes as events.
        std::thread::sleep(Duration::from_millis(500));
        let (w0, p0, start) = (r.wakeups(), probes.load(Relaxed), Instant::now());
        std::thread::sleep(Duration::from_millis(1_000));
        let (wakeups, probed) = (r.wakeups() - w0, probes.load(Relaxed) - p0);
        let secs = start.elapsed().as_secs_f64();
        eprintln!("window: {wakeups} wake-ups, {probed} probes in {secs:.2} s");
        assert!(probed >= 1, "probes go on while both fail ({probed})");
        // Two leads, one wake per 100 ms probe each: about 20 a second; bounded with room.
        let bound = (100.0 * secs) as u64 + 64;
        assert!(
            wakeups <= bound,
            "{wakeups} wake-ups in {secs:.2} s (bound {bound})"
        );
        r.on_health(D, false, 5, crate::time::mono_ms());
        for i in 0..256 {
            let left = done_rx.recv_timeout(Duration::from_secs(20));
            assert!(left.is_ok(), "payment {i} never woke after the recovery");
        }
    }
}
