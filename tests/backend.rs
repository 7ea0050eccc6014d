//! End-to-end: one `rinha` against two processor emulators, all real processes on
//! loopback. Each test checks the backend's summary against what the processors stored.

mod common;

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn assert_consistent(backend: &Proc, d: &Proc, f: &Proc, from: i64, to: i64) -> PerProcessor {
    let (ours, theirs) = compare(backend, d, f, from, to);
    assert_eq!(
        ours,
        theirs,
        "backend vs processors over [{}, {}]",
        iso(from),
        iso(to)
    );
    ours
}

/// 600 payments from 12 concurrent clients, with default failing for a while in the
/// middle: every payment accepted is paid once, and summaries agree over many windows.
#[test]
fn pays_600_concurrently_through_a_default_failure() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "32", "--max-defer-ms", "1000"]);
    let start = now_ms();
    let threads: Vec<_> = (0..12u64)
        .map(|t| {
            let port = b.port;
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(pay(port, &uuid(t * 1000 + i), "19.90"), 202);
                    std::thread::sleep(Duration::from_millis(30));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    set_failure(&d, true);
    std::thread::sleep(Duration::from_millis(1500));
    set_failure(&d, false);
    for t in threads {
        t.join().expect("client thread");
    }
    wait_drained(&b, LONG);
    let end = now_ms() + 1;
    let all = assert_consistent(&b, &d, &f, start - 1000, end);
    eprintln!("pays_600: default/fallback {all:?}");
    assert_eq!(all[0].0 + all[1].0, 600, "every payment paid exactly once");
    assert_eq!(all[0].1 + all[1].1, 600 * 1990);
    let step = ((end - start) / 7).max(1);
    for k in 0..8 {
        assert_consistent(&b, &d, &f, start + k * step, start + (k + 1) * step + 3);
    }
}

/// Default fails for a while: payments wait or go to fallback, none is lost or doubled.
#[test]
fn default_failure_then_recovery() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "8",
            "--max-defer-ms",
            "500",
            "--probe-interval-ms",
            "50",
        ],
    );
    let start = now_ms();
    set_failure(&d, true);
    for i in 0..40 {
        assert_eq!(pay(b.port, &uuid(i), "20.05"), 202);
    }
    std::thread::sleep(Duration::from_millis(1500));
    set_failure(&d, false);
    for i in 40..60 {
        assert_eq!(pay(b.port, &uuid(i), "20.05"), 202);
    }
    wait_drained(&b, LONG);
    let all = assert_consistent(&b, &d, &f, start - 1000, now_ms() + 1);
    assert_eq!(all[0].0 + all[1].0, 60);
    assert!(all[1].0 > 0, "deferred payments went to fallback: {all:?}");
    assert!(
        all[0].0 > 0,
        "default took traffic again after recovery: {all:?}"
    );
}

/// A payment the processor already holds (422) is recorded exactly as stored there.
#[test]
fn duplicate_is_reconciled_from_the_processor() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2"]);
    let id = uuid(7);
    let stored_at = "2020-01-02T03:04:05.678Z";
    let body = format!(r#"{{"correlationId":"{id}","amount":12.34,"requestedAt":"{stored_at}"}}"#);
    assert_eq!(request(d.port, "POST", "/payments", &[], &body).status, 200);
    assert_eq!(pay(b.port, &id, "99.99"), 202);
    wait_drained(&b, LONG);
    let t = request(
        b.port,
        "GET",
        "/payments-summary?from=2020-01-02T03:04:05.678Z&to=2020-01-02T03:04:05.678Z",
        &[],
        "",
    );
    assert_eq!(totals(&t.body, &["default"]), (1, 1234), "{}", t.body);
    assert_eq!(totals(&t.body, &["fallback"]), (0, 0));
}

