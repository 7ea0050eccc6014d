//! The handshake: both sides send a `Hello` and check the other's.

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use super::super::codec::{self, Frame, FrameError, RefuseReason};
use super::super::conflict::Cause;
use super::super::net::Stream;
use super::super::Shared;
use super::reader::{FrameReader, ReadError};
use super::HANDSHAKE_TIMEOUT;

fn send(stream: &mut Stream, f: &Frame) -> io::Result<()> {
    let mut buf = Vec::new();
    codec::encode(f, &mut buf);
    stream.write_all(&buf)
}

/// The peer's `Hello`, checked.
pub(crate) struct Hello {
    pub instance_id: u32,
    pub incarnation: u64,
    pub epoch: u64,
}

fn check_hello(s: &Shared, f: Frame) -> Result<Hello, (Option<RefuseReason>, String)> {
    match f {
        Frame::Hello {
            instance_id,
            incarnation,
            epoch,
            token,
        } => {
            if !codec::ct_eq(&token, &s.token) {
                Err((Some(RefuseReason::BadToken), "wrong peer token".into()))
            } else if instance_id == s.id {
                Err((
                    Some(RefuseReason::SameId),
                    format!("same instance id {instance_id}"),
                ))
            } else if s.stop.load(Ordering::SeqCst) {
                Err((Some(RefuseReason::Shutdown), "shutting down".into()))
            } else {
                Ok(Hello {
                    instance_id,
                    incarnation,
                    epoch,
                })
            }
        }
        Frame::Refuse(r) => Err((None, format!("refused by peer: {r:?}"))),
        other => Err((None, format!("expected Hello, got {other:?}"))),
    }
}

/// Why a handshake failed; a misconfiguration was logged by `Conflicts` already.
#[derive(Debug)]
pub(crate) struct HandshakeError {
    pub why: String,
    pub misconfigured: bool,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError {
            why: e.to_string(),
            misconfigured: false,
        }
    }
}

/// Both sides send a `Hello` (the dialer first) and check the other's: same protocol
/// version (frame header), same secret (constant-time), different instance id.
pub(crate) fn handshake(
    s: &Shared,
    stream: &mut Stream,
    rd: &mut FrameReader,
    outbound: bool,
) -> Result<Hello, HandshakeError> {
    stream.set_timeouts(Some(HANDSHAKE_TIMEOUT), Some(HANDSHAKE_TIMEOUT))?;
    let mine = Frame::Hello {
        instance_id: s.id,
        incarnation: s.incarnation,
        epoch: s.ledger.epoch(),
        token: s.token.clone(),
    };
    if outbound {
        send(stream, &mine)?;
    }
    // (reason to refuse with, misconfiguration it shows, log text)
    let theirs = match rd.next(stream) {
        Ok(Frame::Refuse(r)) => Err((None, Cause::of(r), format!("refused by peer: {r:?}"))),
        Ok(f) => check_hello(s, f).map_err(|(r, why)| (r, r.and_then(Cause::of), why)),
        Err(ReadError::Frame(FrameError::BadVersion(v))) => Err((
            Some(RefuseReason::BadVersion),
            Some(Cause::BadVersion),
            format!("protocol version {v}, want {}", codec::VERSION),
        )),
        // A TLS record header (0x16 0x03 ...) read as a frame length.
        Err(ReadError::Frame(FrameError::TooLarge(len))) if len >> 24 == 0x16 => {
            Err((None, Some(Cause::TlsPlaintext), "peer speaks TLS".into()))
        }
        Err(e) => Err((None, None, e.to_string())),
    };
    match theirs {
        Ok(h) => {
            if !outbound {
                send(stream, &mine)?;
            }
            Ok(h)
        }
        Err((reason, cause, why)) => {
            if let Some(r) = reason.filter(|_| !outbound) {
                let _ = send(stream, &Frame::Refuse(r));
            }
            if let Some(c) = cause {
                s.conflicts
                    .refused(c, outbound, s.id, crate::time::mono_ms());
            }
            Err(HandshakeError {
                why,
                misconfigured: cause.is_some(),
            })
        }
    }
}
