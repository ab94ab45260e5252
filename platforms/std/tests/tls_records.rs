//! What a verified server can send after the handshake must not stop the
//! device's TLS path (`longlink client --tls-stack embedded`, embedded-tls
//! patched in `patches/embedded-tls`): a rustls server whose traffic keys
//! are extracted after the handshake writes TLS 1.3 records by hand.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ConnectionTrafficSecrets, ServerConfig, ServerConnection};

const BIN: &str = env!("CARGO_BIN_EXE_longlink");
const T: Duration = Duration::from_secs(10);

/// One direction of a TLS 1.3 AES-128-GCM record layer, by hand.
struct Dir {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Dir {
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Dir {
        let ConnectionTrafficSecrets::Aes128Gcm { key, iv } = secrets else {
            panic!("not AES-128-GCM")
        };
        let (key, iv): (AeadKey, Iv) = (key, iv);
        Dir {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key.as_ref()).unwrap()),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
        }
    }

    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }

    /// The record carrying `inner` (TLSInnerPlaintext: content, type, zeros).
    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = (inner.len() + 16) as u16;
        let header = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
        let mut body = inner.to_vec();
        let nonce = self.nonce();
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(header), &mut body)
            .unwrap();
        [header.as_slice(), &body].concat()
    }

    /// Reads one record and returns its inner plaintext.
    fn open(&mut self, tcp: &mut TcpStream) -> Vec<u8> {
        let mut header = [0u8; 5];
        tcp.read_exact(&mut header).unwrap();
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let mut body = vec![0u8; len];
        tcp.read_exact(&mut body).unwrap();
        assert_eq!(header[0], 0x17, "an encrypted record");
        let nonce = self.nonce();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(header), &mut body)
            .unwrap();
        plain.to_vec()
    }
}

fn server_config(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der())),
        )
        .unwrap();
    config.send_tls13_tickets = 0;
    config.enable_secret_extraction = true;
    Arc::new(config)
}

/// Accepts one connection and completes the handshake; returns the socket
/// and the two directions of the record layer.
fn accept(listener: &TcpListener, config: &Arc<ServerConfig>) -> (TcpStream, Dir, Dir) {
    // Bounded: a client that died (a panic) never connects again.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + T;
    let mut tcp = loop {
        match listener.accept() {
            Ok((tcp, _)) => break tcp,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the client did not connect");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let mut conn = ServerConnection::new(config.clone()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    while conn.wants_write() {
        conn.write_tls(&mut tcp).unwrap();
    }
    let secrets = conn.dangerous_extract_secrets().unwrap();
    let tx = Dir::new(secrets.tx.0, secrets.tx.1);
    let rx = Dir::new(secrets.rx.0, secrets.rx.1);
    (tcp, tx, rx)
}

/// Kills the client if the test fails before it stops it.
struct Guard(Option<std::process::Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn empty_records_from_a_verified_server_neither_panic_nor_stall_the_device_path() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = std::env::temp_dir().join(format!("longlink-records-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let config = server_config(&cert);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = Command::new(BIN)
        .args(["client", &format!("tls://localhost:{port}")])
        .args(["--tls-stack", "embedded", "--framing", "lines"])
        .args(["--heartbeat", "off", "--retry-delay", "200ms"])
        .arg("--ca")
        .arg(&ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed even if an assertion fails first.
    let mut guard = Guard(Some(client));

    let (mut tcp, mut tx, mut rx) = accept(&listener, &config);
    // An empty application-data record (legal: skipped), then a request.
    tcp.write_all(&tx.seal(&[0x17])).unwrap();
    tcp.write_all(&tx.seal(b"back after empty\n\x17")).unwrap();
    assert_eq!(
        rx.open(&mut tcp),
        b"back after empty\n\x17",
        "answered after an empty record"
    );
    // A record with an empty inner plaintext: no content type at all. A
    // protocol error: the connection ends...
    tcp.write_all(&tx.seal(&[])).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        started.elapsed() < T,
        "the client did not drop the connection"
    );
    // ...and the device reconnects: it did not panic.
    let (mut tcp2, mut tx2, mut rx2) = accept(&listener, &config);
    tcp2.write_all(&tx2.seal(b"back again\n\x17")).unwrap();
    assert_eq!(rx2.open(&mut tcp2), b"back again\n\x17");

    let mut client = guard.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &client.id().to_string()])
        .status();
    let deadline = Instant::now() + T;
    while client.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = client.kill();
    let _ = client.wait();
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("connects 2"), "{err}");
}
