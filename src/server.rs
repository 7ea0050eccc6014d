//! The HTTP server: one mio event loop thread, the hot path of every request.
//!
//! Connections live in a slab (tokens reused) with one read and one write buffer each.
//! Every pipelined request in a read is answered in order and all responses leave in
//! one write; WRITABLE interest is registered only while output is pending. A summary
//! that must wait for in-flight payments parks its connection (see `Pending`) and the
//! loop polls with a 1 ms timeout until it can answer.

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{Addr, Config};
use crate::http::{self, Limits, Method, Parsed, Request};
use crate::inflight::InFlight;
use crate::intake::{Intake, QueueFull};
use crate::json;
use crate::ledger::Ledger;
use crate::payment::{CorrelationId, Payment, Processor};
use crate::router::Router;
use crate::time::{mono_ms, now_us, parse_iso_us};

/// What the server needs from the other instances (implemented by `peer::Peers`).
pub trait Cluster: Send + Sync {
    /// True if this instance pays `id` (owner-by-hash); others forward to the owner.
    fn owns(&self, id: &CorrelationId) -> bool;
    /// Hands `p` to its owner; false if the owner is unreachable (pay it here).
    fn forward(&self, p: Payment) -> bool;
    fn purge_all(&self);
    /// Starts a summary barrier; the returned probe turns true once every reachable
    /// peer has settled and sent its records up to `to_us`, or at `deadline`.
    fn barrier(&self, to_us: Option<i64>, deadline: Instant) -> Box<dyn Fn() -> bool + Send>;
    /// Peers linked right now.
    fn linked(&self) -> usize;
    /// Own log records not yet written to some linked peer (replication lag).
    fn unreplicated(&self) -> u64;
}

/// A single instance: it owns everything and has nobody to wait for.
pub struct Standalone;

impl Cluster for Standalone {
    fn owns(&self, _: &CorrelationId) -> bool {
        true
    }
    fn forward(&self, _: Payment) -> bool {
        false
    }
    fn purge_all(&self) {}
    fn barrier(&self, _: Option<i64>, _: Instant) -> Box<dyn Fn() -> bool + Send> {
        Box::new(|| true)
    }
    fn linked(&self) -> usize {
        0
    }
    fn unreplicated(&self) -> u64 {
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
    pub purge_token: Option<String>,
    pub summary_wait: Duration,
    /// Summaries wait for in-flight payments in their range (see `config`).
    pub summary_settle: bool,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(b),
            Stream::Unix(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(b),
            Stream::Unix(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A summary waiting for in-flight payments in its range (here and on peers).
struct Pending {
    from: Option<i64>,
    to: Option<i64>,
    settle_to: i64,
    deadline: Instant,
    barrier: Box<dyn Fn() -> bool + Send>,
}

/// One client connection. Invariants: `rbuf` holds bytes not yet parsed; `wbuf[wpos..]`
/// bytes not yet written; while `pending` is set no further request is parsed.
struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    last_active_ms: u64,
    /// When the first byte of the request still incomplete in `rbuf` arrived.
    partial_since_ms: Option<u64>,
    closing: bool,
    writable: bool,
    pending: Option<Pending>,
}

const READ_CHUNK: usize = 4096;
/// Beyond this many open connections, a connection's buffers are freed whenever they
/// are empty: 10,000 idle keep-alive clients cost ~8.5 KiB each with warm buffers.
const KEEP_BUFFERS_UP_TO: usize = 1024;
/// Wakes the loop when a parked summary may be answered (see `Server::waker`).
const WAKER: Token = Token(usize::MAX);
/// Idle and slow connections are looked for this often.
const SWEEP_EVERY_MS: u64 = 1_000;

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
    app: App,
}

fn bind(addr: &Addr) -> io::Result<Listener> {
    match addr {
        Addr::Tcp(a) => {
            let sa = a
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("no address for {a}")))?;
            Ok(Listener::Tcp(TcpListener::bind(sa)?))
        }
        Addr::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path)?;
            // nginx runs as another user: let it connect.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            Ok(Listener::Unix(l))
        }
    }
}

