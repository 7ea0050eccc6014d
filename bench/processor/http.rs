//! HTTP/1.1 over one blocking stream, shaped like Kestrel: keep-alive, `Host`
//! required, Content-Length or chunked request bodies, `Expect: 100-continue`,
//! bodies answered with `Transfer-Encoding: chunked`, empty ones with
//! `Content-Length: 0`, `Date` and `Server: Kestrel` headers.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::SystemTime;

use crate::time;

/// Request line + headers (Kestrel's `MaxRequestHeadersTotalSize` is 32 KiB).
const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
/// Far below Kestrel's 30 MB: every body this API takes is tiny.
const MAX_BODY: usize = 1024 * 1024;

pub struct Request {
    pub method: String,
    /// The request-target as sent (`/path?query`).
    pub target: String,
    pub http10: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Every value of a header (names compare case-insensitively).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Whether the connection stays open after this request's response.
    fn keep_alive(&self) -> bool {
        if self.http10 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, body: String) -> Response {
        let content_type = Some("application/json; charset=utf-8");
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// No answer: the client is gone, the connection is closed.
    pub fn abort() -> Response {
        Response::empty(0)
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn http_date_now() -> String {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    time::http_date(time::ticks_from_unix(since.as_secs(), since.subsec_nanos()))
}

/// Appends the response bytes: chunked body when there is one (HTTP/1.1), a raw
/// body ended by closing for HTTP/1.0, `Content-Length: 0` when empty.
pub fn encode(out: &mut Vec<u8>, resp: &Response, http10: bool, close: bool) {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let chunked = !resp.body.is_empty() && !http10;
    if resp.body.is_empty() && resp.status != 204 {
        head.push_str("Content-Length: 0\r\n");
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    if let Some(ct) = resp.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(&format!("Date: {}\r\nServer: Kestrel\r\n", http_date_now()));
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    out.extend_from_slice(head.as_bytes());
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", resp.body.len()).as_bytes());
        out.extend_from_slice(&resp.body);
        out.extend_from_slice(b"\r\n0\r\n\r\n");
    } else {
        out.extend_from_slice(&resp.body);
    }
}

/// A request the server refuses before routing; the connection then closes.
#[derive(Debug, PartialEq, Eq)]
pub enum Reject {
    BadRequest,
    TooLarge,
    HeadersTooLarge,
}

impl Reject {
    fn status(&self) -> u16 {
        match self {
            Reject::BadRequest => 400,
            Reject::TooLarge => 413,
            Reject::HeadersTooLarge => 431,
        }
    }
}

/// How the body of a parsed head is framed.
enum Framing {
    Length(usize),
    Chunked,
}

/// Parses a request head from `buf`: `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, Framing, usize)>, Reject> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Reject::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadersTooLarge),
        Err(_) => return Err(Reject::BadRequest),
    };
    if len > MAX_HEAD {
        return Err(Reject::HeadersTooLarge);
    }
    let request = Request {
        method: parsed.method.unwrap_or_default().to_string(),
        target: parsed.path.unwrap_or_default().to_string(),
        http10: parsed.version == Some(0),
        headers: parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        body: Vec::new(),
    };
    let hosts = request.header_values("host").count();
    if (!request.http10 && hosts == 0) || hosts > 1 {
        return Err(Reject::BadRequest);
    }
    let framing = if let Some(te) = request.header("transfer-encoding") {
        let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
        if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(Reject::BadRequest);
        }
        Framing::Chunked
    } else {
        let mut lengths = request.header_values("content-length");
        let length = match (lengths.next(), lengths.next()) {
            (None, _) => 0,
            (Some(v), None) => parse_length(v)?,
            (Some(_), Some(_)) => return Err(Reject::BadRequest),
        };
        if length > MAX_BODY {
            return Err(Reject::TooLarge);
        }
        Framing::Length(length)
    };
    Ok(Some((request, framing, len)))
}

