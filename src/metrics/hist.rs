//! Histograms with fixed buckets: one relaxed `fetch_add` per bucket hit and one for
//! the sum, no lock, no allocation; rendered cumulative at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the buckets in microseconds (the last bucket, `+Inf`, is implied):
/// 0.5 ms to 10 s, about three per decade, covering a loopback answer as well as the
/// processors' 5 s delays.
pub const BOUNDS_US: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_000_000, 3_000_000, 5_000_000, 10_000_000,
];
/// The same bounds as Prometheus `le` label values (seconds).
pub const BOUNDS_LE: [&str; 15] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2",
    "3", "5", "10",
];

/// A latency histogram; `counts[i]` holds observations in bucket `i` (not cumulative).
pub struct Histogram {
    counts: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A consistent-enough copy for rendering: `count` is derived from the buckets, so the
/// `+Inf` bucket always equals `_count` even while observations land.
pub struct HistogramSnapshot {
    pub cumulative: [u64; BOUNDS_US.len() + 1],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative[BOUNDS_US.len()]
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_us: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn observe_us(&self, us: u64) {
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    #[inline]
    pub fn observe_ms(&self, ms: u64) {
        self.observe_us(ms.saturating_mul(1000));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; BOUNDS_US.len() + 1];
        let mut total = 0;
        for (c, n) in cumulative.iter_mut().zip(&self.counts) {
            total += n.load(Relaxed);
            *c = total;
        }
        HistogramSnapshot {
            cumulative,
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds_and_cumulative() {
        let h = Histogram::new();
        for us in [0, 500, 501, 1_000, 10_000_000, 10_000_001, u64::MAX / 2] {
            h.observe_us(us);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2, "0 and 500 us");
        assert_eq!(s.cumulative[1], 4, "501 and 1000 us in the 1 ms bucket");
        assert_eq!(
            s.cumulative[BOUNDS_US.len() - 1],
            5,
            "10 s is in the 10 s bucket"
        );
        assert_eq!(s.count(), 7, "+Inf holds everything");
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn le_labels_match_the_bounds() {
        for (us, le) in BOUNDS_US.iter().zip(BOUNDS_LE) {
            let secs: f64 = le.parse().unwrap();
            assert_eq!((secs * 1e6).round() as u64, *us, "{le}");
        }
        assert!(BOUNDS_US.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sum_is_kept_in_microseconds() {
        let h = Histogram::new();
        h.observe_ms(3);
        h.observe_us(250);
        assert_eq!(h.snapshot().sum_us, 3_250);
    }
}
