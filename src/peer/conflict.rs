//! Handshake refusals that retrying cannot fix: two instances with one id, different
//! secrets, different protocol versions, a TLS certificate the other side refuses. The link is retried forever all the same (the
//! operator may fix the other side), but a cluster that cannot link runs split — each
//! instance answers summaries with its own payments only — so each such cause is
//! logged once per streak with the flag to set, counted in `/metrics`, and reported
//! by `/health` as `degraded` while refusals keep coming.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::codec::RefuseReason;
use crate::metrics::METRICS;

/// Why two instances cannot link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    SameId = 0,
    BadToken = 1,
    BadVersion = 2,
    /// The peer's certificate does not chain to `--peer-tls-ca` (another CA).
    TlsUnknownCa = 3,
    /// The peer's certificate is self-signed.
    TlsSelfSigned = 4,
    /// The peer's certificate is expired (or not valid yet).
    TlsExpired = 5,
    /// The acceptor's certificate does not name the host of `--peer`.
    TlsName = 6,
    /// The peer presented no certificate.
    TlsNoCertificate = 7,
    /// One side speaks TLS, the other plain TCP.
    TlsPlaintext = 8,
    /// Any other TLS failure (bad signature, no common protocol version...).
    TlsHandshake = 9,
}

impl Cause {
    pub const ALL: [Cause; 10] = [
        Cause::SameId,
        Cause::BadToken,
        Cause::BadVersion,
        Cause::TlsUnknownCa,
        Cause::TlsSelfSigned,
        Cause::TlsExpired,
        Cause::TlsName,
        Cause::TlsNoCertificate,
        Cause::TlsPlaintext,
        Cause::TlsHandshake,
    ];

    /// The refusals that are misconfigurations (not a peer shutting down).
    pub fn of(r: RefuseReason) -> Option<Cause> {
        match r {
            RefuseReason::SameId => Some(Cause::SameId),
            RefuseReason::BadToken => Some(Cause::BadToken),
            RefuseReason::BadVersion => Some(Cause::BadVersion),
            RefuseReason::Shutdown => None,
        }
    }

    /// The `cause` label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Cause::SameId => "same_instance_id",
            Cause::BadToken => "peer_token",
            Cause::BadVersion => "protocol_version",
            Cause::TlsUnknownCa => "tls_unknown_ca",
            Cause::TlsSelfSigned => "tls_self_signed",
            Cause::TlsExpired => "tls_expired",
            Cause::TlsName => "tls_name",
            Cause::TlsNoCertificate => "tls_no_certificate",
            Cause::TlsPlaintext => "tls_plaintext",
            Cause::TlsHandshake => "tls_handshake",
        }
    }

    /// One line for `/health` and the log: the cause and the flag that fixes it.
    pub fn explain(self) -> &'static str {
        match self {
            Cause::SameId => {
                "a peer has this instance's id: give each instance a distinct --instance-id \
                 (RINHA_INSTANCE_ID), or unset it to derive one from the hostname and \
                 --peer-listen; also check that no --peer points at this instance itself"
            }
            Cause::BadToken => {
                "a peer has another shared secret: set the same --peer-token \
                 (RINHA_PEER_TOKEN) on every instance"
            }
            Cause::BadVersion => {
                "a peer speaks another peer protocol version: run the same rinha version \
                 on every instance"
            }
            Cause::TlsUnknownCa => {
                "a peer's certificate is from another CA: give every instance a certificate \
                 signed by the CA of --peer-tls-ca (RINHA_PEER_TLS_CA), and the same \
                 --peer-tls-ca everywhere (make certs)"
            }
            Cause::TlsSelfSigned => {
                "a peer presents a self-signed certificate: --peer-tls-cert \
                 (RINHA_PEER_TLS_CERT) must be signed by the CA of --peer-tls-ca (make certs)"
            }
            Cause::TlsExpired => {
                "a peer's certificate is expired or not yet valid: renew its --peer-tls-cert \
                 (RINHA_PEER_TLS_CERT) and restart it (check the clocks too)"
            }
            Cause::TlsName => {
                "the certificate of a peer this instance dials does not name the host of its \
                 --peer address: add that DNS name or IP to its subjectAltName (make certs), \
                 or dial it by a name its certificate holds"
            }
            Cause::TlsNoCertificate => {
                "a peer presented no certificate: set --peer-tls-cert, --peer-tls-key and \
                 --peer-tls-ca (RINHA_PEER_TLS_*) on every instance"
            }
            Cause::TlsPlaintext => {
                "one side of a peer link speaks TLS and the other plain TCP: set \
                 --peer-tls-cert, --peer-tls-key and --peer-tls-ca (RINHA_PEER_TLS_*) on \
                 every instance, or on none"
            }
            Cause::TlsHandshake => {
                "the TLS handshake with a peer failed: check --peer-tls-cert, --peer-tls-key \
                 and --peer-tls-ca (RINHA_PEER_TLS_*) on both instances and the log of the other"
            }
        }
    }
}

