//! End-to-end: the peer link over mutual TLS (`--peer-tls-*`), real processes on
//! loopback. Certificates come from scripts/certs.sh (Debian's openssl) at test time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::*;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-secret";

/// A fresh directory with a CA and certificates `a`, `b` (valid for 127.0.0.1 and
/// localhost) made by scripts/certs.sh.
fn certs(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rinha-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    make_certs(
        &dir,
        &["a=127.0.0.1,localhost", "b=127.0.0.1,localhost"],
        None,
    );
    dir
}

fn make_certs(dir: &Path, specs: &[&str], days: Option<&str>) {
    required_tool("openssl", "openssl").expect("openssl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/certs.sh");
    let mut cmd = Command::new(script);
    cmd.arg(dir).args(specs);
    if let Some(d) = days {
        cmd.env("DAYS", d);
    }
    let out = cmd.output().expect("run scripts/certs.sh");
    assert!(out.status.success(), "certs.sh: {out:?}");
}

/// The `--peer-tls-*` flags of certificate `who` in `dir`, against the CA of `ca`.
fn tls(dir: &Path, who: &str, ca: &Path) -> Vec<String> {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    vec![
        "--peer-tls-cert".into(),
        p(&format!("{who}.pem")),
        "--peer-tls-key".into(),
        p(&format!("{who}.key")),
        "--peer-tls-ca".into(),
        ca.join("ca.pem").to_string_lossy().into_owned(),
    ]
}

/// Starts instance `id` listening for peers on `listen`, dialing `dial`.
fn node(
    d: &Proc,
    f: &Proc,
    id: u32,
    listen: u16,
    dial: Option<u16>,
    tls: &[String],
) -> (Proc, Log) {
    let mut flags = vec![
        "--instance-id".to_string(),
        id.to_string(),
        "--peer-token".into(),
        TOKEN.into(),
        "--peer-listen".into(),
        format!("127.0.0.1:{listen}"),
        "--workers".into(),
        "8".into(),
    ];
    if let Some(p) = dial {
        flags.extend(["--peer".to_string(), format!("127.0.0.1:{p}")]);
    }
    flags.extend(tls.iter().cloned());
    let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    rinha_logged(d.port, f.port, &refs)
}

fn summary_count(node: &Proc) -> u64 {
    let s = request(node.port, "GET", "/payments-summary", &[], "");
    totals(&s.body, &["default"]).0 + totals(&s.body, &["fallback"]).0
}

