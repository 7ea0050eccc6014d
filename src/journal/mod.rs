//! A write-ahead journal that lets an instance killed with `kill -9` finish what it
//! accepted: every accepted payment, every attempt (to which processor) and every
//! recorded payment is stored (before the 202 leaves and before the processor is
//! called) in files that outlive the process (the compose file puts them on the shared
//! tmpfs volume). Each entry is one slot of a memory-mapped file (`log`): no system call
//! per entry.
//!
//! On start-up `replay` rebuilds the ledger from `Recorded` entries and returns the
//! payments still open, each pinned to the processor of its last attempt: that is the
//! only one that may hold it (an attempt elsewhere ended in a refusal, which stores
//! nothing), and sending it there again is safe because a duplicate is refused with
//! 422 and then reconciled.
//!
//! A payment accepted for another owner (forwarded, or held while its owner is
//! unreachable) is journaled as accepted too, and closed once its owner's record of it
//! arrives; on replay it is held for its owner again, never paid here (see
//! `peer::Peers::hand_off`). The cluster's members are journaled as they are learned, so
//! that a restarted instance knows who owns what before any peer links.
//!
//! Entry: tag u8, correlationId 16 bytes, then per tag — `A` cents u64; `X` (no longer
//! ours to pay: refused when the queue was full, or recorded by its owner) nothing; `T`
//! processor u8; `R` processor u8, cents u64, requestedAt µs i64; `M` (a member of the
//! cluster: its instance id, little-endian, in the first 4 bytes of the id field)
//! nothing. Little-endian. A file is `log::MAGIC` then one entry per slot;
//! a file without the magic is read as entries back to back (the format before slots).

mod log;

use std::collections::{HashMap, HashSet};
use std::io;

use log::{Log, MAGIC, SLOT};

use crate::metrics::METRICS;
use crate::payment::{CorrelationId, Payment, Processor, Record};

const ACCEPTED: u8 = b'A';
const ATTEMPT: u8 = b'T';
const RECORDED: u8 = b'R';
const CANCELLED: u8 = b'X';
const MEMBER: u8 = b'M';

/// Two slot files: accepts (`PATH.accepted`, written by the event loop and the peer
/// reader) and attempts and records (`PATH`, written by the workers). No lock: a slot
/// is claimed with one atomic add. (A mutex shared by the event loop and 256 workers
/// stalled the loop behind preempted workers.)
pub struct Journal {
    accepts: Log,
    work: Log,
    path: String,
    /// Members journaled so far: written again after a purge clears the files.
    members: std::sync::Mutex<Vec<u32>>,
}

/// What the journal held when the instance started.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    pub recorded: Vec<Record>,
    /// Accepted and not recorded, pinned to the processor of their last attempt.
    pub open: Vec<Payment>,
    /// Instance ids of the cluster's members seen before (self included), sorted.
    pub members: Vec<u32>,
}

