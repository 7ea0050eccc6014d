use std::os::unix::net::UnixStream;
use std::thread;

use std::io::{self, Read, Write};

use super::super::codec::{self, FrameError, RefuseReason};
use super::handshake::handshake;
use super::reader::ReadError;
use super::*;
use crate::peer::{test_shared, Cause};

fn pair() -> (Stream, Stream) {
    let (a, b) = UnixStream::pair().unwrap();
    (Stream::Unix(a), Stream::Unix(b))
}

/// Runs the dialer side of a handshake against the acceptor side.
fn both(dialer: Arc<Shared>, acceptor: Arc<Shared>) -> (Result<u32, String>, Result<u32, String>) {
    let (mut a, mut b) = pair();
    let t = thread::spawn(move || {
        handshake(&acceptor, &mut b, &mut FrameReader::new(), false)
            .map(|h| h.instance_id)
            .map_err(|e| e.to_string())
    });
    let d = handshake(&dialer, &mut a, &mut FrameReader::new(), true)
        .map(|h| h.instance_id)
        .map_err(|e| e.to_string());
    (d, t.join().unwrap())
}

#[test]
fn handshake_accepts_same_token() {
    let (d, a) = both(test_shared(1, "tok"), test_shared(2, "tok"));
    assert_eq!(d, Ok(2));
    assert_eq!(a, Ok(1));
}

#[test]
fn handshake_refuses_wrong_token_without_logging_it() {
    let (d, a) = both(test_shared(1, "secret-one"), test_shared(2, "secret-two"));
    let d = d.unwrap_err();
    let a = a.unwrap_err();
    assert!(d.contains("BadToken"), "{d}");
    assert!(a.contains("wrong peer token"), "{a}");
    assert!(!a.contains("secret") && !d.contains("secret"));
}

#[test]
fn handshake_refuses_same_id() {
    let (s1, s2) = (test_shared(3, "t"), test_shared(3, "t"));
    let (d, a) = both(s1.clone(), s2.clone());
    assert!(d.unwrap_err().contains("SameId"));
    assert!(a.is_err());
    let now = crate::time::mono_ms();
    for s in [s1, s2] {
        assert_eq!(
            s.conflicts.active(now),
            Some(Cause::SameId),
            "both sides report it"
        );
    }
}

#[test]
fn a_shutting_down_peer_is_not_a_misconfiguration() {
    let (s1, s2) = (test_shared(1, "t"), test_shared(2, "t"));
    s2.stop.store(true, Ordering::SeqCst);
    let (d, a) = both(s1.clone(), s2.clone());
    assert!(d.unwrap_err().contains("Shutdown"));
    assert!(a.is_err());
    let now = crate::time::mono_ms();
    assert_eq!(s1.conflicts.active(now), None);
    assert_eq!(s2.conflicts.active(now), None);
}

#[test]
fn handshake_refuses_bad_version() {
    let (mut a, mut b) = pair();
    let acc = test_shared(2, "t");
    let t = thread::spawn(move || {
        handshake(&acc, &mut b, &mut FrameReader::new(), false)
            .err()
            .map(|e| e.to_string())
    });
    // A Hello-shaped frame of protocol version 9.
    a.write_all(&[0, 0, 0, 2, 9, 1]).unwrap();
    let f = FrameReader::new().next(&mut a).unwrap();
    assert_eq!(f, Frame::Refuse(RefuseReason::BadVersion));
    assert!(t.join().unwrap().unwrap().contains("version 9"));
}

#[test]
fn oversized_frame_closes_without_buffering() {
    let (mut a, mut b) = pair();
    a.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match FrameReader::new().next(&mut b) {
        Err(ReadError::Frame(FrameError::TooLarge(n))) => assert_eq!(n, u32::MAX),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reader_splits_pipelined_and_fragmented_frames() {
    let mut bytes = Vec::new();
    for i in 0..100u64 {
        codec::encode(&Frame::Purge { epoch: i }, &mut bytes);
    }
    // A reader fed one byte at a time.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.get(self.1), out.first_mut()) {
                (Some(&b), Some(o)) => {
                    *o = b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
    let mut t = Trickle(bytes.clone(), 0);
    let mut rd = FrameReader::new();
    for i in 0..100u64 {
        assert_eq!(rd.next(&mut t).unwrap(), Frame::Purge { epoch: i });
    }
    assert!(matches!(rd.next(&mut t), Err(ReadError::Eof)));
    let mut whole = io::Cursor::new(bytes);
    let mut rd = FrameReader::new();
    for i in 0..100u64 {
        assert_eq!(rd.next(&mut whole).unwrap(), Frame::Purge { epoch: i });
    }
}

fn conn(id: u64, peer: u32) -> Arc<Conn> {
    Arc::new(Conn {
        id,
        peer,
        outbound: true,
        stream: pair().0,
        out: Mutex::default(),
        cv: Condvar::new(),
        closed: AtomicBool::new(false),
        sent: AtomicU64::new(u64::MAX),
        resend_due: AtomicBool::new(false),
    })
}

fn queued(c: &Conn) -> usize {
    lock(&c.out).forwards.len()
}

#[test]
fn a_forward_is_resent_once_per_new_link_and_never_to_its_own() {
    let s = test_shared(1, "tok");
    let f = Forwarded {
        id: crate::payment::CorrelationId([7; 16]),
        cents: 100,
        age_ms: 0,
    };
    let (first, second) = (conn(10, 2), conn(11, 2));
    lock(&s.forwarded).insert(
        f.id,
        crate::peer::Pending {
            owner: Some(2),
            conn: first.id,
            f,
            since_ms: 0,
        },
    );
    // `forward` handed it to `first` after it was registered, before its resend ran.
    s.resend_forwards(2, &first);
    assert_eq!(queued(&first), 0);
    s.resend_forwards(2, &second);
    s.resend_forwards(2, &second);
    assert_eq!(queued(&second), 1);
    s.resend_forwards(3, &conn(12, 3));
    assert_eq!(
        lock(&s.forwarded).len(),
        1,
        "kept until the owner's record arrives"
    );
}
