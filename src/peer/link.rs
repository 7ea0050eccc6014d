//! One peer connection: handshake, then a reader thread (the one that dialed or
//! accepted) and a writer thread; plus the connector and acceptor loops.
//!
//! The writer sends from the ledger itself (never a copy of the log), so a link's
//! memory is bounded by its queues (`MAX_CONTROL`, `MAX_FORWARDS`, `MAX_BARRIERS`)
//! and one write buffer flushed at `FLUSH_AT`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::codec::{self, Forwarded, Frame, FrameError, LogPos, RefuseReason, MAX_BATCH};
use super::net::{Listener, Stream};
use super::{lock, write_lock, RecvState, Shared};
use crate::config::Addr;
use crate::payment::{Payment, Record};

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
const PING_EVERY: Duration = Duration::from_millis(500);
/// ...and the reader closes a link silent for this long.
const SILENCE: Duration = Duration::from_secs(3);
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
        self.kick
            || self.want.is_some()
            || !self.control.is_empty()
            || !self.forwards.is_empty()
            || !self.barriers.is_empty()
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
}

impl Conn {
    pub fn kick(&self) {
        lock(&self.out).kick = true;
        self.cv.notify_one();
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
    let dir = if c.outbound { "dialed" } else { "accepted" };
    eprintln!("peer: linked with instance {} ({dir})", c.peer);
    true
}

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

fn send(stream: &mut Stream, f: &Frame) -> io::Result<()> {
    let mut buf = Vec::new();
    codec::encode(f, &mut buf);
    stream.write_all(&buf)
}

/// The peer's `Hello`, checked.
pub(crate) struct Hello {
    pub instance_id: u32,
    pub incarnation: u64,
    pub epoch: u64,
}

fn check_hello(s: &Shared, f: Frame) -> Result<Hello, (Option<RefuseReason>, String)> {
    match f {
        Frame::Hello {
            instance_id,
            incarnation,
            epoch,
            token,
        } => {
            if !codec::ct_eq(&token, &s.token) {
                Err((Some(RefuseReason::BadToken), "wrong peer token".into()))
            } else if instance_id == s.id {
                Err((
                    Some(RefuseReason::SameId),
                    format!("same instance id {instance_id}"),
                ))
            } else if s.stop.load(Ordering::SeqCst) {
                Err((Some(RefuseReason::Shutdown), "shutting down".into()))
            } else {
                Ok(Hello {
                    instance_id,
                    incarnation,
                    epoch,
                })
            }
        }
        Frame::Refuse(r) => Err((None, format!("refused by peer: {r:?}"))),
        other => Err((None, format!("expected Hello, got {other:?}"))),
    }
}

/// Both sides send a `Hello` (the dialer first) and check the other's: same protocol
/// version (frame header), same secret (constant-time), different instance id.
pub(crate) fn handshake(
    s: &Shared,
    stream: &mut Stream,
    rd: &mut FrameReader,
    outbound: bool,
) -> Result<Hello, String> {
    stream
        .set_timeouts(Some(HANDSHAKE_TIMEOUT), Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mine = Frame::Hello {
        instance_id: s.id,
        incarnation: s.incarnation,
        epoch: s.ledger.epoch(),
        token: s.token.clone(),
    };
    if outbound {
        send(stream, &mine).map_err(|e| e.to_string())?;
    }
    let theirs = match rd.next(stream) {
        Ok(f) => check_hello(s, f),
        Err(ReadError::Frame(FrameError::BadVersion(v))) => Err((
            Some(RefuseReason::BadVersion),
            format!("protocol version {v}, want {}", codec::VERSION),
        )),
        Err(e) => Err((None, e.to_string())),
    };
    match theirs {
        Ok(h) => {
            if !outbound {
                send(stream, &mine).map_err(|e| e.to_string())?;
            }
            Ok(h)
        }
        Err((reason, why)) => {
            if let Some(r) = reason.filter(|_| !outbound) {
                let _ = send(stream, &Frame::Refuse(r));
            }
            Err(why)
        }
    }
}

impl Shared {
    /// Updates what we know of the peer from its `Hello`; returns the `Want` to send
    /// and whether we still owe it a purge.
    fn on_hello(&self, h: &Hello) -> (LogPos, bool) {
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
        // Inserted under the `recv` lock so that `have` never runs ahead of the ledger.
        for r in records {
            self.ledger.insert(*r);
        }
        if start <= st.have {
            st.have = st.have.max(start.saturating_add(records.len() as u64));
        }
        drop(recv);
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

fn payment_of(f: &Forwarded) -> Payment {
    Payment {
        id: f.id,
        cents: f.cents,
        accepted_ms: crate::time::mono_ms().saturating_sub(u64::from(f.age_ms)),
        pin: None,
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
            if !s.events.on_forwarded(payment_of(&p)) {
                c.push(Frame::Bounce(p));
            }
        }
        Frame::Bounce(p) => {
            s.forward_taken_back(&p.id);
            if !s.events.on_forwarded(payment_of(&p)) {
                eprintln!("peer: bounced payment {:?} dropped: local queue full", p.id);
            }
        }
        Frame::Ping => {}
    }
    Ok(())
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

fn read_loop(s: &Shared, c: &Conn, stream: &mut Stream, rd: &mut FrameReader) -> String {
    loop {
        let f = match rd.next(stream) {
            Ok(f) => f,
            Err(_) if c.is_closed() => return String::new(),
            Err(e) => return e.to_string(),
        };
        if let Err(why) = dispatch(s, c, f) {
            return why;
        }
    }
}

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

fn writer(s: &Shared, c: &Conn, mut stream: Stream) {
    let mut pos: Option<SendPos> = None;
    let mut waiting: Vec<PendingAck> = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last_write = Instant::now();
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
    }
    // The batch being written when the link failed may have reached the owner: it stays
    // in `forwarded` and goes again when the owner links again (who ignores what it
    // has); paying it here could pay it twice. Forwards still queued never left: paid here.
    let queued = std::mem::take(&mut lock(&c.out).forwards);
    for f in queued {
        s.forward_taken_back(&f.id);
        if !s.events.on_forwarded(payment_of(&f)) {
            eprintln!(
                "peer: undeliverable payment {:?} dropped: local queue full",
                f.id
            );
        }
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
        if buf.len() >= FLUSH_AT {
            w.write_all(buf)?;
            buf.clear();
        }
    }
}

fn stopped(s: &Shared) -> bool {
    s.stop.load(Ordering::SeqCst)
}

/// Sleeps up to `d`, waking early if the link is shutting down.
fn nap(s: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !stopped(s) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Dials `addr` with backoff (50 ms doubling to 1 s) for as long as it is not linked.
pub(crate) fn connect_loop(s: Arc<Shared>, addr: Addr) {
    let mut known: Option<u32> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    while !stopped(&s) {
        if known.is_some_and(|p| s.is_linked(p)) {
            nap(&s, Duration::from_millis(100));
            continue;
        }
        let mut rd = FrameReader::new();
        let dialed = Stream::connect(&addr, CONNECT_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|mut st| handshake(&s, &mut st, &mut rd, true).map(|h| (st, h)));
        match dialed {
            Ok((stream, h)) => {
                failing = false;
                backoff = MIN_BACKOFF;
                known = Some(h.instance_id);
                run_conn(&s, stream, rd, h, true);
                nap(&s, MIN_BACKOFF);
            }
            Err(e) => {
                if !failing {
                    eprintln!("peer: cannot link to {addr}: {e} (retrying)");
                    failing = true;
                }
                nap(&s, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Accepts peers until shutdown; each gets a thread for its handshake and reads.
pub(crate) fn accept_loop(s: Arc<Shared>, l: Listener) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stopped(&s) {
        let stream = match l.accept() {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                nap(&s, Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                eprintln!("peer: accept: {e}");
                nap(&s, Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_INBOUND {
            active.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (s2, a2) = (s.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("peer-in".into())
            .spawn(move || {
                inbound(&s2, stream);
                a2.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn inbound(s: &Arc<Shared>, mut stream: Stream) {
    let mut rd = FrameReader::new();
    match handshake(s, &mut stream, &mut rd, false) {
        Ok(h) => run_conn(s, stream, rd, h, false),
        Err(e) => eprintln!("peer: refused an inbound link: {e}"),
    }
}

#[cfg(test)]
mod tests;