impl Server {
    pub fn bind(cfg: &Config, app: App) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (i, addr) in cfg.listen.iter().enumerate() {
            let mut l =
                bind(addr).map_err(|e| io::Error::new(e.kind(), format!("listen {addr}: {e}")))?;
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

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = mono_ms();
        loop {
            let any_pending = !self.parked.is_empty();
            let timeout = self.poll_timeout(last_sweep);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
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
                    self.serve(t - self.listeners.len());
                }
            }
            if any_pending {
                self.answer_pending();
            }
            let now = mono_ms();
            if now - last_sweep >= SWEEP_EVERY_MS {
                last_sweep = now;
                self.sweep_idle(now);
            }
        }
    }

    /// Sleep until the next idle sweep or parked summary's deadline, whichever is
    /// first: peers wake the loop when a barrier progresses (`waker`). Only a summary
    /// that waits for payments in flight (`summary_settle`) is polled, every 1 ms.
    fn poll_timeout(&self, last_sweep: u64) -> Duration {
        let sweep_in = (last_sweep + SWEEP_EVERY_MS).saturating_sub(mono_ms());
        let mut t = Duration::from_millis(sweep_in);
        let now = Instant::now();
        for p in self
            .parked
            .iter()
            .filter_map(|&i| self.conns.get(i)?.as_ref()?.pending.as_ref())
        {
            let settling = p.settle_to != i64::MIN;
            t = t.min(if settling {
                Duration::from_millis(1)
            } else {
                p.deadline.saturating_duration_since(now)
            });
        }
        t
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
                Ok(s) if self.open >= self.max_conns => drop(s),
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
        self.conns[idx] = Some(Conn {
            stream,
            // Allocated on first use: an idle connection costs a few hundred bytes.
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_active_ms: mono_ms(),
            partial_since_ms: None,
            closing: false,
            writable: false,
            pending: None,
        });
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut c) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.stream.source());
            self.free.push(idx);
            self.open -= 1;
        }
    }

    /// Readable or writable: read everything, answer everything, write what we can.
    fn serve(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        conn.last_active_ms = mono_ms();
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
                Ok(n) => conn.rbuf.truncate(len + n),
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
        conn.partial_since_ms = match (conn.rbuf.is_empty(), conn.partial_since_ms) {
            (true, _) => None,
            (false, since) => since.or(Some(conn.last_active_ms)),
        };
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
            if conn.closing && conn.pending.is_none() {
                self.close(idx);
                return;
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
            }
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
                eprintln!("rinha: summary answered at its deadline without every peer or payment in flight settled");
            }
            let summary = self.app.ledger.summary(p.from, p.to);
            conn.pending = None;
            let mut body = Vec::with_capacity(160);
            summary.write_json(&mut body);
            http::write_json(&mut conn.wbuf, 200, &body);
            // Requests pipelined behind the summary were held back: answer them now.
            handle_requests(conn, &self.limits, &self.app);
            if conn.pending.is_some() {
                self.parked.push(idx);
            }
            self.flush(idx);
        }
    }

    /// Closes connections idle for `idle_timeout`, and those whose current request has
    /// not completed within `request_timeout` of its first byte (a slowloris keeps a
    /// connection active, never idle) after a best-effort 408.
    fn sweep_idle(&mut self, now: u64) {
        for idx in 0..self.conns.len() {
            let Some(c) = self.conns[idx].as_mut() else {
                continue;
            };
            let idle = now.saturating_sub(c.last_active_ms) > self.idle_timeout_ms;
            let slow = c
                .partial_since_ms
                .is_some_and(|t| now.saturating_sub(t) > self.request_timeout_ms);
            if slow && c.wpos == c.wbuf.len() {
                let _ = c.stream.write(&http::error_response(
                    408,
                    "request not completed in time",
                    true,
                ));
            }
            if c.pending.is_none() && (idle || slow) {
                self.close(idx);
            }
        }
    }
}

/// Parses and answers every complete request in `conn.rbuf`, in order.
fn handle_requests(conn: &mut Conn, limits: &Limits, app: &App) {
    let c = &mut *conn;
    let start = drive(
        &c.rbuf,
        limits,
        app,
        &mut c.wbuf,
        &mut c.pending,
        &mut c.closing,
    );
    conn.rbuf.copy_within(start.., 0);
    conn.rbuf.truncate(conn.rbuf.len() - start);
}

/// Answers complete requests from the front of `input` into `out` until one parks,
/// asks to close, or is incomplete; returns the bytes consumed.
fn drive(
    input: &[u8],
    limits: &Limits,
    app: &App,
    out: &mut Vec<u8>,
    pending: &mut Option<Pending>,
    closing: &mut bool,
) -> usize {
    let mut start = 0;
    while !*closing && pending.is_none() {
        match http::parse_request(&input[start..], limits) {
            Ok(Parsed::Complete(req, n)) => {
                start += n;
                *closing = req.close;
                handle(req, app, out, pending);
            }
            Ok(Parsed::Partial) => break,
            Err(e) => {
                out.extend_from_slice(&e.response());
                *closing = true;
            }
        }
    }
    start
}

/// The request path without a socket (for benchmarks and fuzzing): answers what
/// `input` holds into `out` and returns the bytes consumed. A summary that would
/// park is left unanswered.
pub fn answer(app: &App, limits: &Limits, input: &[u8], out: &mut Vec<u8>) -> usize {
    drive(input, limits, app, out, &mut None, &mut false)
}

