//! The waiting room: where a worker whose payment cannot be sent now sleeps, and the
//! only things that wake it — a processor that recovers (or becomes probeable), the
//! payment's own deadline, or, for the one worker that holds a processor's probe lead,
//! that processor's next probe. Wake-ups therefore follow events, never workers ×
//! timers: 256 payments parked through an outage cost a few wake-ups per probe.
//!
//! Leads: per processor, at most one worker holds the right to wake for its probes.
//! It keeps the lead while its payment is out as that probe, and hands it on when its
//! payment settles or goes elsewhere: the lead is then *owed* to the next eligible
//! waiter, woken by one `notify_one`, which takes it as it leaves the room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::payment::Processor;

/// A `Decision::Wait`: what may end this payment's wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Processors this payment may be sent to (the wait's class).
    pub may_use: [bool; 2],
    /// Per processor: time to its next probe, if this payment may be that probe.
    pub probe_in: [Option<Duration>; 2],
    /// The payment's own deadline (its defer deadline, or fallback's settling).
    pub until: Option<Duration>,
    /// The room's generation when the decision was made (see `WaitingRoom::park`).
    pub gen: u64,
}

/// The probe leads a worker holds, by processor index.
#[derive(Debug, Default)]
pub struct Lead([bool; 2]);

impl Lead {
    pub fn holds(&self, p: Processor) -> bool {
        self.0[p.index()]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeadState {
    Free,
    Held,
    /// Released while others wait: the next eligible waiter to leave takes it.
    Owed,
}

/// Wait classes: payments that may use only default, only fallback, or either.
const CLASSES: usize = 3;

fn class(may_use: [bool; 2]) -> usize {
    match may_use {
        [true, false] => 0,
        [false, true] => 1,
        _ => 2,
    }
}

/// The classes whose waiters may take `p`'s lead, the narrowest first.
fn eligible(p: Processor) -> [usize; 2] {
    [p.index(), 2]
}

struct Room {
    waiting: [usize; CLASSES],
    lead: [LeadState; 2],
}

pub struct WaitingRoom {
    room: Mutex<Room>,
    /// Bumped under `room` whenever a waiting payment may be sendable now.
    gen: AtomicU64,
    cv: [Condvar; CLASSES],
    wakeups: AtomicU64,
}

impl Default for WaitingRoom {
    fn default() -> Self {
        WaitingRoom {
            room: Mutex::new(Room {
                waiting: [0; CLASSES],
                lead: [LeadState::Free; 2],
            }),
            gen: AtomicU64::new(0),
            cv: Default::default(),
            wakeups: AtomicU64::new(0),
        }
    }
}

impl WaitingRoom {
    fn lock(&self) -> MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation to put in a `Wait` (read before the decision's inputs).
    pub fn gen(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// Returns from every wait: something a waiting payment depends on changed.
    pub fn changed(&self) {
        let _room = self.lock();
        self.gen.fetch_add(1, Ordering::AcqRel);
        for cv in &self.cv {
            cv.notify_all();
        }
    }

    /// How many times a parked worker has woken (for tests and metrics).
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Workers parked right now.
    pub fn parked(&self) -> usize {
        self.lock().waiting.iter().sum()
    }

    /// Sleeps once, as `w` says; a return means "decide again", not "sendable".
    pub fn park(&self, w: &Wait, lead: &mut Lead) {
        let mut room = self.lock();
        // A change since the decision was made: it may be stale, decide again.
        if self.gen.load(Ordering::Acquire) != w.gen {
            return;
        }
        let mut timeout = w.until;
        for p in Processor::ALL {
            let i = p.index();
            match w.probe_in[i] {
                Some(due) if lead.0[i] || room.lead[i] != LeadState::Held => {
                    room.lead[i] = LeadState::Held;
                    lead.0[i] = true;
                    timeout = Some(timeout.map_or(due, |t| t.min(due)));
                }
                // Nobody can probe it now: the lead waits for a change.
                None if lead.0[i] => {
                    room.lead[i] = LeadState::Free;
                    lead.0[i] = false;
                }
                _ => {}
            }
        }
        let c = class(w.may_use);
        room.waiting[c] += 1;
        room = match timeout {
            Some(t) => match self.cv[c].wait_timeout(room, t) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            },
            None => self.cv[c].wait(room).unwrap_or_else(|e| e.into_inner()),
        };
        room.waiting[c] -= 1;
        self.wakeups.fetch_add(1, Ordering::Relaxed);
        for p in Processor::ALL {
            let i = p.index();
            if w.may_use[i] && room.lead[i] == LeadState::Owed {
                room.lead[i] = LeadState::Held;
                lead.0[i] = true;
            }
        }
    }

    /// The worker's payment goes to `to`: leads of other processors are handed on.
    pub fn sending(&self, to: Processor, lead: &mut Lead) {
        if lead
            .0
            .iter()
            .enumerate()
            .any(|(i, &h)| h && i != to.index())
        {
            let mut room = self.lock();
            for p in Processor::ALL.into_iter().filter(|&p| p != to) {
                self.hand_on(&mut room, p, lead);
            }
        }
    }

    /// The worker's payment is settled: every lead it holds is handed on.
    pub fn release(&self, lead: &mut Lead) {
        if lead.0.iter().any(|&h| h) {
            let mut room = self.lock();
            for p in Processor::ALL {
                self.hand_on(&mut room, p, lead);
            }
        }
    }

    fn hand_on(&self, room: &mut Room, p: Processor, lead: &mut Lead) {
        let i = p.index();
        if !std::mem::take(&mut lead.0[i]) {
            return;
        }
        match eligible(p).into_iter().find(|&c| room.waiting[c] > 0) {
            Some(c) => {
                room.lead[i] = LeadState::Owed;
                self.cv[c].notify_one();
            }
            None => room.lead[i] = LeadState::Free,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use Processor::{Default as D, Fallback as F};

    fn wait(room: &WaitingRoom, may_use: [bool; 2], probe_in: [Option<u64>; 2]) -> Wait {
        Wait {
            may_use,
            probe_in: probe_in.map(|o| o.map(Duration::from_millis)),
            until: None,
            gen: room.gen(),
        }
    }

    #[test]
    fn a_stale_decision_does_not_sleep() {
        let room = WaitingRoom::default();
        let w = wait(&room, [true, false], [None, None]);
        room.changed();
        room.park(&w, &mut Lead::default());
        assert_eq!(room.wakeups(), 0, "returned before waiting");
    }

    #[test]
    fn the_lead_wakes_for_its_probe_and_keeps_it_while_probing() {
        let room = WaitingRoom::default();
        let mut lead = Lead::default();
        room.park(&wait(&room, [true, false], [Some(1), None]), &mut lead);
        assert!(lead.holds(D));
        room.sending(D, &mut lead);
        assert!(lead.holds(D), "its payment is the probe");
        room.sending(F, &mut lead);
        assert!(!lead.holds(D), "handed on when it goes elsewhere");
        assert_eq!(room.lock().lead[0], LeadState::Free, "nobody waiting");
    }

    #[test]
    fn a_released_lead_goes_to_a_waiter_that_may_use_it() {
        let room = Arc::new(WaitingRoom::default());
        let mut lead = Lead::default();
        room.park(&wait(&room, [true, true], [Some(1), Some(1)]), &mut lead);
        assert!(lead.holds(D) && lead.holds(F));
        let r = room.clone();
        let waiter = std::thread::spawn(move || {
            let mut mine = Lead::default();
            // No timer of its own: only the hand-on can end this wait.
            r.park(&wait(&r, [false, true], [None, None]), &mut mine);
            mine
        });
        while room.parked() == 0 {
            std::thread::yield_now();
        }
        room.release(&mut lead);
        let theirs = waiter.join().unwrap();
        assert!(theirs.holds(F) && !theirs.holds(D));
        assert_eq!(room.lock().lead, [LeadState::Free, LeadState::Held]);
    }

    #[test]
    fn an_unprobeable_processor_lead_is_dropped() {
        let room = WaitingRoom::default();
        let mut lead = Lead::default();
        room.park(&wait(&room, [true, false], [Some(1), None]), &mut lead);
        let mut w = wait(&room, [true, false], [None, None]);
        w.until = Some(Duration::from_millis(1));
        room.park(&w, &mut lead);
        assert!(!lead.holds(D));
        assert_eq!(room.lock().lead[0], LeadState::Free);
    }
}
