//! HTTP/1.1 for the server side: a push parser over a connection's read buffer
//! (httparse for the head, `Content-Length` bodies) and pre-rendered responses.
//!
//! `parse_request` never copies: the `Request` borrows the buffer, and the caller drops
//! `consumed` bytes once it has answered. `Partial` is not an error.

/// Size limits, from `Config`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header: usize,
    pub max_body: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// Path without the query string.
    pub path: &'a [u8],
    /// Raw query string (after `?`), possibly empty.
    pub query: &'a [u8],
    pub body: &'a [u8],
    /// The client asked to close after this response (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
    pub purge_token: Option<&'a [u8]>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Complete(Request<'a>, usize),
    Partial,
}

/// A request we refuse; the connection is closed after the error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    Malformed,
    HeadTooLarge,
    BodyTooLarge,
    LengthRequired,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed => 400,
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::LengthRequired => 411,
        }
    }

    pub fn response(self) -> Vec<u8> {
        let reason = match self {
            HttpError::Malformed => "malformed HTTP request",
            HttpError::HeadTooLarge => "request head too large",
            HttpError::BodyTooLarge => "request body too large",
            HttpError::LengthRequired => "Content-Length required (no chunked bodies)",
        };
        error_response(self.status(), reason, true)
    }
}

const MAX_HEADERS: usize = 32;

fn eq_ignore_case(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&c| c == b',')
        .any(|t| eq_ignore_case(t.trim_ascii(), token))
}

/// Parses one request from the front of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > limits.max_header => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_header => {
            return Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.ok_or(HttpError::Malformed)?.as_bytes();
    let (path, query) = match target.iter().position(|&c| c == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &target[target.len()..]),
    };
    let http10 = req.version == Some(0);
    let mut close = http10;
    let mut length: Option<usize> = None;
    let mut purge_token = None;
    for h in req.headers.iter() {
        if eq_ignore_case(h.name.as_bytes(), "content-length") {
            let v = std::str::from_utf8(h.value)
                .map_err(|_| HttpError::Malformed)?
                .trim();
            let n: usize = v.parse().map_err(|_| HttpError::Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed);
            }
            length = Some(n);
        } else if eq_ignore_case(h.name.as_bytes(), "transfer-encoding") {
            return Err(HttpError::LengthRequired);
        } else if eq_ignore_case(h.name.as_bytes(), "connection") {
            if has_token(h.value, "close") {
                close = true;
            } else if http10 && has_token(h.value, "keep-alive") {
                close = false;
            }
        } else if eq_ignore_case(h.name.as_bytes(), "x-purge-token") {
            purge_token = Some(h.value);
        }
    }
    let body_len = length.unwrap_or(0);
    if body_len > limits.max_body {
        return Err(HttpError::BodyTooLarge);
    }
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Ok(Parsed::Partial);
    };
    let request = Request {
        method,
        path,
        query,
        body,
        close,
        purge_token,
    };
    Ok(Parsed::Complete(request, head_len + body_len))
}

/// A query value with broken percent-encoding, or longer than its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadQuery;

