//! End-to-end: `GET /metrics` as Prometheus sees it. `promtool check metrics` lints the
//! real output of a busy instance, and a real Prometheus (Debian package `prometheus`)
//! scrapes two linked instances on loopback and answers queries about them, including
//! every query the README lists.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// Lints one `/metrics` text with promtool: no error, no warning.
fn promtool_check(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).expect("feed promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

/// Traffic of every kind, then exact counters, and promtool finds nothing to say.
#[test]
fn metrics_count_exactly_and_pass_promtool() {
    let Some(promtool) = required_tool("promtool", "prometheus") else {
        return;
    };
    let (d, f) = processors();
    let b = rinha(&d, &f, &["--workers", "4"]);
    promtool_check(&promtool, &metrics_text(b.port));
    let ids: Vec<String> = (0..30).map(|i| uuid(40_000 + i)).collect();
    for id in &ids {
        assert_eq!(pay(b.port, id, "19.90"), 202);
    }
    assert_eq!(pay(b.port, &ids[0], "19.90"), 202, "a duplicate");
    assert_eq!(pay(b.port, "not-a-uuid", "19.90"), 400);
    assert_eq!(request(b.port, "GET", "/nope", &[], "").status, 404);
    wait_drained(&b, LONG);
    assert_eq!(
        request(b.port, "GET", "/payments-summary", &[], "").status,
        200
    );

    let m = metrics_text(b.port);
    promtool_check(&promtool, &m);
    let exact = [
        ("rinha_payments_accepted_total", 31.0),
        ("rinha_payments_duplicate_total", 1.0),
        ("rinha_payments_rejected_total{reason=\"invalid\"}", 1.0),
        ("rinha_payments_rejected_total{reason=\"queue_full\"}", 0.0),
        ("rinha_payments_paid_total{processor=\"default\"}", 30.0),
        ("rinha_payments_paid_total{processor=\"fallback\"}", 0.0),
        ("rinha_http_errors_total{status=\"400\"}", 1.0),
        ("rinha_http_errors_total{status=\"404\"}", 1.0),
        ("rinha_summaries_total", 1.0),
        ("rinha_summaries_duration_seconds_count", 1.0),
        ("rinha_payment_accept_to_record_seconds_count", 30.0),
        ("rinha_ledger_records", 30.0),
        ("rinha_queue_depth", 0.0),
        ("rinha_workers", 4.0),
        ("rinha_payments_in_flight", 0.0),
        ("rinha_router_failing{processor=\"default\"}", 0.0),
        ("rinha_health_leader", 1.0),
    ];
    for (name, want) in exact {
        assert_eq!(series(&m, name), Some(want), "{name} in\n{m}");
    }
    let stored = series(
        &m,
        "rinha_processor_attempts_total{processor=\"default\",outcome=\"200\"}",
    );
    assert!(stored >= Some(30.0), "{stored:?}");
    let answered = "rinha_processor_latency_seconds_count{processor=\"default\"}";
    assert!(series(&m, answered) >= Some(30.0));
    assert!(m.contains("rinha_instance_info{instance_id=\""));
}

/// A Prometheus server on loopback, killed (by PID) and its data removed when dropped.
struct Prometheus {
    proc: Proc,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Scrapes `targets` (loopback ports) every second, as docs/OPERATIONS.md's scrape config.
    fn start(bin: &Path, targets: &[u16]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "rinha-prometheus-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
             - job_name: rinha\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            proc: Proc { child, port },
            dir,
        };
        let end = Instant::now() + LONG;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || request(port, "GET", "/-/ready", &[], "").status != 200
        {
            assert!(Instant::now() < end, "prometheus not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// Runs an instant query; returns the raw JSON answer.
    fn query(&self, promql: &str) -> String {
        let r = request(
            self.proc.port,
            "GET",
            &format!("/api/v1/query?query={}", encode(promql)),
            &[],
            "",
        );
        assert_eq!(r.status, 200, "{promql}: {r:?}");
        assert!(
            r.body.contains("\"status\":\"success\""),
            "{promql}: {}",
            r.body
        );
        r.body
    }

    /// The value of a query whose answer is one sample, if it has one.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let body = self.query(promql);
        let (_, rest) = body.split_once("\"value\":[")?;
        let v = rest.split('"').nth(1)?;
        v.parse().ok()
    }

    /// Polls until `promql` evaluates to `want`.
    fn wait_for(&self, promql: &str, want: f64) {
        let end = Instant::now() + LONG;
        loop {
            let got = self.scalar(promql);
            if got == Some(want) {
                return;
            }
            assert!(Instant::now() < end, "{promql} = {got:?}, want {want}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The PromQL lines of docs/OPERATIONS.md's ```promql blocks (comments dropped).
fn documented_queries() -> Vec<String> {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md");
    let text = std::fs::read_to_string(page).expect("docs/OPERATIONS.md");
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line.trim() {
            "```promql" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() && !l.starts_with('#') => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

/// A real Prometheus scrapes two linked instances and reads back exactly what they
/// paid; every query of docs/OPERATIONS.md runs.
#[test]
fn prometheus_scrapes_two_linked_instances() {
    let Some(bin) = required_tool("prometheus", "prometheus") else {
        return;
    };
    let (d, f) = processors();
    let ports = [free_port(), free_port()];
    let nodes: Vec<Proc> = (1..=2)
        .map(|i| {
            let mut flags = mesh_flags(i, &ports);
            flags.extend(["--workers", "8"].map(String::from));
            let refs: Vec<&str> = flags.iter().map(String::as_str).collect();
            rinha(&d, &f, &refs)
        })
        .collect();
    for n in &nodes {
        wait_linked(n, 1, LONG);
    }
    let prom = Prometheus::start(&bin, &[nodes[0].port, nodes[1].port]);
    for i in 0..40u64 {
        let node = &nodes[(i % 2) as usize];
        assert_eq!(pay(node.port, &uuid(50_000 + i), "19.90"), 202);
    }
    for n in &nodes {
        wait_drained(n, LONG);
    }
    prom.wait_for("count(up{job=\"rinha\"} == 1)", 2.0);
    prom.wait_for("sum(rinha_payments_paid_total)", 40.0);
    prom.wait_for("sum(rinha_peer_links_up)", 2.0);
    prom.wait_for("min(rinha_ledger_records)", 40.0);
    let queries = documented_queries();
    assert!(queries.len() >= 5, "documented queries: {queries:?}");
    for q in &queries {
        prom.query(q);
    }
}
