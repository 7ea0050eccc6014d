//! The peer wire format: a pure frame codec (no I/O), in the style of rustls
//! `msgs/codec.rs` and tokio-util `length_delimited.rs`; see docs/PROTOCOL.md.
//!
//! A frame is `len: u32 BE | version: u8 | type: u8 | payload`, `len` counting the
//! version, type and payload bytes. Header, version and type are checked, and
//! `len <= MAX_FRAME`, before the caller is asked to buffer a body.

use crate::payment::{CorrelationId, Processor, Record};

/// Protocol version carried by every frame.
pub const VERSION: u8 = 1;
/// Largest `len` accepted: a reader never buffers more than `HEADER + MAX_FRAME` bytes.
pub const MAX_FRAME: usize = 64 * 1024;
/// Bytes before `len` is known to be satisfied: the u32 length itself.
pub const HEADER: usize = 4;
/// Most records in one `Records` frame (33 bytes each: ~33 KiB < MAX_FRAME).
pub const MAX_BATCH: usize = 1024;
/// Longest shared secret accepted in a `Hello`.
pub const MAX_TOKEN: usize = 1024;

const RECORD_LEN: usize = 33;

/// Why a `Hello` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    BadToken = 1,
    BadVersion = 2,
    SameId = 3,
    Shutdown = 4,
}

impl RefuseReason {
    fn from_u8(b: u8) -> Option<RefuseReason> {
        Some(match b {
            1 => RefuseReason::BadToken,
            2 => RefuseReason::BadVersion,
            3 => RefuseReason::SameId,
            4 => RefuseReason::Shutdown,
            _ => return None,
        })
    }
}

/// Which log of a peer a `Want` refers to, and how much of it the sender holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LogPos {
    pub incarnation: u64,
    pub epoch: u64,
    pub have: u64,
}

/// A forwarded payment; `age_ms` replaces the origin's monotonic clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub id: CorrelationId,
    pub cents: u64,
    pub age_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello {
        instance_id: u32,
        incarnation: u64,
        epoch: u64,
        token: Vec<u8>,
    },
    Refuse(RefuseReason),
    Want(LogPos),
    Records {
        epoch: u64,
        start: u64,
        records: Vec<Record>,
    },
    Purge {
        epoch: u64,
    },
    PurgeAck {
        epoch: u64,
    },
    Health {
        processor: Processor,
        failing: bool,
        min_response_ms: u32,
    },
    BarrierReq {
        id: u64,
        to_us: Option<i64>,
        wait_ms: u32,
    },
    BarrierAck {
        id: u64,
        epoch: u64,
        own_len: u64,
    },
    Forward(Forwarded),
    /// A forwarded payment the owner could not queue: the origin pays it.
    Bounce(Forwarded),
    Ping,
}

/// A small `Copy` error: any of these closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    TooLarge(u32),
    TooShort,
    BadVersion(u8),
    UnknownType(u8),
    /// The payload does not match its type (wrong length, bad enum value...).
    Malformed(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::TooShort => f.write_str("frame shorter than its header"),
            FrameError::BadVersion(v) => write!(f, "protocol version {v}, want {VERSION}"),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::Malformed(t) => write!(f, "malformed payload of frame type {t}"),
        }
    }
}

