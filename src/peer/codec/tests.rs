use super::*;

fn rec(n: u8) -> Record {
    Record {
        id: CorrelationId([n; 16]),
        requested_at_us: -5 + i64::from(n) * 1_000_000,
        cents: 1990 + u64::from(n),
        processor: Processor::from_index(n % 2).unwrap(),
    }
}

fn samples() -> Vec<Frame> {
    let fwd = Forwarded {
        id: CorrelationId([7; 16]),
        cents: 2005,
        age_ms: 3,
    };
    vec![
        Frame::Hello {
            instance_id: 2,
            incarnation: u64::MAX,
            epoch: 3,
            token: b"s3cret".to_vec(),
        },
        Frame::Refuse(RefuseReason::BadToken),
        Frame::Want(LogPos {
            incarnation: 9,
            epoch: 1,
            have: 42,
        }),
        Frame::Records {
            epoch: 1,
            start: 10,
            records: (0..5).map(rec).collect(),
        },
        Frame::Records {
            epoch: 0,
            start: 0,
            records: Vec::new(),
        },
        Frame::Purge { epoch: 4 },
        Frame::PurgeAck { epoch: 5 },
        Frame::Health {
            processor: Processor::Fallback,
            failing: true,
            min_response_ms: 1234,
        },
        Frame::BarrierReq {
            id: 1,
            to_us: Some(-1),
            wait_ms: 900,
        },
        Frame::BarrierReq {
            id: 2,
            to_us: None,
            wait_ms: 0,
        },
        Frame::BarrierAck {
            id: 2,
            epoch: 1,
            own_len: 77,
        },
        Frame::Forward(fwd),
        Frame::Bounce(fwd),
        Frame::Ping,
    ]
}

#[test]
fn round_trips() {
    for f in samples() {
        let mut buf = vec![0xAA];
        encode(&f, &mut buf);
        buf.push(0xBB);
        let (g, used) = decode(&buf[1..]).unwrap().unwrap();
        assert_eq!(g, f);
        assert_eq!(used, buf.len() - 2);
    }
}

#[test]
fn every_truncated_prefix_is_partial() {
    for f in samples() {
        let mut buf = Vec::new();
        encode(&f, &mut buf);
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n]), Ok(None), "{f:?} cut at {n}");
        }
    }
}

#[test]
fn pipelined_frames_decode_in_order() {
    let mut buf = Vec::new();
    for f in samples() {
        encode(&f, &mut buf);
    }
    let mut at = 0;
    for f in samples() {
        let (g, used) = decode(&buf[at..]).unwrap().unwrap();
        assert_eq!(g, f);
        at += used;
    }
    assert_eq!(at, buf.len());
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let len = (MAX_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(
        decode(&len),
        Err(FrameError::TooLarge(MAX_FRAME as u32 + 1))
    );
    assert_eq!(decode(&[0xFF; 4]), Err(FrameError::TooLarge(u32::MAX)));
    assert_eq!(decode(&[0, 0, 0, 1]), Err(FrameError::TooShort));
}

#[test]
fn bad_version_and_unknown_type_are_refused_before_the_body() {
    assert_eq!(decode(&[0, 0, 1, 0, 2]), Err(FrameError::BadVersion(2)));
    assert_eq!(
        decode(&[0, 0, 1, 0, VERSION, 0]),
        Err(FrameError::UnknownType(0))
    );
    assert_eq!(
        decode(&[0, 0, 1, 0, VERSION, 99]),
        Err(FrameError::UnknownType(99))
    );
}

#[test]
fn malformed_payloads_are_errors() {
    // Ping with a trailing byte; Health with processor 9; Records whose count lies.
    let ping = [0, 0, 0, 3, VERSION, ty::PING, 0];
    assert_eq!(decode(&ping), Err(FrameError::Malformed(ty::PING)));
    let health = [0, 0, 0, 8, VERSION, ty::HEALTH, 9, 0, 0, 0, 0, 1];
    assert_eq!(decode(&health), Err(FrameError::Malformed(ty::HEALTH)));
    let mut recs = Vec::new();
    encode(
        &Frame::Records {
            epoch: 0,
            start: 0,
            records: vec![rec(1)],
        },
        &mut recs,
    );
    recs[6 + 16 + 1] = 2; // count 1 -> 2 with one record of payload
    assert_eq!(decode(&recs), Err(FrameError::Malformed(ty::RECORDS)));
    // A Hello whose token length runs past the frame.
    let mut hello = Vec::new();
    encode(
        &Frame::Hello {
            instance_id: 1,
            incarnation: 1,
            epoch: 0,
            token: b"ab".to_vec(),
        },
        &mut hello,
    );
    let tl = hello.len() - 3;
    hello[tl] = 0xFF;
    assert_eq!(decode(&hello), Err(FrameError::Malformed(ty::HELLO)));
}

#[test]
fn max_batch_fits_max_frame() {
    let f = Frame::Records {
        epoch: u64::MAX,
        start: u64::MAX,
        records: (0..MAX_BATCH).map(|i| rec(i as u8)).collect(),
    };
    let mut buf = Vec::new();
    encode(&f, &mut buf);
    assert!(buf.len() <= HEADER + MAX_FRAME);
    assert_eq!(decode(&buf).unwrap().unwrap().0, f);
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"secret", b"secret"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"secret", b"secreT"));
    assert!(!ct_eq(b"secret", b"secret2"));
    assert!(!ct_eq(b"", b"\0"));
    assert!(!ct_eq(b"\0", b""));
}

#[test]
fn fuzz_seeds_are_valid_frame_streams() {
    for seed in [
        &include_bytes!("../../../fuzz/corpus/peer_frame/hello")[..],
        include_bytes!("../../../fuzz/corpus/peer_frame/records"),
        include_bytes!("../../../fuzz/corpus/peer_frame/barrier"),
        include_bytes!("../../../fuzz/corpus/peer_frame/misc"),
    ] {
        let mut at = 0;
        while at < seed.len() {
            at += decode(&seed[at..]).unwrap().unwrap().1;
        }
    }
}

#[test]
fn fuzz_entry_survives_garbage() {
    let mut buf = Vec::new();
    for f in samples() {
        encode(&f, &mut buf);
    }
    for n in 0..buf.len() {
        fuzz_decode(&buf[n..]);
        fuzz_decode(&buf[..n]);
    }
}
