//! A write-ahead journal that lets an instance killed with `kill -9` finish what it
//! accepted: every accepted payment, every attempt (to which processor) and every
//! recorded payment is appended (one `write` each, before the 202 leaves and before
//! the processor is called) to a file that outlives the process (the compose file puts
//! it on the shared tmpfs volume).
//!
//! On start-up `replay` rebuilds the ledger from `Recorded` entries and returns the
//! payments still open, each pinned to the processor of its last attempt: that is the
//! only one that may hold it (an attempt elsewhere ended in a refusal, which stores
//! nothing), and sending it there again is safe because a duplicate is refused with
//! 422 and then reconciled.
//!
//! Entry: tag u8, correlationId 16 bytes, then per tag — `A` cents u64; `X` (refused
//! after all: queue full) nothing; `T` processor u8; `R` processor u8, cents u64,
//! requestedAt µs i64. Little-endian.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::sync::Mutex;

use crate::payment::{CorrelationId, Payment, Processor, Record};

const ACCEPTED: u8 = b'A';
const ATTEMPT: u8 = b'T';
const RECORDED: u8 = b'R';
const CANCELLED: u8 = b'X';

pub struct Journal {
    file: Mutex<File>,
    path: String,
}

/// What the journal held when the instance started.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    pub recorded: Vec<Record>,
    /// Accepted and not recorded, pinned to the processor of their last attempt.
    pub open: Vec<Payment>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and reads what it holds.
    pub fn open(path: &str) -> io::Result<(Journal, Replay)> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let replay = decode(&bytes);
        // Rewrite it compacted: only what is still needed, then append from there.
        let mut compact = Vec::new();
        for r in &replay.recorded {
            encode_recorded(&mut compact, r);
        }
        for p in &replay.open {
            encode_accepted(&mut compact, p);
            if let Some(proc) = p.pin {
                encode_attempt(&mut compact, &p.id, proc);
            }
        }
        let tmp = format!("{path}.tmp");
        std::fs::write(&tmp, &compact)?;
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                file: Mutex::new(file),
                path: path.to_string(),
            },
            replay,
        ))
    }

    fn append(&self, bytes: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(bytes) {
            eprintln!("rinha: journal {}: {e}", self.path);
        }
    }

    /// A payment was accepted (call before answering 202).
    pub fn accepted(&self, p: &Payment) {
        let mut b = Vec::with_capacity(25);
        encode_accepted(&mut b, p);
        self.append(&b);
    }

    /// A payment journaled as accepted was refused after all (queue full).
    pub fn cancelled(&self, id: &CorrelationId) {
        let mut b = Vec::with_capacity(17);
        b.push(CANCELLED);
        b.extend_from_slice(&id.0);
        self.append(&b);
    }

    /// A payment is about to be sent to `proc`.
    pub fn attempt(&self, id: &CorrelationId, proc: Processor) {
        let mut b = Vec::with_capacity(18);
        encode_attempt(&mut b, id, proc);
        self.append(&b);
    }

    /// A payment was recorded in the ledger.
    pub fn recorded(&self, r: &Record) {
        let mut b = Vec::with_capacity(34);
        encode_recorded(&mut b, r);
        self.append(&b);
    }

    /// Forgets everything (purge).
    pub fn clear(&self) {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.set_len(0) {
            eprintln!("rinha: journal {}: {e}", self.path);
        }
    }
}

fn encode_accepted(out: &mut Vec<u8>, p: &Payment) {
    out.push(ACCEPTED);
    out.extend_from_slice(&p.id.0);
    out.extend_from_slice(&p.cents.to_le_bytes());
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

/// Decodes every complete entry; a torn last entry (killed mid-write) is ignored.
pub fn decode(bytes: &[u8]) -> Replay {
    let mut order: Vec<CorrelationId> = Vec::new();
    let mut open: HashMap<CorrelationId, Payment> = HashMap::new();
    let mut recorded: Vec<Record> = Vec::new();
    let mut done: HashSet<CorrelationId> = HashSet::new();
    let mut at = 0;
    while let Some([tag]) = take::<1>(bytes, &mut at) {
        let Some(id) = take::<16>(bytes, &mut at).map(CorrelationId) else {
            break;
        };
        match tag {
            ACCEPTED => {
                let Some(c) = take::<8>(bytes, &mut at) else {
                    break;
                };
                if !done.contains(&id) && !open.contains_key(&id) {
                    let p = Payment {
                        id,
                        cents: u64::from_le_bytes(c),
                        accepted_ms: 0,
                        pin: None,
                    };
                    open.insert(id, p);
                    order.push(id);
                }
            }
            ATTEMPT => {
                let Some([p]) = take::<1>(bytes, &mut at) else {
                    break;
                };
                if let (Some(e), Some(proc)) = (open.get_mut(&id), Processor::from_index(p)) {
                    e.pin = Some(proc);
                }
            }
            RECORDED => {
                let (Some([p]), Some(c), Some(t)) = (
                    take::<1>(bytes, &mut at),
                    take::<8>(bytes, &mut at),
                    take::<8>(bytes, &mut at),
                ) else {
                    break;
                };
                let Some(processor) = Processor::from_index(p) else {
                    break;
                };
                open.remove(&id);
                if done.insert(id) {
                    recorded.push(Record {
                        id,
                        requested_at_us: i64::from_le_bytes(t),
                        cents: u64::from_le_bytes(c),
                        processor,
                    });
                }
            }
            CANCELLED => {
                open.remove(&id);
            }
            _ => break,
        }
    }
    let open = order
        .into_iter()
        .filter_map(|id| open.remove(&id))
        .collect();
    Replay { recorded, open }
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
        b.push(CANCELLED);
        b.extend_from_slice(&pay(4).id.0);
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
}
