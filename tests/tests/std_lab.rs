//! The desktop client (`longlink_std::client`, i.e. the nal-async driver
//! over std-embedded-nal-async) against the lab server and its acceptance
//! script, over loopback, TCP and UDP, every framing.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use longlink_core::time::Duration as Ms;
use longlink_core::{Config, Framing, Transport};
use longlink_std::check::{self, CheckOptions};
use longlink_std::client::{Client, Server};
use longlink_std::lab::{Lab, LabEvent};

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client_for(lab: &Lab, server: Server) -> Client {
    let config = Config {
        transport: lab.transport(),
        framing: lab.framing(),
        heartbeat_interval: Some(Ms::from_millis(150)),
        retry_delay: Ms::from_millis(150),
        ..Config::default()
    };
    Client::spawn(server, config, None).unwrap()
}

fn acceptance(transport: Transport, framing: Framing, by_name: bool) {
    let lab = Lab::start(any(), transport, framing).unwrap();
    let remote = if by_name {
        Server::Host("localhost".into(), lab.local_addr().port())
    } else {
        Server::Addr(lab.local_addr())
    };
    let client = client_for(&lab, remote);
    let opts = CheckOptions {
        heartbeat: b"heart beat".to_vec(),
        heartbeats: 3,
        timeout: Duration::from_secs(10),
    };
    let report = check::run(&lab, &opts, |_| {});
    assert!(
        report.passed(),
        "{transport:?} {framing:?}:\n{}",
        report.render()
    );
    assert_eq!(report.checks.len(), 7);
    let stats = client.stop();
    assert_eq!(stats.replies_dropped, 0);
}

#[test]
fn tcp_raw_passes_the_acceptance_script() {
    acceptance(Transport::Tcp, Framing::Raw, false);
}

#[test]
fn tcp_lines_by_host_name_passes_the_acceptance_script() {
    acceptance(Transport::Tcp, Framing::Lines, true);
}

#[test]
fn tcp_len16_passes_the_acceptance_script() {
    acceptance(Transport::Tcp, Framing::Len16, false);
}

#[test]
fn udp_raw_passes_the_acceptance_script() {
    acceptance(Transport::Udp, Framing::Raw, false);
}

#[test]
fn udp_lines_passes_the_acceptance_script() {
    acceptance(Transport::Udp, Framing::Lines, false);
}

#[test]
fn the_script_fails_a_client_that_does_not_answer() {
    // A bare socket that only sends heartbeats: the script must say FAIL.
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let addr = lab.local_addr();
    let mute = std::thread::spawn(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for _ in 0..8 {
            if s.write_all(b"heart beat\n").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let opts = CheckOptions {
        heartbeat: b"heart beat".to_vec(),
        heartbeats: 2,
        timeout: Duration::from_millis(800),
    };
    let report = check::run(&lab, &opts, |_| {});
    assert!(!report.passed(), "{}", report.render());
    assert!(report
        .checks
        .iter()
        .any(|c| c.name.starts_with("back") && !c.passed));
    mute.join().unwrap();
}

#[test]
fn lab_stdin_style_sends_reach_the_client_and_garbage_does_not_stop_it() {
    let lab = Lab::start(any(), Transport::Tcp, Framing::Lines).unwrap();
    let client = client_for(&lab, Server::Addr(lab.local_addr()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let peer = lab
        .wait_for(
            deadline,
            |e| match e {
                LabEvent::Connected { peer, .. } => Some(*peer),
                _ => None,
            },
            drop,
        )
        .unwrap();
    // NUL bytes, invalid UTF-8, a line longer than the client's receive
    // buffer: the last one resets the connection; the client comes back.
    lab.send_raw(peer, b"\0\0\0\n\xff\xfe\n").unwrap();
    let huge = vec![b'z'; longlink_std::client::RX + 10];
    let _ = lab.send_raw(peer, &huge);
    let peer2 = lab
        .wait_for(
            deadline,
            |e| match e {
                LabEvent::Connected { peer, .. } => Some(*peer),
                _ => None,
            },
            drop,
        )
        .unwrap();
    client.enqueue(b"survived").unwrap();
    let got = lab.wait_for(
        deadline,
        |e| match e {
            LabEvent::Message { bytes, .. } if bytes == b"survived" => Some(()),
            _ => None,
        },
        drop,
    );
    assert_eq!(got, Some(()));
    let (reply, _) = check::request(
        &lab,
        peer2,
        b"back fine",
        check::Expect::Bytes(b"back fine"),
        b"heart beat",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(reply, b"back fine");
    let stats = client.stop();
    assert_eq!(stats.frames_rejected, 1, "{stats:?}");
}
