//! How fast the workers may start attempts: at most `multiple` times the rate at which
//! payments arrive here, and always at least `floor` per second.
//!
//! Why: while no processor can take a payment, thousands of them wait (parked workers
//! and the queue behind them). Unpaced, the moment a processor recovers every worker
//! sends at once: a few thousand round trips in one second, this instance's CPU and the
//! processor's saturated, and the HTTP answers of that second queued behind them (on a
//! shared 2-core machine that one second set the run's p99). Paced, the same backlog
//! drains over a few seconds at a few times the arrival rate, while attempts that keep
//! up with arrivals never wait: the limit is `multiple` times what arrives.
//!
//! The limit is a GCRA (virtual scheduling): each attempt reserves the next slot,
//! `1 / limit` after the previous one, and a worker whose slot is in the future sleeps
//! once until it (minus `BURST_US`, the tolerance that lets short bursts through).
//! Arrivals are counted by the event loop with one relaxed increment; a slot is taken
//! with one compare-and-swap; the limit is re-estimated from the arrivals once per
//! `WINDOW_US` by one worker (`try_lock`: the others go on with the old limit).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::METRICS;

/// How far ahead of its slot an attempt may start: a burst this long passes unpaced.
const BURST_US: u64 = 100_000;
/// The arrival rate is measured over windows at least this long.
const WINDOW_US: u64 = 1_000_000;

pub struct Pacer {
    /// Attempts per second at most this many times the arrival rate (0: no pacing).
    multiple: u32,
    /// Attempts per second always allowed, whatever arrives.
    floor: u32,
    arrivals: AtomicU64,
    start: Instant,
    /// The next free slot, µs since `start` (GCRA's theoretical arrival time).
    next_us: AtomicU64,
    /// Microseconds between two slots now (1e6 / attempts per second allowed).
    interval_us: AtomicU64,
    /// Start of the current arrival window, µs since `start`: read without the lock,
    /// written only under it.
    window_start_us: AtomicU64,
    /// Arrivals before the current window; its lock is held by whichever worker
    /// re-estimates the limit.
    window_arrivals: Mutex<u64>,
}

impl Pacer {
    pub fn new(multiple: u32, floor: u32) -> Pacer {
        Pacer {
            multiple,
            floor,
            arrivals: AtomicU64::new(0),
            start: Instant::now(),
            next_us: AtomicU64::new(0),
            interval_us: AtomicU64::new(1_000_000 / u64::from(floor.max(1))),
            window_start_us: AtomicU64::new(0),
            window_arrivals: Mutex::new(0),
        }
    }

    /// One payment arrived (accepted into the queue).
    pub fn arrived(&self) {
        self.arrivals.fetch_add(1, Relaxed);
    }

    /// Reserves the slot of one attempt and returns how long to wait for it (zero: go).
    pub fn reserve(&self) -> Duration {
        self.reserve_at(self.start.elapsed())
    }

    fn reserve_at(&self, now: Duration) -> Duration {
        if self.multiple == 0 {
            return Duration::ZERO;
        }
        let now_us = now.as_micros() as u64;
        if now_us.saturating_sub(self.window_start_us.load(Relaxed)) >= WINDOW_US {
            self.estimate(now_us);
        }
        let interval = self.interval_us.load(Relaxed);
        let mut next = self.next_us.load(Relaxed);
        let slot = loop {
            let slot = next.max(now_us);
            match self
                .next_us
                .compare_exchange_weak(next, slot + interval, Relaxed, Relaxed)
            {
                Ok(_) => break slot,
                Err(seen) => next = seen,
            }
        };
        let go_at = slot.saturating_sub(BURST_US);
        Duration::from_micros(go_at.saturating_sub(now_us))
    }

    /// Sets the limit from the arrivals of the window just over.
    fn estimate(&self, now_us: u64) {
        let Ok(mut before) = self.window_arrivals.try_lock() else {
            return; // another worker is at it
        };
        let span = now_us.saturating_sub(self.window_start_us.load(Relaxed));
        if span < WINDOW_US {
            return;
        }
        let n = self.arrivals.load(Relaxed);
        let per_s = n.saturating_sub(*before) * 1_000_000 / span;
        let limit = (per_s * u64::from(self.multiple)).max(u64::from(self.floor.max(1)));
        self.interval_us.store(1_000_000 / limit, Relaxed);
        *before = n;
        self.window_start_us.store(now_us, Relaxed);
        METRICS
            .pace_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Pacer {
        /// Attempts per second allowed now (/metrics shows it as a gauge).
        fn limit(&self) -> u64 {
            1_000_000 / self.interval_us.load(Relaxed).max(1)
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// How many of `n` attempts reserved at `now` may start within `within`.
    fn started_within(p: &Pacer, now: Duration, n: usize, within: Duration) -> usize {
        (0..n).filter(|_| p.reserve_at(now) <= within).count()
    }

    #[test]
    fn a_backlog_drains_at_the_multiple_of_arrivals() {
        let p = Pacer::new(4, 100);
        // 500 arrivals in the first second, then a backlog of 3,000 attempts at once.
        (0..500).for_each(|_| p.arrived());
        assert_eq!(p.reserve_at(ms(1_000)), Duration::ZERO);
        assert_eq!(p.limit(), 2_000);
        let first_second = started_within(&p, ms(1_000), 3_000, ms(1_000));
        // 2,000 per second plus the 100 ms burst tolerance (200), give or take rounding.
        assert!((2_150..=2_250).contains(&first_second), "{first_second}");
    }

    #[test]
    fn attempts_that_keep_up_with_arrivals_never_wait() {
        let p = Pacer::new(4, 100);
        let mut waited = Duration::ZERO;
        for second in 1..=5u64 {
            (0..300).for_each(|_| p.arrived());
            for i in 0..300u64 {
                waited += p.reserve_at(ms(second * 1_000 + i * 3));
            }
        }
        assert_eq!(waited, Duration::ZERO);
    }

    #[test]
    fn the_floor_holds_when_nothing_arrives_and_zero_turns_pacing_off() {
        let p = Pacer::new(4, 100);
        assert!(p.reserve_at(ms(2_000)).is_zero());
        assert_eq!(p.limit(), 100);
        // 100 per second, one slot every 10 ms from 2.0 s: of 50 more at once, the 10 whose
        // slot is within the 100 ms burst tolerance go now, the last (slot 2.5 s) waits.
        let waits: Vec<Duration> = (0..50).map(|_| p.reserve_at(ms(2_000))).collect();
        assert_eq!(waits.iter().filter(|w| w.is_zero()).count(), 10);
        assert_eq!(waits[49], ms(400));
        let off = Pacer::new(0, 100);
        assert!((0..10_000).all(|_| off.reserve_at(ms(5)).is_zero()));
    }
}
