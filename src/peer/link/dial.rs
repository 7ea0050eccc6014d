//! Making links: the connector loop (one per configured peer) and the acceptor loop.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::net::{Listener, Stream};
use super::super::Shared;
use super::handshake::handshake;
use super::reader::FrameReader;
use super::{run_conn, CONNECT_TIMEOUT, MAX_BACKOFF, MAX_INBOUND, MIN_BACKOFF};
use crate::config::Addr;

fn stopped(s: &Shared) -> bool {
    s.stop.load(Ordering::SeqCst)
}

/// Sleeps up to `d`, waking early if the link is shutting down.
fn nap(s: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !stopped(s) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Dials `addr` with backoff (50 ms doubling to 1 s) for as long as it is not linked.
pub(crate) fn connect_loop(s: Arc<Shared>, addr: Addr) {
    let mut known: Option<u32> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    while !stopped(&s) {
        if known.is_some_and(|p| s.is_linked(p)) {
            nap(&s, Duration::from_millis(100));
            continue;
        }
        let mut rd = FrameReader::new();
        let dialed = Stream::connect(&addr, CONNECT_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|mut st| handshake(&s, &mut st, &mut rd, true).map(|h| (st, h)));
        match dialed {
            Ok((stream, h)) => {
                failing = false;
                backoff = MIN_BACKOFF;
                known = Some(h.instance_id);
                run_conn(&s, stream, rd, h, true);
                nap(&s, MIN_BACKOFF);
            }
            Err(e) => {
                if !failing {
                    eprintln!("peer: cannot link to {addr}: {e} (retrying)");
                    failing = true;
                }
                nap(&s, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Accepts peers until shutdown; each gets a thread for its handshake and reads.
pub(crate) fn accept_loop(s: Arc<Shared>, l: Listener) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stopped(&s) {
        let stream = match l.accept() {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                nap(&s, Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                eprintln!("peer: accept: {e}");
                nap(&s, Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_INBOUND {
            active.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (s2, a2) = (s.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("peer-in".into())
            .spawn(move || {
                inbound(&s2, stream);
                a2.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn inbound(s: &Arc<Shared>, mut stream: Stream) {
    let mut rd = FrameReader::new();
    match handshake(s, &mut stream, &mut rd, false) {
        Ok(h) => run_conn(s, stream, rd, h, false),
        Err(e) => eprintln!("peer: refused an inbound link: {e}"),
    }
}