fn read_all(path: &str) -> io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other,
    }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and reads what it holds.
    pub fn open(path: &str) -> io::Result<(Journal, Replay)> {
        let accepts_path = format!("{path}.accepted");
        let mut d = Decoder::default();
        d.feed_file(&read_all(&accepts_path)?);
        d.feed_file(&read_all(path)?);
        let replay = d.finish();
        // Rewrite it compacted into `PATH`: only what is still needed.
        let mut compact = MAGIC.to_vec();
        let mut put = |encode: &dyn Fn(&mut Vec<u8>)| {
            let mut e = Vec::with_capacity(SLOT);
            encode(&mut e);
            compact.extend_from_slice(&log::slot(&e));
        };
        for r in &replay.recorded {
            put(&|e| encode_recorded(e, r));
        }
        for &m in &replay.members {
            put(&|e| encode_member(e, m));
        }
        for p in &replay.open {
            put(&|e| encode_accepted(e, p));
            if let Some(proc) = p.pin {
                put(&|e| encode_attempt(e, &p.id, proc));
            }
        }
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, &compact)?;
        std::fs::rename(&tmp, path)?;
        std::fs::write(&accepts_path, MAGIC)?;
        let journal = Journal {
            accepts: Log::open(&accepts_path)?,
            work: Log::open(path)?,
            path: path.to_string(),
            members: std::sync::Mutex::new(replay.members.clone()),
        };
        Ok((journal, replay))
    }

    fn append(&self, log: &Log, bytes: &[u8]) {
        if let Err(e) = log.append(bytes) {
            METRICS.journal_errors.inc();
            eprintln!("rinha: journal {}: {e}", self.path);
        }
        METRICS.journal_bytes.add(SLOT as u64);
    }

    /// A payment was accepted (call before answering 202).
    pub fn accepted(&self, p: &Payment) {
        let mut b = Vec::with_capacity(25);
        encode_accepted(&mut b, p);
        self.append(&self.accepts, &b);
    }

    /// A payment journaled as accepted was refused after all (queue full).
    pub fn cancelled(&self, id: &CorrelationId) {
        let mut b = Vec::with_capacity(17);
        encode_cancelled(&mut b, id);
        self.append(&self.accepts, &b);
    }

    /// A payment accepted for another owner was recorded by it: nothing left to do here.
    /// In the workers' file, read after the accepts: it closes the `A` in either file.
    pub fn handed_over(&self, id: &CorrelationId) {
        let mut b = Vec::with_capacity(17);
        encode_cancelled(&mut b, id);
        self.append(&self.work, &b);
    }

    /// A payment is about to be sent to `proc`.
    pub fn attempt(&self, id: &CorrelationId, proc: Processor) {
        let mut b = Vec::with_capacity(18);
        encode_attempt(&mut b, id, proc);
        self.append(&self.work, &b);
    }

    /// A payment was recorded in the ledger.
    pub fn recorded(&self, r: &Record) {
        let mut b = Vec::with_capacity(34);
        encode_recorded(&mut b, r);
        self.append(&self.work, &b);
    }

    /// A member of the cluster (an instance id) was learned; once per id.
    pub fn member(&self, id: u32) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if !members.contains(&id) {
            members.push(id);
            self.append_member(id);
        }
    }

    fn append_member(&self, id: u32) {
        let mut b = Vec::with_capacity(17);
        encode_member(&mut b, id);
        self.append(&self.work, &b);
    }

    /// Forgets every payment (purge); the members stay.
    pub fn clear(&self) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for log in [&self.accepts, &self.work] {
            if let Err(e) = log.clear() {
                eprintln!("rinha: journal {}: {e}", self.path);
            }
        }
        members.iter().for_each(|&m| self.append_member(m));
    }
}

fn encode_accepted(out: &mut Vec<u8>, p: &Payment) {
    out.push(ACCEPTED);
    out.extend_from_slice(&p.id.0);
    out.extend_from_slice(&p.cents.to_le_bytes());
}

fn encode_cancelled(out: &mut Vec<u8>, id: &CorrelationId) {
    out.push(CANCELLED);
    out.extend_from_slice(&id.0);
}

fn encode_member(out: &mut Vec<u8>, id: u32) {
    out.push(MEMBER);
    let mut field = [0u8; 16];
    field[..4].copy_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&field);
}

fn encode_attempt(out: &mut Vec<u8>, id: &CorrelationId, proc: Processor) {
    out.push(ATTEMPT);
    out.extend_from_slice(&id.0);
    out.push(proc as u8);
}

fn encode_recorded(out: &mut Vec<u8>, r: &Record) {
    out.push(RECORDED);
    out.extend_from_slice(&r.id.0);
    out.push(r.processor as u8);
    out.extend_from_slice(&r.cents.to_le_bytes());
    out.extend_from_slice(&r.requested_at_us.to_le_bytes());
}

fn take<const N: usize>(b: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    let out: [u8; N] = b.get(*at..end)?.try_into().ok()?;
    *at = end;
    Some(out)
}

/// Replays entries from any number of journal files: the accepts file first, then
/// the workers' (entries of one payment in one file are in order; across files only
/// set membership matters). A torn last entry of a file (killed mid-write) is ignored.
#[derive(Default)]
struct Decoder {
    order: Vec<CorrelationId>,
    open: HashMap<CorrelationId, Payment>,
    pins: HashMap<CorrelationId, Processor>,
    recorded: Vec<Record>,
    done: HashSet<CorrelationId>,
    members: std::collections::BTreeSet<u32>,
}

impl Decoder {
    /// One file's bytes, in either format.
    fn feed_file(&mut self, bytes: &[u8]) {
        match bytes.strip_prefix(&MAGIC[..]) {
            Some(slots) => slots
                .chunks_exact(SLOT)
                .filter_map(log::entry)
                .for_each(|e| self.feed(e)),
            None => self.feed(bytes),
        }
    }

