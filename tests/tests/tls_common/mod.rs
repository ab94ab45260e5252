//! Certificates made in the test (rcgen, ECDSA P-256, which both rustls and
//! embedded-tls verify) and the rustls server configurations built on them.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{RootCertStore, ServerConfig};

/// A test certificate authority.
pub struct Ca {
    /// Its self-signed certificate.
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key.
pub struct Identity {
    /// The certificate (leaf only: issued directly by the CA).
    pub cert: CertificateDer<'static>,
    /// PKCS#8 DER of the key.
    pub key_pkcs8: Vec<u8>,
}

impl Identity {
    /// The chain and key, as rustls takes them.
    pub fn rustls(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone())),
        )
    }
}

/// How a leaf certificate is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From a year ago to a year from now.
    Current,
    /// Ended in 2001.
    Expired,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for these names (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str], validity: Validity) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let (from, to) = match validity {
            Validity::Current => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let year = 1970 + (now / 31_557_600) as i32;
                (date_time_ymd(year - 1, 1, 1), date_time_ymd(year + 2, 1, 1))
            }
            Validity::Expired => (date_time_ymd(2000, 1, 1), date_time_ymd(2001, 1, 1)),
        };
        params.not_before = from;
        params.not_after = to;
        let cert = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        Identity {
            cert,
            key_pkcs8: key.serialize_der(),
        }
    }

    /// A root store holding this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut r = RootCertStore::empty();
        r.add(self.cert.clone()).unwrap();
        r
    }

    /// This CA's certificate as PEM.
    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }
}

/// PEM text of DER bytes.
pub fn pem(label: &str, der: &[u8]) -> String {
    use std::fmt::Write;
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                b64.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", std::str::from_utf8(line).unwrap());
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// A rustls server configuration for `id`; with `client_ca`, clients must
/// present a certificate from it.
pub fn server(id: &Identity, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
    let (certs, key) = id.rustls();
    longlink_std::tls::server_config(certs, key, client_ca.map(Ca::roots)).unwrap()
}

/// A scratch directory for PEM files, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty directory.
    pub fn new(tag: &str) -> TempDir {
        let mut p = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        p.push(format!("longlink-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// Writes `text` to `name` in the directory; returns the path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
