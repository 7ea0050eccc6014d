//! Mutual TLS 1.3 on TCP peer links (`--peer-tls-*`): both ends present a certificate
//! chaining to one CA, checked before a frame is read; the frames inside are unchanged.
//!
//! Design: the TLS handshake runs on the thread that dialed or accepted (blocking, the
//! link's 2 s handshake timeout); then one pump thread per link moves bytes between
//! the TCP socket (ciphertext, a rustls `Connection`) and one end of a unix socket pair
//! (plaintext), and the link code gets the other end as a plain `Stream::Unix`. The
//! link reads on one thread and writes on another through cloned sockets; a rustls
//! connection cannot be shared that way without a lock that a blocked read would hold
//! against every write. The pair keeps reader, writer, timeouts, `shutdown` and the
//! `poll`-based `Input` unchanged, at the cost of one thread and one extra copy
//! through the kernel per direction (`pump`). Unix-socket links stay plain.

mod pump;
mod verify;

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection, Error,
    RootCertStore, ServerConfig, ServerConnection,
};

use super::conflict::Cause;
use super::net::Stream;
use super::Shared;
use crate::config::{host_of, Addr, PeerTlsFiles};

/// The TLS handshake's bound, as the link's own handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a TLS tunnel could not be set up; a misconfiguration was logged by `Conflicts`.
#[derive(Debug)]
pub(crate) struct TlsError {
    pub why: String,
    pub misconfigured: bool,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl From<io::Error> for TlsError {
    fn from(e: io::Error) -> Self {
        plain_error(e.to_string())
    }
}

/// The first byte of a TLS handshake record: a plain peer's frame starts otherwise.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Both ends' rustls configurations, built once at start from the PEM files.
pub(crate) struct PeerTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl PeerTls {
    /// Reads the certificate chain, key and CA; an error names the flag and file.
    pub fn load(files: &PeerTlsFiles) -> Result<PeerTls, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect())
            .map_err(|e| format!("--peer-tls-cert {}: {e}", files.cert))?;
        if chain.is_empty() {
            return Err(format!("--peer-tls-cert {}: no certificate", files.cert));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| format!("--peer-tls-key {}: {e}", files.key))?;
        let mut roots = RootCertStore::empty();
        let ca_err = |e: &dyn std::fmt::Display| format!("--peer-tls-ca {}: {e}", files.ca);
        for cert in CertificateDer::pem_file_iter(&files.ca).map_err(|e| ca_err(&e))? {
            roots
                .add(cert.map_err(|e| ca_err(&e))?)
                .map_err(|e| ca_err(&e))?;
        }
        if roots.is_empty() {
            return Err(ca_err(&"no certificate"));
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| ca_err(&e))?;
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls13)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(verify::Clients(clients)))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("--peer-tls-cert/--peer-tls-key: {e}"))?;
        let servers =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| ca_err(&e))?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(tls13)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::Servers(servers)))
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("--peer-tls-cert/--peer-tls-key: {e}"))?;
        // No resumption: every link checks both certificates in full.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(PeerTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// Reads the `--peer-tls-*` files, if set, before any link starts.
pub(crate) fn configure(s: &Shared, cfg: &crate::config::Config) -> io::Result<()> {
    if let Some(files) = &cfg.peer_tls {
        let tls = PeerTls::load(files).map_err(io::Error::other)?;
        let _ = s.tls.set(tls);
    }
    Ok(())
}

/// With TLS configured, turns a TCP stream into a TLS tunnel and returns the link's
/// plaintext end (`dialed`: the `--peer` address this instance dialed; `None`: an
/// inbound connection). Unix streams, and everything without TLS, pass unchanged.
pub(crate) fn secure(
    s: &Arc<Shared>,
    stream: Stream,
    dialed: Option<&Addr>,
) -> Result<Stream, TlsError> {
    let (tls, mut tcp) = match (s.tls.get(), stream) {
        (Some(tls), Stream::Tcp(tcp)) => (tls, tcp),
        (_, other) => return Ok(other),
    };
    let outbound = dialed.is_some();
    let conn = match dialed {
        Some(addr) => {
            let host = host_of(&addr.to_string()).to_string();
            let name = ServerName::try_from(host)
                .map_err(|e| plain_error(format!("--peer {addr}: {e}")))?;
            ClientConnection::new(tls.client.clone(), name).map(Connection::Client)
        }
        None => ServerConnection::new(tls.server.clone()).map(Connection::Server),
    };
    let mut conn = conn.map_err(|e| plain_error(e.to_string()))?;
    let refused = |cause: Cause, why: String| {
        s.conflicts
            .refused(cause, outbound, s.id, crate::time::mono_ms());
        TlsError {
            why,
            misconfigured: true,
        }
    };
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    if !outbound && !speaks_tls(&tcp)? {
        return Err(refused(Cause::TlsPlaintext, "peer speaks plain TCP".into()));
    }
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Err(
                match tls_error(&e).and_then(|t| cause_of(t, true).map(|c| (c, t))) {
                    Some((cause, t)) => refused(cause, format!("TLS: {t}")),
                    None => TlsError::from(e),
                },
            );
        }
    }
    let s2 = s.clone();
    let report = move |cause| {
        s2.conflicts
            .refused(cause, outbound, s2.id, crate::time::mono_ms())
    };
    Ok(Stream::Unix(pump::start(conn, tcp, Box::new(report))?))
}