fn parse_length(v: &[u8]) -> Result<usize, Reject> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Reject::BadRequest);
    }
    Ok(v.iter()
        .fold(0usize, |acc, b| acc * 10 + usize::from(b - b'0')))
}

/// Decodes a complete chunked body from `buf`: `Ok(None)` when more is needed,
/// else the body and the bytes consumed (trailers skipped).
pub fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Reject> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if rest.len() > 1024 {
                Err(Reject::BadRequest)
            } else {
                Ok(None)
            };
        };
        let line = &rest[..eol];
        let size_text = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if size_text.is_empty() || size_text.len() > 8 {
            return Err(Reject::BadRequest);
        }
        let size = size_text.iter().try_fold(0usize, |acc, &b| {
            char::from(b).to_digit(16).map(|d| acc * 16 + d as usize)
        });
        let size = size.ok_or(Reject::BadRequest)?;
        pos += eol + 2;
        if size == 0 {
            return skip_trailers(buf, pos).map(|end| end.map(|end| (body, end)));
        }
        if body.len() + size > MAX_BODY {
            return Err(Reject::TooLarge);
        }
        let Some(data) = buf.get(pos..pos + size + 2) else {
            return Ok(None);
        };
        if &data[size..] != b"\r\n" {
            return Err(Reject::BadRequest);
        }
        body.extend_from_slice(&data[..size]);
        pos += size + 2;
    }
}

fn skip_trailers(buf: &[u8], mut pos: usize) -> Result<Option<usize>, Reject> {
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if rest.len() > MAX_HEAD {
                Err(Reject::HeadersTooLarge)
            } else {
                Ok(None)
            };
        };
        pos += eol + 2;
        if eol == 0 {
            return Ok(Some(pos));
        }
    }
}

/// A stream that can tell, without blocking or consuming input, whether the
/// peer has closed or reset the connection.
pub trait Probe {
    fn peer_gone(&self) -> bool;
}

impl Probe for TcpStream {
    fn peer_gone(&self) -> bool {
        let mut byte = [0u8; 1];
        if self.set_nonblocking(true).is_err() {
            return false;
        }
        let gone = match self.peek(&mut byte) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        };
        // Failing to restore blocking mode would break the connection: drop it.
        self.set_nonblocking(false).is_err() || gone
    }
}

/// One connection: a read buffer holding bytes not yet consumed by a request.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

/// What the connection loop reads next.
enum Next {
    Request(Request),
    Closed,
    Reject(Reject),
}

