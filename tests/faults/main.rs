//! Fault injection, end to end: real `rinha` and processor-emulator processes on
//! loopback, with failures injected while payments flow. Every test ends the same way:
//! the backend's summaries equal the processors' over the whole run and over slices of
//! it, and every correlationId that got a 202 is stored on exactly one processor
//! (`GET /payments/{id}` on both). Each prints one `RELIABILITY |` row for
//! docs/RELIABILITY.md. Long tests are `#[ignore]`d: `make faults-long`.
//!
//! One fault family per file: `processor` (errors, 429s, kills, cuts and slowness of a
//! processor), `cluster` (duplicates, the health leader, the peer link, instance kills),
//! `input` (slowloris, bad input), `load` (beyond the official load). This file holds
//! the harness they share: the load generator and the check every test ends with.

mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod input;
mod load;
mod processor;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// What a load generator saw.
#[derive(Default)]
struct Posted {
    /// Answered 202.
    accepted: Vec<String>,
    /// Posted and answered nothing (connection lost): paid at most once.
    unanswered: Vec<String>,
    /// Answered something else (503 when the queue is full, ...).
    refused: u64,
    latencies: Vec<Duration>,
}

impl Posted {
    fn merge(mut self, other: Posted) -> Posted {
        self.accepted.extend(other.accepted);
        self.unanswered.extend(other.unanswered);
        self.refused += other.refused;
        self.latencies.extend(other.latencies);
        self
    }
}

/// `threads` clients post `per_thread` payments each, one every `pace`, over
/// keep-alive connections, spreading them round robin over `ports`. Thread `t` posts
/// to `ports[(t + i) % len]` unless `skip(port index)` says that instance is down.
fn post_load(
    ports: Vec<u16>,
    threads: u64,
    per_thread: u64,
    pace: Duration,
    tag: u64,
    down: Option<Arc<AtomicBool>>,
) -> JoinHandle<Posted> {
    thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (ports, down) = (ports.clone(), down.clone());
                thread::spawn(move || post_thread(&ports, t, per_thread, pace, tag, down))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("poster"))
            .fold(Posted::default(), Posted::merge)
    })
}

fn post_thread(
    ports: &[u16],
    t: u64,
    n: u64,
    pace: Duration,
    tag: u64,
    down: Option<Arc<AtomicBool>>,
) -> Posted {
    let mut clients: Vec<Client> = ports.iter().map(|&p| Client::new(p)).collect();
    let mut out = Posted::default();
    let started = Instant::now();
    for i in 0..n {
        let id = uuid(tag * 10_000_000 + t * 100_000 + i);
        let mut k = (t + i) as usize % clients.len();
        if k == 1 && down.as_ref().is_some_and(|d| d.load(SeqCst)) {
            k = 0;
        }
        let sent = Instant::now();
        match clients[k].pay(&id, "19.90") {
            202 => {
                out.latencies.push(sent.elapsed());
                out.accepted.push(id);
            }
            0 => out.unanswered.push(id),
            _ => out.refused += 1,
        }
        let next = started + pace * (i as u32 + 1);
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    out
}

/// Sum over the whole range and 8 slices of |Δdefault| + |Δfallback| requests, plus one
/// for each window where the counts agree and the amounts do not.
fn inconsistencies(node: &Proc, d: &Proc, f: &Proc, from: i64, to: i64) -> u64 {
    let step = ((to - from) / 8).max(1);
    let windows = std::iter::once((from, to)).chain((0..8).map(|k| {
        let a = from + k * step;
        (a, (a + step).min(to))
    }));
    let mut bad = 0;
    for (a, b) in windows {
        let (ours, theirs) = compare(node, d, f, a, b);
        for p in 0..2 {
            let diff = ours[p].0.abs_diff(theirs[p].0);
            bad += diff + u64::from(diff == 0 && ours[p].1 != theirs[p].1);
        }
    }
    bad
}

/// One row of docs/RELIABILITY.md.
struct Row {
    requested: usize,
    recorded: u64,
    lost: usize,
    doubled: usize,
    inconsistent: u64,
    p99_ms: Option<f64>,
}

/// Drains every node, waits (bounded) until each agrees with the processors over
/// `[from, to_now]`, audits every id, prints the row and asserts the guarantees:
/// `expect` payments recorded, none lost or doubled, no inconsistency.
fn check(fault: &str, nodes: &[&Proc], d: &Proc, f: &Proc, from: i64, posted: &mut Posted) -> Row {
    for n in nodes {
        wait_drained(n, LONG);
    }
    let to = now_ms() + 1;
    let mut inconsistent = 0;
    let end = Instant::now() + Duration::from_secs(20);
    for n in nodes {
        loop {
            let bad = inconsistencies(n, d, f, from, to);
            if bad == 0 || Instant::now() > end {
                inconsistent += bad;
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
    let (ours, _) = compare(nodes[0], d, f, from, to);
    let a = audit(&posted.accepted, d, f);
    let b = audit(&posted.unanswered, d, f);
    let p99 = (!posted.latencies.is_empty()).then(|| percentile_ms(&mut posted.latencies, 99.0));
    let row = Row {
        requested: posted.accepted.len() + posted.unanswered.len(),
        recorded: ours[0].0 + ours[1].0,
        lost: a.lost.len(),
        doubled: a.doubled.len() + b.doubled.len(),
        inconsistent,
        p99_ms: p99,
    };
    eprintln!(
        "RELIABILITY | {fault} | {} | {} | {} | {} | {} | {} | (default {}, fallback {}, \
         202 {}, no answer {} of which paid {}, refused {})",
        row.requested,
        row.recorded,
        row.lost,
        row.doubled,
        row.inconsistent,
        row.p99_ms.map_or("n/a".into(), |p| format!("{p:.1} ms")),
        ours[0].0,
        ours[1].0,
        posted.accepted.len(),
        posted.unanswered.len(),
        b.once,
        posted.refused
    );
    assert!(
        a.lost.is_empty(),
        "{fault}: accepted and never paid: {:?}",
        a.lost
    );
    assert!(
        a.doubled.is_empty(),
        "{fault}: paid on both processors: {:?}",
        a.doubled
    );
    assert!(
        b.doubled.is_empty(),
        "{fault}: paid on both processors: {:?}",
        b.doubled
    );
    assert_eq!(
        inconsistent, 0,
        "{fault}: backend summaries differ from the processors"
    );
    assert_eq!(
        row.recorded,
        a.once + b.once,
        "{fault}: recorded = paid ids ({ours:?})"
    );
    row
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn start(d: u16, f: u16, extra: &[String]) -> Proc {
    let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    rinha_at(d, f, &refs)
}
