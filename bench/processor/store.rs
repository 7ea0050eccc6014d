//! The in-memory `payments` table: unique correlation ids, the summary query
//! (`requested_at BETWEEN from AND to OR from IS NULL OR to IS NULL`) and purge.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::limiter::lock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    pub amount_cents: i128,
    /// UTC ticks (see `time`).
    pub requested_at: i64,
}

/// The insert hit the primary key (the original answers 422).
#[derive(Debug, PartialEq, Eq)]
pub struct Duplicate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub total_cents: i128,
}

#[derive(Default)]
pub struct Store {
    rows: Mutex<HashMap<u128, Payment>>,
}

impl Store {
    pub fn insert(&self, id: u128, payment: Payment) -> Result<(), Duplicate> {
        let mut rows = lock(&self.rows);
        if rows.contains_key(&id) {
            return Err(Duplicate);
        }
        rows.insert(id, payment);
        Ok(())
    }

    pub fn get(&self, id: u128) -> Option<Payment> {
        lock(&self.rows).get(&id).copied()
    }

    /// Inclusive on both ends; if either bound is missing every row counts,
    /// exactly like the original's SQL.
    pub fn summary(&self, from: Option<i64>, to: Option<i64>) -> Summary {
        let rows = lock(&self.rows);
        let mut summary = Summary {
            count: 0,
            total_cents: 0,
        };
        for p in rows.values() {
            let selected = match (from, to) {
                (Some(from), Some(to)) => from <= p.requested_at && p.requested_at <= to,
                _ => true,
            };
            if selected {
                summary.count += 1;
                summary.total_cents += p.amount_cents;
            }
        }
        summary
    }

    pub fn purge(&self) {
        lock(&self.rows).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64) -> Payment {
        Payment {
            amount_cents: 1990,
            requested_at: t,
        }
    }

    #[test]
    fn duplicate_rejected_and_first_kept() {
        let s = Store::default();
        assert_eq!(s.insert(7, at(1)), Ok(()));
        assert_eq!(
            s.insert(
                7,
                Payment {
                    amount_cents: 5,
                    requested_at: 2
                }
            ),
            Err(Duplicate)
        );
        assert_eq!(s.get(7), Some(at(1)));
        assert_eq!(s.get(8), None);
    }

    #[test]
    fn between_is_inclusive() {
        let s = Store::default();
        for (id, t) in [(1, 100), (2, 200), (3, 300), (4, 99), (5, 301)] {
            s.insert(id, at(t)).unwrap();
        }
        assert_eq!(
            s.summary(Some(100), Some(300)),
            Summary {
                count: 3,
                total_cents: 5970
            }
        );
        assert_eq!(s.summary(Some(200), Some(200)).count, 1);
        assert_eq!(
            s.summary(Some(300), Some(100)).count,
            0,
            "from > to selects nothing"
        );
        assert_eq!(s.summary(Some(101), Some(299)).count, 1);
    }

    #[test]
    fn a_missing_bound_selects_everything() {
        let s = Store::default();
        for (id, t) in [(1, 100), (2, 200)] {
            s.insert(id, at(t)).unwrap();
        }
        assert_eq!(s.summary(None, Some(0)).count, 2);
        assert_eq!(s.summary(Some(1_000), None).count, 2);
        assert_eq!(s.summary(None, None).count, 2);
        s.purge();
        assert_eq!(
            s.summary(None, None),
            Summary {
                count: 0,
                total_cents: 0
            }
        );
    }
}
