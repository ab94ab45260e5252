//! The claims of `testing/STACKS.md`, checked on the wire against the real
//! crates (no longlink code involved): what smoltcp-nal 0.7 and embassy-net
//! 0.9 return at each edge, and what frames they send.
// Test code: a failed setup step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::future::Future;
use core::net::{IpAddr, SocketAddr};
use core::pin::{pin, Pin};

use embedded_io_async::{Read, Write};
use embedded_nal_async::TcpConnect;
use longlink_realnet::embassy::embassy_net::tcp::client::{TcpClient, TcpClientState};
use longlink_realnet::embassy::embassy_net::{self, StackResources};
use longlink_realnet::embassy::{client_config, EmbassyWorld};
use longlink_realnet::server::{PORT, SERVER_IP};
use longlink_realnet::smol::{client_stack, ClientSockets, NalStack};
use longlink_realnet::smoltcp::socket::{tcp, udp};
use longlink_realnet::smoltcp_nal::embedded_nal::{
    nb, TcpClientStack, TcpError, TcpErrorKind, UdpClientStack,
};
use longlink_realnet::smoltcp_nal::NetworkError;
use longlink_realnet::{Frame, Side, World};

fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_IP), PORT)
}

fn setup() -> (World, NalStack) {
    let w = World::new();
    let s = client_stack(&w.link, &w.clock, ClientSockets::default());
    (w, s)
}

/// `ms` milliseconds of stack and server polls.
fn pump(w: &mut World, s: &mut NalStack, ms: u64) {
    for _ in 0..ms {
        s.poll().unwrap();
        w.server.poll();
        w.clock.advance(1);
    }
}

fn syns(w: &World) -> usize {
    w.link.count(Side::Client, Frame::is_syn)
}