    /// Entries back to back; stops at the first one that is torn or unknown.
    fn feed(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while let Some([tag]) = take::<1>(bytes, &mut at) {
            let Some(id) = take::<16>(bytes, &mut at).map(CorrelationId) else {
                return;
            };
            match tag {
                ACCEPTED => {
                    let Some(c) = take::<8>(bytes, &mut at) else {
                        return;
                    };
                    if let std::collections::hash_map::Entry::Vacant(e) = self.open.entry(id) {
                        let cents = u64::from_le_bytes(c);
                        e.insert(Payment {
                            id,
                            cents,
                            accepted_ms: 0,
                            pin: None,
                        });
                        self.order.push(id);
                    }
                }
                MEMBER => {
                    let [a, b, c, d, ..] = id.0;
                    self.members.insert(u32::from_le_bytes([a, b, c, d]));
                }
                CANCELLED => {
                    // Written after its `A`, in the same file: a later `A` accepts anew.
                    self.open.remove(&id);
                }
                ATTEMPT => {
                    let Some([p]) = take::<1>(bytes, &mut at) else {
                        return;
                    };
                    if let Some(proc) = Processor::from_index(p) {
                        self.pins.insert(id, proc);
                    }
                }
                RECORDED => {
                    let (Some([p]), Some(c), Some(t)) = (
                        take::<1>(bytes, &mut at),
                        take::<8>(bytes, &mut at),
                        take::<8>(bytes, &mut at),
                    ) else {
                        return;
                    };
                    let Some(processor) = Processor::from_index(p) else {
                        return;
                    };
                    if self.done.insert(id) {
                        let requested_at_us = i64::from_le_bytes(t);
                        let cents = u64::from_le_bytes(c);
                        self.recorded.push(Record {
                            id,
                            requested_at_us,
                            cents,
                            processor,
                        });
                    }
                }
                _ => return,
            }
        }
    }

    fn finish(mut self) -> Replay {
        let mut open = Vec::new();
        for id in self.order {
            if self.done.contains(&id) {
                continue;
            }
            if let Some(mut p) = self.open.remove(&id) {
                p.pin = self.pins.get(&id).copied();
                open.push(p);
            }
        }
        Replay {
            recorded: self.recorded,
            open,
            members: self.members.into_iter().collect(),
        }
    }
}

