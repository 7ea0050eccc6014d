//! Processor faults: storms of 500s, 429s, a processor killed and restarted, a
//! connection cut mid-exchange, answers slower than the client timeout.

use super::common::proxy::*;
use super::*;

/// Default fails on and off every 300 ms (once together with fallback) while 600
/// payments flow: a 500 stores nothing, so a payment refused is routed again; one
/// answered 500 after its delay is never recorded.
#[test]
fn storms_of_500() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "32",
            "--max-defer-ms",
            "400",
            "--probe-interval-ms",
            "50",
        ],
    );
    set_delay(&d, 30);
    set_delay(&f, 10);
    let from = now_ms();
    let load = post_load(vec![b.port], 4, 150, Duration::from_millis(20), 1, None);
    for k in 0..10 {
        thread::sleep(Duration::from_millis(300));
        set_failure(&d, k % 2 == 0);
        set_failure(&f, k == 4);
    }
    let mut posted = load.join().expect("load");
    set_failure(&d, false);
    set_failure(&f, false);
    let row = check("500 storms", &[&b], &d, &f, from, &mut posted);
    assert_eq!(row.requested, 600);
}

/// Holds the default emulator's limiter full (800 in flight + 500 queued, from the
/// test's own connections, dated 2020 so outside every window) while payments arrive
/// (rinha with 1,400 workers would be the other way, and far heavier on two cores):
/// rinha gets 429s (counted by a proxy), which store nothing; nothing is lost or doubled.
#[test]
fn processor_429s() {
    let (d, f) = processors();
    let proxy = Proxy::new(d.port);
    // Not slow-averse, probing often: payments keep trying default through the 429s.
    let fl = [
        "--workers",
        "32",
        "--slow-ms",
        "100000",
        "--probe-interval-ms",
        "50",
    ];
    let b = start(proxy.port, f.port, &flags(&fl));
    // Paced: a burst of connects overflows the emulator's accept backlog, and each
    // dropped SYN costs a 1 s retransmission.
    set_delay(&d, HOLD_MS);
    let opening = Instant::now();
    let mut held = Vec::new();
    for i in 0..1300 {
        held.push(hold_payment(d.port, &uuid(900_000 + i)));
        thread::sleep(Duration::from_micros(500));
    }
    // Probe until the limiter refuses: then it stays full until the first delays end.
    loop {
        let mut s = hold_payment(d.port, &uuid(990_000 + held.len() as u64));
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        if matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 429")) {
            break;
        }
        held.push(s);
        let waited = opening.elapsed();
        assert!(
            waited < Duration::from_millis(HOLD_MS - 1000),
            "the limiter did not refuse within {waited:?}: opening 1,300 connections was too slow"
        );
    }
    eprintln!("processor_429s: limiter full after {:?}", opening.elapsed());
    set_delay(&d, 0);
    let from = now_ms();
    let load = post_load(vec![b.port], 4, 50, Duration::from_millis(10), 2, None);
    let mut posted = load.join().expect("load");
    let row = check("429 (limiter full)", &[&b], &d, &f, from, &mut posted);
    let seen = proxy.state.status_count(429);
    eprintln!("processor_429s: rinha saw {seen} answers 429 from default");
    assert!(seen > 0, "no 429 reached rinha: the fault was not provoked");
    assert_eq!(row.requested, 200);
    drop(held);
}

/// How long the held payments keep their permits (the emulator's delay).
const HOLD_MS: u64 = 6_000;

/// Sends a payment to a processor and keeps the connection open, unanswered.
fn hold_payment(port: u16, id: &str) -> TcpStream {
    let body = format!(
        r#"{{"correlationId":"{id}","amount":1.00,"requestedAt":"2020-01-01T00:00:00.000Z"}}"#
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    s
}

/// `kill -9` of the default emulator with payments in its delay, and a new emulator on
/// the same port (empty storage): rinha's keep-alive sockets die, it reconnects, and
/// everything paid after the restart agrees with the new emulator and the fallback.
#[test]
fn processor_killed_and_restarted() {
    let (mut d, f) = (processor("0.05"), processor("0.15"));
    let b = rinha(&d, &f, &["--workers", "16"]);
    let before = post_load(vec![b.port], 2, 20, Duration::ZERO, 3, None);
    let from = now_ms() - 1000;
    let mut posted = before.join().expect("load");
    check("before the restart", &[&b], &d, &f, from, &mut posted);
    let restart_from = now_ms() + 1;
    thread::sleep(Duration::from_millis(5));
    set_delay(&d, 800);
    let during = post_load(vec![b.port], 2, 15, Duration::ZERO, 4, None);
    thread::sleep(Duration::from_millis(200));
    let port = d.port;
    d.child.kill().expect("kill -9");
    let _ = d.child.wait();
    d = processor_at("0.05", port);
    let after = post_load(vec![b.port], 2, 15, Duration::from_millis(10), 5, None);
    let mut posted = during
        .join()
        .expect("load")
        .merge(after.join().expect("load"));
    let row = check(
        "default killed and restarted",
        &[&b],
        &d,
        &f,
        restart_from,
        &mut posted,
    );
    assert_eq!(row.requested, 60);
    let (ours, _) = compare(&b, &d, &f, restart_from, now_ms() + 1);
    assert!(
        ours[0].0 > 0,
        "payments reached the restarted default: {ours:?}"
    );
}

/// A proxy between rinha and the default emulator cuts every 3rd payment exchange:
/// right after the request, before the response, or halfway through it. The payment
/// may be stored: rinha must ask `GET /payments/{id}`, never pay it elsewhere.
#[test]
fn connection_cut_mid_exchange() {
    let (d, f) = processors();
    let proxy = Proxy::new(d.port);
    proxy.state.cut_every.store(3, SeqCst);
    let b = start(proxy.port, f.port, &flags(&["--workers", "8"]));
    set_delay(&d, 20);
    let from = now_ms();
    let load = post_load(vec![b.port], 3, 50, Duration::from_millis(10), 6, None);
    let mut posted = load.join().expect("load");
    let row = check(
        "connection cut mid-exchange",
        &[&b],
        &d,
        &f,
        from,
        &mut posted,
    );
    let cuts: Vec<u64> = proxy.state.cuts.iter().map(|c| c.load(SeqCst)).collect();
    eprintln!("connection_cut_mid_exchange: cuts after request / before / mid response {cuts:?}");
    assert!(
        cuts.iter().all(|&c| c > 0),
        "every kind of cut happened: {cuts:?}"
    );
    assert_eq!(row.requested, 150);
}

/// Responses slower than the client timeout (200 ms vs a 600 ms delay): every attempt
/// times out, the processor stores it later; reconciliation records it once.
#[test]
fn responses_slower_than_the_client_timeout() {
    let (d, f) = processors();
    let b = rinha(
        &d,
        &f,
        &[
            "--workers",
            "16",
            "--client-timeout-ms",
            "200",
            "--slow-ms",
            "100000",
        ],
    );
    set_delay(&d, 600);
    let from = now_ms();
    let load = post_load(vec![b.port], 2, 20, Duration::from_millis(20), 7, None);
    let mut posted = load.join().expect("load");
    let row = check(
        "response slower than client timeout",
        &[&b],
        &d,
        &f,
        from,
        &mut posted,
    );
    assert_eq!(row.requested, 40);
}
