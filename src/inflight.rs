//! Payments sent to a processor whose outcome we do not know yet, by `requestedAt`.
//!
//! A processor stores a payment before we see its response; a summary whose range
//! covers such a payment would miss it. The summary therefore waits (bounded) until no
//! payment with `requestedAt <= to` is in flight here or on any peer.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct InFlight {
    by_time: Mutex<BTreeMap<i64, u32>>,
}

impl InFlight {
    pub fn new() -> InFlight {
        InFlight::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<i64, u32>) -> R) -> R {
        f(&mut self.by_time.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Marks a request with this `requestedAt` (µs) as sent.
    pub fn begin(&self, at_us: i64) {
        self.with(|m| *m.entry(at_us).or_insert(0) += 1);
    }

    /// Marks it resolved (recorded, or known not stored).
    pub fn end(&self, at_us: i64) {
        self.with(|m| {
            if let Some(n) = m.get_mut(&at_us) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&at_us);
                }
            }
        });
    }

    /// True when no in-flight payment has `requestedAt <= to_us` (`None` = any).
    pub fn settled_until(&self, to_us: Option<i64>) -> bool {
        self.with(|m| match m.keys().next() {
            None => true,
            Some(&first) => to_us.is_some_and(|to| first > to),
        })
    }

    pub fn len(&self) -> usize {
        self.with(|m| m.values().map(|&n| n as usize).sum())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_by_requested_at() {
        let f = InFlight::new();
        assert!(f.settled_until(None));
        f.begin(100);
        f.begin(100);
        f.begin(200);
        assert!(f.settled_until(Some(99)));
        assert!(!f.settled_until(Some(100)));
        assert!(!f.settled_until(None));
        f.end(100);
        assert!(!f.settled_until(Some(150)));
        f.end(100);
        assert!(f.settled_until(Some(150)));
        assert_eq!(f.len(), 1);
        f.end(200);
        f.end(200);
        assert!(f.is_empty());
    }
}
