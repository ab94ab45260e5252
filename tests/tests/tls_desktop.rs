//! The desktop client over TLS (`longlink_std::client` with a rustls
//! `TlsConnector` under the unchanged nal-async driver) against the lab
//! serving TLS, over loopback, with certificates made in the test.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod tls_common;

use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use longlink_core::time::Duration as Ms;
use longlink_core::{Config, Event as CoreEvent, Framing, Status, Transport};
use longlink_std::check::{self, CheckOptions};
use longlink_std::client::{Client, ClientEvent, Observed, Server, TlsSetup};
use longlink_std::lab::{Lab, LabEvent};
use longlink_std::tls;
use tls_common::{server, Ca, Validity};

const T: Duration = Duration::from_secs(10);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(framing: Framing) -> Config {
    Config {
        transport: Transport::Tcp,
        framing,
        heartbeat_interval: Some(Ms::from_millis(150)),
        retry_delay: Ms::from_millis(100),
        ..Config::default()
    }
}

fn setup(ca: &Ca, name: &str) -> TlsSetup {
    TlsSetup {
        config: tls::client_config(ca.roots(), None).unwrap(),
        device: None,
        server_name: tls::server_name(name).unwrap(),
        handshake_timeout: Duration::from_secs(5),
    }
}

fn wait(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn opts() -> CheckOptions {
    CheckOptions {
        heartbeat: b"heart beat".to_vec(),
        heartbeats: 3,
        timeout: T,
    }
}

#[test]
fn tls_passes_the_acceptance_script_by_name_and_by_address() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost", "127.0.0.1"], Validity::Current);
    for (framing, by_name) in [(Framing::Lines, true), (Framing::Raw, false)] {
        let lab = Lab::start_tls(any(), framing, server(&id, None)).unwrap();
        let port = lab.local_addr().port();
        let (remote, name) = if by_name {
            (Server::Host("localhost".into(), port), "localhost")
        } else {
            (Server::Addr(lab.local_addr()), "127.0.0.1")
        };
        let client = Client::spawn_tls(remote, config(framing), setup(&ca, name), None).unwrap();
        let report = check::run(&lab, &opts(), |_| {});
        assert!(report.passed(), "{framing:?}:\n{}", report.render());
        assert_eq!(report.checks.len(), 7);
        let stats = client.stop();
        // The script drops the client once; it comes back.
        assert_eq!(
            (
                stats.connects,
                stats.connect_failures,
                stats.replies_dropped
            ),
            (2, 0, 0),
            "{stats:?}"
        );
    }
}

#[test]
fn mutual_tls_admits_a_client_certificate_and_refuses_a_client_without_one() {
    let ca = Ca::new("longlink test CA");
    let server_id = ca.issue(&["localhost"], Validity::Current);
    let client_ca = Ca::new("longlink client CA");
    let client_id = client_ca.issue(&["device-1"], Validity::Current);
    let lab = Lab::start_tls(any(), Framing::Lines, server(&server_id, Some(&client_ca))).unwrap();
    let remote = Server::Addr(lab.local_addr());

    // No certificate: the lab refuses the session.
    let anonymous = Client::spawn_tls(
        remote.clone(),
        config(Framing::Lines),
        setup(&ca, "localhost"),
        None,
    )
    .unwrap();
    let refused = lab.wait_for(
        Instant::now() + T,
        |e| match e {
            LabEvent::TlsFailed { error, .. } => Some(error.clone()),
            LabEvent::Connected { .. } => Some("connected".into()),
            _ => None,
        },
        drop,
    );
    assert!(
        refused.as_deref().is_some_and(|e| e != "connected"),
        "{refused:?}"
    );
    drop(anonymous);

    let identity = client_id.rustls();
    let tls = TlsSetup {
        config: tls::client_config(ca.roots(), Some(identity)).unwrap(),
        device: None,
        ..setup(&ca, "localhost")
    };
    let client = Client::spawn_tls(remote, config(Framing::Lines), tls, None).unwrap();
    let report = check::run(&lab, &opts(), |_| {});
    assert!(report.passed(), "{}", report.render());
    let stats = client.stop();
    assert_eq!(
        (stats.connects, stats.connect_failures),
        (2, 0),
        "{stats:?}"
    );
}

/// Runs a client that must never get a session; returns what it observed
/// once a link reset came, and its counters.
fn rejected(remote: SocketAddr, tls: TlsSetup) -> (Vec<String>, longlink_core::Stats) {
    let mut c = config(Framing::Lines);
    c.retry_delay = Ms::from_millis(30);
    c.max_failures = 2;
    let (tx, rx) = channel::<ClientEvent>();
    let client = Client::spawn_tls(Server::Addr(remote), c, tls, Some(tx)).unwrap();
    let failures = collect_until_reset(&rx);
    let stats = client.stop();
    (failures, stats)
}

fn collect_until_reset(rx: &Receiver<ClientEvent>) -> Vec<String> {
    let deadline = Instant::now() + T;
    let mut failures = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left).map(|e| e.what) {
            Ok(Observed::StackError(e)) => failures.push(e),
            Ok(Observed::Core(CoreEvent::LinkReset)) => return failures,
            Ok(_) => {}
            Err(_) => panic!("no link reset within {T:?}; failures: {failures:?}"),
        }
    }
}

fn assert_rejected(what: &str, failures: &[String], stats: &longlink_core::Stats, reason: &str) {
    assert!(failures.len() >= 2, "{what}: {failures:?}");
    assert!(
        failures.iter().all(|f| f.contains(reason)),
        "{what}: want {reason:?} in every failure, got {failures:?}"
    );
    assert_eq!(stats.connects, 0, "{what}: {stats:?}");
    assert!(
        stats.connect_failures >= 2 && stats.link_resets >= 1,
        "{what}: {stats:?}"
    );
    assert_eq!(stats.messages_out, 0, "{what}: nothing sent in the clear");
}

