//! Micro-benchmark of the server's hot path without sockets: parse a pipelined
//! `POST /payments`, read its JSON, enqueue it, render the 202 (`server::answer`);
//! plus a summary over 100k ledger records. Prints the median of 11 samples.
//!
//! Run: `cargo bench --bench request_path`

use std::hint::black_box;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use rinha::config::Config;
use rinha::http::Limits;
use rinha::inflight::InFlight;
use rinha::intake::Intake;
use rinha::ledger::Ledger;
use rinha::pace::Pacer;
use rinha::payment::{CorrelationId, Processor, Record};
use rinha::router::Router;
use rinha::server::{answer, App, Standalone};

const BATCH: usize = 20_000;
const SAMPLES: usize = 11;
/// Records in the ledger while payments are posted.
const PREFILLED: u32 = 50_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn request(i: usize) -> Vec<u8> {
    let body = format!(
        r#"{{"correlationId":"{:08x}-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90}}"#,
        i
    );
    format!(
        "POST /payments HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn main() {
    let cfg = Config::default();
    let limits = Limits {
        max_header: cfg.max_header,
        max_body: cfg.max_body,
    };
    // The intake's gate and the summaries read one ledger, as in `node::build`, holding
    // what it holds mid-way through the final test.
    let ledger = Arc::new(Ledger::new());
    for i in 0..PREFILLED {
        let mut id = [0xee; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        ledger.insert(Record {
            id: CorrelationId(id),
            requested_at_us: i64::from(i),
            cents: 2005,
            processor: Processor::Default,
        });
    }
    let intake = Arc::new(Intake::new(
        BATCH * 2,
        None,
        Arc::new(Pacer::new(0, 1)),
        ledger.clone(),
    ));
    let mut outlet = intake.outlet();
    let app = App {
        intake: intake.clone(),
        ledger,
        inflight: Arc::new(InFlight::new()),
        router: Arc::new(Router::new(cfg.router.clone())),
        cluster: Arc::new(Standalone),
        busy: Arc::new(AtomicUsize::new(0)),
        instance_id: 1,
        id_derived: false,
        purge_token: None,
        summary_wait: cfg.summary_wait,
        summary_settle: cfg.summary_settle,
    };
    let mut out = Vec::with_capacity(1 << 20);
    let mut samples = Vec::new();
    for s in 0..SAMPLES {
        let reqs: Vec<Vec<u8>> = (0..BATCH).map(|i| request(s * BATCH + i)).collect();
        let start = Instant::now();
        for r in &reqs {
            out.clear();
            let n = answer(&app, &limits, black_box(r), &mut out);
            assert_eq!(n, r.len());
        }
        samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        assert!(out.starts_with(b"HTTP/1.1 202"));
        while intake.queued() > 0 {
            outlet.next_payment();
        }
    }
    println!(
        "post_payment_path: median {:.0} ns/request over {SAMPLES}x{BATCH}",
        median(samples)
    );

    let ledger = Ledger::new();
    for i in 0..100_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        let processor = if i % 3 == 0 {
            Processor::Fallback
        } else {
            Processor::Default
        };
        ledger.insert(Record {
            id: CorrelationId(id),
            requested_at_us: i64::from(i) * 1000,
            cents: 1990,
            processor,
        });
    }
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let start = Instant::now();
        black_box(ledger.summary(Some(10_000_000), Some(90_000_000)));
        samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    println!("summary_100k_records: median {:.0} us", median(samples));
}
