//! One thread per TLS link moving bytes between the TCP socket (through rustls) and the
//! pump's end of a unix socket pair, whose other end the link code reads and writes.
//!
//! Both sockets are non-blocking and the thread sleeps in `poll` on both. Flow control:
//! plaintext from the link is read only once rustls has written everything before it
//! to TCP, and ciphertext is read only once what it decrypted to was handed to the
//! link; so each direction holds at most one chunk here, and a slow side stalls the
//! other through the kernel's socket buffers. The pump ends when either side closes:
//! closing its end of the pair shows the link an end of file, and a link that closes
//! (`Conn::abort` shuts its end down) makes the pump send `close_notify` and close TCP.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use rustls::Connection;

use super::super::conflict::Cause;

/// Bytes moved per read from either side.
const CHUNK: usize = 16 * 1024;
/// How long a closed link's unsent bytes and `close_notify` may wait for TCP.
const LAST_WORDS_MS: i32 = 2_000;

/// Notes a misconfiguration the peer's alert shows (after the handshake: the
/// acceptor refuses the dialer's certificate after the dialer's side is done).
pub(super) type Report = Box<dyn Fn(Cause) + Send>;

struct Pump {
    conn: Connection,
    tcp: TcpStream,
    local: UnixStream,
    /// Plaintext from the peer not yet written to the link.
    to_local: Vec<u8>,
    /// The peer closed (or failed): nothing more will come from TCP.
    tcp_done: bool,
    /// The link closed its end: send `close_notify`, flush, stop.
    local_done: bool,
    buf: Vec<u8>,
    report: Report,
}

/// Starts the pump of a handshaken connection; returns the link's end of the pair.
pub(super) fn start(conn: Connection, tcp: TcpStream, report: Report) -> io::Result<UnixStream> {
    let (link, local) = UnixStream::pair()?;
    tcp.set_nonblocking(true)?;
    local.set_nonblocking(true)?;
    let mut p = Pump {
        conn,
        tcp,
        local,
        to_local: Vec::new(),
        tcp_done: false,
        local_done: false,
        buf: vec![0; CHUNK],
        report,
    };
    p.conn.set_buffer_limit(None);
    std::thread::Builder::new()
        .name("peer-tls".into())
        .spawn(move || {
            if let Err(e) = p.run() {
                eprintln!("peer: TLS link closed: {e}");
            }
        })?;
    Ok(link)
}

/// `Ok(None)` for `WouldBlock`; `Interrupted` is retried.
fn again<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<Option<T>> {
    loop {
        match f() {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Pump {
    /// Until either side closes. An error of the socket or of TLS is returned (to be
    /// logged); an orderly close is `Ok`.
    fn run(&mut self) -> io::Result<()> {
        loop {
            self.flush_tls()?;
            self.flush_local()?;
            let tls_out = self.conn.wants_write();
            if (self.local_done && !tls_out) || (self.tcp_done && self.to_local.is_empty()) {
                return Ok(());
            }
            let tcp_in = !self.tcp_done && self.to_local.is_empty();
            let local_in = !self.local_done && !tls_out;
            let local_out = !self.to_local.is_empty();
            // A closed link's last words get `LAST_WORDS` to reach a peer not reading.
            let timeout = if self.local_done { LAST_WORDS_MS } else { -1 };
            let Some((tcp_ready, local_ready)) = wait(
                (self.tcp.as_raw_fd(), tcp_in, tls_out),
                (self.local.as_raw_fd(), local_in, local_out),
                timeout,
            )?
            else {
                return Ok(());
            };
            if tcp_ready && tcp_in {
                self.read_tcp()?;
            }
            // Once TCP is done (a fatal alert, say), rustls takes no more plaintext.
            if local_ready && local_in && !self.tcp_done {
                self.read_local()?;
            }
        }
    }

    /// Writes what rustls has for TCP until it has nothing or TCP is full.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let (conn, tcp) = (&mut self.conn, &mut self.tcp);
            if again(|| conn.write_tls(tcp))?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Writes decrypted bytes to the link until none are left or the pair is full.
    fn flush_local(&mut self) -> io::Result<()> {
        while !self.to_local.is_empty() {
            let (local, pending) = (&mut self.local, &self.to_local);
            match again(|| local.write(pending))? {
                Some(n) => {
                    self.to_local.drain(..n);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Reads ciphertext until TCP has no more, decrypting into `to_local`.
    fn read_tcp(&mut self) -> io::Result<()> {
        while self.to_local.len() < CHUNK {
            let (conn, tcp) = (&mut self.conn, &mut self.tcp);
            match again(|| conn.read_tls(tcp))? {
                None => return Ok(()),
                Some(0) => {
                    self.tcp_done = true;
                    return Ok(());
                }
                Some(_) => {}
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.conn.write_tls(&mut self.tcp);
                self.tcp_done = true;
                // A misconfiguration is logged once per streak by `Conflicts`.
                return match super::cause_of(&e, false) {
                    Some(cause) => {
                        (self.report)(cause);
                        Ok(())
                    }
                    None => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                };
            }
            self.take_plaintext()?;
        }
        Ok(())
    }

    /// Moves what rustls decrypted into `to_local`.
    fn take_plaintext(&mut self) -> io::Result<()> {
        loop {
            match self.conn.reader().read(&mut self.buf) {
                Ok(0) => {
                    self.tcp_done = true;
                    return Ok(());
                }
                Ok(n) => self.to_local.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Closed without `close_notify` (a peer killed): an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.tcp_done = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one chunk of the link's plaintext into rustls.
    fn read_local(&mut self) -> io::Result<()> {
        let (local, buf) = (&mut self.local, &mut self.buf);
        match again(|| local.read(buf)) {
            Ok(Some(0)) | Err(_) => {
                self.local_done = true;
                self.conn.send_close_notify();
            }
            Ok(Some(n)) => self.conn.writer().write_all(&self.buf[..n])?,
            Ok(None) => {}
        }
        Ok(())
    }
}

/// Sleeps until one of two descriptors is ready for what is asked of it (or closed or
/// failed), at most `timeout_ms` (-1: no limit); a descriptor asked nothing is left
/// out. Returns which were ready, `None` at the timeout.
#[allow(unsafe_code)]
fn wait(
    a: (i32, bool, bool),
    b: (i32, bool, bool),
    timeout_ms: i32,
) -> io::Result<Option<(bool, bool)>> {
    let fd = |(fd, rd, wr): (i32, bool, bool)| libc::pollfd {
        fd: if rd || wr { fd } else { -1 },
        events: (if rd { libc::POLLIN } else { 0 }) | (if wr { libc::POLLOUT } else { 0 }),
        revents: 0,
    };
    let mut fds = [fd(a), fd(b)];
    loop {
        // SAFETY: `fds` is an initialised array of two pollfds that outlives the call,
        // and nfds is its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if n == 0 {
            return Ok(None);
        }
        if n > 0 {
            return Ok(Some((fds[0].revents != 0, fds[1].revents != 0)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