/// Decodes one journal file's bytes (either format).
pub fn decode(bytes: &[u8]) -> Replay {
    let mut d = Decoder::default();
    d.feed_file(bytes);
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pay(n: u8) -> Payment {
        Payment {
            id: CorrelationId([n; 16]),
            cents: 1990,
            accepted_ms: 0,
            pin: None,
        }
    }

    fn rec(n: u8, p: Processor) -> Record {
        Record {
            id: CorrelationId([n; 16]),
            requested_at_us: 1_000 * i64::from(n),
            cents: 1990,
            processor: p,
        }
    }

    #[test]
    fn replay_pins_open_payments_to_their_last_attempt() {
        let mut b = Vec::new();
        encode_accepted(&mut b, &pay(1));
        encode_accepted(&mut b, &pay(2));
        encode_accepted(&mut b, &pay(3));
        encode_accepted(&mut b, &pay(4));
        encode_cancelled(&mut b, &pay(4).id);
        encode_attempt(&mut b, &pay(2).id, Processor::Default);
        encode_attempt(&mut b, &pay(2).id, Processor::Fallback);
        encode_attempt(&mut b, &pay(3).id, Processor::Default);
        encode_recorded(&mut b, &rec(3, Processor::Default));
        let r = decode(&b);
        assert_eq!(r.recorded, vec![rec(3, Processor::Default)]);
        let pinned = Payment {
            pin: Some(Processor::Fallback),
            ..pay(2)
        };
        assert_eq!(r.open, vec![pay(1), pinned]);
    }

    #[test]
    fn members_and_handed_over_payments_survive_a_restart_and_a_purge() {
        let dir = std::env::temp_dir().join(format!("rinha-journal-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j").to_string_lossy().into_owned();
        let (j, r) = Journal::open(&path).unwrap();
        assert!(r.members.is_empty());
        j.member(2);
        j.member(1);
        j.member(2);
        for n in 1..=3 {
            j.accepted(&pay(n));
        }
        j.handed_over(&pay(1).id);
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(r.members, vec![1, 2]);
        assert_eq!(r.open, vec![pay(2), pay(3)]);
        // Its `A` is in the compacted workers' file now: the close still finds it.
        j.handed_over(&pay(2).id);
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(r.open, vec![pay(3)]);
        j.clear();
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(
            (r.members, r.open),
            (vec![1, 2], vec![]),
            "a purge keeps members"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_torn_tail_is_ignored() {
        let mut b = Vec::new();
        encode_accepted(&mut b, &pay(1));
        encode_recorded(&mut b, &rec(1, Processor::Fallback));
        encode_accepted(&mut b, &pay(2));
        let whole = decode(&b);
        for n in 0..b.len() {
            let part = decode(&b[..n]);
            assert!(part.recorded.len() <= whole.recorded.len());
            assert!(part.open.len() <= 1, "{n}");
        }
        assert_eq!(whole.open, vec![pay(2)]);
    }

    #[test]
    fn open_compacts_and_appends() {
        let dir = std::env::temp_dir().join(format!("rinha-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.bin").to_string_lossy().into_owned();
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(r, Replay::default());
        j.accepted(&pay(1));
        j.accepted(&pay(2));
        j.attempt(&pay(2).id, Processor::Default);
        j.recorded(&rec(2, Processor::Default));
        drop(j);
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(r.recorded, vec![rec(2, Processor::Default)]);
        assert_eq!(r.open, vec![pay(1)]);
        j.clear();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, Replay::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn temp_journal(tag: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("rinha-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.bin").to_string_lossy().into_owned();
        (dir, path)
    }

    #[test]
    fn a_journal_of_the_format_before_slots_is_replayed_and_rewritten_in_slots() {
        let (dir, path) = temp_journal("legacy");
        let mut accepts = Vec::new();
        encode_accepted(&mut accepts, &pay(1));
        encode_accepted(&mut accepts, &pay(2));
        let mut work = Vec::new();
        encode_attempt(&mut work, &pay(1).id, Processor::Fallback);
        encode_recorded(&mut work, &rec(2, Processor::Default));
        std::fs::write(format!("{path}.accepted"), &accepts).unwrap();
        std::fs::write(&path, &work).unwrap();
        let (j, r) = Journal::open(&path).unwrap();
        let pinned = Payment {
            pin: Some(Processor::Fallback),
            ..pay(1)
        };
        assert_eq!(r.recorded, vec![rec(2, Processor::Default)]);
        assert_eq!(r.open, vec![pinned]);
        drop(j);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..SLOT], &MAGIC[..]);
        assert_eq!(decode(&bytes).open, vec![pinned]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn slots_past_the_first_growth_survive_and_damaged_slots_are_skipped() {
        let (dir, path) = temp_journal("grow");
        let (j, _) = Journal::open(&path).unwrap();
        let n: u32 = 40_000; // about 1.5 MB of slots: the file grows twice
        for i in 0..n {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_le_bytes());
            id[15] = 1;
            j.accepted(&Payment {
                id: CorrelationId(id),
                cents: u64::from(i),
                accepted_ms: 0,
                pin: None,
            });
        }
        drop(j);
        let accepts = format!("{path}.accepted");
        let mut bytes = std::fs::read(&accepts).unwrap();
        assert_eq!(decode(&bytes).open.len(), n as usize);
        // A writer killed half-way through slot 10: one byte of it never landed.
        bytes[10 * SLOT + 5] ^= 0xff;
        let r = decode(&bytes);
        assert_eq!(r.open.len(), n as usize - 1);
        assert!(
            r.open.iter().all(|p| p.cents != 9),
            "slot 10 holds payment 9"
        );
        std::fs::write(&accepts, &bytes).unwrap();
        let (j, r) = Journal::open(&path).unwrap();
        assert_eq!(r.open.len(), n as usize - 1);
        j.clear();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, Replay::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_written_after_a_purge_are_kept() {
        let (dir, path) = temp_journal("purge");
        let (j, _) = Journal::open(&path).unwrap();
        j.accepted(&pay(1));
        j.attempt(&pay(1).id, Processor::Default);
        j.clear();
        j.recorded(&rec(1, Processor::Default));
        j.accepted(&pay(2));
        drop(j);
        let (_, r) = Journal::open(&path).unwrap();
        assert_eq!(r.recorded, vec![rec(1, Processor::Default)]);
        assert_eq!(r.open, vec![pay(2)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_accepts_file_does_not_hide_the_workers_entries() {
        let mut accepts = Vec::new();
        encode_accepted(&mut accepts, &pay(1));
        encode_accepted(&mut accepts, &pay(2));
        encode_cancelled(&mut accepts, &pay(2).id);
        encode_accepted(&mut accepts, &pay(2));
        encode_accepted(&mut accepts, &pay(3));
        accepts.truncate(accepts.len() - 3);
        let mut work = Vec::new();
        encode_attempt(&mut work, &pay(2).id, Processor::Default);
        encode_recorded(&mut work, &rec(1, Processor::Fallback));
        let mut d = Decoder::default();
        d.feed(&accepts);
        d.feed(&work);
        let r = d.finish();
        assert_eq!(r.recorded, vec![rec(1, Processor::Fallback)]);
        let pinned = Payment {
            pin: Some(Processor::Default),
            ..pay(2)
        };
        assert_eq!(
            r.open,
            vec![pinned],
            "re-accepted after a cancel; 3 was torn"
        );
    }
}
