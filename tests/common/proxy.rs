//! A loopback TCP proxy that counts requests and statuses and cuts connections on
//! command: the network faults of the end-to-end tests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use super::lock;

/// What the proxy does to the `POST /payments` exchanges that it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Closes both sides right after forwarding the request.
    AfterRequest,
    /// Closes both sides when the response starts, forwarding none of it.
    BeforeResponse,
    /// Forwards half of the response's first read, then closes both sides.
    MidResponse,
}

pub const CUTS: [Cut; 3] = [Cut::AfterRequest, Cut::BeforeResponse, Cut::MidResponse];

/// Shared state of a [`Proxy`]: switches set by the test, counters read by it.
#[derive(Default)]
pub struct ProxyState {
    target: u16,
    stop: AtomicBool,
    /// New connections are accepted and closed at once (a partition).
    pub refuse: AtomicBool,
    /// Cut every N-th `POST /payments` exchange (0: never), rotating through [`CUTS`].
    pub cut_every: AtomicU64,
    pub posts: AtomicU64,
    pub cuts: [AtomicU64; 3],
    pub connections: AtomicU64,
    /// `GET /payments/service-health` requests forwarded.
    pub health_requests: AtomicU64,
    /// Status codes of every response forwarded (or cut).
    pub statuses: Mutex<HashMap<u16, u64>>,
    /// Every byte forwarded, both directions, while `record` is set (tests/peer_tls.rs).
    pub record: AtomicBool,
    pub recorded: Mutex<Vec<u8>>,
    live: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    pub fn status_count(&self, status: u16) -> u64 {
        lock(&self.statuses).get(&status).copied().unwrap_or(0)
    }

    /// Keeps a copy of what is forwarded, if recording.
    fn keep(&self, chunk: &[u8]) {
        if self.record.load(SeqCst) {
            lock(&self.recorded).extend_from_slice(chunk);
        }
    }

    pub fn total_cuts(&self) -> u64 {
        self.cuts.iter().map(|c| c.load(SeqCst)).sum()
    }

    /// Closes every live connection (both sides); new ones are still accepted.
    pub fn cut_all(&self) {
        for s in lock(&self.live).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A loopback TCP proxy to `127.0.0.1:target`, two std threads per connection; it
/// counts HTTP request lines and statuses and can cut connections on command.
pub struct Proxy {
    pub port: u16,
    pub state: Arc<ProxyState>,
}

impl Proxy {
    pub fn new(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(ProxyState {
            target,
            ..ProxyState::default()
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stop.load(SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if st.refuse.load(SeqCst) {
                    continue;
                }
                if let Ok(server) = TcpStream::connect(("127.0.0.1", st.target)) {
                    proxy_connection(&st, client, server);
                }
            }
        });
        Proxy { port, state }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.state.cut_all();
    }
}

fn proxy_connection(st: &Arc<ProxyState>, client: TcpStream, server: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    st.connections.fetch_add(1, SeqCst);
    let clones = (client.try_clone(), server.try_clone());
    let (Ok(c2), Ok(s2)) = clones else { return };
    {
        let mut live = lock(&st.live);
        for s in [&client, &server] {
            if let Ok(s) = s.try_clone() {
                live.push(s);
            }
        }
    }
    // The cut armed by the request direction for the next response (0: none).
    let armed = Arc::new(AtomicU64::new(0));
    let (st1, st2, armed2) = (st.clone(), st.clone(), armed.clone());
    std::thread::spawn(move || pump_requests(&st1, client, s2, &armed));
    std::thread::spawn(move || pump_responses(&st2, server, c2, &armed2));
}

fn close_both(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Occurrences of `pat` in `tail + chunk` that end inside `chunk`; keeps a new tail.
fn scan(tail: &mut Vec<u8>, chunk: &[u8], pat: &[u8], mut each: impl FnMut(&[u8])) {
    let old = tail.len();
    tail.extend_from_slice(chunk);
    for i in 0..tail.len().saturating_sub(pat.len() - 1) {
        if i + pat.len() > old && tail[i..].starts_with(pat) {
            each(&tail[i + pat.len()..]);
        }
    }
    let keep = tail.len().saturating_sub(64);
    tail.drain(..keep);
}

fn pump_requests(st: &ProxyState, mut from: TcpStream, mut to: TcpStream, armed: &AtomicU64) {
    let (mut buf, mut tail, mut tail2) = ([0u8; 16384], Vec::new(), Vec::new());
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let chunk = &buf[..n];
        st.keep(chunk);
        scan(&mut tail, chunk, b"GET /payments/service-health ", |_| {
            st.health_requests.fetch_add(1, SeqCst);
        });
        let mut cut = None;
        scan(&mut tail2, chunk, b"POST /payments ", |_| {
            let k = st.posts.fetch_add(1, SeqCst) + 1;
            let every = st.cut_every.load(SeqCst);
            if every > 0 && k.is_multiple_of(every) {
                cut = Some(CUTS[((k / every) % 3) as usize]);
            }
        });
        if to.write_all(chunk).is_err() {
            break;
        }
        match cut {
            Some(Cut::AfterRequest) => {
                st.cuts[0].fetch_add(1, SeqCst);
                break;
            }
            Some(Cut::BeforeResponse) => armed.store(1, SeqCst),
            Some(Cut::MidResponse) => armed.store(2, SeqCst),
            None => {}
        }
    }
    close_both(&from, &to);
}

fn pump_responses(st: &ProxyState, mut from: TcpStream, mut to: TcpStream, armed: &AtomicU64) {
    let (mut buf, mut tail) = ([0u8; 16384], Vec::new());
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let chunk = &buf[..n];
        st.keep(chunk);
        scan(&mut tail, chunk, b"HTTP/1.1 ", |rest| {
            let code = rest.get(..3).and_then(|c| std::str::from_utf8(c).ok());
            if let Some(code) = code.and_then(|c| c.parse().ok()) {
                *lock(&st.statuses).entry(code).or_insert(0) += 1;
            }
        });
        let keep = match armed.swap(0, SeqCst) {
            1 => 0,
            2 => n / 2,
            _ => n,
        };
        if to.write_all(&chunk[..keep]).is_err() {
            break;
        }
        if keep < n {
            st.cuts[if keep == 0 { 1 } else { 2 }].fetch_add(1, SeqCst);
            break;
        }
    }
    close_both(&from, &to);
}
