//! A summary barrier: done once every peer linked at its start has answered (and the
//! records it counted have arrived here), or the peer's link went down, or the
//! deadline passed. Polled by the HTTP event loop; never blocks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Instant;

use super::Shared;

#[derive(Clone, Copy, Debug)]
pub(crate) enum EntryState {
    Waiting,
    /// The peer answered: it had `own_len` own records of log `epoch` and sent them.
    Acked {
        epoch: u64,
        own_len: u64,
    },
    /// The link went down before the answer.
    Gone,
}

pub(crate) struct Entry {
    pub peer: u32,
    pub conn: u64,
    pub state: EntryState,
}

pub struct BarrierWait {
    deadline: Instant,
    shared: Weak<Shared>,
    pub(crate) entries: Mutex<Vec<Entry>>,
    done: AtomicBool,
}

impl BarrierWait {
    pub(crate) fn new(deadline: Instant, shared: Weak<Shared>, entries: Vec<Entry>) -> Self {
        let done = AtomicBool::new(entries.is_empty());
        BarrierWait {
            deadline,
            shared,
            entries: Mutex::new(entries),
            done,
        }
    }

    /// True once the barrier completed or its deadline passed.
    pub fn is_done(&self) -> bool {
        if self.done.load(Ordering::Acquire) {
            return true;
        }
        let Some(shared) = self.shared.upgrade() else {
            self.done.store(true, Ordering::Release);
            return true;
        };
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let pending: Vec<u32> = entries
            .iter()
            .filter(|e| !satisfied(&shared, e))
            .map(|e| e.peer)
            .collect();
        drop(entries);
        if pending.is_empty() {
            self.done.store(true, Ordering::Release);
            return true;
        }
        if Instant::now() >= self.deadline {
            if !self.done.swap(true, Ordering::AcqRel) {
                eprintln!("peer: summary barrier deadline passed without peers {pending:?}");
            }
            return true;
        }
        false
    }
}

fn satisfied(shared: &Shared, e: &Entry) -> bool {
    match e.state {
        EntryState::Waiting => false,
        EntryState::Gone => true,
        EntryState::Acked { epoch, own_len } => shared.received(e.peer, epoch, own_len),
    }
}
