//! The HTTP request parser never panics, whatever the bytes and limits.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = rinha::http::Limits {
        max_header: 8192,
        max_body: 4096,
    };
    let _ = rinha::http::parse_request(data, &limits);
});