fn connected(w: &mut World, s: &mut NalStack) -> <NalStack as TcpClientStack>::TcpSocket {
    let mut sock = TcpClientStack::socket(s).unwrap();
    for _ in 0..100 {
        match TcpClientStack::connect(s, &mut sock, server()) {
            Ok(()) => return sock,
            Err(nb::Error::WouldBlock) => pump(w, s, 1),
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("no connection");
}

// ------------------------------------------------------------ smoltcp-nal

#[test]
fn smoltcp_nal_refused_socket_sends_a_fresh_syn_on_every_connect_call() {
    let (mut w, mut s) = setup();
    w.server.set_refuse(true);
    let mut sock = TcpClientStack::socket(&mut s).unwrap();
    for call in 1..=5 {
        // Never an error: the refusal is hidden...
        assert!(matches!(
            TcpClientStack::connect(&mut s, &mut sock, server()),
            Err(nb::Error::WouldBlock)
        ));
        pump(&mut w, &mut s, 5);
        // ...but each call on the reset socket is a new SYN.
        assert_eq!(syns(&w), call);
        assert_eq!(w.link.count(Side::Server, Frame::is_rst), call);
    }
    // From a new port each time.
    let ports: std::collections::BTreeSet<_> = w
        .link
        .frames()
        .iter()
        .filter(|f| f.is_syn())
        .map(|f| match f.kind {
            longlink_realnet::Kind::Tcp { src_port, .. } => src_port,
            _ => 0,
        })
        .collect();
    assert_eq!(ports.len(), 5);
}

#[test]
fn smoltcp_nal_connect_in_syn_sent_sends_nothing_new_and_established_is_ok() {
    let (mut w, mut s) = setup();
    w.link.set_filter(Some(Frame::is_syn));
    let mut sock = TcpClientStack::socket(&mut s).unwrap();
    for _ in 0..50 {
        assert!(matches!(
            TcpClientStack::connect(&mut s, &mut sock, server()),
            Err(nb::Error::WouldBlock)
        ));
        pump(&mut w, &mut s, 10);
    }
    // 500 ms, 50 calls: the first SYN only (the RTO is 700 ms).
    assert_eq!(syns(&w), 1);
    pump(&mut w, &mut s, 300);
    assert_eq!(syns(&w), 2, "smoltcp's own retransmission");
    w.link.set_filter(None);
    pump(&mut w, &mut s, 2_000);
    assert!(TcpClientStack::connect(&mut s, &mut sock, server()).is_ok());
    assert!(
        TcpClientStack::connect(&mut s, &mut sock, server()).is_ok(),
        "again: still Ok"
    );
    assert_eq!(w.server.connections().len(), 1);
}

#[test]
fn smoltcp_nal_receive_no_data_fin_and_rst() {
    let (mut w, mut s) = setup();
    let mut sock = connected(&mut w, &mut s);
    let mut buf = [0u8; 64];
    assert_eq!(
        TcpClientStack::receive(&mut s, &mut sock, &mut buf).ok(),
        Some(0),
        "no data: Ok(0)"
    );
    assert!(w.server.push(b"bye"));
    assert!(w.server.fin());
    pump(&mut w, &mut s, 5);
    assert_eq!(
        TcpClientStack::receive(&mut s, &mut sock, &mut buf).ok(),
        Some(3),
        "data first"
    );
    match TcpClientStack::receive(&mut s, &mut sock, &mut buf) {
        Err(nb::Error::Other(e @ NetworkError::TcpReadFailure(tcp::RecvError::Finished))) => {
            assert_eq!(e.kind(), TcpErrorKind::PipeClosed);
        }
        other => panic!("after FIN: {other:?}"),
    }
    // CLOSE-WAIT: sends are still accepted, and reach the half-closed peer.
    assert_eq!(
        TcpClientStack::send(&mut s, &mut sock, b"late").ok(),
        Some(4)
    );
    pump(&mut w, &mut s, 5);
    assert!(w.server.connections()[0].received.ends_with(b"late"));
    // And the socket can never connect again: WouldBlock for ever.
    assert!(matches!(
        TcpClientStack::connect(&mut s, &mut sock, server()),
        Err(nb::Error::WouldBlock)
    ));
    TcpClientStack::close(&mut s, sock).unwrap();

    let mut sock = connected(&mut w, &mut s);
    assert!(w.server.reset());
    pump(&mut w, &mut s, 5);
    match TcpClientStack::receive(&mut s, &mut sock, &mut buf) {
        Err(nb::Error::Other(e @ NetworkError::TcpReadFailure(tcp::RecvError::InvalidState))) => {
            assert_eq!(e.kind(), TcpErrorKind::PipeClosed);
        }
        other => panic!("after RST: {other:?}"),
    }
    assert!(matches!(
        TcpClientStack::send(&mut s, &mut sock, b"x"),
        Err(nb::Error::Other(NetworkError::TcpWriteFailure(
            tcp::SendError::InvalidState
        )))
    ));
    TcpClientStack::close(&mut s, sock).unwrap();
}

#[test]
fn smoltcp_nal_full_tcp_send_buffer_is_ok_zero() {
    let (mut w, mut s) = setup();
    let mut sock = connected(&mut w, &mut s);
    // The client's send buffer is 2048 bytes; nothing polled meanwhile.
    let chunk = [b'x'; 1000];
    assert_eq!(
        TcpClientStack::send(&mut s, &mut sock, &chunk).ok(),
        Some(1000)
    );
    assert_eq!(
        TcpClientStack::send(&mut s, &mut sock, &chunk).ok(),
        Some(1000)
    );
    assert_eq!(
        TcpClientStack::send(&mut s, &mut sock, &chunk).ok(),
        Some(48)
    );
    assert_eq!(
        TcpClientStack::send(&mut s, &mut sock, &chunk).ok(),
        Some(0),
        "full: Ok(0)"
    );
    TcpClientStack::close(&mut s, sock).unwrap();
}

#[test]
fn smoltcp_nal_close_sends_fin_and_the_socket_is_reusable() {
    let (mut w, mut s) = setup();
    for round in 1..=3 {
        let sock = connected(&mut w, &mut s);
        TcpClientStack::close(&mut s, sock).unwrap();
        pump(&mut w, &mut s, 5);
        assert_eq!(w.link.count(Side::Client, Frame::is_fin), round);
        assert_eq!(
            w.server.connections()[round - 1].end,
            Some(longlink_realnet::End::ClientClosed)
        );
    }
}

#[test]
fn smoltcp_nal_udp_edges() {
    let (mut w, mut s) = setup();
    let mut sock = UdpClientStack::socket(&mut s).unwrap();
    UdpClientStack::connect(&mut s, &mut sock, server()).unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(
        UdpClientStack::receive(&mut s, &mut sock, &mut buf),
        Err(nb::Error::Other(NetworkError::UdpReadFailure(
            udp::RecvError::Exhausted
        )))
    ));
    // Resolve the server's MAC first.
    UdpClientStack::send(&mut s, &mut sock, b"warm").unwrap();
    pump(&mut w, &mut s, 5);
    assert_eq!(w.server.datagrams().len(), 1);
    // 16 packet slots; no poll meanwhile.
    for i in 0..16 {
        UdpClientStack::send(&mut s, &mut sock, format!("d{i}").as_bytes()).unwrap();
    }
    assert!(matches!(
        UdpClientStack::send(&mut s, &mut sock, b"d16"),
        Err(nb::Error::Other(NetworkError::UdpWriteFailure(
            udp::SendError::BufferFull
        )))
    ));
    // smoltcp sends one packet per socket per `poll()`.
    s.poll().unwrap();
    w.server.poll();
    assert_eq!(w.server.datagrams().len(), 2, "one datagram per poll");
    pump(&mut w, &mut s, 20);
    assert_eq!(w.server.datagrams().len(), 17);
    // Room again after the stack transmitted.
    UdpClientStack::send(&mut s, &mut sock, b"d16").unwrap();

    // A datagram larger than the caller's buffer: an error, and gone.
    assert!(w.server.push(&[7u8; 100]));
    assert!(w.server.push(b"small"));
    pump(&mut w, &mut s, 5);
    assert!(matches!(
        UdpClientStack::receive(&mut s, &mut sock, &mut buf),
        Err(nb::Error::Other(NetworkError::UdpReadFailure(
            udp::RecvError::Truncated
        )))
    ));
    let (n, from) = UdpClientStack::receive(&mut s, &mut sock, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"small", "the oversize one was dropped");
    assert_eq!(from, server());

    // Close throws away what was queued but not transmitted.
    for _ in 0..3 {
        UdpClientStack::send(&mut s, &mut sock, b"queued").unwrap();
    }
    UdpClientStack::close(&mut s, sock).unwrap();
    let before = w.server.datagrams().len();
    pump(&mut w, &mut s, 5);
    assert_eq!(
        w.server.datagrams().len(),
        before,
        "nothing sent after close"
    );
}

// ------------------------------------------------------------ embassy-net

/// Runs `body` on embassy-net to completion (at most 10 s virtual);
/// `script` runs once per virtual millisecond (the server's side).
fn embassy<F: Future<Output = ()>>(
    w: &mut EmbassyWorld,
    runner: Pin<&mut impl Future>,
    body: F,
    mut script: impl FnMut(&mut EmbassyWorld),
) {
    let body = pin!(body);
    let finished = w.run_until(runner, body, 10_000, |w| {
        script(w);
        false
    });
    assert!(finished.is_err(), "did not finish in 10 s");
}

#[test]
fn embassy_net_tcp_client_edges() {
    let mut w = EmbassyWorld::new();
    let mut resources = StackResources::<3>::new();
    let (stack, mut runner) = embassy_net::new(w.device(), client_config(), &mut resources, 1);
    let state = TcpClientState::<1, 1024, 1024>::new();
    let client = TcpClient::new(stack, &state);
    let mut runner = pin!(runner.run());

    // Refused: ConnectionReset at once, one SYN.
    w.server.set_refuse(true);
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            let r = client.connect(server()).await;
            assert!(
                matches!(r, Err(embassy_net::tcp::Error::ConnectionReset)),
                "{:?}",
                r.err()
            );
        },
        |_| {},
    );
    assert_eq!(w.link.count(Side::Client, Frame::is_syn), 1);
    w.server.set_refuse(false);

    // A second connect while the pool's only slot is taken fails at once;
    // dropping a connection sends nothing (no FIN, no RST).
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            let mut c = client.connect(server()).await.unwrap();
            assert!(client.connect(server()).await.is_err(), "pool exhausted");
            c.write(b"hello").await.unwrap();
            c.flush().await.unwrap();
        },
        |_| {},
    );
    assert_eq!(w.server.connections()[0].received, b"hello");
    let rsts = w.link.count(Side::Client, Frame::is_rst);
    let fins = w.link.count(Side::Client, Frame::is_fin);
    let mut tick = 0;
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            // Let time pass: nothing more goes out for the dropped socket.
            embassy_time_sleep(1_000).await;
        },
        |_| tick += 1,
    );
    assert!(tick >= 1_000);
    assert_eq!(w.link.count(Side::Client, Frame::is_fin), fins);
    assert_eq!(w.link.count(Side::Client, Frame::is_rst), rsts);
    assert_eq!(fins, 0, "the FIN never leaves");
    assert_eq!(w.server.connections()[0].end, None, "the server never knew");

    // Read: Ok(0) after the peer's FIN (after its data); writes after the
    // FIN are accepted.
    let mut pushed = false;
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            let mut c = client.connect(server()).await.unwrap();
            let mut buf = [0u8; 16];
            let n = c.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"bye");
            assert_eq!(c.read(&mut buf).await.unwrap(), 0, "FIN: Ok(0)");
            assert_eq!(c.write(b"late").await.unwrap(), 4);
            c.flush().await.unwrap();
        },
        |w| {
            if !pushed && w.server.connections().len() == 2 {
                pushed = true;
                assert!(w.server.push(b"bye"));
                assert!(w.server.fin());
            }
        },
    );
    assert!(w.server.connections()[1].received.ends_with(b"late"));

    // Read after an RST: ConnectionReset.
    let mut reset = false;
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            let mut c = client.connect(server()).await.unwrap();
            let mut buf = [0u8; 16];
            let r = c.read(&mut buf).await;
            assert!(
                matches!(r, Err(embassy_net::tcp::Error::ConnectionReset)),
                "{r:?}"
            );
        },
        |w| {
            if !reset && w.server.connections().len() == 3 {
                reset = true;
                assert!(w.server.reset());
            }
        },
    );
}

