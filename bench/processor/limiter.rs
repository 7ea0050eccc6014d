//! The two ASP.NET rate limiters the original applies, with FIFO queues
//! (`QueueProcessingOrder.OldestFirst`): a concurrency limiter (permits returned
//! when a request ends) and a fixed-window limiter (permits refilled per window
//! by a 100 ms replenishment timer, as in .NET's partitioned limiter).
//! A queued request waits on its own condvar and is handed its permit directly.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often .NET's partitioned limiter calls `TryReplenish`.
pub const REPLENISH_TICK: Duration = Duration::from_millis(100);

/// Locks, recovering the data if a holder panicked (no poison cascades).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One queued request: woken when a permit is handed to it.
#[derive(Default)]
struct Waiter {
    granted: Mutex<bool>,
    wake: Condvar,
}

impl Waiter {
    fn grant(&self) {
        *lock(&self.granted) = true;
        self.wake.notify_one();
    }

    fn wait(&self) {
        let mut granted = lock(&self.granted);
        while !*granted {
            granted = self.wake.wait(granted).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Free permits and the FIFO of requests waiting for one.
struct Permits {
    available: usize,
    queue: VecDeque<Arc<Waiter>>,
}

/// The outcome of asking for a permit without blocking.
enum Admission {
    Now,
    Queued(Arc<Waiter>),
    Rejected,
}

impl Permits {
    fn admit(&mut self, queue_limit: usize) -> Admission {
        if self.available > 0 && self.queue.is_empty() {
            self.available -= 1;
            Admission::Now
        } else if self.queue.len() < queue_limit {
            let waiter = Arc::new(Waiter::default());
            self.queue.push_back(Arc::clone(&waiter));
            Admission::Queued(waiter)
        } else {
            Admission::Rejected
        }
    }

    /// Hands free permits to the oldest waiters.
    fn hand_out(&mut self) {
        while self.available > 0 {
            let Some(waiter) = self.queue.pop_front() else {
                break;
            };
            self.available -= 1;
            waiter.grant();
        }
    }
}

/// Blocks on a queued admission; `false` when rejected.
fn settle(admission: Admission) -> bool {
    match admission {
        Admission::Now => true,
        Admission::Queued(waiter) => {
            waiter.wait();
            true
        }
        Admission::Rejected => false,
    }
}

/// `ConcurrencyLimiter`: `limit` requests at once, `queue_limit` waiting.
pub struct ConcurrencyLimiter {
    permits: Mutex<Permits>,
    queue_limit: usize,
}

/// A concurrency permit, returned (or handed to the oldest waiter) on drop.
pub struct Permit<'a>(&'a ConcurrencyLimiter);

impl ConcurrencyLimiter {
    pub fn new(limit: usize, queue_limit: usize) -> Self {
        let permits = Permits {
            available: limit,
            queue: VecDeque::new(),
        };
        ConcurrencyLimiter {
            permits: Mutex::new(permits),
            queue_limit,
        }
    }

    /// Waits in the FIFO if needed; `None` means 429.
    pub fn acquire(&self) -> Option<Permit<'_>> {
        let admission = lock(&self.permits).admit(self.queue_limit);
        settle(admission).then(|| Permit(self))
    }

    /// (in flight, queued), for tests and diagnostics.
    #[cfg(test)]
    pub fn load(&self, limit: usize) -> (usize, usize) {
        let p = lock(&self.permits);
        (limit - p.available, p.queue.len())
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut permits = lock(&self.0.permits);
        permits.available += 1;
        permits.hand_out();
    }
}

/// `FixedWindowRateLimiter` without auto-replenishment, driven by [`tick`](Self::tick).
pub struct FixedWindowLimiter {
    state: Mutex<Window>,
    permit_limit: usize,
    queue_limit: usize,
    window: Duration,
}

struct Window {
    permits: Permits,
    last_replenish: Instant,
}

impl FixedWindowLimiter {
    pub fn new(permit_limit: usize, queue_limit: usize, window: Duration, now: Instant) -> Self {
        let permits = Permits {
            available: permit_limit,
            queue: VecDeque::new(),
        };
        let state = Mutex::new(Window {
            permits,
            last_replenish: now,
        });
        FixedWindowLimiter {
            state,
            permit_limit,
            queue_limit,
            window,
        }
    }

