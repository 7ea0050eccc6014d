//! The instance id when `--instance-id` is not set: derived from the hostname and the
//! address this instance accepts peers on (else its HTTP listeners), so that instances
//! started by hand on one machine get different ids and each keeps its id across
//! restarts (peers key what they know of an instance by its id).
//!
//! Derived ids have the top bit set (2^31 and up): they never collide with the small
//! ids people set by hand. Two instances that still end up with one id cannot link,
//! and say so loudly (`refusal::Cause::SameId`).

use crate::addr::Addr;

/// The lowest derived id.
pub const DERIVED_BASE: u32 = 1 << 31;

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The id of an instance on `hostname` that accepts peers on `peer_listen` (or, with
/// none, serves HTTP on `listen`).
pub fn derive(hostname: &str, peer_listen: Option<&Addr>, listen: &[Addr]) -> u32 {
    let place: Vec<String> = match peer_listen {
        Some(a) => vec![format!("peer {a}")],
        None => listen.iter().map(|a| format!("http {a}")).collect(),
    };
    let mut parts: Vec<&[u8]> = vec![hostname.as_bytes()];
    parts.extend(place.iter().map(|s| s.as_bytes()));
    let h = fnv1a(&parts);
    DERIVED_BASE | ((h ^ (h >> 32)) as u32 & !DERIVED_BASE)
}

/// This machine's hostname (a container's own in Docker), or "" if unknown.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Addr {
        Addr::Tcp(s.into())
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_high() {
        let a = derive("host", Some(&tcp("127.0.0.1:7001")), &[]);
        let b = derive("host", Some(&tcp("127.0.0.1:7002")), &[]);
        let c = derive("other", Some(&tcp("127.0.0.1:7001")), &[]);
        assert_eq!(a, derive("host", Some(&tcp("127.0.0.1:7001")), &[]));
        assert!(a != b && a != c && b != c);
        assert!([a, b, c].iter().all(|&id| id >= DERIVED_BASE));
    }

    #[test]
    fn without_a_peer_listener_the_http_listeners_decide() {
        let http = [tcp("0.0.0.0:9999")];
        let a = derive("host", None, &http);
        assert_ne!(a, derive("host", None, &[tcp("0.0.0.0:9998")]));
        assert_ne!(a, derive("host", Some(&tcp("0.0.0.0:9999")), &[]));
        assert_eq!(
            derive("h", Some(&Addr::Unix("/s/peer1.sock".into())), &http),
            derive("h", Some(&Addr::Unix("/s/peer1.sock".into())), &[]),
            "the peer listener wins"
        );
    }

    #[test]
    fn hash_parts_do_not_run_together() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    }

    #[test]
    fn many_listeners_on_one_host_do_not_collide() {
        let ids: std::collections::HashSet<u32> = (0..2000)
            .map(|p| derive("host", Some(&tcp(&format!("127.0.0.1:{}", 7000 + p))), &[]))
            .collect();
        assert_eq!(ids.len(), 2000);
    }
}