impl<S: Read + Write + Probe> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Reads more bytes; `Ok(false)` at end of stream.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn next_request(&mut self) -> io::Result<Next> {
        let (mut request, framing, head_len) = loop {
            match parse_head(&self.buf) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) if !self.fill()? => return Ok(Next::Closed),
                Ok(None) => {}
                Err(reject) => return Ok(Next::Reject(reject)),
            }
        };
        self.buf.drain(..head_len);
        let expects_continue = request
            .header_values("expect")
            .any(|v| v.eq_ignore_ascii_case(b"100-continue"));
        let mut continued = false;
        loop {
            let framed = match framing {
                Framing::Length(n) if self.buf.len() >= n => Some((self.buf[..n].to_vec(), n)),
                Framing::Length(_) => None,
                Framing::Chunked => match decode_chunked(&self.buf) {
                    Ok(done) => done,
                    Err(reject) => return Ok(Next::Reject(reject)),
                },
            };
            if let Some((body, used)) = framed {
                request.body = body;
                self.buf.drain(..used);
                return Ok(Next::Request(request));
            }
            if expects_continue && !continued && !request.http10 {
                self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                continued = true;
            }
            if !self.fill()? {
                return Ok(Next::Closed);
            }
        }
    }

    /// Serves requests until the peer closes, asks to close, or errs.
    /// `handle` gets the request and a probe telling whether the client left.
    pub fn serve(mut self, handle: impl Fn(&Request, &dyn Fn() -> bool) -> Response) {
        let mut out = Vec::with_capacity(1024);
        loop {
            out.clear();
            let keep_alive = match self.next_request() {
                Ok(Next::Request(request)) => {
                    let stream = &self.stream;
                    let response = handle(&request, &|| stream.peer_gone());
                    if response.status == 0 {
                        return;
                    }
                    let keep =
                        request.keep_alive() && (!request.http10 || response.body.is_empty());
                    encode(&mut out, &response, request.http10, !keep);
                    keep
                }
                Ok(Next::Reject(reject)) => {
                    encode(&mut out, &Response::empty(reject.status()), false, true);
                    false
                }
                Ok(Next::Closed) | Err(_) => return,
            };
            if self
                .stream
                .write_all(&out)
                .and_then(|()| self.stream.flush())
                .is_err()
                || !keep_alive
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted stream: reads come from `input` in pieces of `step` bytes.
    struct Script {
        input: Vec<u8>,
        pos: usize,
        step: usize,
        output: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let end = (self.pos + self.step.min(buf.len())).min(self.input.len());
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.input[self.pos..end]);
            self.pos = end;
            Ok(n)
        }
    }

    impl Probe for &mut Script {
        fn peer_gone(&self) -> bool {
            false
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Runs the connection over `input` fed `step` bytes at a time; the handler
    /// echoes method, target and body.
    fn run(input: &[u8], step: usize) -> String {
        let mut script = Script {
            input: input.to_vec(),
            pos: 0,
            step,
            output: Vec::new(),
        };
        Conn::new(&mut script).serve(|r, _| {
            let text = format!(
                "{} {} {}",
                r.method,
                r.target,
                String::from_utf8_lossy(&r.body)
            );
            Response::json(200, text)
        });
        String::from_utf8_lossy(&script.output).into_owned()
    }

    #[test]
    fn chunked_response_and_keep_alive_pipelining() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz";
        for step in [1, 7, 4096] {
            let out = run(input, step);
            assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
            assert!(out.contains("Transfer-Encoding: chunked\r\n"));
            assert!(out.contains("Content-Type: application/json; charset=utf-8\r\n"));
            assert!(out.contains("\r\n7\r\nGET /a \r\n0\r\n\r\n"), "{out}");
            assert!(out.contains("\r\nb\r\nPOST /b xyz\r\n0\r\n\r\n"), "{out}");
            assert!(!out.contains("Connection: close"));
        }
    }

    #[test]
    fn chunked_request_body() {
        let input = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 5, 4096] {
            assert!(run(input, step).contains("POST /c abcde\r\n"));
        }
    }

    #[test]
    fn host_is_required() {
        let out = run(b"GET / HTTP/1.1\r\n\r\n", 4096);
        assert!(
            out.starts_with(
                "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n"
            ),
            "{out}"
        );
        let out = run(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 4096);
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    }

    #[test]
    fn malformed_requests_get_400_and_close() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            let out = run(bad, 4096);
            assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
            assert_eq!(out.matches("HTTP/1.1").count(), 1);
        }
        let big = run(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            4096,
        );
        assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
        let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 40_000));
        assert!(run(&huge, 4096).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn connection_close_and_http10() {
        let out = run(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 4096);
        assert_eq!(out.matches("HTTP/1.1 200").count(), 1);
        assert!(out.contains("Connection: close\r\n"));
        let out = run(b"GET /z HTTP/1.0\r\n\r\n", 4096);
        assert!(
            out.contains("Connection: close\r\n") && !out.contains("chunked"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\nGET /z "), "{out}");
    }

    #[test]
    fn expect_continue_is_answered() {
        let head =
            "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let out = run(format!("{head}ok").as_bytes(), head.len());
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            "{out}"
        );
    }

    #[test]
    fn empty_and_no_content_responses() {
        let mut out = Vec::new();
        encode(&mut out, &Response::empty(500), false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nDate: ")
        );
        assert!(text.ends_with("Server: Kestrel\r\n\r\n"));
        let mut out = Vec::new();
        encode(&mut out, &Response::empty(204), false, false);
        assert!(!String::from_utf8(out).unwrap().contains("Content-Length"));
    }
}
