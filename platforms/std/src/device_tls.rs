//! `longlink client --tls-stack embedded`: the device's TLS path
//! (`longlink_nal_async::tls`, embedded-tls: TLS 1.3 only,
//! TLS_AES_128_GCM_SHA256, secp256r1, ECDSA P-256 certificates, one trusted
//! CA, a 2048-byte certificate list) run from the desktop, so a team can
//! check that its server suits the device before flashing it.
//!
//! The TLS task runs beside the driver on the client's thread, with the
//! record buffers a device would give it; the driver sees a [`TcpConnect`]
//! whose errors say in words why the server does not suit the device
//! ([`explain`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::TcpConnect;
use longlink_nal_async::tls::embedded_tls::alert::AlertDescription;
use longlink_nal_async::tls::embedded_tls::{TlsClock, TlsError};
use longlink_nal_async::tls::rand_core::{CryptoRng, RngCore};
use longlink_nal_async::tls::{Error, ServerCheck, TlsConn, TlsTcp};
use longlink_nal_async::NoopRawMutex;

use crate::tcp::NoDelayTcp;

/// Plaintext buffered between the TLS task and the driver, each way.
pub const PLAIN: usize = 4096;
/// The record buffers: a whole TLS record in, the ClientHello and each
/// record out (as on a device).
pub const READ_RECORD: usize = 16640;
/// See [`READ_RECORD`].
pub const WRITE_RECORD: usize = 4096;

/// The TLS link between the task and the driver.
pub type Link = TlsTcp<NoopRawMutex, PLAIN, PLAIN>;

/// What the device would be given: one CA certificate (DER) and the server
/// name.
#[derive(Debug, Clone)]
pub struct DeviceTls {
    /// The one trusted certificate, DER (the first of `--ca`).
    pub ca_der: Vec<u8>,
    /// The DNS name the server's certificate must carry.
    pub server_name: String,
}

impl DeviceTls {
    /// From `--ca FILE` (required: a device has no system roots; the first
    /// certificate is used, as the device holds one) and the server name.
    pub fn new(ca: Option<&Path>, server_name: &str) -> Result<DeviceTls, String> {
        let ca = ca.ok_or(
            "--tls-stack embedded needs --ca FILE: the device trusts exactly one CA \
             certificate, not the system's roots",
        )?;
        let certs = crate::tls::load_certs(ca)?;
        if certs.len() > 1 {
            log::warn!(
                "{}: {} certificates; the embedded stack trusts only the first, as a device would",
                ca.display(),
                certs.len()
            );
        }
        if server_name.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "--tls-stack embedded checks a DNS name, not an IP address ({server_name}): \
                 give the name in the server's certificate with --server-name"
            ));
        }
        let ca_der = certs
            .into_iter()
            .next()
            .ok_or("no certificate")?
            .as_ref()
            .to_vec();
        Ok(DeviceTls {
            ca_der,
            server_name: server_name.to_string(),
        })
    }
}

/// The host's clock for certificate validity (a device uses
/// `longlink_nal_async::tls::WallClock`, set from SNTP).
#[derive(Debug)]
pub struct SysClock;

impl TlsClock for SysClock {
    fn now() -> Option<u64> {
        Some(crate::clock::unix_time_ms()? / 1000)
    }
}

/// The operating system's random numbers, for the handshake.
#[derive(Debug)]
pub struct OsRandom;

impl RngCore for OsRandom {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // ring's SystemRandom (getrandom); it does not fail on Linux, macOS
        // or Windows. A failure would be fatal for key generation: better a
        // handshake that fails than predictable keys.
        use rustls::crypto::ring::default_provider;
        if default_provider().secure_random.fill(dest).is_err() {
            dest.fill(0);
            log::error!("no random numbers from the OS; this handshake will fail");
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), longlink_nal_async::tls::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for OsRandom {}

/// The TLS task: runs the connections the driver asks `link` for, over
/// OS sockets with `TCP_NODELAY`, verified as `setup` says. Never returns.
pub async fn task(link: &Link, setup: &DeviceTls) -> Infallible {
    let mut read_record = vec![0u8; READ_RECORD];
    let mut write_record = vec![0u8; WRITE_RECORD];
    let check = ServerCheck::new(&setup.ca_der, &setup.server_name).clock::<SysClock>();
    link.run(
        NoDelayTcp,
        check,
        &mut OsRandom,
        &mut read_record,
        &mut write_record,
    )
    .await
}

/// The driver's face of [`Link`], with errors in words.
#[derive(Clone, Copy)]
pub struct Explained<'a>(pub &'a Link);

