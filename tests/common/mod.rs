//! Shared harness of the end-to-end tests: real processes on loopback (the processor
//! emulator and `rinha`), a raw HTTP/1.1 client, and polling helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A child process killed (by PID) when dropped.
pub struct Proc {
    pub child: Child,
    pub port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines from a child's stream on a thread until one yields a port.
fn wait_port(stream: impl Read + Send + 'static, find: fn(&str) -> Option<u16>) -> u16 {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(p) = find(&line) {
                    let _ = tx.send(p);
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("process did not report its port")
}

/// Starts the processor emulator on a free loopback port.
pub fn processor(fee: &str) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_processor"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--fee",
            fee,
            "--token",
            "123",
            "--rate-limit-seconds",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start processor");
    let out = child.stdout.take().expect("stdout");
    let port = wait_port(out, |l| {
        l.split("127.0.0.1:")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    });
    Proc { child, port }
}

/// The default (fee 0.05) and fallback (fee 0.15) processors.
pub fn processors() -> (Proc, Proc) {
    (processor("0.05"), processor("0.15"))
}

/// Starts `rinha` on a free port against two processors, with extra flags.
pub fn rinha(default: &Proc, fallback: &Proc, extra: &[&str]) -> Proc {
    rinha_at(default.port, fallback.port, extra)
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// An HTTP/1.1 request as text (JSON body with its length unless a bodiless GET).
pub fn render(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// Writes raw bytes on a fresh connection and returns all it answers until closed.
pub fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = render(
        method,
        path,
        &[headers, &[("Connection", "close")]].concat(),
        body,
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A random-enough UUID v4 text from a counter and the clock (unique per test run).
pub fn uuid(n: u64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let a = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = n ^ (t.rotate_left(17));
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a as u16 & 0xfff,
        b as u16 & 0xfff,
        b >> 16 & 0xffff_ffff_ffff
    )
}

pub fn pay(port: u16, id: &str, amount: &str) -> u16 {
    request(
        port,
        "POST",
        "/payments",
        &[],
        &format!(r#"{{"correlationId":"{id}","amount":{amount}}}"#),
    )
    .status
}

pub fn admin(pp: &Proc, method: &str, path: &str, body: &str) -> Resp {
    request(pp.port, method, path, &[("X-Rinha-Token", "123")], body)
}

pub fn set_failure(pp: &Proc, failing: bool) {
    let r = admin(
        pp,
        "PUT",
        "/admin/configurations/failure",
        &format!(r#"{{"failure":{failing}}}"#),
    );
    assert!((200..300).contains(&r.status), "{r:?}");
}

pub fn set_delay(pp: &Proc, ms: u64) {
    let r = admin(
        pp,
        "PUT",
        "/admin/configurations/delay",
        &format!(r#"{{"delay":{ms}}}"#),
    );
    assert!((200..300).contains(&r.status), "{r:?}");
}

/// A JSON number or string field of a flat object, as text.
pub fn field<'a>(json: &'a str, path: &[&str]) -> &'a str {
    let mut s = json;
    for key in path {
        let k = format!("\"{key}\":");
        let at = s.find(&k).unwrap_or_else(|| panic!("no {key} in {json}"));
        s = &s[at + k.len()..];
    }
    let end = s.find([',', '}']).unwrap_or(s.len());
    s[..end].trim().trim_matches('"')
}

/// `(totalRequests, totalAmount in cents)` from an admin or backend summary object.
pub fn totals(json: &str, prefix: &[&str]) -> (u64, u64) {
    let mut p = prefix.to_vec();
    p.push("totalRequests");
    let n = field(json, &p).parse().expect("totalRequests");
    p.pop();
    p.push("totalAmount");
    let amount = field(json, &p);
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, "0"));
    let frac = format!("{frac:0<2}");
    let cents =
        whole.parse::<u64>().expect("amount") * 100 + frac[..2].parse::<u64>().expect("cents");
    (n, cents)
}

pub fn iso(ms: i64) -> String {
    let mut out = Vec::new();
    rinha::time::write_iso_ms(&mut out, ms * 1000);
    String::from_utf8(out).expect("ascii")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `(requests, cents)` of default and fallback.
pub type PerProcessor = [(u64, u64); 2];

/// Backend vs processors over `[from, to]` (ms): both summaries, per processor.
pub fn compare(
    backend: &Proc,
    default: &Proc,
    fallback: &Proc,
    from: i64,
    to: i64,
) -> (PerProcessor, PerProcessor) {
    let q = format!("?from={}&to={}", iso(from), iso(to));
    let b = request(
        backend.port,
        "GET",
        &format!("/payments-summary{q}"),
        &[],
        "",
    );
    assert_eq!(b.status, 200, "{b:?}");
    let ours = [
        totals(&b.body, &["default"]),
        totals(&b.body, &["fallback"]),
    ];
    let d = admin(default, "GET", &format!("/admin/payments-summary{q}"), "");
    let f = admin(fallback, "GET", &format!("/admin/payments-summary{q}"), "");
    (ours, [totals(&d.body, &[]), totals(&f.body, &[])])
}

/// Polls until the backend has nothing queued, in flight or unsent to a linked peer.
pub fn wait_drained(backend: &Proc, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let h = request(backend.port, "GET", "/health", &[], "");
        let settled = ["queue", "inflight", "unreplicated"];
        if settled.iter().all(|f| field(&h.body, &[f]) == "0") {
            return;
        }
        assert!(Instant::now() < end, "backend did not drain: {}", h.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port free right now (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Flags of instance `i` (1-based) in a full mesh over `peer_ports`.
pub fn mesh_flags(i: usize, peer_ports: &[u16]) -> Vec<String> {
    let mut v = vec![
        "--instance-id".to_string(),
        i.to_string(),
        "--peer-token".to_string(),
        "test-secret".to_string(),
        "--peer-listen".to_string(),
        format!("127.0.0.1:{}", peer_ports[i - 1]),
    ];
    for (j, p) in peer_ports.iter().enumerate() {
        if j + 1 != i {
            v.push("--peer".to_string());
            v.push(format!("127.0.0.1:{p}"));
        }
    }
    v
}

/// Polls until `/health` reports `n` linked peers.
pub fn wait_linked(backend: &Proc, n: usize, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let h = request(backend.port, "GET", "/health", &[], "");
        if field(&h.body, &["peers"]) == n.to_string() {
            return;
        }
        assert!(Instant::now() < end, "peers not linked: {}", h.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------
// Fault injection (tests/faults/): a restartable emulator, a keep-alive client, a
// loopback TCP proxy that counts and cuts, a per-id audit of the processors, RSS.

/// Starts the processor emulator on `127.0.0.1:port` (a restart at the same address).
pub fn processor_at(fee: &str, port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", &listen, "--fee", fee, "--token", "123"];
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start processor");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let _ = out.read_line(&mut line);
        if line.contains(&listen) {
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            return Proc { child, port };
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(Instant::now() < end, "processor could not bind {listen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `rinha` against processors (or proxies) listening on loopback ports; with
/// `FAULTS_LOG` set in the environment its log lines are echoed to stderr.
pub fn rinha_at(default_port: u16, fallback_port: u16, extra: &[&str]) -> Proc {
    rinha_logged(default_port, fallback_port, extra).0
}

/// Every line an instance logged so far.
pub type Log = Arc<Mutex<Vec<String>>>;

/// As `rinha_at`, also keeping every log line.
pub fn rinha_logged(default_port: u16, fallback_port: u16, extra: &[&str]) -> (Proc, Log) {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--default-url".to_string(),
        format!("http://127.0.0.1:{default_port}"),
        "--fallback-url".to_string(),
        format!("http://127.0.0.1:{fallback_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rinha"))
        .args(&args)
        .env_clear()
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rinha");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    let echo = std::env::var_os("FAULTS_LOG").is_some();
    let log: Log = Arc::default();
    let keep = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("[rinha {pid}] {line}");
            }
            if let Some(p) = line.strip_prefix("rinha: listening on tcp port ") {
                let _ = tx.send(p.trim().parse::<u16>().unwrap_or(0));
            }
            lock(&keep).push(line);
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("rinha did not report its port");
    (Proc { child, port }, log)
}

/// The text of `GET /metrics`.
pub fn metrics_text(port: u16) -> String {
    let r = request(port, "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.head.contains("text/plain; version=0.0.4"),
        "exposition format: {}",
        r.head
    );
    r.body
}

/// The value of one series (`name{labels}` exactly as rendered) in a `/metrics` text.
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every series of a family (`name` or `name{...}`) in a `/metrics` text.
pub fn family_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labels) => labels.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A tool the test needs (from the Debian package `pkg`): its path, or `None` if the
/// test may be skipped (only with RINHA_SKIP_TOOLS set, never in CI); else a panic.
pub fn required_tool(name: &str, pkg: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match found {
        Some(p) => Some(p),
        None if !ci && std::env::var_os("RINHA_SKIP_TOOLS").is_some() => {
            eprintln!(
                "SKIPPED: {name} not installed (apt-get install {pkg}); RINHA_SKIP_TOOLS is set"
            );
            None
        }
        None => panic!(
            "{name} not found on PATH: apt-get install {pkg} (.ci/run does); \
             outside CI, RINHA_SKIP_TOOLS=1 skips the tests that need it"
        ),
    }
}

/// A keep-alive HTTP/1.1 client of one loopback port; reconnects when the server
/// closed the connection (safe for our requests: GETs and idempotent payment POSTs).
pub struct Client {
    pub port: u16,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            port,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// One exchange; status 0 if two connections in a row gave no complete response.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let req = render(method, path, headers, body);
        for _ in 0..2 {
            if let Some(r) = self.exchange(req.as_bytes()) {
                return r;
            }
        }
        Resp {
            status: 0,
            head: String::new(),
            body: String::new(),
        }
    }

    pub fn pay(&mut self, id: &str, amount: &str) -> u16 {
        let body = format!(r#"{{"correlationId":"{id}","amount":{amount}}}"#);
        self.send("POST", "/payments", &[], &body).status
    }

    fn exchange(&mut self, req: &[u8]) -> Option<Resp> {
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.buf.clear();
        }
        let s = self.stream.as_mut()?;
        let got = s
            .write_all(req)
            .ok()
            .and_then(|_| read_one(s, &mut self.buf));
        if got.is_none() {
            self.stream = None;
        }
        got
    }
}

/// Reads one response (Content-Length or chunked) from `s`; leftovers stay in `buf`.
fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Resp> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(n) = complete_len(buf) {
            let resp = parse_response(&buf[..n]);
            buf.drain(..n);
            return Some(resp);
        }
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Length of the first complete response in `buf`, if there is one.
fn complete_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    if text.contains("transfer-encoding: chunked") {
        let mut at = head;
        loop {
            let line = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&buf[at..at + line]).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            at += line + 2 + size + 2;
            if size == 0 {
                return (buf.len() >= at).then_some(at);
            }
        }
    }
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head + len).then_some(head + len)
}

/// Where each posted correlationId ended up, asked of both processors one by one
/// (`GET /payments/{id}`).
#[derive(Debug, Default)]
pub struct Audit {
    pub once: u64,
    pub lost: Vec<String>,
    pub doubled: Vec<String>,
}

pub fn audit(ids: &[String], default: &Proc, fallback: &Proc) -> Audit {
    let mut clients = [Client::new(default.port), Client::new(fallback.port)];
    let mut a = Audit::default();
    for id in ids {
        let mut found = 0;
        for c in clients.iter_mut() {
            let r = c.send("GET", &format!("/payments/{id}"), &[], "");
            assert!(
                r.status == 200 || r.status == 404,
                "GET /payments/{id}: {r:?}"
            );
            found += u32::from(r.status == 200);
        }
        match found {
            0 => a.lost.push(id.clone()),
            1 => a.once += 1,
            _ => a.doubled.push(id.clone()),
        }
    }
    a
}

/// VmRSS of a process in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `p`-th percentile of `samples` in milliseconds (0 if empty).
pub fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = ((samples.len() as f64 * p / 100.0).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i].as_secs_f64() * 1000.0
}

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
    live: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    pub fn status_count(&self, status: u16) -> u64 {
        lock(&self.statuses).get(&status).copied().unwrap_or(0)
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