/// A conflict is reported while its last refusal is at most this old. Dialers retry
/// at least every second (backoff capped at 1 s, plus up to 3 s of connect and
/// handshake timeouts), so a conflict that persists is never reported as healed.
pub const ACTIVE_FOR_MS: u64 = 10_000;

/// The refusals of one instance, by cause.
#[derive(Default)]
pub struct Conflicts {
    /// Monotonic ms of the last refusal plus one (0: never).
    last: [AtomicU64; Cause::ALL.len()],
}

impl Conflicts {
    /// Notes a refusal seen at `now_ms`; logs it if it starts a streak.
    /// `outbound`: this instance dialed; `our_id`: this instance's id.
    pub fn refused(&self, cause: Cause, outbound: bool, our_id: u32, now_ms: u64) {
        METRICS.peer_refused(cause, outbound);
        let prev = self.last[cause as usize].swap(now_ms + 1, Relaxed);
        if prev == 0 || now_ms >= prev + ACTIVE_FOR_MS {
            let who = if outbound {
                "a peer this instance dialed"
            } else {
                "a peer that dialed this instance"
            };
            eprintln!(
                "rinha: ERROR: cannot link with {who} ({}); this instance is id {our_id}. \
                 Until fixed the cluster runs split: each instance reports only its own \
                 payments. Fix: {}",
                cause.label(),
                cause.explain()
            );
        }
    }

    /// The most recent cause still active at `now_ms`, if any.
    pub fn active(&self, now_ms: u64) -> Option<Cause> {
        Cause::ALL
            .into_iter()
            .filter(|&c| self.is_active(c, now_ms))
            .max_by_key(|&c| self.last[c as usize].load(Relaxed))
    }

    pub fn is_active(&self, cause: Cause, now_ms: u64) -> bool {
        let last = self.last[cause as usize].load(Relaxed);
        last != 0 && now_ms < last + ACTIVE_FOR_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_is_active_while_refusals_keep_coming() {
        let c = Conflicts::default();
        assert_eq!(c.active(0), None);
        c.refused(Cause::SameId, true, 1, 0);
        assert_eq!(c.active(0), Some(Cause::SameId), "at time 0 too");
        assert_eq!(c.active(ACTIVE_FOR_MS), Some(Cause::SameId));
        c.refused(Cause::SameId, false, 1, 9_000);
        assert!(c.is_active(Cause::SameId, 9_000 + ACTIVE_FOR_MS));
        assert!(!c.is_active(Cause::SameId, 9_001 + ACTIVE_FOR_MS), "healed");
        assert!(!c.is_active(Cause::BadToken, 9_000));
    }

    #[test]
    fn the_latest_cause_is_reported() {
        let c = Conflicts::default();
        c.refused(Cause::BadToken, true, 1, 100);
        c.refused(Cause::SameId, true, 1, 200);
        assert_eq!(c.active(300), Some(Cause::SameId));
        c.refused(Cause::BadToken, true, 1, 400);
        assert_eq!(c.active(500), Some(Cause::BadToken));
    }

    #[test]
    fn shutdown_is_not_a_misconfiguration() {
        assert_eq!(Cause::of(RefuseReason::Shutdown), None);
        assert_eq!(Cause::of(RefuseReason::SameId), Some(Cause::SameId));
        for (i, c) in Cause::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
        }
    }
}
