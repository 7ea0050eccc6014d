//! One peer connection: its shared state (`Conn`), registration and lifetime; the
//! handshake, reader and writer each live in their own file, the dial and accept
//! loops in `dial`.
//!
//! The writer sends from the ledger itself (never a copy of the log), so a link's
//! memory is bounded by its queues (`MAX_CONTROL`, `MAX_FORWARDS`, `MAX_BARRIERS`)
//! and one write buffer flushed at `FLUSH_AT`.

mod dial;
mod handshake;
mod reader;
mod writer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::codec::{Forwarded, Frame, LogPos};
use super::net::Stream;
use super::{lock, write_lock, Shared};
use crate::metrics::METRICS;
pub(crate) use dial::{accept_loop, connect_loop, ACCEPT_WAKER};
use handshake::Hello;
use reader::{read_loop, FrameReader};
use writer::writer;

/// Control frames queued per link (purge, acks, health, barrier requests...); a peer
/// that lets this many pile up is not reading and its link is closed.
pub const MAX_CONTROL: usize = 1024;
/// Forwarded payments queued per link; beyond, `forward` returns false.
pub const MAX_FORWARDS: usize = 4096;
/// Barrier requests a peer may have waiting here; beyond, they are answered at once.
pub const MAX_BARRIERS: usize = 256;
/// The writer's buffer is written out once it holds this much.
pub const FLUSH_AT: usize = 256 * 1024;
/// Inbound connections handled at once (handshaking or linked).
pub const MAX_INBOUND: usize = 64;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The writer sends a `Ping` after this long without writing...
const PING_EVERY: Duration = Duration::from_millis(1_000);
/// ...and the reader closes a link silent for this long.
const SILENCE: Duration = Duration::from_secs(3);
/// New records wait this long for more before the writer sends them: one write (and
/// one wake-up of the peer's reader) carries several. Summaries do not wait for it: a
/// barrier request is answered at once, after everything before it. A crash within it
/// loses no record: the journal (or the processor, asked again) still has it.
const LINGER: Duration = Duration::from_millis(100);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A barrier request from the peer, answered by the writer.
struct PendingAck {
    id: u64,
    to_us: Option<i64>,
    deadline: Instant,
}

#[derive(Default)]
struct Out {
    kick: bool,
    want: Option<LogPos>,
    control: VecDeque<Frame>,
    forwards: VecDeque<Forwarded>,
    barriers: Vec<PendingAck>,
}

impl Out {
    fn has_work(&self) -> bool {
        self.urgent() || self.lazy()
    }

    /// Work that goes out at once: the peer or a summary is waiting on it, or a
    /// forwarded payment (the only copy of an accepted payment in transit: it must not
    /// sit here while its instance may crash).
    fn urgent(&self) -> bool {
        self.want.is_some()
            || !self.control.is_empty()
            || !self.barriers.is_empty()
            || !self.forwards.is_empty()
    }

    /// Work that waits up to `LINGER` for company: new own records.
    fn lazy(&self) -> bool {
        self.kick
    }
}

pub(crate) struct Conn {
    pub id: u64,
    pub peer: u32,
    outbound: bool,
    stream: Stream,
    out: Mutex<Out>,
    cv: Condvar,
    closed: AtomicBool,
    /// How far into our log (of `Ledger::epoch`) the writer has written to this peer;
    /// `u64::MAX` until the peer said where to start (`Want`).
    sent: AtomicU64,
    /// Forwards for this peer are held with its link up (the peer's queue or ours was
    /// full): the writer sends them again at its next tick (`PING_EVERY`), not at once.
    resend_due: AtomicBool,
}

impl Conn {
    /// New own records: the writer is woken only if it had nothing to send (once
    /// it has, it is awake or lingering, and will send these too).
    pub fn kick(&self) {
        let mut o = lock(&self.out);
        let quiet = !o.has_work();
        o.kick = true;
        drop(o);
        if quiet {
            self.cv.notify_one();
        }
    }

    /// Queues a control frame; closes the link if the peer lets them pile up.
    pub fn push(&self, f: Frame) {
        let mut o = lock(&self.out);
        if o.control.len() >= MAX_CONTROL {
            drop(o);
            self.abort("send queue full (peer not reading)");
            return;
        }
        o.control.push_back(f);
        drop(o);
        self.cv.notify_one();
    }

    pub fn push_forward(&self, f: Forwarded) -> bool {
        let mut o = lock(&self.out);
        if self.is_closed() || o.forwards.len() >= MAX_FORWARDS {
            return false;
        }
        o.forwards.push_back(f);
        drop(o);
        self.cv.notify_one();
        true
    }