    /// Takes a permit, waiting in the FIFO for a later window if the queue has
    /// room; `false` means 429.
    pub fn acquire(&self) -> bool {
        let admission = lock(&self.state).permits.admit(self.queue_limit);
        settle(admission)
    }

    /// .NET `ReplenishInternal`: once a window has passed since the last
    /// replenishment, start a new window at `now`, refill, serve the queue.
    pub fn tick(&self, now: Instant) {
        let mut state = lock(&self.state);
        if now.saturating_duration_since(state.last_replenish) < self.window {
            return;
        }
        state.last_replenish = now;
        if state.permits.available >= self.permit_limit {
            return;
        }
        state.permits.available = self.permit_limit;
        state.permits.hand_out();
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        lock(&self.state).permits.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// Polls `cond` for up to 10 s (generous: only the final state matters).
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn concurrency_limit_queue_and_reject() {
        let limiter = Arc::new(ConcurrencyLimiter::new(2, 2));
        let a = limiter.acquire().unwrap();
        let b = limiter.acquire().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for i in 0..2 {
            let (mine, tx) = (Arc::clone(&limiter), tx.clone());
            handles.push(thread::spawn(move || {
                let _permit = mine.acquire();
                tx.send(i).unwrap();
            }));
            assert!(
                eventually(|| limiter.load(2).1 == i + 1),
                "waiter {i} queued in order"
            );
        }
        assert!(limiter.acquire().is_none(), "queue full → rejected");
        assert!(rx.try_recv().is_err());
        drop(a);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(0),
            "oldest first"
        );
        drop(b);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(limiter.load(2), (0, 0), "permits all returned");
    }

    #[test]
    fn queued_requests_keep_fifo_over_newcomers() {
        let limiter = ConcurrencyLimiter::new(1, 1);
        let first = limiter.acquire().unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| limiter.acquire().is_some());
            assert!(eventually(|| limiter.load(1).1 == 1));
            drop(first);
            assert!(waiter.join().unwrap());
        });
        assert!(limiter.acquire().is_some());
    }

    #[test]
    fn fixed_window_one_permit_queue_of_two() {
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        let limiter = Arc::new(FixedWindowLimiter::new(1, 2, window, t0));
        assert!(limiter.acquire(), "first call of the window passes");
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for i in 0..2 {
            let (mine, tx) = (Arc::clone(&limiter), tx.clone());
            handles.push(thread::spawn(move || tx.send((i, mine.acquire())).unwrap()));
            assert!(eventually(|| limiter.queued() == i + 1));
        }
        assert!(
            !limiter.acquire(),
            "third waiter beyond the queue → rejected"
        );
        limiter.tick(t0 + window - Duration::from_millis(1));
        assert!(rx.try_recv().is_err(), "no refill before the window ends");
        limiter.tick(t0 + window);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok((0, true)));
        assert!(rx.try_recv().is_err(), "one permit per window");
        limiter.tick(t0 + window * 2 - Duration::from_millis(1));
        assert!(rx.try_recv().is_err(), "new window started at the refill");
        limiter.tick(t0 + window * 2);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok((1, true)));
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn fixed_window_boundaries_follow_the_replenish_cadence() {
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        let limiter = FixedWindowLimiter::new(1, 0, window, t0);
        // Unused windows still move the boundary: ticks at 5 s and 10 s.
        limiter.tick(t0 + window);
        assert!(limiter.acquire());
        assert!(!limiter.acquire(), "queue limit 0 → immediate rejection");
        limiter.tick(t0 + window + Duration::from_millis(4_900));
        assert!(!limiter.acquire(), "same window");
        limiter.tick(t0 + window * 2);
        assert!(limiter.acquire(), "next window");
    }
}
