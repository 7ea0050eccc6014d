//! The ledger: every payment a processor stored, as seen by this instance (its own and
//! those replicated from peers), deduplicated by correlationId.
//!
//! Memory is bounded by the records themselves: about 80 bytes each (entry + index),
//! so the 90k payments of the final test take ~7 MB. A summary is one linear scan of a
//! packed `Vec` (100k records in ~0.1 ms), which beats any index at this size.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::payment::{write_cents, CorrelationId, Processor, Record};

/// Totals of one processor over a time range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub cents: u64,
}

/// Totals of both processors, indexed by `Processor::index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary(pub [Totals; 2]);

impl Summary {
    /// Appends the official JSON body.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut n = itoa::Buffer::new();
        for (i, p) in Processor::ALL.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
            out.extend_from_slice(p.name().as_bytes());
            out.extend_from_slice(b"\":{\"totalRequests\":");
            out.extend_from_slice(n.format(self.0[i].requests).as_bytes());
            out.extend_from_slice(b",\"totalAmount\":");
            write_cents(out, self.0[i].cents);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Already present (a replica, or a 422 reconciliation of a payment we hold).
    Duplicate,
}

#[derive(Default)]
struct Inner {
    /// In the order this instance first saw them (paid here or replicated): this is
    /// also the log peers catch up from (position = sequence number). Replicas are in
    /// it too, so that a restarted peer gets back what it paid before it died.
    records: Vec<Record>,
    by_id: HashMap<CorrelationId, u32>,
    /// Bumped by every purge so that peers can tell an old log from a new one.
    epoch: u64,
}

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the data is still consistent
        // because every mutation below is a single push/insert.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a payment, paid here or replicated from a peer (both enter the log).
    pub fn insert(&self, r: Record) -> Inserted {
        insert(&mut self.lock(), r)
    }

    pub fn contains(&self, id: &CorrelationId) -> bool {
        self.lock().by_id.contains_key(id)
    }

    /// Log records from sequence `from` (0-based) on, at most `max`, and the epoch.
    pub fn log_since(&self, from: u64, max: usize) -> (u64, Vec<Record>) {
        let g = self.lock();
        let start = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(g.records.len());
        (
            g.epoch,
            g.records[start..].iter().take(max).copied().collect(),
        )
    }

    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything; returns the new epoch.
    pub fn purge(&self) -> u64 {
        let mut g = self.lock();
        g.records.clear();
        g.by_id.clear();
        g.epoch += 1;
        g.epoch
    }

    /// Sums payments with `from <= requestedAt <= to` (µs; `None` = unbounded).
    pub fn summary(&self, from: Option<i64>, to: Option<i64>) -> Summary {
        let (lo, hi) = (from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
        let g = self.lock();
        let mut s = Summary::default();
        for r in &g.records {
            if r.requested_at_us >= lo && r.requested_at_us <= hi {
                let t = &mut s.0[r.processor.index()];
                t.requests += 1;
                t.cents += r.cents;
            }
        }
        s
    }
}

fn insert(g: &mut Inner, r: Record) -> Inserted {
    if g.by_id.contains_key(&r.id) {
        return Inserted::Duplicate;
    }
    let idx = g.records.len() as u32;
    g.records.push(r);
    g.by_id.insert(r.id, idx);
    Inserted::New
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, at: i64, cents: u64, p: Processor) -> Record {
        Record {
            id: CorrelationId([n; 16]),
            requested_at_us: at,
            cents,
            processor: p,
        }
    }

    #[test]
    fn summary_is_inclusive_and_per_processor() {
        let l = Ledger::new();
        l.insert(rec(1, 1_000, 1990, Processor::Default));
        l.insert(rec(2, 2_000, 1990, Processor::Default));
        l.insert(rec(3, 3_000, 2005, Processor::Fallback));
        let s = l.summary(Some(1_000), Some(3_000));
        assert_eq!(
            s.0[0],
            Totals {
                requests: 2,
                cents: 3980
            }
        );
        assert_eq!(
            s.0[1],
            Totals {
                requests: 1,
                cents: 2005
            }
        );
        assert_eq!(l.summary(Some(1_001), Some(2_999)).0[0].requests, 1);
        assert_eq!(l.summary(None, Some(999)), Summary::default());
        assert_eq!(l.summary(None, None).0[1].cents, 2005);
    }

    #[test]
    fn duplicates_are_recorded_once() {
        let l = Ledger::new();
        assert_eq!(l.insert(rec(1, 1, 100, Processor::Default)), Inserted::New);
        assert_eq!(
            l.insert(rec(1, 1, 100, Processor::Default)),
            Inserted::Duplicate
        );
        assert_eq!(
            l.insert(rec(1, 1, 100, Processor::Default)),
            Inserted::Duplicate
        );
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn log_holds_own_and_replicas_in_order_and_purges() {
        let l = Ledger::new();
        l.insert(rec(1, 1, 100, Processor::Default));
        l.insert(rec(2, 2, 100, Processor::Default));
        l.insert(rec(1, 1, 100, Processor::Default));
        l.insert(rec(3, 3, 100, Processor::Fallback));
        let (epoch, recs) = l.log_since(1, 10);
        assert_eq!(epoch, 0);
        assert_eq!(
            recs,
            vec![
                rec(2, 2, 100, Processor::Default),
                rec(3, 3, 100, Processor::Fallback)
            ]
        );
        assert_eq!(l.log_since(1, 1).1.len(), 1);
        assert_eq!(l.log_since(99, 10).1, vec![]);
        assert_eq!(l.len(), 3);
        assert_eq!(l.purge(), 1);
        assert!(l.is_empty());
        assert_eq!(l.log_since(0, 10).1, vec![]);
    }

    #[test]
    fn json_is_exact() {
        let l = Ledger::new();
        for i in 0..3 {
            l.insert(rec(i, 0, 1990, Processor::Default));
        }
        let mut out = Vec::new();
        l.summary(None, None).write_json(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"default":{"totalRequests":3,"totalAmount":59.70},"fallback":{"totalRequests":0,"totalAmount":0.00}}"#
        );
    }
}