    /// Held forwards for this peer wait for the writer's next tick.
    pub fn owe_resend(&self) {
        self.resend_due.store(true, Ordering::Release);
    }

    fn push_barrier(&self, id: u64, to_us: Option<i64>, wait_ms: u32) {
        let mut o = lock(&self.out);
        let now = Instant::now();
        let deadline = if o.barriers.len() >= MAX_BARRIERS {
            now
        } else {
            now + Duration::from_millis(u64::from(wait_ms))
        };
        o.barriers.push(PendingAck {
            id,
            to_us,
            deadline,
        });
        drop(o);
        self.cv.notify_one();
    }

    fn set_want(&self, w: LogPos) {
        lock(&self.out).want = Some(w);
        self.cv.notify_one();
    }

    /// Records of our log not yet written to this peer (all of it before its `Want`).
    pub fn unsent(&self, log_len: u64) -> u64 {
        match self.sent.load(Ordering::Acquire) {
            u64::MAX => log_len,
            sent => log_len.saturating_sub(sent),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the link closed and wakes both its threads; logs once.
    fn abort(&self, why: &str) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            if !why.is_empty() {
                eprintln!("peer: link with instance {} closed: {why}", self.peer);
            }
            self.stream.shutdown();
            let _o = lock(&self.out);
            self.cv.notify_all();
        }
    }
}

/// Closes `c`: unregisters it and completes barriers waiting on it.
pub(crate) fn close(s: &Shared, c: &Conn, why: &str) {
    c.abort(why);
    {
        let mut links = write_lock(&s.links);
        if links.by_peer.get(&c.peer).is_some_and(|x| x.id == c.id) {
            links.by_peer.remove(&c.peer);
            links.members = members(s.id, links.by_peer.keys().copied());
        }
    }
    s.barrier_gone(c.id);
    s.notify_unlinked();
}

fn members(me: u32, peers: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut m: Vec<u32> = std::iter::once(me).chain(peers).collect();
    m.sort_unstable();
    m
}

/// Registers a handshaken link. Of two live links between the same pair, both ends
/// keep the one dialed by the lower id, so they agree without talking.
fn register(s: &Shared, c: &Arc<Conn>) -> bool {
    let old = {
        let mut links = write_lock(&s.links);
        if s.stop.load(Ordering::SeqCst) {
            return false;
        }
        let preferred = c.outbound == (s.id < c.peer);
        if links.by_peer.get(&c.peer).is_some_and(|o| !o.is_closed()) && !preferred {
            return false;
        }
        let old = links.by_peer.insert(c.peer, c.clone());
        links.members = members(s.id, links.by_peer.keys().copied());
        old
    };
    if let Some(old) = old {
        close(s, &old, "replaced by a newer link");
    }
    s.learn(c.peer);
    let dir = if c.outbound { "dialed" } else { "accepted" };
    eprintln!("peer: linked with instance {} ({dir})", c.peer);
    METRICS.peer_links_established.inc();
    true
}

/// Runs a handshaken connection until it closes (this thread reads, a new one writes).
fn run_conn(s: &Arc<Shared>, stream: Stream, mut rd: FrameReader, h: Hello, outbound: bool) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let c = Arc::new(Conn {
        id: s.next_id.fetch_add(1, Ordering::Relaxed),
        peer: h.instance_id,
        outbound,
        stream: clone,
        out: Mutex::default(),
        cv: Condvar::new(),
        closed: AtomicBool::new(false),
        sent: AtomicU64::new(u64::MAX),
        resend_due: AtomicBool::new(false),
    });
    {
        let mut conns = lock(&s.conns);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&c));
    }
    let (want, owe_purge) = s.on_hello(&h);
    if s.stop.load(Ordering::SeqCst) || !register(s, &c) {
        c.abort("");
        return;
    }
    c.push(Frame::Want(want));
    s.resend_forwards(c.peer, &c);
    if owe_purge {
        c.push(Frame::Purge {
            epoch: s.ledger.epoch(),
        });
    }
    let mut stream = stream;
    let writer = match (
        stream.try_clone(),
        stream.set_timeouts(Some(SILENCE), Some(WRITE_TIMEOUT)),
    ) {
        (Ok(w), Ok(())) => {
            let (s2, c2) = (s.clone(), c.clone());
            std::thread::Builder::new()
                .name("peer-write".into())
                .spawn(move || writer(&s2, &c2, w))
                .ok()
        }
        _ => None,
    };
    let why = if writer.is_none() {
        "cannot start writer".to_string()
    } else {
        read_loop(s, &c, &mut stream, &mut rd)
    };
    close(s, &c, &why);
    if let Some(w) = writer {
        let _ = w.join();
    }
}

#[cfg(test)]
mod tests;
