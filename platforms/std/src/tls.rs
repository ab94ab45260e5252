//! TLS for the desktop: a [`TcpConnect`] wrapper over rustls, so the
//! embedded `longlink-nal-async` driver and the core run unchanged over an
//! encrypted connection (`longlink client tls://HOST:PORT`), plus the
//! certificate loading and server configuration the lab uses.
//!
//! [`TlsConnector::connect`] is a TCP connect followed by the whole TLS
//! handshake, so every handshake failure (an untrusted or expired
//! certificate, a wrong server name, a server that does not speak TLS, a
//! handshake that does not finish within the handshake timeout) is a failed
//! connect to the driver: it is counted and follows the retry and link-reset
//! rules. There is no fallback to plain TCP.
//!
//! ## Which servers are trusted
//!
//! [`client_config`] verifies with [`PinningVerifier`]: a chain up to one of
//! the trust anchors (webpki: signatures, validity, name, usage), or else a
//! server presenting *exactly* one of the certificates of `--ca` (pinned:
//! byte for byte the same, still valid today and valid for the server name).
//! The second rule is what a self-signed certificate made the usual way
//! needs (`openssl req -x509 ...` marks it `CA:TRUE`, which webpki refuses
//! as a server's own certificate). A refusal is explained in words, with
//! what to do ([`explain`]).
//!
//! ## Cancellation
//!
//! The driver drops pending reads, writes and flushes when a timer fires or a
//! message is queued. [`TlsStream`] keeps every piece of progress in itself,
//! never in a future: rustls owns the session state, encrypted bytes waiting
//! for the socket sit in the stream's own buffer with a count of what was
//! sent, and bytes read from the socket are handed to rustls in the same poll
//! that read them. So dropping any of its futures loses nothing, provided the
//! inner socket's futures are themselves cancel-safe (the driver's
//! requirement). A dropped [`TlsConnector::connect`] drops the half-made
//! connection, as the driver expects.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use embassy_futures::select::{select, Either};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::TcpConnect;
use log::warn;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ClientConnection;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};

/// Which TLS implementation the client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsStack {
    /// rustls, the desktop's (TLS 1.2 and 1.3, RSA and ECDSA).
    Rustls,
    /// embedded-tls through `longlink_nal_async::tls`, as on the device.
    Embedded,
}

/// Default longest wait for a handshake: a server that accepts TCP but does
/// not answer a ClientHello (a plain-TCP server) must not hang the client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS connection failed. `Debug` shows the same words as `Display`
/// (the driver's log prints errors with `{:?}`).
pub enum TlsError {
    /// The TCP connect or a socket read or write failed.
    Socket(ErrorKind, String),
    /// TLS failed: the handshake (certificate verification, server name,
    /// protocol) or a record afterwards. Never downgraded to plain TCP.
    Tls(rustls::Error),
    /// The server closed the connection during the handshake.
    ClosedInHandshake,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Socket(kind, e) => write!(f, "socket error ({kind:?}): {e}"),
            TlsError::Tls(e) => write!(f, "TLS: {}", explain(e)),
            TlsError::ClosedInHandshake => f.write_str("TLS: server closed during the handshake"),
            TlsError::HandshakeTimeout => f.write_str("TLS: handshake timed out"),
        }
    }
}

impl std::fmt::Debug for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TlsError {}

