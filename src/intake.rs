//! The door between the HTTP server and the workers: a bounded crossbeam channel plus
//! the set of correlationIds accepted since the last purge.
//!
//! The intake is the one gate every payment passes, whatever way it enters: a POST, a
//! forward from a peer, a forward that came back, a journal replay, or a payment held
//! here for another owner. An id that is queued, parked, in flight, held, recorded (the
//! ledger, own or replicated), or open in the journal (replayed before anything else
//! can arrive) is never admitted twice, whatever the order of arrival: the set makes a
//! repeated payment idempotent (accepted once, paid once); the bound makes back-pressure
//! explicit: a full queue is a 503, never a silent drop. With a `Journal`, an accepted
//! payment is on disk before the 202 leaves.
//!
//! Workers take payments through an `Outlet`, which wakes the worker that went idle
//! *last*: its stack, its keep-alive sockets and their kernel state are still warm, so
//! a steady flow keeps a few workers busy. (Blocked in `Receiver::recv`, the worker
//! woken is the one that waited longest: payments rotated through all 256 workers'
//! cold stacks and connections.)

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::journal::Journal;
use crate::ledger::Ledger;
use crate::pace::Pacer;
use crate::payment::{CorrelationId, Payment};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// Seen before: nothing queued, the first acceptance stands.
    Duplicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

pub struct Intake {
    tx: Sender<Payment>,
    rx: Receiver<Payment>,
    idle: Arc<Idle>,
    pacer: Arc<Pacer>,
    seen: Mutex<HashSet<CorrelationId>>,
    ledger: Arc<Ledger>,
    journal: Option<Arc<Journal>>,
    /// Payments queued whose worker is not woken yet (`submit_unwoken`).
    unwoken: AtomicUsize,
}

/// One worker's wait: its thread, and whether a payment was handed to it.
struct Waiter {
    thread: Thread,
    woken: AtomicBool,
}

/// Workers with nothing to do, the most recently idle last.
#[derive(Default)]
struct Idle {
    stack: Mutex<Vec<Arc<Waiter>>>,
    /// The intake is gone: waiters leave once the channel is empty.
    closed: AtomicBool,
}

impl Idle {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Waiter>>> {
        self.stack.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the worker that went idle last; false if none is idle.
    fn wake_one(&self) -> bool {
        // The guard lives to the end of the statement: `hand` runs under the lock.
        let w = self.lock().pop().inspect(Self::hand);
        if let Some(w) = &w {
            w.thread.unpark();
        }
        w.is_some()
    }

    fn wake_all(&self) {
        let all = {
            let mut stack = self.lock();
            stack.iter().for_each(Self::hand);
            std::mem::take(&mut *stack)
        };
        for w in all {
            w.thread.unpark();
        }
    }

    /// Marks a waiter taken off the stack, under the lock: a waiter leaves its wait
    /// only once off the stack, so it is never on it twice.
    fn hand(w: &Arc<Waiter>) {
        w.woken.store(true, Ordering::Release);
    }

    /// Takes `w` off the stack unless a sender already popped it (which then leaves
    /// one spare unpark: the next wait loops once more).
    fn leave(&self, w: &Arc<Waiter>) {
        let mut stack = self.lock();
        if let Some(i) = stack.iter().rposition(|x| Arc::ptr_eq(x, w)) {
            stack.remove(i);
        }
    }
}

/// A worker's end of the intake (one per worker thread).
pub struct Outlet {
    rx: Receiver<Payment>,
    idle: Arc<Idle>,
    /// The thread that waits here: the first to call `next_payment`.
    me: Option<Arc<Waiter>>,
}

impl Outlet {
    /// The next payment, waiting as long as it takes; None once the intake is gone
    /// and every queued payment was taken.
    pub fn next_payment(&mut self) -> Option<Payment> {
        let me: &Arc<Waiter> = self.me.get_or_insert_with(|| {
            Arc::new(Waiter {
                thread: std::thread::current(),
                woken: AtomicBool::new(false),
            })
        });
        loop {
            match self.rx.try_recv() {
                Ok(p) => return Some(p),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) if self.idle.closed.load(Ordering::Acquire) => {
                    return None
                }
                Err(TryRecvError::Empty) => {}
            }
            me.woken.store(false, Ordering::Relaxed);
            self.idle.lock().push(me.clone());
            // A payment sent before the push found no one to wake: look once more.
            if let Ok(p) = self.rx.try_recv() {
                self.idle.leave(me);
                return Some(p);
            }
            if self.idle.closed.load(Ordering::Acquire) {
                self.idle.leave(me);
                continue;
            }
            while !me.woken.load(Ordering::Acquire) {
                std::thread::park();
            }
        }
    }
}

