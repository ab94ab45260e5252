//! Handshake time on loopback (TCP connect + full TLS 1.3 handshake, ECDSA
//! P-256 certificates, against the rustls lab): the desktop rustls
//! connector and the embedded-tls task, each as the driver would call it.
//!
//! `HANDSHAKES` (default 5) sets the count; `scripts/tls-handshake-bench.sh`
//! runs it in release mode with a few dozen and prints the medians.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod tls_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use embassy_futures::join::join;
use embassy_futures::select::select;
use embedded_nal_async::TcpConnect;
use longlink_core::Framing;
use longlink_nal_async::tls::rand_core::{CryptoRng, Error as RngError, RngCore};
use longlink_nal_async::tls::{ServerCheck, TlsTcp};
use longlink_nal_async::NoopRawMutex;
use longlink_std::bench::summarize;
use longlink_std::lab::Lab;
use longlink_std::tls::{client_config, server_name, TlsConnector};
use std_embedded_nal_async::Stack;
use tls_common::{server, Ca, Validity};

fn count() -> usize {
    std::env::var("HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1)
}

struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for TestRng {}

fn lab() -> (Ca, Lab, SocketAddr) {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let lab = Lab::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        Framing::Lines,
        server(&id, None),
    )
    .unwrap();
    let addr = lab.local_addr();
    (ca, lab, addr)
}

fn report(what: &str, samples: &[Duration]) {
    let s = summarize(samples).unwrap();
    println!("{what}: {s}");
}

#[test]
fn desktop_rustls_handshake_time() {
    let (ca, _lab, addr) = lab();
    let connector = TlsConnector::new(
        Stack::default(),
        client_config(ca.roots(), None).unwrap(),
        server_name("localhost").unwrap(),
    );
    let mut samples = Vec::new();
    for _ in 0..count() {
        let t0 = Instant::now();
        let conn = async_io::block_on(connector.connect(addr)).unwrap();
        samples.push(t0.elapsed());
        drop(conn);
    }
    report(
        "desktop rustls (ring) TCP connect + TLS 1.3 handshake",
        &samples,
    );
}

#[test]
fn embedded_tls_handshake_time() {
    let (ca, _lab, addr) = lab();
    let tls: TlsTcp<NoopRawMutex, 256, 256> = TlsTcp::new();
    let mut read_record = vec![0u8; 16640];
    let mut write_record = vec![0u8; 1024];
    let mut rng = TestRng(longlink_std::clock::random_seed());
    let ca_der = ca.cert.to_vec();
    let check = ServerCheck::new(&ca_der, "localhost");
    let n = count();
    let samples = async_io::block_on(async {
        let task = tls.run(
            Stack::default(),
            check,
            &mut rng,
            &mut read_record,
            &mut write_record,
        );
        let measure = async {
            let mut samples = Vec::new();
            for _ in 0..n {
                let t0 = Instant::now();
                let conn = tls.connect(addr).await.unwrap();
                samples.push(t0.elapsed());
                drop(conn);
            }
            samples
        };
        match select(task, join(measure, async {})).await {
            embassy_futures::select::Either::Second((s, ())) => s,
            embassy_futures::select::Either::First(never) => match never {},
        }
    });
    report(
        "embedded-tls (RustCrypto p256) TCP connect + TLS 1.3 handshake",
        &samples,
    );
}
