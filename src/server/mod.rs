//! The HTTP server: one mio event loop thread, the hot path of every request.
//!
//! Connections live in a slab (tokens reused) with one read and one write buffer each.
//! Every pipelined request in a read is answered in order and all responses leave in
//! one write; WRITABLE interest is registered only while output is pending. A summary
//! that must wait for its peers parks its connection (see `Pending`); the loop sleeps
//! until a peer wakes it or the summary's deadline (`Server::poll_timeout`). A connection closed with input
//! unread (after an error) lingers first (see `conn::Linger`). Idle, slow and lingering
//! connections are looked for at the earliest time one of them can expire, not on a
//! tick: with no connection open the loop sleeps until the kernel has news.
//!
//! Layout: this file runs the loop; `conn` holds sockets and connection state;
//! `handle` parses and answers requests.

mod conn;
mod handle;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use conn::{Conn, Linger, Listener, Stream};
pub use handle::answer;
use handle::{handle_requests, write_summary};

use crate::config::Config;
use crate::http::{self, Limits};
use crate::inflight::InFlight;
use crate::intake::{Accepted, Intake, QueueFull};
use crate::ledger::Ledger;
use crate::metrics::{LingerEnd, METRICS};
use crate::payment::Payment;
use crate::peer::Cause;
use crate::router::Router;
use crate::time::mono_ms;

/// What the server needs from the other instances (implemented by `peer::Peers`).
pub trait Cluster: Send + Sync {
    /// Admits a new payment through the intake's gate: queued here if this instance
    /// owns its id, else handed to its owner (forwarded, or held until it links).
    fn admit(&self, intake: &Intake, p: Payment) -> Result<Accepted, QueueFull> {
        intake.submit_unwoken(p)
    }
    fn purge_all(&self);
    /// Starts a summary barrier; the returned probe turns true once every reachable
    /// peer has settled and sent its records up to `to_us`, or at `deadline`.
    fn barrier(&self, to_us: Option<i64>, deadline: Instant) -> Box<dyn Fn() -> bool + Send>;
    /// Peers linked right now.
    fn linked(&self) -> usize;
    /// True if this instance polls the processors' health for the cluster.
    fn is_health_leader(&self) -> bool {
        true
    }
    /// Per linked peer: records of our log not yet written to it.
    fn replication_lag(&self) -> Vec<(u32, u64)> {
        Vec::new()
    }
    /// The most records of our log some linked peer has not been sent yet.
    fn unreplicated(&self) -> u64 {
        self.replication_lag()
            .iter()
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(0)
    }
    /// The misconfiguration that keeps a peer from linking, if one was seen lately.
    fn conflict(&self) -> Option<Cause> {
        None
    }
    /// True once every member of the cluster is known (who owns what can be told).
    fn members_known(&self) -> bool {
        true
    }
    /// Payments held now for an unlinked owner, and the age (ms) of the oldest.
    fn held(&self) -> (usize, u64) {
        (0, 0)
    }
    /// Which misconfigurations were seen lately, by `Cause` index.
    fn conflicts(&self) -> [bool; Cause::ALL.len()] {
        [false; Cause::ALL.len()]
    }
}

/// A single instance: it owns everything and has nobody to wait for.
pub struct Standalone;

impl Cluster for Standalone {
    fn purge_all(&self) {}
    fn barrier(&self, _: Option<i64>, _: Instant) -> Box<dyn Fn() -> bool + Send> {
        Box::new(|| true)
    }
    fn linked(&self) -> usize {
        0
    }
}

/// Everything the request handlers touch.
pub struct App {
    pub intake: Arc<Intake>,
    pub ledger: Arc<Ledger>,
    pub inflight: Arc<InFlight>,
    pub router: Arc<Router>,
    pub cluster: Arc<dyn Cluster>,
    /// Payments taken by a worker and not yet settled.
    pub busy: Arc<AtomicUsize>,
    pub instance_id: u32,
    /// `instance_id` was derived, not set (see `identity`).
    pub id_derived: bool,
    pub purge_token: Option<String>,
    pub summary_wait: Duration,
    /// Summaries wait for in-flight payments in their range (see `config`).
    pub summary_settle: bool,
}