mod ty {
    pub const HELLO: u8 = 1;
    pub const REFUSE: u8 = 2;
    pub const WANT: u8 = 3;
    pub const RECORDS: u8 = 4;
    pub const PURGE: u8 = 5;
    pub const PURGE_ACK: u8 = 6;
    pub const HEALTH: u8 = 7;
    pub const BARRIER_REQ: u8 = 8;
    pub const BARRIER_ACK: u8 = 9;
    pub const FORWARD: u8 = 10;
    pub const BOUNCE: u8 = 11;
    pub const PING: u8 = 12;
    pub const LAST: u8 = PING;
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed
/// (never more than `HEADER + MAX_FRAME` in total), else the frame and bytes consumed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((len, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*len);
    let body_len = usize::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    if body_len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if body_len < 2 {
        return Err(FrameError::TooShort);
    }
    if let Some(&v) = rest.first() {
        if v != VERSION {
            return Err(FrameError::BadVersion(v));
        }
    }
    if let Some(&t) = rest.get(1) {
        if t == 0 || t > ty::LAST {
            return Err(FrameError::UnknownType(t));
        }
    }
    let Some((body, _)) = rest.split_at_checked(body_len) else {
        return Ok(None);
    };
    let (head, payload) = body.split_at_checked(2).ok_or(FrameError::TooShort)?;
    let t = head.get(1).copied().ok_or(FrameError::TooShort)?;
    let mut r = Reader(payload);
    let frame = decode_payload(t, &mut r).ok_or(FrameError::Malformed(t))?;
    if !r.0.is_empty() {
        return Err(FrameError::Malformed(t));
    }
    let used = HEADER
        .checked_add(body_len)
        .ok_or(FrameError::TooLarge(len))?;
    Ok(Some((frame, used)))
}

fn decode_payload(t: u8, r: &mut Reader<'_>) -> Option<Frame> {
    Some(match t {
        ty::HELLO => {
            let (instance_id, incarnation, epoch) = (r.u32()?, r.u64()?, r.u64()?);
            let n = usize::from(r.u16()?);
            if n > MAX_TOKEN {
                return None;
            }
            let token = r.take(n)?.to_vec();
            Frame::Hello {
                instance_id,
                incarnation,
                epoch,
                token,
            }
        }
        ty::REFUSE => Frame::Refuse(RefuseReason::from_u8(r.u8()?)?),
        ty::WANT => Frame::Want(LogPos {
            incarnation: r.u64()?,
            epoch: r.u64()?,
            have: r.u64()?,
        }),
        ty::RECORDS => {
            let (epoch, start) = (r.u64()?, r.u64()?);
            let n = usize::from(r.u16()?);
            if n > MAX_BATCH || r.0.len() != n.checked_mul(RECORD_LEN)? {
                return None;
            }
            let records = (0..n).map(|_| r.record()).collect::<Option<Vec<_>>>()?;
            Frame::Records {
                epoch,
                start,
                records,
            }
        }
        ty::PURGE => Frame::Purge { epoch: r.u64()? },
        ty::PURGE_ACK => Frame::PurgeAck { epoch: r.u64()? },
        ty::HEALTH => Frame::Health {
            processor: Processor::from_index(r.u8()?)?,
            failing: r.bool()?,
            min_response_ms: r.u32()?,
        },
        ty::BARRIER_REQ => Frame::BarrierReq {
            id: r.u64()?,
            to_us: match r.u8()? {
                0 => {
                    r.u64()?;
                    None
                }
                1 => Some(r.u64()? as i64),
                _ => return None,
            },
            wait_ms: r.u32()?,
        },
        ty::BARRIER_ACK => Frame::BarrierAck {
            id: r.u64()?,
            epoch: r.u64()?,
            own_len: r.u64()?,
        },
        ty::FORWARD => Frame::Forward(r.forwarded()?),
        ty::BOUNCE => Frame::Bounce(r.forwarded()?),
        ty::PING => Frame::Ping,
        _ => return None,
    })
}

/// A cursor over untrusted bytes: every read is bounds-checked and returns `None` short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_first_chunk::<N>()?;
        self.0 = b;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
    fn record(&mut self) -> Option<Record> {
        Some(Record {
            id: CorrelationId(self.array()?),
            requested_at_us: self.u64()? as i64,
            cents: self.u64()?,
            processor: Processor::from_index(self.u8()?)?,
        })
    }
    fn forwarded(&mut self) -> Option<Forwarded> {
        Some(Forwarded {
            id: CorrelationId(self.array()?),
            cents: self.u64()?,
            age_ms: self.u32()?,
        })
    }
}