async fn embassy_time_sleep(ms: u64) {
    longlink_realnet::embassy::embassy_time::Timer::after_millis(ms).await;
}

#[test]
fn embassy_net_connect_to_a_silent_server_needs_set_timeout() {
    let mut w = EmbassyWorld::new();
    let mut resources = StackResources::<3>::new();
    let (stack, mut runner) = embassy_net::new(w.device(), client_config(), &mut resources, 2);
    let state = TcpClientState::<1, 1024, 1024>::new();
    let mut client = TcpClient::new(stack, &state);
    let mut runner = pin!(runner.run());
    w.link.set_filter(Some(Frame::is_syn));

    // Without a timeout: still pending after a minute of SYN retransmits.
    {
        let connect = pin!(client.connect(server()));
        let done = w.run_until(runner.as_mut(), connect, 60_000, |_| false);
        assert!(matches!(done, Ok(false)), "still connecting after 60 s");
    }
    let retransmits = w.link.count(Side::Client, Frame::is_syn);
    assert!(
        (5..=15).contains(&retransmits),
        "{retransmits} SYNs in 60 s"
    );

    // With `set_timeout`: ConnectionReset after it.
    client.set_timeout(Some(
        longlink_realnet::embassy::embassy_time::Duration::from_secs(2),
    ));
    let start = w.clock.now_ms();
    let mut took = 0;
    embassy(
        &mut w,
        runner.as_mut(),
        async {
            let r = client.connect(server()).await;
            assert!(
                matches!(r, Err(embassy_net::tcp::Error::ConnectionReset)),
                "{:?}",
                r.err()
            );
        },
        |w| took = w.clock.now_ms() - start,
    );
    assert!((1_900..=2_100).contains(&took), "timed out after {took} ms");
}