impl std::fmt::Debug for Explained<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Explained(TlsTcp)")
    }
}

/// An embedded TLS error, shown (also by `Debug`, which the driver's log
/// uses) with what it means for the device.
#[derive(Clone, Copy)]
pub struct DeviceError(pub Error);

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&explain(&self.0))
    }
}

impl std::fmt::Debug for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for DeviceError {}

impl embedded_io_async::Error for DeviceError {
    fn kind(&self) -> ErrorKind {
        embedded_io_async::Error::kind(&self.0)
    }
}

/// What an embedded TLS failure means, in words, with what to do.
pub fn explain(e: &Error) -> String {
    const DEVICE: &str = "the device's TLS (embedded-tls) speaks only TLS 1.3 with \
        TLS_AES_128_GCM_SHA256, secp256r1 and ECDSA P-256 certificates";
    match e {
        Error::Tcp(k) => format!("TCP connect failed ({k:?})"),
        Error::NotVerified => {
            "the server did not prove its identity (no certificate or no signature)".into()
        }
        Error::Closed => "the TLS connection is closed".into(),
        Error::Tls(t) => match t {
            TlsError::HandshakeAborted(_, AlertDescription::ProtocolVersion) => format!(
                "the server does not speak TLS 1.3 (TLS 1.2 only?); {DEVICE}: enable TLS 1.3 \
                 on the server"
            ),
            TlsError::HandshakeAborted(_, AlertDescription::HandshakeFailure) => format!(
                "the server found nothing it shares with the device: most often an RSA \
                 certificate (the device verifies only ECDSA P-256), else no AES-128-GCM or \
                 no secp256r1; {DEVICE}: give the server an ECDSA P-256 certificate"
            ),
            TlsError::HandshakeAborted(_, desc) => format!(
                "the server refused the handshake (alert {desc:?}): it does not support \
                 what the device offers; {DEVICE} (a TLS 1.2-only server, or one without \
                 AES-128-GCM or P-256, cannot serve the device)"
            ),
            TlsError::InvalidSignatureScheme | TlsError::InvalidSignature => format!(
                "the server's certificate chain or handshake signature is not ECDSA P-256 \
                 with SHA-256 (an RSA or P-384 certificate?); {DEVICE}: give the server an \
                 ECDSA P-256 certificate signed by a P-256 CA"
            ),
            TlsError::InvalidCertificate | TlsError::InvalidCertificateEntry => {
                "the server's certificate was refused by the device: not signed by the CA \
                 given with --ca, expired or not yet valid, not for this server name, or \
                 not an ECDSA P-256 certificate"
                    .into()
            }
            TlsError::InsufficientSpace | TlsError::OutOfMemory => {
                "the server's certificates do not fit the device's buffers (2048 bytes of \
                 certificate list by default, ServerCheck::cert_capacity; 16640-byte records)"
                    .into()
            }
            TlsError::InvalidSupportedVersions | TlsError::InvalidCipherSuite => {
                format!("the server chose what the device does not support; {DEVICE}")
            }
            TlsError::Io(k) => format!("socket error during TLS ({k:?})"),
            other => format!("embedded TLS failed: {other:?}"),
        },
    }
}

/// A connection of [`Explained`].
#[allow(missing_debug_implementations)]
pub struct ExplainedConn<'a>(TlsConn<'a, NoopRawMutex, PLAIN, PLAIN>);

impl TcpConnect for Explained<'_> {
    type Error = DeviceError;
    type Connection<'b>
        = ExplainedConn<'b>
    where
        Self: 'b;

    async fn connect<'b>(&'b self, remote: SocketAddr) -> Result<ExplainedConn<'b>, DeviceError> {
        match self.0.connect(remote).await {
            Ok(conn) => Ok(ExplainedConn(conn)),
            Err(e) => {
                // The one line that says why, and what to do.
                log::warn!("embedded TLS with {remote} failed: {}", explain(&e));
                Err(DeviceError(e))
            }
        }
    }
}

impl ErrorType for ExplainedConn<'_> {
    type Error = DeviceError;
}

impl Read for ExplainedConn<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, DeviceError> {
        self.0.read(buf).await.map_err(DeviceError)
    }
}

impl Write for ExplainedConn<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, DeviceError> {
        self.0.write(buf).await.map_err(DeviceError)
    }

    async fn flush(&mut self) -> Result<(), DeviceError> {
        self.0.flush().await.map_err(DeviceError)
    }
}