/// What a stopping instance waits for (`main`): the payments it accepted and has not
/// settled, and its own records that a linked peer has not been sent yet.
pub struct Drain {
    intake: Arc<Intake>,
    busy: Arc<AtomicUsize>,
    cluster: Arc<dyn Cluster>,
}

impl Drain {
    /// (payments queued or with a worker, own records some linked peer lacks): what
    /// `/health` shows as `queue` and `unreplicated`.
    pub fn open(&self) -> (u64, u64) {
        let payments = open_payments(&self.intake, &self.busy);
        (payments, self.cluster.unreplicated())
    }
}

/// Payments accepted and not settled: queued, or taken by a worker.
fn open_payments(intake: &Intake, busy: &AtomicUsize) -> u64 {
    (intake.queued() + busy.load(Ordering::Relaxed)) as u64
}

const READ_CHUNK: usize = 4096;
/// Beyond this many open connections, a connection's buffers are freed whenever they
/// are empty: 10,000 idle keep-alive clients cost ~8.5 KiB each with warm buffers.
const KEEP_BUFFERS_UP_TO: usize = 1024;
/// Wakes the loop when a parked summary may be answered (see `Server::waker`).
const WAKER: Token = Token(usize::MAX);

pub struct Server {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<Listener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    /// Connections whose summary is parked (see `Pending`).
    parked: Vec<usize>,
    limits: Limits,
    max_conns: usize,
    idle_timeout_ms: u64,
    request_timeout_ms: u64,
    /// When the earliest connection can time out (`sweep_idle`); None: none open.
    next_sweep: Option<u64>,
    loop_slice: Duration,
    app: App,
}

