//! Journal files (either format, any damage): never panics, an open payment is never
//! also recorded, no payment is open or recorded twice, and members come out sorted,
//! each once.
#![no_main]
use std::collections::HashSet;

use rinha::journal::decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let r = decode(data);
    let recorded: HashSet<_> = r.recorded.iter().map(|x| x.id).collect();
    assert_eq!(recorded.len(), r.recorded.len());
    let open: HashSet<_> = r.open.iter().map(|p| p.id).collect();
    assert_eq!(open.len(), r.open.len());
    assert!(open.is_disjoint(&recorded));
    assert!(r.members.windows(2).all(|w| w[0] < w[1]));
});
