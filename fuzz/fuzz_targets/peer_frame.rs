//! Peer frames: decode never panics nor over-reads; what decodes re-encodes the same.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rinha::peer::codec::fuzz_decode(data));