/// A processor slower than the client timeout: the payment is resolved by asking it.
#[test]
fn response_slower_than_client_timeout() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "4",
            "--client-timeout-ms",
            "200",
            "--slow-ms",
            "100000",
        ],
    );
    set_delay(&d, 600);
    let start = now_ms();
    for i in 0..5 {
        assert_eq!(pay(b.port, &uuid(100 + i), "19.90"), 202);
    }
    wait_drained(&b, LONG);
    let all = assert_consistent(&b, &d, &f, start - 1000, now_ms() + 1);
    assert_eq!(all[0].0 + all[1].0, 5, "{all:?}");
    assert_eq!(all[1].0, 0, "an unknown outcome stays with its processor");
}

/// With --summary-settle on, a summary whose range covers a payment in flight waits for it.
#[test]
fn summary_settle_waits_for_payments_in_flight() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "2",
            "--summary-wait-ms",
            "3000",
            "--summary-settle",
            "on",
        ],
    );
    set_delay(&d, 400);
    assert_eq!(pay(b.port, &uuid(1), "19.90"), 202);
    std::thread::sleep(Duration::from_millis(100));
    let to = now_ms();
    let (ours, theirs) = compare(&b, &d, &f, to - 10_000, to);
    assert_eq!(
        ours[0],
        (1, 1990),
        "the summary waited for the payment in flight"
    );
    assert_eq!(ours, theirs);
}

/// By default a summary is a snapshot of now, like the processors' own summaries that
/// the official checker requests at the same moment: a payment still in its processor's
/// delay is in neither.
#[test]
fn summary_is_a_snapshot_by_default() {
    let (d, f) = processors();
    // A slow default still pays here (the health poll would otherwise move it away).
    let b = rinha(&d, &f, &["--workers", "2", "--slow-ms", "100000"]);
    set_delay(&d, 1500);
    assert_eq!(pay(b.port, &uuid(1), "19.90"), 202);
    std::thread::sleep(Duration::from_millis(200));
    let to = now_ms();
    let started = std::time::Instant::now();
    let (ours, theirs) = compare(&b, &d, &f, to - 10_000, to);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "answered without waiting"
    );
    assert_eq!(
        ours,
        [(0, 0), (0, 0)],
        "the payment is still in the processor's delay"
    );
    assert_eq!(ours, theirs);
    wait_drained(&b, LONG);
    let (ours, theirs) = compare(&b, &d, &f, to - 10_000, to);
    assert_eq!((ours[0].0, ours), (1, theirs));
}

/// A full queue answers 503 with Retry-After; accepted payments are all paid.
#[test]
fn queue_full_is_503() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &["--workers", "1", "--queue", "2", "--slow-ms", "100000"],
    );
    set_delay(&d, 300);
    let statuses: Vec<u16> = (0..10)
        .map(|i| pay(b.port, &uuid(200 + i), "19.90"))
        .collect();
    let accepted = statuses.iter().filter(|&&s| s == 202).count() as u64;
    assert!(statuses.contains(&503), "{statuses:?}");
    let r = request(
        b.port,
        "POST",
        "/payments",
        &[],
        &format!(r#"{{"correlationId":"{}","amount":1}}"#, uuid(300)),
    );
    if r.status == 503 {
        assert!(r.head.contains("Retry-After"), "{}", r.head);
    }
    set_delay(&d, 0);
    wait_drained(&b, LONG);
    let all = assert_consistent(&b, &d, &f, now_ms() - 60_000, now_ms() + 1);
    assert_eq!(all[0].0 + all[1].0, accepted + u64::from(r.status == 202));
}

