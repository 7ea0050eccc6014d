//! A blocking HTTP/1.1 keep-alive client to one payment processor (rustls for https).
//!
//! Each worker thread owns one `Client` per processor. The client reports what it knows
//! and nothing more: an `Outcome::Unknown` means the request may have been stored, and
//! only `GET /payments/{id}` can tell (see `worker`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::payment::{parse_cents, write_cents, CorrelationId};
use crate::time::{parse_iso_us, write_iso_ms};

/// Where a processor lives, parsed once from its URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Path prefix without a trailing slash (usually empty).
    pub base: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!(
                "processor URL must start with http:// or https://: {url:?}"
            ));
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port in {url:?}"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            tls,
            base: base.to_string(),
        })
    }
}

/// What a `POST /payments` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 200: stored with exactly the fields we sent.
    Stored,
    /// 422: a payment with this correlationId is already stored there.
    Duplicate,
    /// 500, 429, or another non-2xx: nothing stored.
    Refused(u16),
    /// Could not connect or send: nothing reached the processor.
    Unreachable,
    /// Sent, but no complete response: it may or may not be stored.
    Unknown,
}

/// What `GET /payments/{id}` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found { cents: u64, requested_at_us: i64 },
    NotFound,
    Error,
}

/// A processor's own health report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub failing: bool,
    pub min_response_ms: u32,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// A keep-alive connection and the read timeout its socket has now.
