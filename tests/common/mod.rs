//! Shared harness of the end-to-end tests: real processes on loopback (the processor
//! emulator and `rinha`), a raw HTTP/1.1 client, and polling helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
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

/// Starts `rinha` on a free port against two processors, with extra flags.
pub fn rinha(default: &Proc, fallback: &Proc, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--default-url".to_string(),
        format!("http://127.0.0.1:{}", default.port),
        "--fallback-url".to_string(),
        format!("http://127.0.0.1:{}", fallback.port),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rinha"))
        .args(&args)
        .env_clear()
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rinha");
    let err = child.stderr.take().expect("stderr");
    let port = wait_port(err, |l| {
        l.strip_prefix("rinha: listening on tcp port ")?
            .trim()
            .parse()
            .ok()
    });
    Proc { child, port }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
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

/// Polls until the backend has nothing queued or in flight.
pub fn wait_drained(backend: &Proc, timeout: Duration) {
    let end = Instant::now() + timeout;
    loop {
        let h = request(backend.port, "GET", "/health", &[], "");
        if field(&h.body, &["queue"]) == "0" && field(&h.body, &["inflight"]) == "0" {
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
