//! Shared harness of the end-to-end tests: real processes on loopback (the processor
//! emulator and `rinha`) and polling helpers; the HTTP client is in `http`, the
//! fault-injecting proxy in `proxy`.
#![allow(dead_code)]

mod http;
pub mod proxy;

pub use http::*;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
