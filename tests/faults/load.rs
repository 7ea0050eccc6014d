//! Beyond the official load: five times its rate, ten thousand idle keep-alive
//! connections (both `#[ignore]`d: `make faults-long`).

use super::*;

/// RSS budget of one instance under these loads (the compose file gives each 150 MB).
const RSS_BUDGET_KIB: u64 = 150 * 1024;

/// Samples a process's VmRSS every 100 ms until `stop`; returns the peak.
fn rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(SeqCst) {
            peak = peak.max(rss_kib(pid));
            thread::sleep(Duration::from_millis(100));
        }
        peak.max(rss_kib(pid))
    })
}

/// About 5× the official peak rate (3,000 payments/s asked of 6 keep-alive clients) for
/// 10 s against one instance: it keeps answering, stays under the RSS budget, and pays
/// every accepted payment once.
#[test]
#[ignore = "long: make faults-long"]
fn load_five_times_the_official_rate() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let rss = rss_sampler(b.child.id(), stop.clone());
    let from = now_ms();
    let t = Instant::now();
    let load = post_load(vec![b.port], 6, 5000, Duration::from_micros(2000), 14, None);
    let mut health = Vec::new();
    while !load.is_finished() {
        let h = Instant::now();
        assert_eq!(request(b.port, "GET", "/health", &[], "").status, 200);
        health.push(h.elapsed());
        thread::sleep(Duration::from_millis(200));
    }
    let mut posted = load.join().expect("load");
    let secs = t.elapsed().as_secs_f64();
    let rate = (posted.accepted.len() as u64 + posted.refused) as f64 / secs;
    let row = check("5x load, 10 s", &[&b], &d, &f, from, &mut posted);
    stop.store(true, SeqCst);
    let peak = rss.join().expect("rss");
    eprintln!(
        "load_five_times_the_official_rate: {rate:.0} req/s achieved over {secs:.1} s, \
         {} accepted, {} refused (503), /health p99 {:.1} ms, peak RSS {} MiB",
        row.requested,
        posted.refused,
        percentile_ms(&mut health, 99.0),
        peak / 1024
    );
    assert!(peak < RSS_BUDGET_KIB, "peak RSS {peak} KiB");
}

/// 10,000 idle keep-alive connections (each served one request first): the server
/// still answers `/health` and payments promptly and stays under the RSS budget.
/// Needs RLIMIT_NOFILE above 10,000 (`make faults-long` raises the soft limit).
#[test]
#[ignore = "long: make faults-long"]
fn ten_thousand_idle_keepalive_connections() {
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "8"]);
    let rss_before = rss_kib(b.child.id());
    let mut idle = Vec::with_capacity(10_000);
    let t = Instant::now();
    for i in 0..10_000 {
        let mut c = Client::new(b.port);
        let r = c.send("GET", "/health", &[], "");
        assert_eq!(r.status, 200, "connection {i} (raise `ulimit -n`?)");
        idle.push(c);
    }
    let opened = t.elapsed();
    let from = now_ms();
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let id = uuid(15_000 + i);
        let t = Instant::now();
        assert_eq!(pay(b.port, &id, "19.90"), 202);
        assert_eq!(request(b.port, "GET", "/health", &[], "").status, 200);
        lat.push(t.elapsed());
        ids.push(id);
    }
    let rss = rss_kib(b.child.id());
    let again = idle
        .iter_mut()
        .take(100)
        .all(|c| c.send("GET", "/health", &[], "").status == 200);
    let mut posted = Posted {
        accepted: ids,
        latencies: lat,
        ..Posted::default()
    };
    let row = check(
        "10,000 idle keep-alive connections",
        &[&b],
        &d,
        &f,
        from,
        &mut posted,
    );
    eprintln!(
        "ten_thousand_idle_keepalive_connections: opened in {:.1} s, RSS {} -> {} MiB, \
         pay + health p99 {:.1} ms, {} recorded, idle ones still served: {again}",
        opened.as_secs_f64(),
        rss_before / 1024,
        rss / 1024,
        row.p99_ms.unwrap_or(0.0),
        row.recorded
    );
    assert!(again, "an idle keep-alive connection was dropped");
    assert!(
        rss < RSS_BUDGET_KIB,
        "RSS {rss} KiB with 10,000 connections"
    );
    // Buffers are freed when empty beyond 1,024 connections: ~1 KiB each, not ~8.5.
    assert!(
        rss.saturating_sub(rss_before) < 40 * 1024,
        "10,000 idle connections grew RSS by {} KiB",
        rss.saturating_sub(rss_before)
    );
}
