//! Bad input: slowloris clients and requests that break the rules.

use super::*;

/// A slowloris client (one header byte every 100 ms) does not keep others waiting.
#[test]
fn slowloris_does_not_starve_other_clients() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2", "--idle-timeout-ms", "1000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slowloris(b.port, stop.clone());
    let mut c = Client::new(b.port);
    let mut lat = Vec::new();
    for i in 0..30 {
        let t = Instant::now();
        assert_eq!(c.pay(&uuid(12_000 + i), "1.00"), 202);
        assert_eq!(request(b.port, "GET", "/health", &[], "").status, 200);
        lat.push(t.elapsed());
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, SeqCst);
    let (_, sent) = slow.join().expect("slowloris");
    let p99 = percentile_ms(&mut lat, 99.0);
    eprintln!("RELIABILITY | slowloris beside 30 clients | 30 | | | | | {p99:.1} ms | ({sent} slow bytes)");
    assert!(
        p99 < 1000.0,
        "served while a slowloris dripped: p99 {p99} ms"
    );
}

/// A connection that never completes its request head is closed by the request
/// timeout, though it is never idle (the idle timer restarts on every byte).
#[test]
fn slowloris_is_closed_by_the_request_timeout() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "2", "--request-timeout-ms", "1000"]);
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slowloris(b.port, stop.clone());
    let end = Instant::now() + Duration::from_secs(8);
    while !slow.is_finished() && Instant::now() < end {
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, SeqCst);
    let (closed, sent) = slow.join().expect("slowloris");
    assert!(closed, "a slowloris still open after 8 s ({sent} bytes)");
}

/// Drips a request head one byte per 100 ms until the server closes or `stop`;
/// returns (closed by the server, bytes sent).
fn slowloris(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<(bool, usize)> {
    thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let head = b"GET /health HTTP/1.1\r\nX-Slow: ";
        let mut sent = 0;
        while !stop.load(SeqCst) {
            let byte = head.get(sent).copied().unwrap_or(b'a');
            if s.write_all(&[byte]).is_err() {
                return (true, sent);
            }
            sent += 1;
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => return (true, sent),
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return (true, sent),
                _ => {}
            }
        }
        (false, sent)
    })
}

/// Inputs tests/backend.rs does not cover: 50 pipelined payments then garbage in one
/// write, a head that never ends, a body larger than announced, conflicting or absurd
/// lengths, an idle connection that sends nothing. The server answers, closes what it
/// must, stays up, and pays the good payments once.
#[test]
fn bad_input_beyond_the_basics() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "4", "--idle-timeout-ms", "1000"]);
    let from = now_ms();
    let ids: Vec<String> = (0..50).map(|i| uuid(13_000 + i)).collect();
    let mut burst = Vec::new();
    for id in &ids {
        let body = format!(r#"{{"correlationId":"{id}","amount":19.90}}"#);
        burst.extend_from_slice(
            format!(
                "POST /payments HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    burst.extend_from_slice(b"\x00\x01\xffGARBAGE\r\n\r\n");
    let out = raw(b.port, &burst);
    assert_eq!(out.matches("HTTP/1.1 202").count(), 50, "{out}");
    assert!(
        out.trim_end()
            .rsplit("HTTP/1.1 ")
            .next()
            .unwrap_or("")
            .starts_with("400"),
        "{out}"
    );

    let endless = raw(b.port, &[b'a'; 64 * 1024]);
    assert!(
        endless.starts_with("HTTP/1.1 4"),
        "head without end: {endless:?}"
    );
    let cases: [(&[u8], &str); 5] = [
        (
            b"POST /payments HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}{}{}",
            "400",
        ),
        (
            b"POST /payments HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}",
            "400",
        ),
        (
            b"POST /payments HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "4",
        ),
        (
            b"POST /payments HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "400",
        ),
        (
            b"GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /health HTTP/1.1\r\n\r\n",
            "200",
        ),
    ];
    for (bytes, want) in cases {
        let out = raw(b.port, bytes);
        let status = out.split(' ').nth(1).unwrap_or("");
        assert!(
            status.starts_with(want),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let mut big = vec![b'{'; 1 << 20];
    big.splice(
        0..0,
        b"POST /payments HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n"
            .iter()
            .copied(),
    );
    assert!(raw(b.port, &big).starts_with("HTTP/1.1 413"));

    let mut idle = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t = Instant::now();
    let mut buf = [0u8; 16];
    let closed = matches!(idle.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed && t.elapsed() < Duration::from_secs(5),
        "idle connection closed"
    );

    let mut posted = Posted {
        accepted: ids,
        ..Posted::default()
    };
    check(
        "pipelined payments + garbage",
        &[&b],
        &d,
        &f,
        from,
        &mut posted,
    );
}