fn plain_error(why: String) -> TlsError {
    TlsError {
        why,
        misconfigured: false,
    }
}

/// Waits for the dialer's first byte: a TLS record, or a plain peer's frame.
fn speaks_tls(tcp: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(first[0] == TLS_HANDSHAKE_RECORD),
    }
}

/// The rustls error inside an I/O error from `complete_io`, if that is what it is.
fn tls_error(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<Error>())
}

/// The misconfiguration a TLS error shows, from this side's check of the peer's
/// certificate or from the alert the peer sent about ours. `handshaking`: a message
/// that is not TLS at all means a plain peer only before the tunnel is up.
fn cause_of(e: &Error, handshaking: bool) -> Option<Cause> {
    use AlertDescription as A;
    use CertificateError as C;
    Some(match e {
        Error::InvalidCertificate(c) => match c {
            // A CA of the same name that did not sign it is another CA too.
            #[allow(deprecated)]
            C::UnknownIssuer | C::BadSignature => Cause::TlsUnknownCa,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => Cause::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => Cause::TlsName,
            C::Other(o) if o.0.downcast_ref::<verify::SelfSigned>().is_some() => {
                Cause::TlsSelfSigned
            }
            _ => Cause::TlsHandshake,
        },
        Error::NoCertificatesPresented => Cause::TlsNoCertificate,
        Error::AlertReceived(a) => match a {
            A::CloseNotify => return None,
            // What rustls sends for `BadSignature`.
            A::UnknownCA | A::DecryptError => Cause::TlsUnknownCa,
            A::CertificateExpired => Cause::TlsExpired,
            A::CertificateRequired => Cause::TlsNoCertificate,
            // What rinha sends for `SelfSigned` (`CertificateError::Other`).
            A::CertificateUnknown => Cause::TlsSelfSigned,
            // What rustls sends for a name the certificate does not hold.
            A::BadCertificate => Cause::TlsName,
            _ => Cause::TlsHandshake,
        },
        Error::InvalidMessage(_) if handshaking => Cause::TlsPlaintext,
        _ if handshaking => Cause::TlsHandshake,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertDescription as A;

    #[test]
    #[allow(deprecated)]
    fn causes_from_our_check_and_from_the_peer_alert_agree() {
        let cert = |c| Error::InvalidCertificate(c);
        let alert = Error::AlertReceived;
        let self_signed = CertificateError::Other(rustls::OtherError(Arc::new(verify::SelfSigned)));
        for (ours, theirs, cause) in [
            (
                cert(CertificateError::UnknownIssuer),
                A::UnknownCA,
                Cause::TlsUnknownCa,
            ),
            (
                cert(CertificateError::Expired),
                A::CertificateExpired,
                Cause::TlsExpired,
            ),
            (
                cert(CertificateError::NotValidForName),
                A::BadCertificate,
                Cause::TlsName,
            ),
            (
                cert(self_signed),
                A::CertificateUnknown,
                Cause::TlsSelfSigned,
            ),
            (
                Error::NoCertificatesPresented,
                A::CertificateRequired,
                Cause::TlsNoCertificate,
            ),
        ] {
            // What rustls sends for our refusal is what the peer maps back.
            if let Error::InvalidCertificate(c) = &ours {
                assert_eq!(AlertDescription::from(c.clone()), theirs);
            }
            assert_eq!(cause_of(&ours, true), Some(cause));
            assert_eq!(cause_of(&alert(theirs), false), Some(cause));
        }
        assert_eq!(cause_of(&alert(A::CloseNotify), false), None);
        let garbage = Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(cause_of(&garbage, true), Some(Cause::TlsPlaintext));
        assert_eq!(
            cause_of(&garbage, false),
            None,
            "after the handshake: not a config"
        );
    }

    #[test]
    fn a_missing_file_names_its_flag() {
        let files = PeerTlsFiles {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
            ca: "/nonexistent/ca.pem".into(),
        };
        let e = PeerTls::load(&files).err().unwrap();
        assert!(e.starts_with("--peer-tls-cert /nonexistent/c.pem"), "{e}");
    }
}
