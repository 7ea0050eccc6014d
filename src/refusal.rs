//! Why two instances cannot link: the causes of the peer handshake's refusals that
//! retrying cannot fix. Below both `peer` (which detects them) and `metrics` (which
//! counts and renders them), so that neither imports the other for it.

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
