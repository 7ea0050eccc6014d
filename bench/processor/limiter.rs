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
/// How often a queued request checks whether its client went away.
const ABORT_POLL: Duration = Duration::from_millis(50);

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

    /// Waits for the grant, asking `aborted` every [`ABORT_POLL`]; `false` once
    /// it says the client is gone (the caller then leaves the queue).
    fn wait(&self, aborted: &dyn Fn() -> bool) -> bool {
        let mut granted = lock(&self.granted);
        while !*granted {
            let (guard, timeout) = self
                .wake
                .wait_timeout(granted, ABORT_POLL)
                .unwrap_or_else(|e| e.into_inner());
            granted = guard;
            if !*granted && timeout.timed_out() {
                drop(granted);
                if aborted() {
                    return false;
                }
                granted = lock(&self.granted);
            }
        }
        true
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

/// The outcome of asking a limiter for a permit.
#[derive(Debug, PartialEq, Eq)]
pub enum Lease {
    Granted,
    /// Beyond the queue: the original answers 429.
    Rejected,
    /// The client disconnected while queued (ASP.NET's `RequestAborted`): the
    /// request left the queue and is not processed.
    Aborted,
}

/// Blocks on a queued admission. A waiter whose client goes away leaves the
/// queue, unless a permit reached it first (then it proceeds).
fn settle(permits: &Mutex<Permits>, admission: Admission, aborted: &dyn Fn() -> bool) -> Lease {
    let waiter = match admission {
        Admission::Now => return Lease::Granted,
        Admission::Rejected => return Lease::Rejected,
        Admission::Queued(waiter) => waiter,
    };
    if waiter.wait(aborted) {
        return Lease::Granted;
    }
    let mut permits = lock(permits);
    match permits.queue.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
        Some(at) => {
            permits.queue.remove(at);
            Lease::Aborted
        }
        None => Lease::Granted,
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

    /// Waits in the FIFO if needed; the permit comes back on drop.
    pub fn acquire(&self, aborted: &dyn Fn() -> bool) -> Result<Permit<'_>, Lease> {
        let admission = lock(&self.permits).admit(self.queue_limit);
        match settle(&self.permits, admission, aborted) {
            Lease::Granted => Ok(Permit(self)),
            refused => Err(refused),
        }
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
    permits: Mutex<Permits>,
    /// Start of the current window; locked before `permits` when both are.
    last_replenish: Mutex<Instant>,
    permit_limit: usize,
    queue_limit: usize,
    window: Duration,
}

impl FixedWindowLimiter {
    pub fn new(permit_limit: usize, queue_limit: usize, window: Duration, now: Instant) -> Self {
        let permits = Permits {
            available: permit_limit,
            queue: VecDeque::new(),
        };
        FixedWindowLimiter {
            permits: Mutex::new(permits),
            last_replenish: Mutex::new(now),
            permit_limit,
            queue_limit,
            window,
        }
    }

    /// Takes a permit, waiting in the FIFO for a later window if the queue has
    /// room.
    pub fn acquire(&self, aborted: &dyn Fn() -> bool) -> Lease {
        let admission = lock(&self.permits).admit(self.queue_limit);
        settle(&self.permits, admission, aborted)
    }

    /// .NET `ReplenishInternal`: once a window has passed since the last
    /// replenishment, start a new window at `now`, refill, serve the queue.
    pub fn tick(&self, now: Instant) {
        let mut last = lock(&self.last_replenish);
        if now.saturating_duration_since(*last) < self.window {
            return;
        }
        *last = now;
        let mut permits = lock(&self.permits);
        if permits.available >= self.permit_limit {
            return;
        }
        permits.available = self.permit_limit;
        permits.hand_out();
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        lock(&self.permits).queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::thread;

    fn never() -> bool {
        false
    }

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
        let a = limiter.acquire(&never).unwrap();
        let b = limiter.acquire(&never).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for i in 0..2 {
            let (mine, tx) = (Arc::clone(&limiter), tx.clone());
            handles.push(thread::spawn(move || {
                let _permit = mine.acquire(&never);
                tx.send(i).unwrap();
            }));
            assert!(
                eventually(|| limiter.load(2).1 == i + 1),
                "waiter {i} queued in order"
            );
        }
        assert_eq!(
            limiter.acquire(&never).err(),
            Some(Lease::Rejected),
            "queue full"
        );
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
        let first = limiter.acquire(&never).unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| limiter.acquire(&never).is_ok());
            assert!(eventually(|| limiter.load(1).1 == 1));
            drop(first);
            assert!(waiter.join().unwrap());
        });
        assert!(limiter.acquire(&never).is_ok());
    }

    #[test]
    fn an_aborted_waiter_leaves_the_queue() {
        let limiter = ConcurrencyLimiter::new(1, 1);
        let held = limiter.acquire(&never).unwrap();
        let gone = AtomicBool::new(false);
        thread::scope(|s| {
            let waiter = s.spawn(|| limiter.acquire(&|| gone.load(Ordering::SeqCst)).err());
            assert!(eventually(|| limiter.load(1).1 == 1));
            gone.store(true, Ordering::SeqCst);
            assert_eq!(waiter.join().unwrap(), Some(Lease::Aborted));
        });
        assert_eq!(limiter.load(1), (1, 0), "queue emptied, permit still held");
        drop(held);
        assert!(
            limiter.acquire(&never).is_ok(),
            "the permit was not handed to the aborted waiter"
        );
        let window = FixedWindowLimiter::new(1, 1, Duration::from_secs(5), Instant::now());
        assert_eq!(window.acquire(&never), Lease::Granted);
        assert_eq!(window.acquire(&|| true), Lease::Aborted);
        assert_eq!(window.queued(), 0);
    }

    #[test]
    fn fixed_window_one_permit_queue_of_two() {
        let t0 = Instant::now();
        let window = Duration::from_secs(5);
        let limiter = Arc::new(FixedWindowLimiter::new(1, 2, window, t0));
        assert_eq!(
            limiter.acquire(&never),
            Lease::Granted,
            "first call of the window"
        );
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for i in 0..2 {
            let (mine, tx) = (Arc::clone(&limiter), tx.clone());
            handles.push(thread::spawn(move || {
                tx.send((i, mine.acquire(&never))).unwrap()
            }));
            assert!(eventually(|| limiter.queued() == i + 1));
        }
        assert_eq!(limiter.acquire(&never), Lease::Rejected, "beyond the queue");
        limiter.tick(t0 + window - Duration::from_millis(1));
        assert!(rx.try_recv().is_err(), "no refill before the window ends");
        limiter.tick(t0 + window);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok((0, Lease::Granted))
        );
        assert!(rx.try_recv().is_err(), "one permit per window");
        limiter.tick(t0 + window * 2 - Duration::from_millis(1));
        assert!(rx.try_recv().is_err(), "new window started at the refill");
        limiter.tick(t0 + window * 2);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok((1, Lease::Granted))
        );
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
        assert_eq!(limiter.acquire(&never), Lease::Granted);
        assert_eq!(
            limiter.acquire(&never),
            Lease::Rejected,
            "queue limit 0 → immediate"
        );
        limiter.tick(t0 + window + Duration::from_millis(4_900));
        assert_eq!(limiter.acquire(&never), Lease::Rejected, "same window");
        limiter.tick(t0 + window * 2);
        assert_eq!(limiter.acquire(&never), Lease::Granted, "next window");
    }
}