/// Looks up `key` in a query string, percent-decoding its value into `out`.
/// `Ok(None)` if absent or empty.
pub fn query_param<'b>(
    query: &[u8],
    key: &str,
    out: &'b mut [u8; 64],
) -> Result<Option<&'b [u8]>, BadQuery> {
    for pair in query.split(|&c| c == b'&') {
        let (k, v) = match pair.iter().position(|&c| c == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if k != key.as_bytes() {
            continue;
        }
        let mut n = 0;
        let mut i = 0;
        while i < v.len() {
            let c = match v[i] {
                b'%' => {
                    let hex = v.get(i + 1..i + 3).ok_or(BadQuery)?;
                    let s = std::str::from_utf8(hex).map_err(|_| BadQuery)?;
                    i += 2;
                    u8::from_str_radix(s, 16).map_err(|_| BadQuery)?
                }
                b'+' => b' ',
                c => c,
            };
            *out.get_mut(n).ok_or(BadQuery)? = c;
            n += 1;
            i += 1;
        }
        return Ok((n > 0).then_some(&out[..n]));
    }
    Ok(None)
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends a response head with a body length and optional extra header lines.
pub fn write_head(out: &mut Vec<u8>, status: u16, content_type: &str, len: usize, extra: &str) {
    let mut n = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(n.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    if !content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(content_type.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(n.format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A short plain-text error; `close` adds `Connection: close`.
pub fn error_response(status: u16, reason: &str, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let extra = match (status, close) {
        (503, _) => "Retry-After: 1\r\n",
        (405, _) => "Allow: GET, POST\r\n",
        (_, true) => "Connection: close\r\n",
        _ => "",
    };
    write_head(&mut out, status, "text/plain", reason.len() + 1, extra);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
    out
}

/// Appends a JSON response.
pub fn write_json(out: &mut Vec<u8>, status: u16, body: &[u8]) {
    write_head(out, status, "application/json", body.len(), "");
    out.extend_from_slice(body);
}

pub const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
pub const OK_EMPTY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header: 1024,
        max_body: 256,
    };

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf, &LIMITS) {
            Ok(Parsed::Complete(r, n)) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_post_with_body_and_pipelined_rest() {
        let buf = b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /health HTTP/1.1\r\n\r\n";
        let (r, n) = complete(buf);
        assert_eq!(
            (r.method, r.path, r.body, r.close),
            (Method::Post, &b"/payments"[..], &b"{}"[..], false)
        );
        let (r2, n2) = complete(&buf[n..]);
        assert_eq!((r2.method, r2.path), (Method::Get, &b"/health"[..]));
        assert_eq!(n + n2, buf.len());
    }

    #[test]
    fn every_truncated_prefix_is_partial() {
        let buf = b"POST /payments?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        for n in 0..buf.len() {
            assert_eq!(
                parse_request(&buf[..n], &LIMITS),
                Ok(Parsed::Partial),
                "{n}"
            );
        }
        let (r, _) = complete(buf);
        assert_eq!((r.query, r.body), (&b"x=1"[..], &b"hello"[..]));
    }

    #[test]
    fn connection_semantics() {
        assert!(
            complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .close
        );
        assert!(complete(b"GET / HTTP/1.0\r\n\r\n").0.close);
        assert!(
            !complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .close
        );
        assert!(!complete(b"GET / HTTP/1.1\r\n\r\n").0.close);
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let err = |b: &[u8]| parse_request(b, &LIMITS).err();
        assert_eq!(err(b"garbage\r\n\r\n"), Some(HttpError::Malformed));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Some(HttpError::Malformed)
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(HttpError::Malformed)
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nContent-Length: 257\r\n\r\n"),
            Some(HttpError::BodyTooLarge)
        );
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(HttpError::LengthRequired)
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 2000));
        assert_eq!(err(&big), Some(HttpError::HeadTooLarge));
        let many: String = (0..40).map(|i| format!("H{i}: v\r\n")).collect();
        assert_eq!(
            err(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Some(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn query_params_are_decoded() {
        let mut b = [0u8; 64];
        let q = b"from=2025-07-15T12%3A34%3A56.000Z&to=&x";
        assert_eq!(
            query_param(q, "from", &mut b),
            Ok(Some(&b"2025-07-15T12:34:56.000Z"[..]))
        );
        assert_eq!(query_param(q, "to", &mut b), Ok(None));
        assert_eq!(query_param(q, "y", &mut b), Ok(None));
        assert_eq!(query_param(b"from=%zz", "from", &mut b), Err(BadQuery));
        assert_eq!(query_param(b"from=%2", "from", &mut b), Err(BadQuery));
        let long = format!("from={}", "a".repeat(65));
        assert_eq!(query_param(long.as_bytes(), "from", &mut b), Err(BadQuery));
    }

    #[test]
    fn error_responses_are_complete() {
        let r = error_response(503, "queue full", false);
        let s = std::str::from_utf8(&r).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("Retry-After: 1\r\n"));
        assert!(s.ends_with("\r\n\r\nqueue full\n"));
    }
}