struct Conn {
    io: Io,
    read_timeout: Option<Duration>,
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn {
            io,
            read_timeout: None,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => &s.sock,
        }
    }

    /// Bounds the next reads by `left`. The socket option is changed only when it is
    /// off by more than `slack` (one syscall per exchange at most, usually none), so a
    /// read may end up to `slack` before or after the exchange's deadline.
    fn bound_reads(&mut self, left: Duration, slack: Duration) -> io::Result<()> {
        let close = self.read_timeout.is_some_and(|t| t.abs_diff(left) <= slack);
        if !close {
            self.tcp().set_read_timeout(Some(left))?;
            self.read_timeout = Some(left);
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.io {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.io {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

/// Builds the rustls config once per process: webpki roots plus an optional PEM file.
pub fn tls_config(extra_ca: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("--tls-ca {path}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("--tls-ca {path}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("--tls-ca {path}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A parsed response: status and body (chunked or sized).
struct Response {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

pub struct Client {
    ep: Arc<Endpoint>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    connect_timeout: Duration,
    conn: Option<Conn>,
    addr: Option<SocketAddr>,
    buf: Vec<u8>,
    req: Vec<u8>,
}

const MAX_RESPONSE: usize = 64 * 1024;

impl Client {
    pub fn new(
        ep: Arc<Endpoint>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Client {
        Client {
            ep,
            tls,
            timeout,
            connect_timeout,
            conn: None,
            addr: None,
            buf: Vec::new(),
            req: Vec::new(),
        }
    }

    fn connect(&mut self) -> io::Result<Conn> {
        let addr = match self.addr {
            Some(a) => a,
            None => {
                let a = (self.ep.host.as_str(), self.ep.port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "host has no address")
                    })?;
                self.addr = Some(a);
                a
            }
        };
        let tcp = TcpStream::connect_timeout(&addr, self.connect_timeout)
            .inspect_err(|_| self.addr = None)?;
        tcp.set_nodelay(true)?;
        if !self.ep.tls {
            return Ok(Conn::new(Io::Plain(tcp)));
        }
        let cfg = self
            .tls
            .clone()
            .ok_or_else(|| io::Error::other("https processor without a TLS config"))?;
        let name = rustls::pki_types::ServerName::try_from(self.ep.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(cfg, name).map_err(io::Error::other)?;
        Ok(Conn::new(Io::Tls(Box::new(rustls::StreamOwned::new(
            conn, tcp,
        )))))
    }

    fn head(&mut self, method: &str, path: &[u8], body_len: Option<usize>) {
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(self.ep.base.as_bytes());
        self.req.extend_from_slice(path);
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.req.extend_from_slice(self.ep.host.as_bytes());
        self.req.extend_from_slice(b"\r\n");
        if let Some(n) = body_len {
            self.req
                .extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
            self.req
                .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            self.req.extend_from_slice(b"\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
    }

    /// Sends `self.req`; `Err(sent)` tells whether any byte may have reached the server.
    fn exchange(&mut self) -> Result<Response, bool> {
        let deadline = Instant::now() + self.timeout;
        let reused = self.conn.is_some();
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|_| false)?,
        };
        if conn
            .write_all(&self.req)
            .and_then(|_| conn.flush())
            .is_err()
        {
            // A reused socket may have been closed by the server; a fresh one failed early.
            return Err(reused);
        }
        // A tenth of the timeout, at most 50 ms: what a read may miss the deadline by.
        let slack = self.timeout.min(Duration::from_millis(500)) / 10;
        match read_response(&mut conn, &mut self.buf, deadline, slack) {
            Ok(resp) => {
                if !resp.close {
                    self.conn = Some(conn);
                }
                Ok(resp)
            }
            Err(_) => Err(true),
        }
    }

    /// `POST /payments` with the exact fields we will record if it answers 200.
    pub fn pay(&mut self, id: &CorrelationId, cents: u64, requested_at_us: i64) -> Outcome {
        let mut body = Vec::with_capacity(128);
        body.extend_from_slice(b"{\"correlationId\":\"");
        body.extend_from_slice(&id.text());
        body.extend_from_slice(b"\",\"amount\":");
        write_cents(&mut body, cents);
        body.extend_from_slice(b",\"requestedAt\":\"");
        write_iso_ms(&mut body, requested_at_us);
        body.extend_from_slice(b"\"}");
        self.head("POST", b"/payments", Some(body.len()));
        self.req.extend_from_slice(&body);
        match self.exchange() {
            Ok(r) if (200..300).contains(&r.status) => Outcome::Stored,
            Ok(r) if r.status == 422 => Outcome::Duplicate,
            Ok(r) => Outcome::Refused(r.status),
            Err(false) => Outcome::Unreachable,
            Err(true) => Outcome::Unknown,
        }
    }

    /// `GET /payments/{id}`: what the processor stored for this payment.
    pub fn lookup(&mut self, id: &CorrelationId) -> Lookup {
        let mut path = b"/payments/".to_vec();
        path.extend_from_slice(&id.text());
        self.head("GET", &path, None);
        match self.exchange() {
            Ok(r) if r.status == 200 => parse_stored(&r.body).unwrap_or(Lookup::Error),
            Ok(r) if r.status == 404 => Lookup::NotFound,
            _ => Lookup::Error,
        }
    }

    /// `GET /payments/service-health` (rate-limited by the processor: see `health`).
    pub fn health(&mut self) -> Option<Health> {
        self.head("GET", b"/payments/service-health", None);
        // The processor answers 503 with the same body while it is failing.
        let r = self
            .exchange()
            .ok()
            .filter(|r| r.status == 200 || r.status == 503)?;
        let failing = json_field(&r.body, b"failing")?;
        let min = json_field(&r.body, b"minResponseTime")?;
        let failing = match failing {
            b"true" => true,
            b"false" => false,
            _ => return None,
        };
        let min_response_ms = std::str::from_utf8(min).ok()?.parse().ok()?;
        Some(Health {
            failing,
            min_response_ms,
        })
    }
}

/// The raw value of a top-level field in a flat JSON object (quotes stripped).
fn json_field<'a>(body: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut key = Vec::with_capacity(name.len() + 2);
    key.push(b'"');
    key.extend_from_slice(name);
    key.push(b'"');
    let at = body.windows(key.len()).position(|w| w == key.as_slice())? + key.len();
    let rest = body.get(at..)?;
    let colon = rest.iter().position(|&c| c == b':')?;
    let rest = rest.get(colon + 1..)?.trim_ascii_start();
    if let Some(s) = rest.strip_prefix(b"\"") {
        let end = s.iter().position(|&c| c == b'"')?;
        return s.get(..end);
    }
    let end = rest
        .iter()
        .position(|&c| matches!(c, b',' | b'}' | b' ' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    rest.get(..end)
}

fn parse_stored(body: &[u8]) -> Option<Lookup> {
    let cents = parse_cents(json_field(body, b"amount")?)?;
    let requested_at_us = parse_iso_us(json_field(body, b"requestedAt")?)?;
    Some(Lookup::Found {
        cents,
        requested_at_us,
    })
}

fn read_more(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    deadline: Instant,
    slack: Duration,
) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    conn.bound_reads(left, slack)?;
    let mut chunk = [0u8; 4096];
    let n = conn.read(&mut chunk)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if buf.len() + n > MAX_RESPONSE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response too large",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn read_response(
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    deadline: Instant,
    slack: Duration,
) -> io::Result<Response> {
    buf.clear();
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let (status, head_len, length, chunked, close) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp
            .parse(buf)
            .map_err(|_| bad("malformed response head"))?
        {
            httparse::Status::Complete(n) => {
                let status = resp.code.ok_or_else(|| bad("no status"))?;
                let mut length = None;
                let mut chunked = false;
                let mut close = resp.version == Some(0);
                for h in resp.headers.iter() {
                    let name = h.name.as_bytes();
                    if name.eq_ignore_ascii_case(b"content-length") {
                        let v = std::str::from_utf8(h.value).map_err(|_| bad("length"))?;
                        length = Some(v.trim().parse::<usize>().map_err(|_| bad("length"))?);
                    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        chunked = h
                            .value
                            .windows(7)
                            .any(|w| w.eq_ignore_ascii_case(b"chunked"));
                    } else if name.eq_ignore_ascii_case(b"connection") {
                        close |= h.value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
                    }
                }
                break (status, n, length, chunked, close);
            }
            httparse::Status::Partial => read_more(conn, buf, deadline, slack)?,
        }
    };
    let body = if chunked {
        loop {
            if let Some(body) =
                decode_chunked(&buf[head_len..]).map_err(|_| bad("bad chunked body"))?
            {
                break body;
            }
            read_more(conn, buf, deadline, slack)?;
        }
    } else {
        let len = length.unwrap_or(0);
        if len > MAX_RESPONSE {
            return Err(bad("response too large"));
        }
        while buf.len() < head_len + len {
            read_more(conn, buf, deadline, slack)?;
        }
        buf[head_len..head_len + len].to_vec()
    };
    Ok(Response {
        status,
        body,
        close,
    })
}

/// Decodes a complete chunked body; `Ok(None)` while more bytes are needed.
fn decode_chunked(mut s: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = s.windows(2).position(|w| w == b"\r\n") else {
            return if s.len() > 32 { Err(()) } else { Ok(None) };
        };
        let size_txt = s[..eol].split(|&c| c == b';').next().unwrap_or(&[]);
        let size_txt = std::str::from_utf8(size_txt).map_err(|_| ())?.trim();
        let size = usize::from_str_radix(size_txt, 16).map_err(|_| ())?;
        if size > MAX_RESPONSE {
            return Err(());
        }
        let data_start = eol + 2;
        if size == 0 {
            // Trailers are not used by Kestrel here: expect the final CRLF.
            return Ok(if s.len() >= data_start + 2 {
                Some(out)
            } else {
                None
            });
        }
        let Some(data) = s.get(data_start..data_start + size) else {
            return Ok(None);
        };
        out.extend_from_slice(data);
        match s.get(data_start + size..data_start + size + 2) {
            None => return Ok(None),
            Some(b"\r\n") => s = &s[data_start + size + 2..],
            Some(_) => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://payment-processor-default:8080").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls, e.base.as_str()),
            ("payment-processor-default", 8080, false, "")
        );
        let e = Endpoint::parse("https://pp.example/api/").unwrap();
        assert_eq!((e.port, e.tls, e.base.as_str()), (443, true, "/api"));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://:80").is_err());
        assert!(Endpoint::parse("http://x:port").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            Ok(Some(b"hello world".to_vec()))
        );
        let full = b"5\r\nhello\r\n0\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(decode_chunked(&full[..n]), Ok(None), "{n}");
        }
        assert_eq!(decode_chunked(b"zz\r\n"), Err(()));
        assert_eq!(decode_chunked(b"5\r\nhelloXX"), Err(()));
    }

    #[test]
    fn stored_payment_fields() {
        let body = br#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90,"requestedAt":"2025-07-15T12:34:56.789Z"}"#;
        assert_eq!(
            parse_stored(body),
            Some(Lookup::Found {
                cents: 1990,
                requested_at_us: 1_752_582_896_789_000
            })
        );
        let unzoned = br#"{"amount": 20.05, "requestedAt": "2025-07-15T12:34:56.789"}"#;
        assert!(matches!(
            parse_stored(unzoned),
            Some(Lookup::Found { cents: 2005, .. })
        ));
        assert_eq!(parse_stored(b"{}"), None);
        assert_eq!(
            json_field(
                br#"{"failing":false,"minResponseTime":100}"#,
                b"minResponseTime"
            ),
            Some(&b"100"[..])
        );
    }
}
