//! End-to-end tests of the `processor` binary (the bench's payment-processor
//! emulator): started on a free loopback port, spoken to in raw HTTP/1.1,
//! killed by PID when the guard drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running emulator; killed (by PID, through its `Child`) on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_processor"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn processor");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("start-up line");
        // "processor listening on 127.0.0.1:PORT (...)"
        let addr = line.split_whitespace().nth(3).and_then(|a| a.parse().ok());
        let addr = addr.unwrap_or_else(|| panic!("no address in start-up line {line:?}"));
        Server { child, addr }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Client {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            stream,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header lines as sent, lowercased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send_raw(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write");
    }

    fn send(&mut self, method: &str, path: &str, headers: &[&str], body: &str) {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        if !body.is_empty() {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        self.send_raw(raw.as_bytes());
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read line");
        line.trim_end_matches("\r\n").to_string()
    }

    /// Reads one response, decoding a chunked or Content-Length body.
    fn read(&mut self) -> Reply {
        let status_line = self.line();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok());
        let status = status.unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(": ").expect("header line");
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).expect("chunk");
                if size == 0 {
                    break;
                }
                reply
                    .body
                    .push_str(std::str::from_utf8(&chunk[..size]).expect("utf-8"));
            }
        } else if let Some(len) = reply.header("content-length") {
            let mut body = vec![0; len.parse().expect("length")];
            self.reader.read_exact(&mut body).expect("body");
            reply.body = String::from_utf8(body).expect("utf-8");
        }
        reply
    }

    fn call(&mut self, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
        self.send(method, path, headers, body);
        self.read()
    }

    /// True when the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

const JSON: &str = "Content-Type: application/json";
const TOKEN: &str = "X-Rinha-Token: 123";
const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

fn payment(id: &str, amount: &str, at: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount},"requestedAt":"{at}"}}"#)
}

