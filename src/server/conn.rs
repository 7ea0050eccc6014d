//! Sockets and per-connection state of the server: listeners, streams (TCP or unix),
//! a connection's buffers, and its lingering close.

use std::io::{self, Read};
use std::net::{Shutdown, ToSocketAddrs};
use std::time::Instant;

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::Addr;
use crate::metrics::LingerEnd;

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A client connection's socket (mio's, non-blocking).
pub(super) type Stream = crate::net::Stream<TcpStream, UnixStream>;

impl Stream {
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    /// Sends FIN after what was written: the client reads the response, then EOF.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

pub(super) fn bind(addr: &Addr) -> io::Result<Listener> {
    match addr {
        Addr::Tcp(a) => {
            let sa = a
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("no address for {a}")))?;
            Ok(Listener::Tcp(TcpListener::bind(sa)?))
        }
        Addr::Unix(path) => {
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path)?;
            // nginx runs as another user: let it connect.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
            Ok(Listener::Unix(l))
        }
    }
}

/// A summary waiting for in-flight payments in its range (here and on peers).
pub(super) struct Pending {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub settle_to: i64,
    pub started: Instant,
    pub deadline: Instant,
    pub barrier: Box<dyn Fn() -> bool + Send>,
}

/// One client connection. Invariants: `rbuf` holds bytes not yet parsed; `wbuf[wpos..]`
/// bytes not yet written; while `pending` is set no further request is parsed; once
/// `linger` is set nothing is parsed or written again.
pub(super) struct Conn {
    pub stream: Stream,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    pub last_active_ms: u64,
    /// When the first byte of the request still incomplete in `rbuf` arrived.
    pub partial_since_ms: Option<u64>,
    pub closing: bool,
    pub writable: bool,
    pub pending: Option<Pending>,
    pub linger: Option<Linger>,
}

impl Conn {
    /// The earliest time (mono ms) the idle sweep may close this connection, as things
    /// stand: its lingering close's bound, its idle timeout, or its request's timeout.
    pub fn expires_at(&self, idle_timeout_ms: u64, request_timeout_ms: u64) -> u64 {
        if let Some(l) = self.linger {
            return l.until_ms;
        }
        let idle = self.last_active_ms + idle_timeout_ms + 1;
        self.partial_since_ms
            .map_or(idle, |t| idle.min(t + request_timeout_ms + 1))
    }

    pub fn new(stream: Stream, now_ms: u64) -> Conn {
        Conn {
            stream,
            // Allocated on first use: an idle connection costs a few hundred bytes.
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            last_active_ms: now_ms,
            partial_since_ms: None,
            closing: false,
            writable: false,
            pending: None,
            linger: None,
        }
    }
}

/// Longest lingering close: a client still sending after this is cut.
pub const LINGER_MS: u64 = 2_000;
/// Most input read and dropped in a lingering close.
pub const LINGER_BYTES: usize = 1 << 20;

/// A lingering close (as nginx's `lingering_close`). Closing a socket with unread input
/// makes the kernel send a reset, and a reset can destroy the response before the
/// client reads it. So after an error response to a request whose rest will not be
/// read, the server shuts its write side (the client reads the response, then EOF)
/// and reads and drops input until the client closes, for at most `LINGER_MS` and
/// `LINGER_BYTES`: a client that keeps sending cannot hold the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Linger {
    until_ms: u64,
    left: usize,
}

impl Linger {
    pub fn start(now_ms: u64) -> Linger {
        Linger {
            until_ms: now_ms + LINGER_MS,
            left: LINGER_BYTES,
        }
    }

    /// Reads and drops what `r` holds now; `Some` once the connection should close.
    pub fn drain(&mut self, r: &mut impl Read, now_ms: u64) -> Option<LingerEnd> {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if now_ms >= self.until_ms {
                return Some(LingerEnd::Time);
            }
            match r.read(&mut scratch) {
                Ok(0) => return Some(LingerEnd::Eof),
                Ok(n) if n >= self.left => return Some(LingerEnd::Bytes),
                Ok(n) => self.left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Some(LingerEnd::Error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `chunks` reads of `size` bytes, then `then`.
    struct Input {
        chunks: usize,
        size: usize,
        then: io::ErrorKind,
    }

    impl Read for Input {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.chunks == 0 {
                return match self.then {
                    io::ErrorKind::UnexpectedEof => Ok(0),
                    k => Err(k.into()),
                };
            }
            self.chunks -= 1;
            Ok(self.size.min(b.len()))
        }
    }

    fn input(chunks: usize, then: io::ErrorKind) -> Input {
        Input {
            chunks,
            size: 16 * 1024,
            then,
        }
    }

    #[test]
    fn drains_until_the_client_closes() {
        let mut l = Linger::start(0);
        let mut r = input(3, io::ErrorKind::WouldBlock);
        assert_eq!(l.drain(&mut r, 10), None, "more may come");
        assert_eq!(l.left, LINGER_BYTES - 3 * 16 * 1024);
        let mut r = input(2, io::ErrorKind::UnexpectedEof);
        assert_eq!(l.drain(&mut r, 20), Some(LingerEnd::Eof));
    }

    #[test]
    fn a_flood_is_cut_at_the_size_bound() {
        let mut l = Linger::start(0);
        let mut r = input(usize::MAX, io::ErrorKind::WouldBlock);
        assert_eq!(l.drain(&mut r, 0), Some(LingerEnd::Bytes));
        assert_eq!(r.chunks, usize::MAX - LINGER_BYTES / (16 * 1024));
    }

    #[test]
    fn a_trickle_is_cut_at_the_time_bound() {
        let mut l = Linger::start(1_000);
        for t in (1_000..1_000 + LINGER_MS).step_by(100) {
            assert_eq!(l.drain(&mut input(1, io::ErrorKind::WouldBlock), t), None);
            assert!(t < l.until_ms);
        }
        assert_eq!(l.until_ms, 1_000 + LINGER_MS);
        let mut r = input(1, io::ErrorKind::WouldBlock);
        assert_eq!(l.drain(&mut r, 1_000 + LINGER_MS), Some(LingerEnd::Time));
    }

    #[test]
    fn a_reset_ends_it() {
        let mut l = Linger::start(0);
        let mut r = input(0, io::ErrorKind::ConnectionReset);
        assert_eq!(l.drain(&mut r, 0), Some(LingerEnd::Error));
    }
}