impl Server {
    pub fn bind(cfg: &Config, app: App) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (i, addr) in cfg.listen.iter().enumerate() {
            let mut l = conn::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("listen {addr}: {e}")))?;
            let src: &mut dyn mio::event::Source = match &mut l {
                Listener::Tcp(t) => t,
                Listener::Unix(u) => u,
            };
            poll.registry()
                .register(src, Token(i), Interest::READABLE)?;
            listeners.push(l);
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            waker,
            listeners,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            parked: Vec::new(),
            limits: Limits {
                max_header: cfg.max_header,
                max_body: cfg.max_body,
            },
            max_conns: cfg.max_conns,
            idle_timeout_ms: cfg.idle_timeout.as_millis() as u64,
            request_timeout_ms: cfg.request_timeout.as_millis() as u64,
            next_sweep: None,
            loop_slice: Duration::from_micros(cfg.loop_slice_us),
            app,
        })
    }

    /// Wakes the event loop from another thread (a peer barrier progressed).
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The TCP port of the first TCP listener (for tests binding port 0).
    pub fn local_port(&self) -> Option<u16> {
        self.listeners.iter().find_map(|l| match l {
            Listener::Tcp(t) => t.local_addr().ok().map(|a| a.port()),
            Listener::Unix(_) => None,
        })
    }

    /// A handle on what is still open, for a stop that waits for it.
    pub fn drain_handle(&self) -> Drain {
        Drain {
            intake: self.app.intake.clone(),
            busy: self.app.busy.clone(),
            cluster: self.app.cluster.clone(),
        }
    }

    /// Runs the event loop on the calling thread until an error.
    ///
    /// The thread first asks for a short CPU slice (`sched::slice_this_thread`): the
    /// fair scheduler then lets it preempt a longer-sliced thread (k6, a processor)
    /// as soon as a request wakes it, instead of at the end of that thread's slice.
    pub fn run(mut self) -> io::Result<()> {
        if !self.loop_slice.is_zero() {
            if let Err(e) = crate::sched::slice_this_thread(self.loop_slice) {
                eprintln!("rinha: event loop slice {:?}: {e}", self.loop_slice);
            }
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let any_pending = !self.parked.is_empty();
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if ev.token() == WAKER {
                    continue;
                }
                if t < self.listeners.len() {
                    self.accept(t);
                } else {
                    let closed = ev.is_read_closed() || ev.is_error();
                    self.serve(t - self.listeners.len(), closed);
                }
            }
            self.app.intake.wake_deferred();
            if any_pending {
                self.answer_pending();
            }
            let now = mono_ms();
            if self.next_sweep.is_some_and(|at| now >= at) {
                self.sweep_idle(now);
            }
        }
    }

    /// Sleep until the next idle sweep or parked summary's deadline, whichever is
    /// first, or for as long as it takes if there is neither: peers wake the loop when
    /// a barrier progresses (`waker`). Only a summary that waits for payments in flight
    /// (`summary_settle`) is polled, every 1 ms.
    fn poll_timeout(&self) -> Option<Duration> {
        let mut t = self
            .next_sweep
            .map(|at| Duration::from_millis(at.saturating_sub(mono_ms())));
        let now = Instant::now();
        for p in self
            .parked
            .iter()
            .filter_map(|&i| self.conns.get(i)?.as_ref()?.pending.as_ref())
        {
            let settling = p.settle_to != i64::MIN;
            let wait = if settling {
                Duration::from_millis(1)
            } else {
                p.deadline.saturating_duration_since(now)
            };
            t = Some(t.map_or(wait, |t| t.min(wait)));
        }
        t
    }

    /// Makes the loop look for expired connections at `at` (mono ms) at the latest.
    fn sweep_by(&mut self, at: u64) {
        self.next_sweep = Some(self.next_sweep.map_or(at, |t| t.min(at)));
    }

    /// Makes the loop look at connection `idx` again by the time it can expire.
    fn sweep_by_expiry(&mut self, idx: usize) {
        if let Some(c) = self.conns.get(idx).and_then(Option::as_ref) {
            self.sweep_by(c.expires_at(self.idle_timeout_ms, self.request_timeout_ms));
        }
    }

    fn accept(&mut self, li: usize) {
        loop {
            let stream = match &self.listeners[li] {
                Listener::Tcp(l) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            match stream {
                Ok(s) if self.open >= self.max_conns => {
                    METRICS.http_connections_dropped.inc();
                    drop(s)
                }
                Ok(s) => self.add(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("rinha: accept: {e}");
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut stream: Stream) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        let token = Token(idx + self.listeners.len());
        if let Err(e) = self
            .poll
            .registry()
            .register(stream.source(), token, Interest::READABLE)
        {
            eprintln!("rinha: register connection: {e}");
            self.free.push(idx);
            return;
        }
        self.open += 1;
        METRICS.http_connections_accepted.inc();
        METRICS.http_connections_open.inc();
        self.conns[idx] = Some(Conn::new(stream, mono_ms()));
        self.sweep_by_expiry(idx);
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.stream.source());
            self.free.push(idx);
            self.open -= 1;
            METRICS.http_connections_open.dec();
        }
    }

    /// Readable or writable: read everything, answer everything, write what we can.
    ///
    /// A read shorter than its buffer emptied the socket: the next byte to arrive raises
    /// a new edge, so the loop stops there instead of paying a `read` that returns
    /// `WouldBlock` (one syscall of four per request) — unless the event said the peer
    /// has closed, whose end-of-file must be read now (no edge would follow it).
    fn serve(&mut self, idx: usize, closed: bool) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        conn.last_active_ms = mono_ms();
        if conn.linger.is_some() {
            return self.drain(idx);
        }
        let cap = self.limits.max_header + self.limits.max_body + READ_CHUNK;
        let mut eof = false;
        while !conn.closing && conn.rbuf.len() < cap {
            let len = conn.rbuf.len();
            conn.rbuf.resize(len + READ_CHUNK, 0);
            match conn.stream.read(&mut conn.rbuf[len..]) {
                Ok(0) => {
                    conn.rbuf.truncate(len);
                    eof = true;
                    break;
                }
                Ok(n) => {
                    conn.rbuf.truncate(len + n);
                    if n < READ_CHUNK && !closed {
                        break;
                    }
                }
                Err(e) => {
                    conn.rbuf.truncate(len);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            eof = true;
                            conn.closing = true;
                            break;
                        }
                    }
                }
            }
        }
        handle_requests(conn, &self.limits, &self.app);
        if eof {
            // The rest of a request the client will never finish: nothing to linger for.
            conn.rbuf.clear();
        }
        conn.partial_since_ms = match (conn.rbuf.is_empty(), conn.partial_since_ms) {
            (true, _) => None,
            (false, since) => since.or(Some(conn.last_active_ms)),
        };
        let partial = conn.partial_since_ms.is_some();
        if conn.rbuf.is_empty() && self.open > KEEP_BUFFERS_UP_TO {
            conn.rbuf = Vec::new();
        }
        if conn.pending.is_some() && !self.parked.contains(&idx) {
            self.parked.push(idx);
        }
        if eof && conn.pending.is_none() && conn.wpos == conn.wbuf.len() {
            self.close(idx);
            return;
        }
        if eof {
            conn.closing = true;
        }
        if partial {
            self.sweep_by_expiry(idx);
        }
        self.flush(idx);
    }

    fn flush(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        while conn.wpos < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => {
                    self.close(idx);
                    return;
                }
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(idx);
                    return;
                }
            }
        }
        let drained = conn.wpos == conn.wbuf.len();
        if drained {
            conn.wbuf.clear();
            conn.wpos = 0;
            if self.open > KEEP_BUFFERS_UP_TO {
                conn.wbuf = Vec::new();
            }
        }
        if drained == conn.writable {
            let token = Token(idx + self.listeners.len());
            let interest = if drained {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            conn.writable = !drained;
            if self
                .poll
                .registry()
                .reregister(conn.stream.source(), token, interest)
                .is_err()
            {
                self.close(idx);
                return;
            }
        }
        if drained && conn.closing && conn.pending.is_none() {
            self.end(idx);
        }
    }

    /// Closes a connection whose output is written: at once, or — if input is left
    /// unread (an error answered, or requests behind `Connection: close`) — after a
    /// lingering close, so that the client reads the response rather than a reset.
    fn end(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if conn.rbuf.is_empty() || conn.stream.shutdown_write().is_err() {
            return self.close(idx);
        }
        conn.rbuf = Vec::new();
        conn.partial_since_ms = None;
        conn.linger = Some(Linger::start(mono_ms()));
        self.sweep_by_expiry(idx);
        self.drain(idx);
    }

    /// Reads and drops a lingering connection's input; closes it when that is over.
    fn drain(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some(linger) = conn.linger.as_mut() else {
            return;
        };
        if let Some(end) = linger.drain(&mut conn.stream, mono_ms()) {
            METRICS.lingering_closed(end);
            self.close(idx);
        }
    }

    fn answer_pending(&mut self) {
        let now = Instant::now();
        for idx in std::mem::take(&mut self.parked) {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let Some(p) = conn.pending.as_ref() else {
                continue;
            };
            let ready = now >= p.deadline
                || (self.app.inflight.settled_until(Some(p.settle_to)) && (p.barrier)());
            if !ready {
                self.parked.push(idx);
                continue;
            }
            if now >= p.deadline {
                METRICS.summary_deadlines.inc();
                eprintln!("rinha: summary answered at its deadline without every peer or payment in flight settled");
            }
            write_summary(&self.app, p.from, p.to, p.started, &mut conn.wbuf);
            conn.pending = None;
            // Requests pipelined behind the summary were held back: answer them now.
            handle_requests(conn, &self.limits, &self.app);
            if conn.pending.is_some() {
                self.parked.push(idx);
            }
            self.flush(idx);
        }
    }

    /// Closes connections idle for `idle_timeout`, those whose current request has not
    /// completed within `request_timeout` of its first byte (a slowloris keeps a
    /// connection active, never idle) after a 408 and a lingering close, and lingering
    /// connections past their time bound.
    ///
    /// Then sets the next sweep to the earliest time a connection left can expire.
    fn sweep_idle(&mut self, now: u64) {
        self.next_sweep = None;
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            // A parked summary is not idle: look again an idle timeout from now.
            let at = if c.pending.is_some() {
                now + self.idle_timeout_ms + 1
            } else {
                c.expires_at(self.idle_timeout_ms, self.request_timeout_ms)
            };
            if at > now {
                self.sweep_by(at);
                continue;
            }
            if c.linger.is_some() {
                METRICS.lingering_closed(LingerEnd::Time);
                self.close(idx);
                continue;
            }
            let slow = c
                .partial_since_ms
                .is_some_and(|t| t + self.request_timeout_ms < now);
            if slow && c.wpos == c.wbuf.len() {
                METRICS.http_error(408);
                let _ = c.stream.write(&http::error_response(
                    408,
                    "request not completed in time",
                    true,
                ));
                self.end(idx);
            } else {
                self.close(idx);
            }
        }
    }
}
