//! The reader side of a link: frames in, applied to this instance.

use std::io::{self, Read};

use super::super::codec::{self, Frame, FrameError, LogPos};
use super::super::net::{Input, Stream};
use super::super::{lock, payment_of, RecvState, Shared};
use super::handshake::Hello;
use super::{Conn, SILENCE};
use crate::metrics::METRICS;
use crate::payment::Record;

/// Buffers one connection's input; `buf[start..end]` holds unconsumed bytes that begin
/// at a frame boundary. Never grows: a frame is at most `HEADER + MAX_FRAME` bytes.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    Frame(FrameError),
    Eof,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read: {e}"),
            ReadError::Frame(e) => write!(f, "bad frame: {e}"),
            ReadError::Eof => f.write_str("closed by peer"),
        }
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; codec::HEADER + codec::MAX_FRAME],
            start: 0,
            end: 0,
        }
    }

    pub fn next(&mut self, s: &mut impl Read) -> Result<Frame, ReadError> {
        loop {
            let pending = self.buf.get(self.start..self.end).unwrap_or_default();
            match codec::decode(pending) {
                Ok(Some((f, used))) => {
                    self.start += used;
                    return Ok(f);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Frame(e)),
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let room = self.buf.get_mut(self.end..).unwrap_or_default();
            match s.read(room) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

impl Shared {
    /// Updates what we know of the peer from its `Hello`; returns the `Want` to send
    /// and whether we still owe it a purge.
    pub(super) fn on_hello(&self, h: &Hello) -> (LogPos, bool) {
        let mut recv = lock(&self.recv);
        let st = recv.entry(h.instance_id).or_default();
        if st.incarnation != h.incarnation {
            // A restarted peer: its old log died with it, and it needs no old purge.
            *st = RecvState {
                incarnation: h.incarnation,
                log_epoch: h.epoch,
                ..RecvState::default()
            };
        }
        let pos = LogPos {
            incarnation: st.incarnation,
            epoch: st.log_epoch,
            have: st.have,
        };
        (pos, st.blocked)
    }

    fn apply_records(&self, peer: u32, epoch: u64, start: u64, records: &[Record]) {
        let mut recv = lock(&self.recv);
        let st = recv.entry(peer).or_default();
        if st.blocked || epoch < st.min_epoch {
            return;
        }
        if epoch != st.log_epoch {
            st.log_epoch = epoch;
            st.have = 0;
        }
        METRICS.peer_records_received.add(records.len() as u64);
        // Inserted under the `recv` lock so that `have` never runs ahead of the ledger.
        for r in records {
            self.ledger.insert(*r);
        }
        if start <= st.have {
            st.have = st.have.max(start.saturating_add(records.len() as u64));
        }
        drop(recv);
        self.handed_over(records);
        self.barrier_progress();
    }

    /// Applies a peer's purge once per (incarnation, epoch); returns our new epoch.
    fn apply_purge(&self, peer: u32, epoch: u64) -> u64 {
        let fresh = {
            let mut recv = lock(&self.recv);
            let st = recv.entry(peer).or_default();
            st.min_epoch = st.min_epoch.max(epoch);
            let key = Some((st.incarnation, epoch));
            let fresh = st.purged_by != key;
            if fresh {
                st.purged_by = key;
                self.ledger.purge();
                lock(&self.forwarded).clear();
                recv.values_mut().for_each(|st| st.have = 0);
            }
            fresh
        };
        if fresh {
            eprintln!("peer: purged by instance {peer}");
            self.events.on_purge();
        }
        self.ledger.epoch()
    }

    fn apply_purge_ack(&self, peer: u32, epoch: u64) -> LogPos {
        let mut recv = lock(&self.recv);
        let st = recv.entry(peer).or_default();
        st.blocked = false;
        st.min_epoch = st.min_epoch.max(epoch);
        if st.log_epoch != epoch {
            st.log_epoch = epoch;
            st.have = 0;
        }
        LogPos {
            incarnation: st.incarnation,
            epoch: st.log_epoch,
            have: st.have,
        }
    }
}

/// Handles one frame from the peer; an error closes the link.
fn dispatch(s: &Shared, c: &Conn, f: Frame) -> Result<(), String> {
    match f {
        Frame::Hello { .. } | Frame::Refuse(_) => {
            return Err("handshake frame after handshake".into())
        }
        Frame::Want(w) => c.set_want(w),
        Frame::Records {
            epoch,
            start,
            records,
        } => s.apply_records(c.peer, epoch, start, &records),
        Frame::Purge { epoch } => {
            let mine = s.apply_purge(c.peer, epoch);
            c.push(Frame::PurgeAck { epoch: mine });
        }
        Frame::PurgeAck { epoch } => c.push(Frame::Want(s.apply_purge_ack(c.peer, epoch))),
        Frame::Health {
            processor,
            failing,
            min_response_ms,
        } => s.events.on_health(processor, failing, min_response_ms),
        Frame::BarrierReq { id, to_us, wait_ms } => c.push_barrier(id, to_us, wait_ms),
        Frame::BarrierAck { id, epoch, own_len } => s.barrier_acked(c.peer, id, epoch, own_len),
        Frame::Forward(p) => {
            METRICS.peer_forwards_received.inc();
            if !s.events.on_forwarded(payment_of(&p)) {
                c.push(Frame::Bounce(p));
            }
        }
        Frame::Bounce(p) => {
            s.hold_again([p.id]);
            c.owe_resend();
        }
        Frame::Ping => {}
    }
    Ok(())
}

pub(super) fn read_loop(s: &Shared, c: &Conn, stream: &mut Stream, rd: &mut FrameReader) -> String {
    let mut input = Input {
        stream,
        silence: SILENCE,
    };
    loop {
        let f = match rd.next(&mut input) {
            Ok(f) => f,
            Err(_) if c.is_closed() => return String::new(),
            Err(e) => return e.to_string(),
        };
        if let Err(why) = dispatch(s, c, f) {
            return why;
        }
    }
}