fn wait_count(node: &Proc, want: u64) {
    let end = Instant::now() + LONG;
    while summary_count(node) != want {
        assert!(Instant::now() < end, "summary never reached {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Both instances report what the processors hold, after a summary barrier each.
fn assert_agree(nodes: &[&Proc], d: &Proc, f: &Proc, from: i64, want: u64) {
    for n in nodes {
        wait_drained(n, LONG);
        wait_count(n, want);
    }
    for (i, n) in nodes.iter().enumerate() {
        let (ours, theirs) = compare(n, d, f, from, now_ms() + 1);
        assert_eq!(ours, theirs, "instance {} vs processors", i + 1);
        assert_eq!(ours[0].0 + ours[1].0, want, "instance {}", i + 1);
    }
}

/// Two instances whose one link (dialed by 1, the preferred direction) runs through a
/// recording proxy: records, forwards, a purge and summary barriers cross it. Returns
/// what the proxy saw and the correlationIds paid.
fn pair_through_proxy(name: &str, with_tls: bool) -> (Vec<u8>, Vec<String>) {
    let (d, f) = processors();
    let dir = certs(name);
    let (p1, p2) = (free_port(), free_port());
    let proxy = Proxy::new(p2);
    proxy.state.record.store(true, SeqCst);
    let (ta, tb) = if with_tls {
        (tls(&dir, "a", &dir), tls(&dir, "b", &dir))
    } else {
        (Vec::new(), Vec::new())
    };
    let (n2, _) = node(&d, &f, 2, p2, None, &tb);
    let (n1, _) = node(&d, &f, 1, p1, Some(proxy.port), &ta);
    for n in [&n1, &n2] {
        wait_linked(n, 1, LONG);
    }
    let start = now_ms() - 1000;
    let ids: Vec<String> = (0..40).map(|i| uuid(31_000 + i)).collect();
    for (i, id) in ids.iter().enumerate() {
        let n = if i % 2 == 0 { &n1 } else { &n2 };
        assert_eq!(pay(n.port, id, "19.90"), 202);
    }
    assert_agree(&[&n1, &n2], &d, &f, start, 40);
    let forwarded: f64 = [&n1, &n2]
        .iter()
        .map(|n| family_sum(&metrics_text(n.port), "rinha_peer_forwards_received_total"))
        .sum();
    assert!(forwarded > 0.0, "no payment was forwarded over the link");
    assert_eq!(
        request(n2.port, "POST", "/purge-payments", &[], "").status,
        200
    );
    wait_count(&n1, 0);
    let more: Vec<String> = (0..4).map(|i| uuid(32_000 + i)).collect();
    for (i, id) in more.iter().enumerate() {
        let n = if i % 2 == 0 { &n1 } else { &n2 };
        assert_eq!(pay(n.port, id, "19.90"), 202);
    }
    for n in [&n1, &n2] {
        wait_drained(n, LONG);
        wait_count(n, 4);
    }
    assert!(proxy.state.connections.load(SeqCst) >= 1);
    let seen = std::mem::take(&mut *proxy.state.recorded.lock().unwrap());
    (seen, ids.into_iter().chain(more).collect())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn raw_id(id: &str) -> Vec<u8> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn over_tls_the_pair_shares_everything_and_the_wire_shows_nothing() {
    let (seen, ids) = pair_through_proxy("wire", true);
    assert!(
        seen.len() > 1000,
        "the proxy saw the link: {} bytes",
        seen.len()
    );
    assert_eq!(
        seen.first(),
        Some(&0x16),
        "starts with a TLS handshake record"
    );
    assert!(!contains(&seen, TOKEN.as_bytes()), "token in clear");
    assert!(!contains(&seen, b"19.90"), "amount text in clear");
    assert!(
        !contains(&seen, &1990u64.to_be_bytes()),
        "amount cents in clear"
    );
    for id in &ids {
        assert!(!contains(&seen, id.as_bytes()), "{id} in clear (text)");
        assert!(!contains(&seen, &raw_id(id)), "{id} in clear (16 bytes)");
    }
}

/// The control of the test above: the same scan finds everything on a plain link.
#[test]
fn over_plain_tcp_the_same_scan_finds_ids_and_token() {
    let (seen, ids) = pair_through_proxy("plain", false);
    assert!(contains(&seen, TOKEN.as_bytes()));
    assert!(contains(&seen, &1990u64.to_be_bytes()));
    let found = ids.iter().filter(|id| contains(&seen, &raw_id(id))).count();
    assert_eq!(found, ids.len(), "every record crossed the proxy");
}

/// How the dialing instance is misconfigured.
#[derive(Clone, Copy, Debug)]
enum Bad {
    OtherCa,
    SelfSigned,
    Expired,
    Plain,
}

fn bad_flags(bad: Bad, good: &Path, name: &str) -> Vec<String> {
    let other = good.with_file_name(format!("rinha-tls-{name}-other-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&other);
    match bad {
        Bad::OtherCa => {
            make_certs(&other, &["x=127.0.0.1,localhost"], None);
            tls(&other, "x", &other)
        }
        Bad::SelfSigned => {
            std::fs::create_dir_all(&other).unwrap();
            let out = Command::new("openssl")
                .current_dir(&other)
                .args(["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:P-256", "-keyout", "self.key", "-out"])
                .args(["self.pem", "-days", "30", "-subj", "/CN=self", "-addext"])
                .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
                .output()
                .expect("openssl req -x509");
            assert!(out.status.success(), "{out:?}");
            tls(&other, "self", good)
        }
        Bad::Expired => {
            make_certs(good, &["old=127.0.0.1,localhost"], Some("-1"));
            tls(good, "old", good)
        }
        Bad::Plain => Vec::new(),
    }
}

/// The health problem of an instance (`ok` when none).
fn problem(node: &Proc) -> String {
    let h = request(node.port, "GET", "/health", &[], "");
    if field(&h.body, &["status"]) == "ok" {
        return "ok".into();
    }
    field(&h.body, &["problem"]).to_string()
}

/// A good instance `a` and a misconfigured dialer `b`: both refuse the link, say why
/// (`/health`, `/metrics`, one ERROR line per streak), and share no record.
fn refused(name: &str, bad: Bad, cause: &str, dialer_cause: Option<&str>) {
    let (d, f) = processors();
    let dir = certs(name);
    let b_flags = bad_flags(bad, &dir, name);
    let (pa, pb) = (free_port(), free_port());
    let (a, a_log) = node(&d, &f, 1, pa, None, &tls(&dir, "a", &dir));
    let (b, b_log) = node(&d, &f, 2, pb, Some(pa), &b_flags);
    let end = Instant::now() + LONG;
    // A dialer that cannot tell why has never linked: it does not know who owns what.
    while problem(&a) != cause || problem(&b) != dialer_cause.unwrap_or("members_unknown") {
        assert!(
            Instant::now() < end,
            "{bad:?}: a {}, b {}",
            problem(&a),
            problem(&b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let inbound = format!("rinha_peer_refusals_total{{cause=\"{cause}\",side=\"inbound\"}}");
    assert!(
        series(&metrics_text(a.port), &inbound).unwrap_or(0.0) >= 1.0,
        "{inbound}"
    );
    if let Some(c) = dialer_cause {
        let out = format!("rinha_peer_refusals_total{{cause=\"{c}\",side=\"outbound\"}}");
        assert!(
            series(&metrics_text(b.port), &out).unwrap_or(0.0) >= 1.0,
            "{out}"
        );
    }
    assert_eq!(pay(a.port, &uuid(41_000), "19.90"), 202);
    assert_eq!(pay(b.port, &uuid(41_001), "19.90"), 202);
    // The dialer keeps retrying (backoff capped at 1 s) meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    for n in [&a, &b] {
        wait_drained(n, LONG);
        // Unlinked, neither knows who owns what: each holds what it got, and nothing
        // crosses (no forward, no record).
        let health = request(n.port, "GET", "/health", &[], "").body;
        assert_eq!(field(&health, &["heldForOwners"]), "1", "{bad:?}: {health}");
        assert_eq!(summary_count(n), 0, "{bad:?}: a record crossed");
        let received = series(&metrics_text(n.port), "rinha_peer_forwards_received_total");
        assert_eq!(received, Some(0.0), "{bad:?}: a forward crossed");
        assert_eq!(
            field(&request(n.port, "GET", "/health", &[], "").body, &["peers"]),
            "0"
        );
    }
    let errors = |log: &Log, c: &str| {
        let lines = log.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains("ERROR") && l.contains(&format!("({c})")))
            .count()
    };
    assert_eq!(
        errors(&a_log, cause),
        1,
        "{bad:?}: one ERROR line per streak"
    );
    let named = |l: &String| l.contains("ERROR") && l.contains("--peer-tls-");
    assert!(
        a_log.lock().unwrap().iter().any(named),
        "the ERROR line names the flag"
    );
    if let Some(c) = dialer_cause {
        assert_eq!(errors(&b_log, c), 1, "{bad:?}: dialer's ERROR line");
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_by_both() {
    refused(
        "otherca",
        Bad::OtherCa,
        "tls_unknown_ca",
        Some("tls_unknown_ca"),
    );
}

#[test]
fn a_self_signed_certificate_is_refused() {
    refused(
        "self",
        Bad::SelfSigned,
        "tls_self_signed",
        Some("tls_self_signed"),
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    refused("expired", Bad::Expired, "tls_expired", Some("tls_expired"));
}

#[test]
fn a_plain_tcp_peer_is_refused() {
    refused("plain-peer", Bad::Plain, "tls_plaintext", None);
}

/// A TLS client that presents no certificate (Debian's `openssl s_client`, trusting the
/// CA) is refused by the acceptor before a frame is read, and reported as such.
#[test]
fn a_client_without_a_certificate_is_refused() {
    let (d, f) = processors();
    let dir = certs("nocert");
    let pa = free_port();
    let (a, a_log) = node(&d, &f, 1, pa, None, &tls(&dir, "a", &dir));
    let end = Instant::now() + LONG;
    let inbound = "rinha_peer_refusals_total{cause=\"tls_no_certificate\",side=\"inbound\"}";
    while problem(&a) != "tls_no_certificate" {
        assert!(Instant::now() < end, "a: {}", problem(&a));
        let out = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-tls1_3", "-connect"])
            .arg(format!("127.0.0.1:{pa}"))
            .arg("-CAfile")
            .arg(dir.join("ca.pem"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        assert!(!out.stdout.is_empty() || !out.stderr.is_empty(), "{out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        series(&metrics_text(a.port), inbound).unwrap_or(0.0) >= 1.0,
        "{inbound}"
    );
    let health = request(a.port, "GET", "/health", &[], "").body;
    assert_eq!(field(&health, &["peers"]), "0", "{health}");
    let errors = || {
        a_log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ERROR") && l.contains("(tls_no_certificate)"))
            .count()
    };
    // The log is read by another thread: wait for the line, then count.
    while errors() == 0 {
        assert!(Instant::now() < end, "no ERROR line");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(errors(), 1, "one ERROR line per streak");
}

/// Runs `rinha` in a network namespace of its own (only loopback, brought up), so
/// that nothing is dialed off the machine even if the guard failed.
fn isolated(args: &[&str]) -> std::process::Output {
    required_tool("unshare", "util-linux").expect("unshare");
    let script = r#"ip link set lo up 2>/dev/null; exec timeout 3 "$@""#;
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", script, "sh", env!("CARGO_BIN_EXE_rinha")])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("unshare failed") && !err.contains("Operation not permitted"),
        "unshare -n needs CAP_SYS_ADMIN (root, or a user namespace): {err}"
    );
    out
}

#[test]
fn start_up_refuses_a_plain_link_off_loopback() {
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--peer-token",
        "t",
        "--instance-id",
        "1",
    ];
    for extra in [
        &["--peer", "10.1.2.3:7000"][..],
        &["--peer-listen", "0.0.0.0:0"][..],
        &["--peer-listen", "10.1.2.3:7000"][..],
    ] {
        let out = isolated(&[&base[..], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        for flag in [
            "--peer-tls-cert",
            "--peer-tls-key",
            "--peer-tls-ca",
            "--peer-plaintext",
        ] {
            assert!(err.contains(flag), "{extra:?}: names {flag}: {err}");
        }
        assert!(
            !err.contains("listening on"),
            "{extra:?}: it started: {err}"
        );
    }
    // Allowed on purpose: it starts (and `timeout` stops it; 124).
    let out = isolated(&[&base[..], &["--peer", "10.1.2.3:7000", "--peer-plaintext"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listening on tcp port"), "{err}");
    assert_eq!(out.status.code(), Some(124), "{err}");
}

/// `cargo test --release --test peer_tls -- --ignored --nocapture`: record → visible on
/// the peer and a barrier's round trip, in-process `Peers` over loopback TCP, plain
/// and TLS (the pump's cost).
#[test]
#[ignore]
fn replication_latency_plain_vs_tls() {
    use rinha::config::{Addr, Config, PeerTlsFiles};
    use rinha::inflight::InFlight;
    use rinha::ledger::Ledger;
    use rinha::payment::{CorrelationId, Payment, Processor, Record};
    use rinha::peer::{PeerEvents, Peers};
    use std::sync::Arc;
    struct Nop;
    impl PeerEvents for Nop {
        fn on_health(&self, _: Processor, _: bool, _: u32) {}
        fn on_forwarded(&self, _: Payment) -> bool {
            true
        }
        fn pay_here(&self, _: Payment) {}
        fn handed_over(&self, _: &[CorrelationId]) {}
        fn on_member(&self, _: u32) {}
        fn on_purge(&self) {}
    }
    let dir = certs("latency");
    let files = |who: &str| PeerTlsFiles {
        cert: dir
            .join(format!("{who}.pem"))
            .to_string_lossy()
            .into_owned(),
        key: dir
            .join(format!("{who}.key"))
            .to_string_lossy()
            .into_owned(),
        ca: dir.join("ca.pem").to_string_lossy().into_owned(),
    };
    for with_tls in [false, true] {
        let start = |id: u32, dial: Vec<Addr>, who: &str| {
            let cfg = Config {
                instance_id: id,
                peer_listen: Some(Addr::Tcp("127.0.0.1:0".into())),
                peers: dial,
                peer_token: TOKEN.into(),
                peer_tls: with_tls.then(|| files(who)),
                ..Config::default()
            };
            let ledger = Arc::new(Ledger::new());
            let p = Peers::start(
                &cfg,
                ledger.clone(),
                Arc::new(InFlight::new()),
                Arc::new(Nop),
            );
            (p.unwrap(), ledger)
        };
        let (a, la) = start(1, Vec::new(), "a");
        let (b, lb) = start(2, vec![a.listen_addr().unwrap().clone()], "b");
        let end = Instant::now() + LONG;
        while a.linked_peers().is_empty() || b.linked_peers().is_empty() {
            assert!(Instant::now() < end, "no link");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Records linger up to 100 ms for company (link/mod.rs `LINGER`), so the
        // cost shows in a barrier: a request and its answer, sent at once.
        let (mut us, mut rtt) = (Vec::new(), Vec::new());
        for i in 0..2000u32 {
            let mut id = [0x5au8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let t = Instant::now();
            la.insert(Record {
                id: CorrelationId(id),
                requested_at_us: 0,
                cents: 1990,
                processor: Processor::Default,
            });
            a.notify_record();
            while !lb.contains(&CorrelationId(id)) {
                std::thread::yield_now();
            }
            us.push(t.elapsed());
            let t = Instant::now();
            let w = a.barrier(None, Instant::now() + LONG);
            while !w.is_done() {
                std::thread::yield_now();
            }
            rtt.push(t.elapsed());
            std::thread::sleep(Duration::from_micros(200));
        }
        let name = if with_tls { "tls" } else { "plain" };
        println!(
            "barrier round trip {name}: n={} p50={:.0}us p99={:.0}us",
            rtt.len(),
            percentile_ms(&mut rtt, 50.0) * 1000.0,
            percentile_ms(&mut rtt, 99.0) * 1000.0,
        );
        let name = if with_tls { "tls" } else { "plain" };
        println!(
            "replication {name}: n={} p50={:.0}us p99={:.0}us max={:.0}us",
            us.len(),
            percentile_ms(&mut us, 50.0) * 1000.0,
            percentile_ms(&mut us, 99.0) * 1000.0,
            percentile_ms(&mut us, 100.0) * 1000.0
        );
    }
}
