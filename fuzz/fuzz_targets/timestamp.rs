//! ISO timestamps: never panics; what parses prints back (at ms precision) and reparses
//! (inside years 0001..9998, where an offset cannot carry it outside 0000..9999).
#![no_main]
use rinha::time::{parse_iso_us, write_iso_ms};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(us) = parse_iso_us(data) else { return };
    let lo = parse_iso_us(b"0001-01-01T00:00:00Z").unwrap();
    let hi = parse_iso_us(b"9998-12-31T23:59:59Z").unwrap();
    if (lo..=hi).contains(&us) {
        let mut out = Vec::new();
        write_iso_ms(&mut out, us);
        assert_eq!(parse_iso_us(&out), Some(us - us.rem_euclid(1000)));
    }
});