/// Answers one request into `out`, or parks it in `pending`.
fn handle(req: Request<'_>, app: &App, out: &mut Vec<u8>, pending: &mut Option<Pending>) {
    let bad = |out: &mut Vec<u8>, status: u16, reason: &str| {
        out.extend_from_slice(&http::error_response(status, reason, false))
    };
    match (req.path, req.method) {
        (b"/payments", Method::Post) => match json::parse_payment(req.body) {
            Ok((id, cents)) => {
                let p = Payment {
                    id,
                    cents,
                    accepted_ms: mono_ms(),
                    pin: None,
                };
                if !app.cluster.owns(&id) && app.cluster.forward(p) {
                    out.extend_from_slice(http::ACCEPTED);
                    return;
                }
                match app.intake.submit(p) {
                    Ok(_) => out.extend_from_slice(http::ACCEPTED),
                    Err(QueueFull) => bad(out, 503, "payment queue full, retry"),
                }
            }
            Err(e) => bad(out, 400, e.reason()),
        },
        (b"/payments-summary", Method::Get) => summary(&req, app, out, pending),
        (b"/purge-payments", Method::Post) => {
            if let Some(t) = &app.purge_token {
                if req.purge_token != Some(t.as_bytes()) {
                    return bad(out, 401, "purge needs a valid X-Purge-Token");
                }
            }
            app.intake.purge();
            app.ledger.purge();
            app.cluster.purge_all();
            out.extend_from_slice(http::OK_EMPTY);
        }
        (b"/health", Method::Get) => health(app, out),
        (b"/payments" | b"/purge-payments", _) | (b"/payments-summary" | b"/health", _) => {
            bad(out, 405, "method not allowed")
        }
        _ => bad(out, 404, "not found"),
    }
}

fn summary(req: &Request<'_>, app: &App, out: &mut Vec<u8>, pending: &mut Option<Pending>) {
    let mut buf = [0u8; 64];
    let mut bound = |key: &str| -> Result<Option<i64>, http::BadQuery> {
        match http::query_param(req.query, key, &mut buf)? {
            None => Ok(None),
            Some(v) => parse_iso_us(v).map(Some).ok_or(http::BadQuery),
        }
    };
    let (Ok(from), Ok(to)) = (bound("from"), bound("to")) else {
        out.extend_from_slice(&http::error_response(
            400,
            "from/to must be ISO-8601 timestamps",
            false,
        ));
        return;
    };
    // Every summary first has each reachable peer flush what it recorded (a barrier
    // round trip, bounded by `summary_wait`). With `summary_settle` it also waits until
    // no payment with requestedAt <= min(to, now) is in flight here or there; without,
    // `i64::MIN` is a bound nothing in flight can be under.
    let settle_to = if app.summary_settle {
        to.unwrap_or(i64::MAX).min(now_us())
    } else {
        i64::MIN
    };
    let deadline = Instant::now() + app.summary_wait;
    let barrier = app.cluster.barrier(Some(settle_to), deadline);
    if !(app.inflight.settled_until(Some(settle_to)) && barrier()) {
        *pending = Some(Pending {
            from,
            to,
            settle_to,
            deadline,
            barrier,
        });
        return;
    }
    let mut body = Vec::with_capacity(160);
    app.ledger.summary(from, to).write_json(&mut body);
    http::write_json(out, 200, &body);
}

fn health(app: &App, out: &mut Vec<u8>) {
    let mut n = itoa::Buffer::new();
    let mut b = Vec::with_capacity(256);
    let mut field = |b: &mut Vec<u8>, name: &str, v: u64| {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(b"\":");
        b.extend_from_slice(n.format(v).as_bytes());
    };
    b.extend_from_slice(b"{\"status\":\"ok\"");
    field(&mut b, "instance", u64::from(app.instance_id));
    field(
        &mut b,
        "queue",
        (app.intake.queued() + app.busy.load(Relaxed)) as u64,
    );
    field(&mut b, "inflight", app.inflight.len() as u64);
    field(&mut b, "parked", app.router.parked() as u64);
    field(&mut b, "parkWakeups", app.router.wakeups());
    field(&mut b, "records", app.ledger.len() as u64);
    field(&mut b, "peers", app.cluster.linked() as u64);
    field(&mut b, "unreplicated", app.cluster.unreplicated());
    for p in Processor::ALL {
        b.extend_from_slice(b",\"");
        b.extend_from_slice(p.name().as_bytes());
        b.extend_from_slice(b"\":{\"failing\":");
        b.extend_from_slice(if app.router.is_failing(p) {
            b"true"
        } else {
            b"false"
        });
        b.extend_from_slice(b",\"latencyMs\":");
        b.extend_from_slice(
            itoa::Buffer::new()
                .format(app.router.latency_ms(p))
                .as_bytes(),
        );
        b.push(b'}');
    }
    b.push(b'}');
    http::write_json(out, 200, &b);
}