impl Intake {
    /// A channel of `capacity` payments; each new payment counts as an arrival for
    /// `pacer`. Workers take payments through `outlet`.
    pub fn new(
        capacity: usize,
        journal: Option<Arc<Journal>>,
        pacer: Arc<Pacer>,
        ledger: Arc<Ledger>,
    ) -> Intake {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let seen = Mutex::new(HashSet::new());
        let idle = Arc::new(Idle::default());
        Intake {
            tx,
            rx,
            idle,
            pacer,
            seen,
            ledger,
            journal,
            unwoken: AtomicUsize::new(0),
        }
    }

    /// A worker's end of the intake.
    pub fn outlet(&self) -> Outlet {
        Outlet {
            rx: self.rx.clone(),
            idle: self.idle.clone(),
            me: None,
        }
    }

    /// Queues a new payment and wakes a worker for it.
    pub fn submit(&self, p: Payment) -> Result<Accepted, QueueFull> {
        let r = self.submit_unwoken(p);
        self.wake_deferred();
        r
    }

    /// The gate: the set of admitted ids, or `None` if `id` is known already (admitted
    /// since the last purge, or recorded here or by a peer).
    fn gate(&self, id: &CorrelationId) -> Option<MutexGuard<'_, HashSet<CorrelationId>>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (!seen.contains(id) && !self.ledger.contains(id)).then_some(seen)
    }

    /// Queues a new payment; its worker is woken by the next `wake_deferred`. The event
    /// loop calls that once its answers are written, so that the hand-off (a futex
    /// wake, often an interrupt to the other CPU) is not on the 202's path.
    pub fn submit_unwoken(&self, p: Payment) -> Result<Accepted, QueueFull> {
        let Some(mut seen) = self.gate(&p.id) else {
            return Ok(Accepted::Duplicate);
        };
        // Journaled before a worker can see it, so that its attempts follow it on disk.
        if let Some(j) = &self.journal {
            j.accepted(&p);
        }
        match self.tx.try_send(p) {
            Ok(()) => {
                seen.insert(p.id);
                drop(seen);
                self.unwoken.fetch_add(1, Ordering::Relaxed);
                self.pacer.arrived();
                Ok(Accepted::New)
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if let Some(j) = &self.journal {
                    j.cancelled(&p.id);
                }
                Err(QueueFull)
            }
        }
    }

    /// Wakes one idle worker per payment queued by `submit_unwoken` since the last call.
    pub fn wake_deferred(&self) {
        for _ in 0..self.unwoken.swap(0, Ordering::Relaxed) {
            if !self.idle.wake_one() {
                break;
            }
        }
    }

    /// Admits a payment that another instance owns and pays: `hand_off` takes it
    /// (forwarded, or held until its owner links). Journaled like a local one, so that
    /// a restart holds it again. No queue here: never refused.
    pub fn admit_for_owner(&self, p: Payment, hand_off: impl FnOnce(Payment)) -> Accepted {
        self.admit(p, true, hand_off)
    }

    /// Queues a payment replayed from the journal (already journaled; waits for room).
    /// Call before anything else can be admitted: a copy that arrives later is then
    /// refused by the gate, and the journal's pin (the processor that may hold it)
    /// stands.
    pub fn resume(&self, p: Payment) -> Accepted {
        self.admit(p, false, |p| self.queue_admitted(p))
    }

    /// Replays a journaled payment held for another owner (already journaled).
    pub fn resume_for_owner(&self, p: Payment, hand_off: impl FnOnce(Payment)) -> Accepted {
        self.admit(p, false, hand_off)
    }

    /// Lets `p` through the gate (journaling it first if `journal`), then hands it to
    /// `then` outside the lock.
    fn admit(&self, p: Payment, journal: bool, then: impl FnOnce(Payment)) -> Accepted {
        let Some(mut seen) = self.gate(&p.id) else {
            return Accepted::Duplicate;
        };
        if let (true, Some(j)) = (journal, &self.journal) {
            j.accepted(&p);
        }
        seen.insert(p.id);
        drop(seen);
        then(p);
        Accepted::New
    }

    /// Queues a payment that passed the gate already (held for an owner that turned out
    /// to be this instance); waits for room. Not if it was recorded meanwhile.
    pub fn queue_admitted(&self, p: Payment) {
        if self.ledger.contains(&p.id) {
            return;
        }
        if self.tx.send(p).is_err() {
            eprintln!("rinha: no worker left to pay {:?}", p.id);
        }
        self.pacer.arrived();
        self.idle.wake_one();
    }

    /// Payments admitted here for another owner were recorded: the journal may forget
    /// them.
    pub fn handed_over(&self, ids: &[CorrelationId]) {
        if let Some(j) = &self.journal {
            ids.iter().for_each(|id| j.handed_over(id));
        }
    }

    /// Payments waiting for a worker.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Forgets accepted ids (payments already queued are still paid).
    pub fn purge(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(j) = &self.journal {
            j.clear();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.idle.closed.store(true, Ordering::Release);
        self.idle.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(n: u8) -> Payment {
        Payment {
            id: CorrelationId([n; 16]),
            cents: 100,
            accepted_ms: 0,
            pin: None,
        }
    }

    #[test]
    fn bounded_and_idempotent() {
        let intake = Intake::new(2, None, Arc::new(Pacer::new(0, 1)), Arc::new(Ledger::new()));
        let mut out = intake.outlet();
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::New));
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::Duplicate));
        assert_eq!(intake.submit(pay(2)), Ok(Accepted::New));
        assert_eq!(intake.submit(pay(3)), Err(QueueFull));
        assert_eq!(intake.queued(), 2);
        assert_eq!(out.next_payment(), Some(pay(1)));
        assert_eq!(
            intake.submit(pay(3)),
            Ok(Accepted::New),
            "a refused payment can come back"
        );
        intake.purge();
        assert_eq!(intake.rx.try_iter().count(), 2);
        assert_eq!(intake.submit(pay(1)), Ok(Accepted::New));
    }

    /// Every way a payment enters an instance (`Forward`: what a peer's forward, or
    /// one sent again, does; `Recorded`: a record, own or a peer's, reaching the ledger).
    #[derive(Clone, Copy, Debug)]
    enum Entry {
        Post,
        Forward,
        Replay,
        ReplayPinned,
        ForOwner,
        ReplayForOwner,
        Recorded,
    }

    const ENTRIES: [Entry; 7] = [
        Entry::Post,
        Entry::Forward,
        Entry::Replay,
        Entry::ReplayPinned,
        Entry::ForOwner,
        Entry::ReplayForOwner,
        Entry::Recorded,
    ];

    /// Lets `p` in through `e`; returns how many copies it handed to another owner.
    fn enter(intake: &Intake, ledger: &Ledger, e: Entry, p: Payment) -> usize {
        let mut handed = 0;
        match e {
            Entry::Post => drop(intake.submit_unwoken(p)),
            Entry::Forward => drop(intake.submit(p)),
            Entry::Replay => drop(intake.resume(p)),
            Entry::ReplayPinned => drop(intake.resume(Payment {
                pin: Some(crate::payment::Processor::Default),
                ..p
            })),
            Entry::ForOwner => drop(intake.admit_for_owner(p, |_| handed += 1)),
            Entry::ReplayForOwner => drop(intake.resume_for_owner(p, |_| handed += 1)),
            Entry::Recorded => drop(ledger.insert(crate::payment::Record {
                id: p.id,
                requested_at_us: 0,
                cents: p.cents,
                processor: crate::payment::Processor::Fallback,
            })),
        }
        handed
    }

    /// Each pair of entries, in both orders (and each twice): one copy goes on, to the
    /// queue or to its owner, and none if the payment was recorded first.
    #[test]
    fn every_pair_of_entries_in_either_order_lets_one_copy_through() {
        for a in ENTRIES {
            for b in ENTRIES {
                let ledger = Arc::new(Ledger::new());
                let intake = Intake::new(8, None, Arc::new(Pacer::new(0, 1)), ledger.clone());
                let p = pay(9);
                let handed = enter(&intake, &ledger, a, p) + enter(&intake, &ledger, b, p);
                let copies = intake.queued() + handed;
                let expected = usize::from(!matches!(a, Entry::Recorded));
                assert_eq!(copies, expected, "{a:?} then {b:?}");
            }
        }
    }

    fn idle_workers(intake: &Intake) -> usize {
        intake.idle.lock().len()
    }

    fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Three workers that go idle one after the other (0 first); each reports
    /// (worker, first id byte) of every payment it takes.
    fn three_idle_workers(
        intake: &Intake,
    ) -> (
        Vec<std::thread::JoinHandle<()>>,
        std::sync::mpsc::Receiver<(usize, u8)>,
    ) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for w in 0..3 {
            let mut out = intake.outlet();
            let done = done_tx.clone();
            threads.push(std::thread::spawn(move || {
                while let Some(p) = out.next_payment() {
                    done.send((w, p.id.0[0])).unwrap();
                }
            }));
            until("the worker waits", || idle_workers(intake) == w + 1);
        }
        (threads, done_rx)
    }

    /// Three workers go idle one after the other; ten payments, each sent once the
    /// last was taken and its worker idle again, are all taken by the last one.
    #[test]
    fn the_worker_idle_last_is_woken_first_and_all_leave_when_the_intake_goes() {
        let intake = Intake::new(
            16,
            None,
            Arc::new(Pacer::new(0, 1)),
            Arc::new(Ledger::new()),
        );
        let (threads, done_rx) = three_idle_workers(&intake);
        for n in 1..=10 {
            assert_eq!(intake.submit(pay(n)), Ok(Accepted::New));
            assert_eq!(done_rx.recv().unwrap(), (2, n));
            until("the worker waits again", || idle_workers(&intake) == 3);
        }
        intake.submit(pay(11)).unwrap();
        intake.submit(pay(12)).unwrap();
        drop(intake);
        for t in threads {
            t.join().unwrap();
        }
        let mut rest: Vec<u8> = done_rx.try_iter().map(|(_, n)| n).collect();
        rest.sort();
        assert_eq!(rest, vec![11, 12], "queued payments are still taken");
    }

    /// The event loop's hand-off: payments queued unwoken wait in the queue (the idle
    /// workers stay on the stack) until `wake_deferred`, which wakes one per payment.
    #[test]
    fn unwoken_payments_wake_their_workers_at_wake_deferred() {
        let intake = Intake::new(
            16,
            None,
            Arc::new(Pacer::new(0, 1)),
            Arc::new(Ledger::new()),
        );
        let (threads, done_rx) = three_idle_workers(&intake);
        assert_eq!(intake.submit_unwoken(pay(1)), Ok(Accepted::New));
        assert_eq!(intake.submit_unwoken(pay(2)), Ok(Accepted::New));
        assert_eq!((idle_workers(&intake), intake.queued()), (3, 2));
        intake.wake_deferred();
        let got: Vec<_> = (0..2).map(|_| done_rx.recv().unwrap()).collect();
        let mut ids: Vec<u8> = got.iter().map(|g| g.1).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
        assert!(got.iter().all(|g| g.0 != 0), "the two idle last were woken");
        until("both wait again", || idle_workers(&intake) == 3);
        intake.wake_deferred();
        assert_eq!(idle_workers(&intake), 3, "nothing left to wake for");
        drop(intake);
        for t in threads {
            t.join().unwrap();
        }
    }

    /// Two senders and eight workers hand 40,000 payments over as fast as they can: a
    /// lost wake-up would leave payments in the queue with every worker asleep.
    #[test]
    fn no_payment_is_left_behind_under_contention() {
        const PER_SENDER: u32 = 20_000;
        let intake = Arc::new(Intake::new(
            64,
            None,
            Arc::new(Pacer::new(0, 1)),
            Arc::new(Ledger::new()),
        ));
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let mut out = intake.outlet();
                let taken = taken.clone();
                std::thread::spawn(move || {
                    while out.next_payment().is_some() {
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let senders: Vec<_> = (0..2u8)
            .map(|s| {
                let intake = intake.clone();
                std::thread::spawn(move || {
                    for i in 0..PER_SENDER {
                        let mut id = [s; 16];
                        id[..4].copy_from_slice(&i.to_le_bytes());
                        let p = Payment {
                            id: CorrelationId(id),
                            ..pay(0)
                        };
                        let deadline =
                            std::time::Instant::now() + std::time::Duration::from_secs(20);
                        while intake.submit(p).is_err() {
                            assert!(
                                std::time::Instant::now() < deadline,
                                "the queue never drains"
                            );
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        let all = 2 * PER_SENDER as usize;
        until("every payment is taken", || {
            taken.load(Ordering::Relaxed) == all
        });
        drop(intake);
        for w in workers {
            w.join().unwrap();
        }
    }
}