#[test]
fn bad_certificates_and_a_plain_server_are_failed_connects_up_to_a_link_reset() {
    let ca = Ca::new("longlink test CA");
    let other_ca = Ca::new("someone else's CA");
    let good = ca.issue(&["localhost"], Validity::Current);
    let expired = ca.issue(&["localhost"], Validity::Expired);
    let stranger = other_ca.issue(&["localhost"], Validity::Current);

    for (what, id, name, reason) in [
        (
            "wrong CA",
            &stranger,
            "localhost",
            "not signed by a trusted CA",
        ),
        (
            "wrong name",
            &good,
            "example.com",
            "not valid for this server name",
        ),
        ("expired", &expired, "localhost", "has expired"),
    ] {
        let lab = Lab::start_tls(any(), Framing::Lines, server(id, None)).unwrap();
        let (failures, stats) = rejected(lab.local_addr(), setup(&ca, name));
        assert_rejected(what, &failures, &stats, reason);
        // The lab never got a session to talk over.
        while let Some(e) = lab.next_event(Duration::ZERO) {
            assert!(!matches!(e, LabEvent::Connected { .. }), "{what}: {e:?}");
        }
    }

    // A plain TCP server that says nothing: the handshake times out.
    let plain = Lab::start(any(), Transport::Tcp, Framing::Raw).unwrap();
    let mut quiet = setup(&ca, "localhost");
    quiet.handshake_timeout = Duration::from_millis(200);
    let (failures, stats) = rejected(plain.local_addr(), quiet);
    assert_rejected(
        "silent plain server",
        &failures,
        &stats,
        "handshake timed out",
    );

    // A plain TCP server that answers in the clear: not TLS, refused at once.
    let talker = std::net::TcpListener::bind(any()).unwrap();
    let addr = talker.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        talker.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + T;
        let mut served = 0;
        while served < 2 && Instant::now() < deadline {
            match talker.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    let mut hello = [0u8; 512];
                    let _ = s.read(&mut hello);
                    let _ = s.write_all(b"back hello\nheart beat\n");
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    let (failures, stats) = rejected(addr, setup(&ca, "localhost"));
    assert_rejected(
        "talking plain server",
        &failures,
        &stats,
        "does not speak TLS",
    );
    server.join().unwrap();
}

#[test]
fn over_tls_a_server_restart_delivers_queued_messages_once_in_order() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let config_server = server(&id, None);
    let lab = Lab::start_tls(any(), Framing::Lines, config_server.clone()).unwrap();
    let addr = lab.local_addr();
    let mut c = config(Framing::Lines);
    c.heartbeat_interval = Some(Ms::from_secs(30));
    let client = Client::spawn_tls(Server::Addr(addr), c, setup(&ca, "localhost"), None).unwrap();
    let link = client.link_arc();
    client.enqueue(b"before").unwrap();
    let got = lab.wait_for(
        Instant::now() + T,
        |e| matches!(e, LabEvent::Message { bytes, .. } if bytes == b"before").then_some(()),
        drop,
    );
    assert_eq!(got, Some(()));
    drop(lab);
    // Queued once the client knows the server is gone.
    assert!(wait(T, || link.status() != Status::Connected));
    for i in 0..50 {
        link.try_enqueue(format!("m{i}").as_bytes()).unwrap();
    }
    assert!(wait(T, || link.stats().connect_failures >= 1));
    let lab = Lab::start_tls(addr, Framing::Lines, config_server).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + T;
    while got.len() < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        match lab.next_event(left) {
            Some(LabEvent::Message { bytes, .. }) if bytes != b"heart beat" => got.push(bytes),
            Some(_) => {}
            None => break,
        }
    }
    // Nothing more arrives: no duplicates.
    std::thread::sleep(Duration::from_millis(200));
    while let Some(e) = lab.next_event(Duration::ZERO) {
        if let LabEvent::Message { bytes, .. } = e {
            assert_eq!(bytes, b"heart beat", "unexpected extra message");
        }
    }
    let want: Vec<Vec<u8>> = (0..50).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(got, want, "each queued message once, in order");
    assert_eq!(link.queued(), 0);
    let stats = client.stop();
    assert_eq!(stats.connects, 2, "{stats:?}");
}

#[test]
fn pem_files_load_and_bad_ones_are_clear_errors() {
    let ca = Ca::new("longlink test CA");
    let id = ca.issue(&["localhost"], Validity::Current);
    let dir = tls_common::TempDir::new("tls-pem");
    let ca_path = dir.write("ca.pem", &ca.pem());
    let cert_path = dir.write("cert.pem", &tls_common::pem("CERTIFICATE", &id.cert));
    let key_path = dir.write("key.pem", &tls_common::pem("PRIVATE KEY", &id.key_pkcs8));
    let junk = dir.write("junk.pem", "not a certificate\n");
    assert_eq!(tls::roots(Some(&ca_path)).unwrap().len(), 1);
    assert_eq!(tls::load_certs(&cert_path).unwrap(), vec![id.cert.clone()]);
    assert!(tls::load_key(&key_path).is_ok());
    let server = tls::server_config(
        tls::load_certs(&cert_path).unwrap(),
        tls::load_key(&key_path).unwrap(),
        None,
    );
    assert!(server.is_ok());
    let e = tls::load_certs(&junk).unwrap_err();
    assert!(e.contains("junk.pem"), "{e}");
    assert!(tls::load_key(&junk).is_err());
    assert!(tls::roots(Some(&dir.0.join("missing.pem"))).is_err());
    assert!(tls::server_name("not a name!").is_err());
    let _ = Arc::clone(&server.unwrap());
}
