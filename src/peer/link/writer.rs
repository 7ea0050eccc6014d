//! The writer side of a link: own records, forwards, control frames and barrier
//! answers out, in one buffer per wake-up.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::super::codec::{self, Forwarded, Frame, LogPos, MAX_BATCH};
use super::super::net::Stream;
use super::super::{lock, Shared};
use super::{close, Conn, PendingAck, FLUSH_AT, LINGER, PING_EVERY};
use crate::metrics::METRICS;

/// Work the writer took from the link's queues.
struct Work {
    want: Option<LogPos>,
    control: VecDeque<Frame>,
    forwards: VecDeque<Forwarded>,
    barriers: Vec<PendingAck>,
}

impl Conn {
    /// Waits for work (at most `wait`); `None` once the link is closed.
    fn take_work(&self, wait: Duration) -> Option<Work> {
        let mut o = lock(&self.out);
        if !o.has_work() && !self.is_closed() {
            o = self
                .cv
                .wait_timeout_while(o, wait, |o| !o.has_work() && !self.is_closed())
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if !o.urgent() && o.lazy() && !self.is_closed() {
            o = self
                .cv
                .wait_timeout_while(o, LINGER, |o| !o.urgent() && !self.is_closed())
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if self.is_closed() {
            return None;
        }
        o.kick = false;
        Some(Work {
            want: o.want.take(),
            control: std::mem::take(&mut o.control),
            forwards: std::mem::take(&mut o.forwards),
            barriers: std::mem::take(&mut o.barriers),
        })
    }
}

/// Where the writer is in our own log: epoch and next sequence to send.
#[derive(Clone, Copy)]
struct SendPos {
    epoch: u64,
    next: u64,
}

pub(super) fn writer(s: &Shared, c: &Conn, mut stream: Stream) {
    let mut pos: Option<SendPos> = None;
    let mut waiting: Vec<PendingAck> = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
    let mut last_resend = Instant::now();
    while let Some(work) = c.take_work(if waiting.is_empty() {
        PING_EVERY
    } else {
        Duration::from_millis(1)
    }) {
        if let Some(w) = work.want {
            // Resend from what the peer holds if it is our current log, else from 0.
            let epoch = s.ledger.epoch();
            let same = w.incarnation == s.incarnation && w.epoch == epoch;
            pos = Some(SendPos {
                epoch,
                next: if same { w.have } else { 0 },
            });
        }
        waiting.extend(work.barriers);
        for f in &work.forwards {
            codec::encode(&Frame::Forward(*f), &mut buf);
        }
        for f in &work.control {
            codec::encode(f, &mut buf);
        }
        let now = Instant::now();
        if now.duration_since(last_resend) >= PING_EVERY
            && c.resend_due.swap(false, Ordering::AcqRel)
        {
            s.resend_forwards(c.peer, c);
            last_resend = now;
        }
        let ready = take_ready(s, &mut waiting, now, pos.is_some());
        if let Some(p) = pos.as_mut() {
            if let Err(e) = flush_records(s, p, &mut buf, &mut stream) {
                close(s, c, &format!("write: {e}"));
                break;
            }
        }
        // Without a `Want` nothing was sent: (epoch, 0) claims no records.
        let (epoch, own_len) = pos.map_or((s.ledger.epoch(), 0), |p| (p.epoch, p.next));
        for id in ready {
            codec::encode(&Frame::BarrierAck { id, epoch, own_len }, &mut buf);
        }
        if buf.is_empty() && now.duration_since(last_write) >= PING_EVERY {
            codec::encode(&Frame::Ping, &mut buf);
        }
        if !buf.is_empty() {
            if let Err(e) = stream.write_all(&buf) {
                close(s, c, &format!("write: {e}"));
                break;
            }
            buf.clear();
            last_write = now;
        }
        if let Some(p) = pos {
            c.sent.store(p.next, Ordering::Release);
        }
    }
    // What this link wrote may never have been read (the peer closes its end of a
    // replaced link too): it stays in `forwarded` and goes again on the owner's next
    // link (who ignores what it has). Forwards still queued never left: held again.
    // Neither is ever paid here: only the owner pays. If the next link is up already,
    // its own resend may have run before this writer stopped: resend.
    let queued = std::mem::take(&mut lock(&c.out).forwards);
    s.hold_again(queued.iter().map(|f| f.id));
    if let Some(next) = s.link_to(c.peer).filter(|n| n.id != c.id) {
        s.resend_forwards(c.peer, &next);
    }
}

/// Barrier requests that can be answered: nothing in range in flight here, or expired.
/// Until the peer told us where to send from, only expired ones are answered.
fn take_ready(s: &Shared, waiting: &mut Vec<PendingAck>, now: Instant, can_send: bool) -> Vec<u64> {
    let mut ready = Vec::new();
    waiting.retain(|b| {
        let go = now >= b.deadline || (can_send && s.inflight.settled_until(b.to_us));
        if go {
            ready.push(b.id);
        }
        !go
    });
    ready
}

/// Appends every log record from `p` on, writing out whenever `FLUSH_AT` is reached.
fn flush_records(s: &Shared, p: &mut SendPos, buf: &mut Vec<u8>, w: &mut Stream) -> io::Result<()> {
    loop {
        let (epoch, records) = s.ledger.log_since(p.next, MAX_BATCH);
        if epoch != p.epoch {
            *p = SendPos { epoch, next: 0 };
            continue;
        }
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len() as u64;
        codec::encode(
            &Frame::Records {
                epoch,
                start: p.next,
                records,
            },
            buf,
        );
        p.next += n;
        METRICS.peer_records_sent.add(n);
        if buf.len() >= FLUSH_AT {
            w.write_all(buf)?;
            buf.clear();
        }
    }
}
