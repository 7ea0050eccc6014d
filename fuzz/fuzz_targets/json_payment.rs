//! The POST /payments body parser never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rinha::json::parse_payment(data);
});