/// Appends `f` to `out`. Frames built by this crate always fit `MAX_FRAME`: batches
/// are capped at `MAX_BATCH` and tokens at `MAX_TOKEN` (a longer token is truncated,
/// so it can never match and the peer refuses it).
pub fn encode(f: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, VERSION, frame_type(f)]);
    match f {
        Frame::Hello {
            instance_id,
            incarnation,
            epoch,
            token,
        } => {
            let token = token.get(..MAX_TOKEN).unwrap_or(token);
            out.extend_from_slice(&instance_id.to_be_bytes());
            out.extend_from_slice(&incarnation.to_be_bytes());
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&(token.len() as u16).to_be_bytes());
            out.extend_from_slice(token);
        }
        Frame::Refuse(r) => out.push(*r as u8),
        Frame::Want(p) => put_u64s(out, &[p.incarnation, p.epoch, p.have]),
        Frame::Records {
            epoch,
            start,
            records,
        } => {
            let records = records.get(..MAX_BATCH).unwrap_or(records);
            put_u64s(out, &[*epoch, *start]);
            out.extend_from_slice(&(records.len() as u16).to_be_bytes());
            for r in records {
                out.extend_from_slice(&r.id.0);
                put_u64s(out, &[r.requested_at_us as u64, r.cents]);
                out.push(r.processor as u8);
            }
        }
        Frame::Purge { epoch } | Frame::PurgeAck { epoch } => put_u64s(out, &[*epoch]),
        Frame::Health {
            processor,
            failing,
            min_response_ms,
        } => {
            out.extend_from_slice(&[*processor as u8, u8::from(*failing)]);
            out.extend_from_slice(&min_response_ms.to_be_bytes());
        }
        Frame::BarrierReq { id, to_us, wait_ms } => {
            put_u64s(out, &[*id]);
            out.push(u8::from(to_us.is_some()));
            put_u64s(out, &[to_us.unwrap_or(0) as u64]);
            out.extend_from_slice(&wait_ms.to_be_bytes());
        }
        Frame::BarrierAck { id, epoch, own_len } => put_u64s(out, &[*id, *epoch, *own_len]),
        Frame::Forward(p) | Frame::Bounce(p) => {
            out.extend_from_slice(&p.id.0);
            put_u64s(out, &[p.cents]);
            out.extend_from_slice(&p.age_ms.to_be_bytes());
        }
        Frame::Ping => {}
    }
    let len = (out.len() - start - HEADER) as u32;
    out[start..start + HEADER].copy_from_slice(&len.to_be_bytes());
}

fn put_u64s(out: &mut Vec<u8>, vs: &[u64]) {
    for v in vs {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn frame_type(f: &Frame) -> u8 {
    match f {
        Frame::Hello { .. } => ty::HELLO,
        Frame::Refuse(_) => ty::REFUSE,
        Frame::Want(_) => ty::WANT,
        Frame::Records { .. } => ty::RECORDS,
        Frame::Purge { .. } => ty::PURGE,
        Frame::PurgeAck { .. } => ty::PURGE_ACK,
        Frame::Health { .. } => ty::HEALTH,
        Frame::BarrierReq { .. } => ty::BARRIER_REQ,
        Frame::BarrierAck { .. } => ty::BARRIER_ACK,
        Frame::Forward(_) => ty::FORWARD,
        Frame::Bounce(_) => ty::BOUNCE,
        Frame::Ping => ty::PING,
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

/// The fuzz entry: decodes frames until the input is used up or an error; never panics.
pub fn fuzz_decode(mut data: &[u8]) {
    while let Ok(Some((frame, used))) = decode(data) {
        let mut again = Vec::new();
        encode(&frame, &mut again);
        assert_eq!(decode(&again), Ok(Some((frame, again.len()))));
        data = data.get(used..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests;
