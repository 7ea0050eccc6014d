//! Making links: the connector loop (one per configured peer) and the acceptor loop.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::super::net::{Listener, Stream};
use super::super::tls::secure;
use super::super::Shared;
use super::handshake::handshake;
use super::reader::FrameReader;
use super::{run_conn, CONNECT_TIMEOUT, MAX_BACKOFF, MAX_INBOUND, MIN_BACKOFF};
use crate::config::Addr;

const LISTENER: Token = Token(0);
/// The token of `Shared::accept_waker`.
pub(crate) const ACCEPT_WAKER: Token = Token(1);

/// Dials `addr` with backoff (50 ms doubling to 1 s) for as long as it is not linked.
pub(crate) fn connect_loop(s: Arc<Shared>, addr: Addr) {
    let mut known: Option<u32> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    while !s.stopped() {
        if let Some(p) = known {
            s.sleep_while(None, || s.is_linked(p));
        }
        let mut rd = FrameReader::new();
        let dialed = Stream::connect(&addr, CONNECT_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|st| secure(&s, st, Some(&addr)).map_err(|e| e.to_string()))
            .and_then(|mut st| {
                let h = handshake(&s, &mut st, &mut rd, true).map_err(|e| e.to_string());
                h.map(|h| (st, h))
            });
        match dialed {
            Ok((stream, h)) => {
                failing = false;
                backoff = MIN_BACKOFF;
                known = Some(h.instance_id);
                run_conn(&s, stream, rd, h, true);
                s.sleep_while(Some(MIN_BACKOFF), || true);
            }
            Err(e) => {
                if !failing {
                    eprintln!("peer: cannot link to {addr}: {e} (retrying)");
                    failing = true;
                }
                s.sleep_while(Some(backoff), || true);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Accepts peers until shutdown, asleep in `poll` until one connects; each gets a
/// thread for its handshake and reads.
pub(crate) fn accept_loop(s: Arc<Shared>, l: Listener, mut poll: Poll) {
    let fd = l.as_raw_fd();
    if let Err(e) = poll
        .registry()
        .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)
    {
        eprintln!("peer: cannot poll the peer listener: {e}");
        return;
    }
    let mut events = Events::with_capacity(4);
    let active = Arc::new(AtomicUsize::new(0));
    while !s.stopped() {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("peer: poll: {e}");
                return;
            }
        }
        // Edge-triggered: accept until the backlog is empty.
        while !s.stopped() {
            match l.accept() {
                Ok(stream) => serve_inbound(&s, &active, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: the backlog stays, try again later.
                    eprintln!("peer: accept: {e}");
                    s.sleep_while(Some(Duration::from_millis(100)), || true);
                }
            }
        }
    }
}

fn serve_inbound(s: &Arc<Shared>, active: &Arc<AtomicUsize>, stream: Stream) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_INBOUND {
        active.fetch_sub(1, Ordering::AcqRel);
        return;
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

fn inbound(s: &Arc<Shared>, stream: Stream) {
    let mut stream = match secure(s, stream, None) {
        Ok(st) => st,
        // Logged once per streak by `Conflicts`, not once per retry.
        Err(e) if e.misconfigured => return,
        Err(e) => return eprintln!("peer: refused an inbound link: {e}"),
    };
    let mut rd = FrameReader::new();
    match handshake(s, &mut stream, &mut rd, false) {
        Ok(h) => run_conn(s, stream, rd, h, false),
        // Logged once per streak by `Conflicts`, not once per retry.
        Err(e) if e.misconfigured => {}
        Err(e) => eprintln!("peer: refused an inbound link: {e}"),
    }
}
