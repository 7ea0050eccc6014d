//! The tests' HTTP/1.1 client: one-shot requests, raw bytes, and a keep-alive client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