/// Malformed requests get their 4xx and the server keeps serving.
#[test]
fn bad_input_gets_4xx_and_server_stays_up() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "2",
            "--max-body",
            "256",
            "--max-header",
            "1024",
        ],
    );
    let id = uuid(1);
    let post = |body: String| {
        format!(
            "POST /payments HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"NONSENSE\r\n\r\n".to_vec(), "400"),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), "400"),
        (
            format!("GET /x HTTP/1.1\r\nH: {}\r\n\r\n", "a".repeat(2000)).into_bytes(),
            "431",
        ),
        (
            b"POST /payments HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".to_vec(),
            "413",
        ),
        (
            b"POST /payments HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            "411",
        ),
        (post("{}".into()), "400"),
        (post("hello".into()), "400"),
        (
            post(format!(r#"{{"correlationId":"{id}","amount":"x"}}"#)),
            "400",
        ),
        (
            post(r#"{"correlationId":"not-a-uuid","amount":1.0}"#.into()),
            "400",
        ),
        (
            post(format!(r#"{{"correlationId":"{id}","amount":-10.0}}"#)),
            "400",
        ),
        (
            post(format!(r#"{{"correlationId":"{id}","amount":0.0}}"#)),
            "400",
        ),
        (post(format!(r#"{{"correlationId":"{id}"}}"#)), "400"),
        (
            post(format!(r#"{{"correlationId":"{id}","amount":1}}{{"#)),
            "400",
        ),
        (
            b"GET /payments-summary?from=yesterday HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /payments-summary?to=2025-13-01T00:00:00Z HTTP/1.1\r\nConnection: close\r\n\r\n"
                .to_vec(),
            "400",
        ),
        (
            b"GET /payments-summary?from=%zz HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"GET /nowhere HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "404",
        ),
        (
            b"DELETE /payments HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "405",
        ),
        (
            b"GET /purge-payments HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "405",
        ),
    ];
    for (bytes, want) in &cases {
        let out = raw(b.port, bytes);
        let status = out.split(' ').nth(1).unwrap_or("");
        assert_eq!(
            status,
            *want,
            "{:?} -> {out:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Pipelined garbage after a good request: the good one is answered first.
    let out = raw(b.port, b"GET /health HTTP/1.1\r\n\r\nGARBAGE\r\n\r\n");
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("HTTP/1.1 400"),
        "{out}"
    );
    // Percent-encoded bounds are fine.
    let ok = request(
        b.port,
        "GET",
        "/payments-summary?from=2025-07-15T12%3A34%3A56.000Z&to=2025-07-15T12:35:56Z",
        &[],
        "",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(pay(b.port, &uuid(5), "1.00"), 202, "still serving");
}

/// Purge clears the ledger; a purge token, when set, is required.
#[test]
fn purge_clears_and_can_be_tokenised() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2", "--purge-token", "s3cret"]);
    assert_eq!(pay(b.port, &uuid(1), "5.00"), 202);
    wait_drained(&b, LONG);
    assert_eq!(
        request(b.port, "POST", "/purge-payments", &[], "").status,
        401
    );
    assert_eq!(
        request(
            b.port,
            "POST",
            "/purge-payments",
            &[("X-Purge-Token", "s3cret")],
            ""
        )
        .status,
        200
    );
    let s = request(b.port, "GET", "/payments-summary", &[], "");
    assert_eq!(totals(&s.body, &["default"]), (0, 0));
}

/// `kill -9` with payments queued and in flight: the restarted instance (same journal)
/// finishes every accepted payment, once, and reports what it paid before the crash.
#[test]
fn journal_survives_kill_9() {
    let (d, f) = processors();
    let dir = std::env::temp_dir().join(format!("rinha-journal-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let journal = dir.join("journal.bin").to_string_lossy().into_owned();
    let flags = [
        "--workers",
        "4",
        "--journal",
        journal.as_str(),
        "--slow-ms",
        "100000",
    ];
    let start = now_ms();
    let mut b = rinha(&d, &f, &flags);
    for i in 0..10 {
        assert_eq!(pay(b.port, &uuid(600 + i), "19.90"), 202);
    }
    wait_drained(&b, LONG);
    set_delay(&d, 800);
    for i in 10..40 {
        assert_eq!(pay(b.port, &uuid(600 + i), "19.90"), 202);
    }
    std::thread::sleep(Duration::from_millis(300));
    let h = request(b.port, "GET", "/health", &[], "");
    assert_ne!(
        field(&h.body, &["queue"]),
        "0",
        "payments were open at the crash: {}",
        h.body
    );
    b.child.kill().expect("kill -9");
    let _ = b.child.wait();
    set_delay(&d, 0);
    let b = rinha(&d, &f, &flags);
    wait_drained(&b, LONG);
    let all = assert_consistent(&b, &d, &f, start - 1000, now_ms() + 1);
    eprintln!("journal_survives_kill_9: {all:?}");
    assert_eq!(
        all[0].0 + all[1].0,
        40,
        "every accepted payment paid exactly once: {all:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request head of `len` bytes that never ends, sent in one write.
fn huge_head(len: usize) -> Vec<u8> {
    let mut head = b"POST /payments HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(len, b'a');
    head
}

/// Writes a 100 KB head in one write, waits until the answer is there, sends more of
/// the request, and returns the stream.
fn send_huge_head(port: u16) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&huge_head(100 * 1024)).expect("write head");
    let mut peek = [0u8; 16];
    assert!(s.peek(&mut peek).expect("an answer") > 0);
    // The client is still sending: a server that closed with this unread resets.
    s.write_all(&[b'a'; 1024]).expect("write more");
    std::thread::sleep(Duration::from_millis(100));
    s
}

/// Regression (issue 10): a 100 KB request head in one write got the 431 and then a
/// reset (the server closed with unread input), which can destroy the 431 before the
/// client reads it. Lingering close: the 431 arrives, then a clean EOF.
#[test]
fn a_100k_head_reads_back_431_not_a_reset() {
    let b = rinha_at(1, 1, &["--workers", "1"]);
    for _ in 0..3 {
        let mut s = send_huge_head(b.port);
        let mut out = Vec::new();
        let read = std::io::Read::read_to_end(&mut s, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(read.is_ok(), "{read:?} after {text:?}");
        assert!(text.starts_with("HTTP/1.1 431 "), "{text:?}");
        assert!(text.contains("Connection: close"), "{text:?}");
    }
    let m = metrics_text(b.port);
    assert_eq!(
        series(&m, "rinha_http_errors_total{status=\"431\"}"),
        Some(3.0)
    );
    assert_eq!(
        series(&m, "rinha_http_lingering_closes_total{end=\"eof\"}"),
        Some(3.0),
        "each client closed after reading: the linger ended at EOF"
    );
}

/// A client that keeps sending after the error cannot hold the connection: it is cut
/// at the lingering time bound (2 s, checked by the 1 s sweep), not kept forever.
#[test]
fn a_slow_drainer_is_cut_at_the_linger_bound() {
    use std::io::{Read, Write};
    let b = rinha_at(1, 1, &["--workers", "1"]);
    let mut s = send_huge_head(b.port);
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("the 431");
    assert_eq!(&head, b"HTTP/1.1 431");
    let t = std::time::Instant::now();
    let cut = loop {
        if s.write_all(b"x").is_err() {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still open after 20 s of trickling"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("slow drainer cut after {cut:?}");
    let m = metrics_text(b.port);
    assert_eq!(
        series(&m, "rinha_http_lingering_closes_total{end=\"time\"}"),
        Some(1.0)
    );
}

/// The event loop stops reading at a short read (no `read` that returns `WouldBlock`);
/// a keep-alive request followed at once by the client's half-close must still be
/// answered and the connection closed, not left open until the idle timeout.
#[test]
fn a_half_close_after_a_keep_alive_request_is_answered_and_closed() {
    use std::io::{Read, Write};
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2"]);
    for split in [false, true] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let req = b"GET /payments-summary HTTP/1.1\r\nHost: x\r\n\r\n";
        s.write_all(req).expect("write");
        if split {
            // The FIN arrives after the request was read: its own edge must be seen.
            std::thread::sleep(Duration::from_millis(200));
        }
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut out = Vec::new();
        let end = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            end.is_ok(),
            "split={split}: not closed within 10 s: {end:?}"
        );
        assert!(text.starts_with("HTTP/1.1 200"), "split={split}: {text}");
    }
}