#[test]
fn payment_lifecycle_over_one_keep_alive_connection() {
    let server = Server::start(&[]);
    let mut c = server.connect();
    let r = c.call(
        "POST",
        "/payments",
        &[JSON],
        &payment(ID, "19.905", "2025-07-15T12:34:56.000Z"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("server"), Some("Kestrel"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(r.body, r#"{"message":"payment processed successfully"}"#);

    let r = c.call("GET", &format!("/payments/{ID}"), &[], "");
    let stored =
        format!(r#"{{"correlationId":"{ID}","amount":19.90,"requestedAt":"2025-07-15T12:34:56"}}"#);
    assert_eq!((r.status, r.body.as_str()), (200, stored.as_str()));

    let r = c.call(
        "POST",
        "/payments",
        &[JSON],
        &payment(ID, "1", "2025-07-15T12:34:57.000Z"),
    );
    assert_eq!(r.status, 422);

    let summary =
        "/admin/payments-summary?from=2025-07-15T12:34:56.000Z&to=2025-07-15T12:34:56.000Z";
    let r = c.call("GET", summary, &[TOKEN], "");
    let expected =
        r#"{"totalAmount":19.90,"totalRequests":1,"totalFee":0.9950,"feePerTransaction":0.05}"#;
    assert_eq!((r.status, r.body.as_str()), (200, expected));

    let r = c.call("GET", summary, &[], "");
    assert_eq!((r.status, r.header("content-length")), (401, Some("0")));

    let r = c.call("POST", "/admin/purge-payments", &[TOKEN], "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"message":"All payments purged."}"#)
    );
    assert_eq!(
        c.call("GET", &format!("/payments/{ID}"), &[], "").status,
        404
    );
}

#[test]
fn kestrel_style_rejections() {
    let server = Server::start(&["--token", "s3cret", "--fee", "0.15"]);
    let mut c = server.connect();
    let r = c.call(
        "POST",
        "/payments",
        &[],
        &payment(ID, "1", "2025-07-15T12:00:00Z"),
    );
    assert_eq!(r.status, 415);
    let r = c.call("POST", "/payments", &[JSON], "{not json");
    assert_eq!(r.status, 400);
    let r = c.call("POST", "/admin/purge-payments", &[TOKEN], "");
    assert_eq!(r.status, 401, "the --token flag replaced the default");
    let r = c.call(
        "GET",
        "/admin/payments-summary",
        &["X-Rinha-Token: s3cret"],
        "",
    );
    assert!(
        r.body.ends_with(r#""feePerTransaction":0.15}"#),
        "{}",
        r.body
    );

    let mut c = server.connect();
    c.send_raw(b"GET /payments/service-health HTTP/1.1\r\n\r\n");
    let r = c.read();
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
    assert!(c.closed(), "Kestrel closes after a bad request");
}

#[test]
fn admin_switches_drive_health_failure_and_delay() {
    let server = Server::start(&["--rate-limit-seconds", "1"]);
    let mut c = server.connect();
    let r = c.call(
        "PUT",
        "/admin/configurations/failure",
        &[JSON, TOKEN],
        r#"{"failure":true}"#,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"config":"failure","was":false,"is":true}"#)
    );
    let r = c.call(
        "PUT",
        "/admin/configurations/delay",
        &[JSON, TOKEN],
        r#"{"delay":300}"#,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"config":"delay","was":0,"is":300}"#)
    );

    let started = Instant::now();
    let r = c.call(
        "POST",
        "/payments",
        &[JSON],
        &payment(ID, "1", "2025-07-15T12:00:00Z"),
    );
    assert_eq!((r.status, r.header("content-length")), (500, Some("0")));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay runs before the failure"
    );
    assert_eq!(
        c.call("GET", &format!("/payments/{ID}"), &[], "").status,
        404,
        "a 500 stores nothing"
    );

    let r = c.call("GET", "/payments/service-health", &[], "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, r#"{"failing":true,"minResponseTime":300}"#)
    );

    let r = c.call(
        "PUT",
        "/admin/configurations/token",
        &[JSON, TOKEN],
        r#"{"token":"new"}"#,
    );
    assert_eq!((r.status, r.header("content-length")), (204, None));
    let r = c.call(
        "PUT",
        "/admin/configurations/failure",
        &[JSON, "X-Rinha-Token: new"],
        r#"{"failure":false}"#,
    );
    assert_eq!(r.status, 200);
    let r = c.call(
        "POST",
        "/payments",
        &[JSON],
        &payment(ID, "1", "2025-07-15T12:00:00Z"),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn health_check_is_rate_limited_with_a_queue_of_two() {
    // A burst of five within at most two 2 s windows: one passes at once, up to
    // two wait for the next window, and at least one is refused with 429.
    let server = Server::start(&["--rate-limit-seconds", "2"]);
    let mut clients: Vec<Client> = (0..5).map(|_| server.connect()).collect();
    for c in &mut clients {
        c.send("GET", "/payments/service-health", &[], "");
    }
    let replies: Vec<Reply> = clients.iter_mut().map(Client::read).collect();
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok.len() + refused.len(), 5, "{replies:?}");
    assert!((1..=2).contains(&refused.len()), "{replies:?}");
    for r in ok {
        assert_eq!(r.body, r#"{"failing":false,"minResponseTime":0}"#);
    }
    for r in refused {
        assert_eq!(r.header("retry-after"), Some("2"));
        assert_eq!(r.body, "Calm down, bitch. Try again later.");
    }
}

#[test]
fn many_payments_sleep_in_the_delay_at_once() {
    let server = Server::start(&[]);
    let mut admin = server.connect();
    let r = admin.call(
        "PUT",
        "/admin/configurations/delay",
        &[JSON, TOKEN],
        r#"{"delay":1000}"#,
    );
    assert_eq!(r.status, 200);
    let addr = server.addr;
    let started = Instant::now();
    let workers: Vec<_> = (0..100)
        .map(|i| {
            thread::spawn(move || {
                let server_addr = addr;
                let stream = TcpStream::connect(server_addr).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("timeout");
                let mut c = Client {
                    reader: BufReader::new(stream.try_clone().expect("clone")),
                    stream,
                };
                let id = format!("00000000-0000-0000-0000-{i:012}");
                c.call(
                    "POST",
                    "/payments",
                    &[JSON],
                    &payment(&id, "19.90", "2025-07-15T12:00:00Z"),
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the delays overlapped"
    );
    let r = admin.call("GET", "/admin/payments-summary", &[TOKEN], "");
    assert!(
        r.body
            .starts_with(r#"{"totalAmount":1990.00,"totalRequests":100,"#),
        "{}",
        r.body
    );
}

#[test]
fn a_queued_request_whose_client_left_frees_its_place() {
    // A long window keeps every step below inside the first one.
    let server = Server::start(&["--rate-limit-seconds", "30"]);
    let health = "/payments/service-health";
    assert_eq!(server.connect().call("GET", health, &[], "").status, 200);
    let mut leaver = server.connect();
    leaver.send("GET", health, &[], "");
    thread::sleep(Duration::from_millis(300));
    drop(leaver);
    thread::sleep(Duration::from_secs(1));
    let mut queued: Vec<Client> = (0..2).map(|_| server.connect()).collect();
    for c in &mut queued {
        c.send("GET", health, &[], "");
    }
    thread::sleep(Duration::from_millis(300));
    let r = server.connect().call("GET", health, &[], "");
    assert_eq!(r.status, 429, "the two live waiters fill the queue");
    for c in &mut queued {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let err = c
            .reader
            .read(&mut byte)
            .expect_err("still queued, no answer yet");
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }
}
