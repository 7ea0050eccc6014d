//! Blocking TCP / unix-socket streams and listeners behind one type, so the link code
//! does not care which transport an `Addr` names.

use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use crate::config::Addr;

/// A peer link's socket (std's, blocking).
pub type Stream = crate::net::Stream<TcpStream, UnixStream>;

impl Stream {
    pub fn connect(addr: &Addr, timeout: Duration) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(a) => {
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for sa in a.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&sa, timeout) {
                        Ok(s) => {
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            Addr::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
        }
    }

    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(read)?;
                s.set_write_timeout(write)
            }
        }
    }

    /// Wakes any thread blocked on this socket; errors (already closed) are ignored.
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// A link's input: each read first waits in `poll(POLLIN)`, at most `silence`.
///
/// A blocking read sleeps on the socket's one wait queue, which the kernel also wakes
/// for output space; a unix socket gets that wake-up each time the peer reads what
/// this end wrote. The link's reader thread woke (and slept again) once per frame the
/// writer sent. `poll` only wakes for input, a hang-up, an error or a shutdown.
pub struct Input<'a> {
    pub stream: &'a mut Stream,
    pub silence: Duration,
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        wait_readable(self.stream.as_raw_fd(), self.silence)?;
        self.stream.read(buf)
    }
}

/// Waits until `fd` has input (or is closed or failed); `TimedOut` after `timeout`.
#[allow(unsafe_code)]
fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` is one initialised pollfd that outlives the call, and nfds is 1.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "peer silent")),
        n if n > 0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A non-blocking listener, polled (mio) by the accept thread so that it can stop.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, String),
}

impl Listener {
    pub fn bind(addr: &Addr) -> io::Result<Listener> {
        let l = match addr {
            Addr::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
            Addr::Unix(p) => {
                // A stale socket file from a previous run would make bind fail.
                let _ = std::fs::remove_file(p);
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        };
        match &l {
            Listener::Tcp(t) => t.set_nonblocking(true)?,
            Listener::Unix(u, _) => u.set_nonblocking(true)?,
        }
        Ok(l)
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<Addr> {
        Ok(match self {
            Listener::Tcp(t) => Addr::Tcp(t.local_addr()?.to_string()),
            Listener::Unix(_, p) => Addr::Unix(p.clone()),
        })
    }

    /// A blocking accepted stream, or `WouldBlock`.
    pub fn accept(&self) -> io::Result<Stream> {
        let s = match self {
            Listener::Tcp(t) => {
                let (s, _) = t.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Listener::Unix(u, _) => {
                let (s, _) = u.accept()?;
                s.set_nonblocking(false)?;
                Stream::Unix(s)
            }
        };
        Ok(s)
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Listener::Tcp(t) => t.as_raw_fd(),
            Listener::Unix(u, _) => u.as_raw_fd(),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn voluntary_switches(task: &std::path::Path) -> u64 {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn a_waiting_reader_sleeps_through_the_peer_reading_what_this_end_wrote() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut mine = Stream::Unix(a.try_clone().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(std::fs::read_link("/proc/thread-self").unwrap())
                .unwrap();
            let mut input = Input {
                stream: &mut mine,
                silence: Duration::from_secs(20),
            };
            let mut buf = [0u8; 8];
            input.read(&mut buf).unwrap()
        });
        let task = std::path::Path::new("/proc").join(rx.recv().unwrap());
        let asleep = || {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            stat.rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('S')
        };
        while !asleep() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let before = voluntary_switches(&task);
        // Each byte the other end reads gives `a` output space, which wakes every
        // thread sleeping on `a`'s wait queue.
        let mut one = [0u8; 1];
        for _ in 0..50 {
            (&a).write_all(b"x").unwrap();
            b.read_exact(&mut one).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(voluntary_switches(&task), before, "woken without input");
        b.write_all(b"in").unwrap();
        assert_eq!(reader.join().unwrap(), 2);
    }
}
