//! A stream over TCP or a unix-domain socket, for code that does not care which: the
//! server's event loop holds mio's non-blocking sockets, the peer link std's blocking
//! ones. One enum, one `Read`/`Write` each; what differs (registering with a poll,
//! timeouts, connecting) is an inherent impl beside its user.

use std::io::{self, Read, Write};

pub enum Stream<T, U> {
    Tcp(T),
    Unix(U),
}

impl<T: Read, U: Read> Read for Stream<T, U> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl<T: Write, U: Write> Write for Stream<T, U> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}