/// A rustls error in words, with what to do about it.
pub fn explain(e: &rustls::Error) -> String {
    use rustls::Error as E;
    use CertificateError as C;
    let what = match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the server's certificate is not signed by a trusted CA; \
                give the CA that signed it with --ca FILE, or the server's own certificate \
                to trust exactly that one"
                .to_string(),
            C::Expired | C::ExpiredContext { .. } => {
                "the server's certificate has expired; renew it on the server".to_string()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet; check the clocks of both machines"
                    .to_string()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                let names = match c {
                    C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                        format!(" (it names {})", presented.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "the server's certificate is not valid for this server name{names}; \
                     connect by a name it lists, or check it for another with --server-name"
                )
            }
            C::BadSignature => {
                "the server's certificate chain has a bad signature (not issued by the CA it names)"
                    .to_string()
            }
            C::Revoked => "the server's certificate was revoked".to_string(),
            C::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
                "the server presents a CA certificate as its own (a self-signed certificate \
                 made with CA:TRUE); give exactly that certificate with --ca to trust it"
                    .to_string()
            }
            other => format!("the server's certificate was refused ({other:?})"),
        },
        E::AlertReceived(a) => format!(
            "the server refused the handshake (alert: {a:?}); a server that wants a client \
             certificate needs --cert and --key"
        ),
        E::PeerIncompatible(p) => {
            format!("the server offers nothing this client supports ({p:?})")
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            format!("the server does not speak TLS, or broke the protocol ({e})")
        }
        other => other.to_string(),
    };
    what
}

/// Verifies a server's certificate as webpki does (a chain to one of the
/// trust anchors), and also accepts a server that presents exactly one of
/// `pinned` as its certificate, provided it is valid now and for the
/// server name. The handshake signatures are checked by webpki in both
/// cases, so the server must hold the pinned certificate's key.
#[derive(Debug)]
pub struct PinningVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl PinningVerifier {
    /// webpki over `roots`, plus the certificates `pinned`.
    pub fn new(roots: RootCertStore, pinned: Vec<CertificateDer<'static>>) -> Result<Self, String> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("certificate verifier: {e}"))?;
        Ok(PinningVerifier { webpki, pinned })
    }

    /// The checks for a pinned certificate: valid now, valid for `name`.
    fn check_pinned(
        end_entity: &CertificateDer<'_>,
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let bad = |c: CertificateError| rustls::Error::InvalidCertificate(c);
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        let validity = cert.validity();
        let now_s = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now_s < validity.not_before.timestamp() {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now_s > validity.not_after.timestamp() {
            return Err(bad(CertificateError::Expired));
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, name)
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => Ok(ok),
            Err(e)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                // The user gave exactly this certificate: webpki's chain
                // rules (a CA as end entity, no issuer) give way, the rest
                // still holds.
                Self::check_pinned(end_entity, server_name, now).map_err(|pinned_error| {
                    log::debug!("pinned certificate refused: {pinned_error} (webpki: {e})");
                    pinned_error
                })?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl embedded_io_async::Error for TlsError {
    fn kind(&self) -> ErrorKind {
        match self {
            TlsError::Socket(kind, _) => *kind,
            TlsError::Tls(_) => ErrorKind::InvalidData,
            TlsError::ClosedInHandshake => ErrorKind::ConnectionReset,
            TlsError::HandshakeTimeout => ErrorKind::TimedOut,
        }
    }
}

fn socket_error<E: embedded_io_async::Error>(e: E) -> TlsError {
    TlsError::Socket(e.kind(), format!("{e:?}"))
}

/// Wraps a TCP stack: every connection it opens is TLS, verified by the
/// rustls `config` against `server_name`.
#[derive(Debug, Clone)]
pub struct TlsConnector<T> {
    tcp: T,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    handshake_timeout: Duration,
}

impl<T> TlsConnector<T> {
    /// TLS over `tcp`; the server's certificate must be valid for
    /// `server_name` (a DNS name, or an IP address listed in the
    /// certificate).
    pub fn new(tcp: T, config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        TlsConnector {
            tcp,
            config,
            server_name,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets the longest wait for a handshake (default [`HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl<T: TcpConnect> TcpConnect for TlsConnector<T> {
    type Error = TlsError;
    type Connection<'a>
        = TlsStream<T::Connection<'a>>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<Self::Connection<'a>, TlsError> {
        let tcp = self.tcp.connect(remote).await.map_err(socket_error)?;
        let session = ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(TlsError::Tls)?;
        let mut stream = TlsStream::new(tcp, session);
        let timeout = async_io::Timer::after(self.handshake_timeout);
        let outcome = match select(stream.handshake(), timeout).await {
            Either::First(r) => r,
            Either::Second(_) => Err(TlsError::HandshakeTimeout),
        };
        match outcome {
            Ok(()) => Ok(stream),
            Err(e) => {
                if matches!(e, TlsError::Tls(_)) {
                    // Best effort: the alert tells the server why (an unknown
                    // CA, a bad certificate) and ends its side cleanly.
                    let bye = async_io::Timer::after(Duration::from_millis(200));
                    let _ = select(stream.send_pending(), bye).await;
                }
                // The one line that says why, and what to do.
                warn!(
                    "TLS handshake with {} ({remote}) failed: {}",
                    self.server_name.to_str(),
                    match &e {
                        TlsError::Tls(t) => explain(t),
                        other => other.to_string(),
                    }
                );
                Err(e)
            }
        }
    }
}

/// One TLS connection over an embedded-io-async socket.
pub struct TlsStream<C> {
    inner: C,
    session: ClientConnection,
    /// Encrypted bytes for the socket; `sent` of them are already written.
    out: Vec<u8>,
    sent: usize,
    /// Raw bytes from the socket, handed to rustls at once.
    raw: Vec<u8>,
}

impl<C> std::fmt::Debug for TlsStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("handshaking", &self.session.is_handshaking())
            .field("unsent", &(self.out.len() - self.sent))
            .finish_non_exhaustive()
    }
}

impl<C: Read + Write> TlsStream<C> {
    fn new(inner: C, session: ClientConnection) -> Self {
        TlsStream {
            inner,
            session,
            out: Vec::new(),
            sent: 0,
            raw: vec![0; 16 * 1024 + 512],
        }
    }

    /// The rustls session (negotiated version, cipher suite, peer
    /// certificates).
    pub fn session(&self) -> &ClientConnection {
        &self.session
    }

    async fn handshake(&mut self) -> Result<(), TlsError> {
        while self.session.is_handshaking() {
            if self.session.wants_write() || self.sent < self.out.len() {
                self.send_pending().await?;
            } else if !self.receive().await? {
                return Err(TlsError::ClosedInHandshake);
            }
        }
        // The client's Finished (and a certificate, with client auth).
        self.send_pending().await
    }

    /// Writes every encrypted byte rustls has produced.
    async fn send_pending(&mut self) -> Result<(), TlsError> {
        loop {
            if self.sent < self.out.len() {
                let n = self
                    .inner
                    .write(&self.out[self.sent..])
                    .await
                    .map_err(socket_error)?;
                if n == 0 {
                    return Err(TlsError::Socket(
                        ErrorKind::WriteZero,
                        "socket accepted no bytes".into(),
                    ));
                }
                self.sent += n;
            } else if self.session.wants_write() {
                self.out.clear();
                self.sent = 0;
                // Writing into a Vec cannot fail.
                let _ = self.session.write_tls(&mut self.out);
            } else {
                self.out.clear();
                self.sent = 0;
                return Ok(());
            }
        }
    }

    /// Reads once from the socket and feeds rustls. `false` at end of stream.
    async fn receive(&mut self) -> Result<bool, TlsError> {
        let n = self.inner.read(&mut self.raw).await.map_err(socket_error)?;
        // From here on nothing awaits: what was read is never lost to a
        // dropped future.
        if n == 0 {
            // Tells rustls the transport ended, so a truncation attack is
            // an error rather than a clean close.
            let _ = self.session.read_tls(&mut &[][..]);
            self.session.process_new_packets().map_err(TlsError::Tls)?;
            return Ok(false);
        }
        let mut fed = 0;
        while fed < n {
            let k = self
                .session
                .read_tls(&mut &self.raw[fed..n])
                .map_err(|e| TlsError::Socket(ErrorKind::Other, e.to_string()))?;
            fed += k;
            self.session.process_new_packets().map_err(TlsError::Tls)?;
            if k == 0 {
                break;
            }
        }
        Ok(true)
    }
}

impl<C> ErrorType for TlsStream<C> {
    type Error = TlsError;
}

impl<C: Read + Write> Read for TlsStream<C> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.session.reader().read(buf) {
                // Ok(0) is the server's close_notify: a clean end of stream.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // End of stream without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(TlsError::Socket(ErrorKind::Other, e.to_string())),
            }
            // Alerts, key updates: whatever rustls has to say goes first.
            if self.session.wants_write() || self.sent < self.out.len() {
                self.send_pending().await?;
            }
            if !self.receive().await? {
                return Ok(0);
            }
        }
    }
}

impl<C: Read + Write> Write for TlsStream<C> {
    async fn write(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        // What was written before goes out first: rustls's buffer stays
        // small and the socket's backpressure reaches the driver.
        self.send_pending().await?;
        self.session
            .writer()
            .write(data)
            .map_err(|e| TlsError::Socket(ErrorKind::Other, e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        self.send_pending().await?;
        self.inner.flush().await.map_err(socket_error)
    }
}

/// The rustls crypto provider used everywhere here (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM reading error in words (the library's own text shows markers as
/// decimal bytes and base64 errors as Rust debug output).
fn pem_words(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "malformed section start: \"{}\"",
            String::from_utf8_lossy(line)
        ),
        Error::Base64Decode(_) => {
            "the text between the BEGIN and END lines is not valid base64".to_owned()
        }
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM section of the expected kind".to_owned(),
        other => other.to_string(),
    }
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {}", path.display(), pem_words(&e)))?
        .collect();
    let certs = certs.map_err(|e| format!("{}: {}", path.display(), pem_words(&e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{}: no usable private key: {}",
            path.display(),
            pem_words(&e)
        )
    })
}

/// Trust anchors: the certificates of `ca` (PEM), or the system's roots
/// (rustls-native-certs: on Linux the OpenSSL locations, /etc/ssl/certs,
/// `SSL_CERT_FILE` / `SSL_CERT_DIR`).
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "no system root certificates found ({} errors); use --ca FILE",
                    found.errors.len()
                ));
            }
        }
    }
    Ok(store)
}

/// A client configuration: server certificates verified against `roots`
/// (chain, validity period, name; by webpki) or equal to one of `pinned`
/// ([`PinningVerifier`]), with an optional client certificate chain and key
/// for mutual TLS.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    client_config_pinned(roots, Vec::new(), identity)
}

/// [`client_config`], also accepting a server whose certificate is exactly
/// one of `pinned` ([`PinningVerifier`]); `longlink client --ca FILE` pins
/// every certificate of FILE.
pub fn client_config_pinned(
    roots: RootCertStore,
    pinned: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, String> {
    let verifier = PinningVerifier::new(roots, pinned)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server configuration with this certificate chain and key; with
/// `client_roots`, clients must present a certificate issued by one of them.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("server certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// The name a server certificate is checked against.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid server name"))
}

#[cfg(test)]
mod pem_tests {
    use super::*;

    fn load(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("longlink-pem-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let err = load_certs(&path).err().unwrap();
        let _ = std::fs::remove_file(&path);
        err
    }

    #[test]
    fn pem_errors_are_in_words() {
        let cut = load(
            "cut",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE\n",
        );
        assert!(
            cut.contains("no \"-----END CERTIFICATE-----\" line"),
            "{cut}"
        );
        let bad = load(
            "b64",
            "-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n",
        );
        assert!(bad.contains("not valid base64"), "{bad}");
        for e in [cut, bad] {
            assert!(
                !e.contains("[67,") && !e.contains("InvalidCharacter"),
                "{e}"
            );
        }
        assert!(load("none", "hello\n").contains("no PEM certificate found"));
    }
}
