//! `longlink-nal` over a real no_std stack: smoltcp-nal 0.7 on smoltcp 0.12,
//! joined by an in-memory Ethernet link to a scripted smoltcp server
//! (`longlink-realnet`), on a virtual clock. No host network.
//!
//! Every scenario runs under both loop styles a firmware uses
//! ([`Style`]): poll stack and driver every millisecond, or poll the stack
//! every millisecond and the driver only when the stack reported activity,
//! at the driver's deadline, or right after the application queued
//! something.
//!
//! What smoltcp-nal does at each edge, with file and line evidence, is in
//! `testing/STACKS.md`.
// Test code: a failed setup step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::net::{IpAddr, SocketAddr};

use longlink_core::sntp::SntpConfig;
use longlink_core::time::{Duration, Instant};
use longlink_core::{Config, Framing, Remote, Status, TestProtocol, Transport, BIN_REPLY};
use longlink_nal::{AlwaysUp, Driver, Quirks, Sntp};
use longlink_realnet::server::{NTP_PORT, PORT, SERVER_IP};
use longlink_realnet::smol::{client_stack, ClientSockets, NalStack};
use longlink_realnet::{Frame, Side, VirtualClock, World};

/// The driver's clock: the world's virtual clock.
struct Clock(VirtualClock);

impl longlink_nal::Clock for Clock {
    fn now(&mut self) -> Instant {
        Instant::from_millis(self.0.now_ms())
    }
}

const Q: usize = 1024;
const R: usize = 512;

type Drv<W = longlink_nal::NoWallClock> =
    Driver<'static, NalStack, Clock, AlwaysUp, TestProtocol, Q, R, longlink_nal::NoDns, W>;

/// How the firmware's loop calls the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// Stack and driver every millisecond.
    EveryMs,
    /// Stack every millisecond; driver only on stack activity, at its
    /// deadline, or after an enqueue.
    OnActivity,
}

const STYLES: [Style; 2] = [Style::EveryMs, Style::OnActivity];

fn server_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_IP), PORT)
}

fn config(transport: Transport) -> Config {
    Config {
        transport,
        // smoltcp-nal never reports a refused connect: end an attempt.
        connect_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    }
}

struct Rig<W: longlink_nal::WallClock<NalStack> = longlink_nal::NoWallClock> {
    world: World,
    drv: Drv<W>,
    style: Style,
    deadline: Option<Instant>,
    /// The application queued something: poll the driver now.
    kick: bool,
    /// Driver polls, for "does not spin" checks.
    polls: u64,
}

fn rig(style: Style, config: Config, sockets: ClientSockets) -> Rig {
    rig_with(style, config, sockets, Quirks::SMOLTCP_NAL)
}

fn rig_with(style: Style, config: Config, sockets: ClientSockets, quirks: Quirks) -> Rig {
    let world = World::new();
    let stack = client_stack(&world.link, &world.clock, sockets);
    let drv = Driver::new(
        stack,
        Clock(world.clock.clone()),
        AlwaysUp,
        Remote::Addr(server_addr()),
        config,
        TestProtocol::default(),
    )
    .unwrap()
    .quirks(quirks);
    Rig {
        world,
        drv,
        style,
        deadline: None,
        kick: true,
        polls: 0,
    }
}

impl<W: longlink_nal::WallClock<NalStack>> Rig<W> {
    fn now_ms(&self) -> u64 {
        self.world.clock.now_ms()
    }

    /// One virtual millisecond.
    fn tick(&mut self) {
        let active = self.drv.stack_mut().poll().unwrap_or(false);
        let now = self.now_ms();
        let due = match self.style {
            Style::EveryMs => true,
            Style::OnActivity => {
                active || self.kick || self.deadline.is_some_and(|d| d.as_millis() <= now)
            }
        };
        if due {
            self.kick = false;
            self.polls += 1;
            self.deadline = self.drv.poll();
            // What the driver wrote goes out in this millisecond.
            let _ = self.drv.stack_mut().poll();
        }
        self.world.server.poll();
        self.world.clock.advance(1);
    }

    fn run_for(&mut self, ms: u64) {
        for _ in 0..ms {
            self.tick();
        }
    }

    /// Ticks until `cond` holds (true) or `max_ms` passed (false).
    fn run_until(&mut self, max_ms: u64, mut cond: impl FnMut(&mut Self) -> bool) -> bool {
        for _ in 0..max_ms {
            if cond(self) {
                return true;
            }
            self.tick();
        }
        cond(self)
    }

    fn enqueue(&mut self, msg: &[u8]) {
        self.drv.enqueue(msg).unwrap();
        self.kick = true;
    }

    fn connected(&mut self, max_ms: u64) -> bool {
        self.run_until(max_ms, |r| r.drv.status() == Status::Connected)
    }

    /// Bytes the server received on its newest connection (TCP).
    fn received(&self) -> Vec<u8> {
        self.world
            .server
            .connections()
            .last()
            .map(|c| c.received.clone())
            .unwrap_or_default()
    }

    fn stats(&self) -> longlink_core::Stats {
        *self.drv.connection().stats()
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ------------------------------------------------------------ the tutorial

/// The tutorial's scenario over TCP: heartbeat on connect and every 10 s,
/// `back`/`bin` answered, queued messages in order.
fn tcp_scenario(style: Style) {
    let mut r = rig(style, config(Transport::Tcp), ClientSockets::default());
    assert!(r.connected(100), "{style:?}: connects within 100 ms");
    let t0 = r.world.server.connections()[0].at_ms;

    // Heartbeats: at connect, then every 10 s of virtual time.
    r.run_for(30_500);
    let conn = &r.world.server.connections()[0];
    let beats: Vec<u64> = conn
        .reads
        .iter()
        .filter(|(_, b)| b.as_slice() == b"heart beat")
        .map(|(t, _)| t - t0)
        .collect();
    assert_eq!(beats.len(), 4, "{style:?}: beats at {beats:?}");
    for (i, t) in beats.iter().enumerate() {
        let want = i as u64 * 10_000;
        assert!(
            (want..=want + 5).contains(t),
            "{style:?}: beat {i} at +{t} ms, want +{want}"
        );
    }

    // The lab's commands, answered at once.
    let before = r.received().len();
    assert!(r.world.server.push(b"back hello"));
    assert!(r.run_until(20, |r| r.received().len() >= before + 10));
    assert_eq!(&r.received()[before..], b"back hello");
    let before = r.received().len();
    assert!(r.world.server.push(b"bin"));
    assert!(r.run_until(20, |r| r.received().len() >= before + 3));
    assert_eq!(&r.received()[before..], &BIN_REPLY);

    // Queued messages: in order, at once.
    let before = r.received().len();
    for i in 0..5 {
        r.enqueue(format!("msg {i};").as_bytes());
    }
    let want = b"msg 0;msg 1;msg 2;msg 3;msg 4;";
    assert!(
        r.run_until(20, |r| r.received().len() >= before + want.len()),
        "{style:?}: queued messages within 20 ms"
    );
    assert_eq!(&r.received()[before..], want);
    assert_eq!(r.stats().connects, 1);
    assert_eq!(r.stats().disconnects, 0);
    assert_eq!(r.world.server.connections().len(), 1);
}

#[test]
fn tcp_tutorial_scenario_polled_every_ms() {
    tcp_scenario(Style::EveryMs);
}

#[test]
fn tcp_tutorial_scenario_polled_on_activity() {
    tcp_scenario(Style::OnActivity);
}

/// The same over UDP: one datagram per message.
fn udp_scenario(style: Style) {
    let mut r = rig(style, config(Transport::Udp), ClientSockets::default());
    assert!(r.connected(10));
    assert!(r.run_until(100, |r| !r.world.server.datagrams().is_empty()));
    let t0 = r.world.server.datagrams()[0].at_ms;
    r.run_for(30_500);
    let beats: Vec<u64> = r
        .world
        .server
        .datagrams()
        .iter()
        .filter(|d| d.bytes == b"heart beat")
        .map(|d| d.at_ms - t0)
        .collect();
    assert_eq!(beats.len(), 4, "{style:?}: beats at {beats:?}");
    for (i, t) in beats.iter().enumerate() {
        // t0 is the first datagram's arrival, which waited 1 ms for ARP.
        let want = i as u64 * 10_000;
        assert!(
            (want.saturating_sub(2)..=want + 5).contains(t),
            "{style:?}: beat {i} at +{t}"
        );
    }

    let n = r.world.server.datagrams().len();
    assert!(r.world.server.push(b"back udp"));
    assert!(r.run_until(20, |r| r.world.server.datagrams().len() > n));
    assert_eq!(r.world.server.datagrams()[n].bytes, b"back udp");
    let n = r.world.server.datagrams().len();
    assert!(r.world.server.push(b"bin"));
    assert!(r.run_until(20, |r| r.world.server.datagrams().len() > n));
    assert_eq!(r.world.server.datagrams()[n].bytes, BIN_REPLY);

    let n = r.world.server.datagrams().len();
    for i in 0..5 {
        r.enqueue(format!("msg {i}").as_bytes());
    }
    assert!(r.run_until(20, |r| r.world.server.datagrams().len() >= n + 5));
    let got: Vec<_> = r.world.server.datagrams()[n..]
        .iter()
        .map(|d| String::from_utf8_lossy(&d.bytes).into_owned())
        .collect();
    assert_eq!(got, ["msg 0", "msg 1", "msg 2", "msg 3", "msg 4"]);
    // One socket, one local port, for the whole run.
    let ports: std::collections::BTreeSet<u16> = r
        .world
        .server
        .datagrams()
        .iter()
        .map(|d| d.client_port)
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(r.stats().connects, 1);
}

#[test]
fn udp_tutorial_scenario_polled_every_ms() {
    udp_scenario(Style::EveryMs);
}

#[test]
fn udp_tutorial_scenario_polled_on_activity() {
    udp_scenario(Style::OnActivity);
}

// ------------------------------------------------------------ refused

/// SYN frames per connect attempt against a port that refuses with RST.
fn syns_per_refused_attempt(style: Style) -> (usize, u32) {
    let mut r = rig(style, config(Transport::Tcp), ClientSockets::default());
    r.world.server.set_refuse(true);
    // Three attempts (at 0, 6 and 12 s: 1 s connect timeout, 5 s retry
    // delay), all timed out.
    r.run_for(13_500);
    let attempts = r.stats().connect_attempts;
    let syns = r.world.link.count(Side::Client, |f| f.is_syn());
    let rsts = r.world.link.count(Side::Server, |f| f.is_rst());
    eprintln!(
        "{style:?}: {attempts} refused attempts, {syns} SYNs ({} per attempt), {rsts} RSTs",
        syns as f64 / f64::from(attempts.max(1))
    );
    assert_eq!(attempts, 3, "{style:?}");
    assert_eq!(r.stats().connects, 0);
    // The stack never reports the refusal: the core's timeout ends each
    // attempt.
    assert_eq!(r.stats().connect_timeouts, 3, "{style:?}");
    (syns, attempts)
}

#[test]
fn tcp_refused_one_syn_per_attempt_polled_every_ms() {
    let (syns, attempts) = syns_per_refused_attempt(Style::EveryMs);
    assert_eq!(syns, attempts as usize, "one SYN per attempt");
}

#[test]
fn tcp_refused_one_syn_per_attempt_polled_on_activity() {
    let (syns, attempts) = syns_per_refused_attempt(Style::OnActivity);
    assert_eq!(syns, attempts as usize, "one SYN per attempt");
}

/// A silent server (SYNs vanish): smoltcp-nal keeps the socket in SYN-SENT,
/// where `connect()` sends nothing new; only smoltcp's own retransmission
/// (RTO 700 ms) adds a SYN within the 1 s attempt.
#[test]
fn tcp_silent_server_costs_at_most_two_syns_per_attempt() {
    for style in STYLES {
        let mut r = rig(style, config(Transport::Tcp), ClientSockets::default());
        r.world.link.set_filter(Some(Frame::is_syn));
        r.run_for(13_500);
        let s = r.stats();
        let syns = r.world.link.count(Side::Client, |f| f.is_syn());
        eprintln!(
            "{style:?}: {} silent attempts, {syns} SYNs",
            s.connect_attempts
        );
        assert_eq!(s.connect_attempts, 3, "{style:?}");
        assert_eq!(s.connect_timeouts, 3, "{style:?}");
        assert!((3..=6).contains(&syns), "{style:?}: {syns} SYNs");
        r.world.link.set_filter(None);
        assert!(r.connected(7_000), "{style:?}");
    }
}

/// The server starts accepting after refusing: the next attempt connects.
#[test]
fn tcp_connects_once_the_server_accepts_again() {
    for style in STYLES {
        let mut r = rig(style, config(Transport::Tcp), ClientSockets::default());
        r.world.server.set_refuse(true);
        r.run_for(3_000);
        assert_eq!(r.stats().connects, 0);
        r.world.server.set_refuse(false);
        assert!(r.connected(10_000), "{style:?}");
        assert_eq!(r.world.server.connections().len(), 1, "{style:?}");
        r.run_for(100);
        assert_eq!(count(&r.received(), b"heart beat"), 1, "{style:?}");
    }
}

// ------------------------------------------------------------ FIN, RST

/// The server ends the connection (`fin`: FIN, else RST); the client
/// notices at once, reconnects after the retry delay, and the message it
/// queued meanwhile reaches the new connection.
fn server_ends(style: Style, fin: bool) {
    let mut r = rig(style, config(Transport::Tcp), ClientSockets::default());
    assert!(r.connected(100));
    r.run_for(50);
    let t = r.now_ms();
    assert!(if fin {
        r.world.server.fin()
    } else {
        r.world.server.reset()
    });
    assert!(
        r.run_until(10, |r| r.drv.status() != Status::Connected),
        "{style:?} fin={fin}: noticed within 10 ms"
    );
    let noticed = r.now_ms() - t;
    eprintln!("{style:?} fin={fin}: noticed after {noticed} ms");
    assert_eq!(r.stats().disconnects, 1);
    r.enqueue(b"after the close");
    // Reconnects after the 5 s retry delay.
    assert!(r.connected(6_000), "{style:?} fin={fin}");
    assert!(r.now_ms() - t >= 5_000, "{style:?}: waited the retry delay");
    assert!(r.run_until(50, |r| count(&r.received(), b"after the close") == 1));
    assert_eq!(r.world.server.connections().len(), 2);
    assert_eq!(r.stats().connects, 2);
    if fin {
        // The client closed its side too (no reset).
        assert_eq!(
            r.world.server.connections()[0].end,
            Some(longlink_realnet::End::ServerFin)
        );
        assert!(r.world.link.count(Side::Client, |f| f.is_fin()) >= 1);
    }
}

#[test]
fn tcp_server_fin_polled_every_ms() {
    server_ends(Style::EveryMs, true);
}

#[test]
fn tcp_server_fin_polled_on_activity() {
    server_ends(Style::OnActivity, true);
}

#[test]
fn tcp_server_rst_polled_every_ms() {
    server_ends(Style::EveryMs, false);
}

#[test]
fn tcp_server_rst_polled_on_activity() {
    server_ends(Style::OnActivity, false);
}

// ------------------------------------------------------------ cable pull

/// TCP: every frame dropped for longer than the idle timeout, then
/// restored: the client notices (idle timeout), its reconnects fail while
/// the cable is out (the SYNs are lost: connect timeout), it reconnects once
/// the cable is back and delivers what was queued after it noticed.
fn tcp_cable_pull(style: Style) {
    let cfg = Config {
        idle_timeout: Some(Duration::from_secs(15)),
        ..config(Transport::Tcp)
    };
    let mut r = rig(style, cfg, ClientSockets::default());
    assert!(r.connected(100));
    r.run_for(1_000);
    r.world.link.set_cut(true);
    let cut_at = r.now_ms();
    assert!(
        r.run_until(20_000, |r| r.drv.status() != Status::Connected),
        "{style:?}: the dead link is noticed"
    );
    let noticed = r.now_ms() - cut_at;
    assert!(
        (13_000..=16_100).contains(&noticed),
        "{style:?}: noticed after {noticed} ms"
    );
    assert_eq!(r.stats().idle_timeouts, 1);
    r.enqueue(b"queued while down");
    r.run_for(25_000);
    assert_ne!(r.drv.status(), Status::Connected, "nothing gets through");
    assert!(r.stats().connect_timeouts >= 3, "{:?}", r.stats());
    r.world.link.set_cut(false);
    assert!(
        r.connected(12_000),
        "{style:?}: reconnects after the cable is back"
    );
    assert!(
        r.run_until(200, |r| count(&r.received(), b"queued while down") == 1),
        "{style:?}: the queued message arrives"
    );
    r.run_for(1_000);
    assert_eq!(r.drv.status(), Status::Connected);
    assert_eq!(r.world.server.connections().len(), 2);
}

#[test]
fn tcp_cable_pull_polled_every_ms() {
    tcp_cable_pull(Style::EveryMs);
}

#[test]
fn tcp_cable_pull_polled_on_activity() {
    tcp_cable_pull(Style::OnActivity);
}

/// UDP: a pulled cable is invisible to the stack (no handshake, no ICMP):
/// what is written meanwhile is lost, as the README says of UDP. Once the
/// cable is back, heartbeats and new messages flow again on their own.
fn udp_cable_pull(style: Style) {
    let mut r = rig(style, config(Transport::Udp), ClientSockets::default());
    assert!(r.connected(10));
    r.run_for(1_000);
    r.world.link.set_cut(true);
    r.run_for(30_000);
    let lost = r
        .world
        .link
        .frames()
        .iter()
        .filter(|f| f.dropped && f.from == Side::Client && f.is_udp_to(PORT))
        .count();
    assert_eq!(lost, 3, "{style:?}: the heartbeats sent into the void");
    r.world.link.set_cut(false);
    let n = r.world.server.datagrams().len();
    assert!(
        r.run_until(10_100, |r| r.world.server.datagrams().len() > n),
        "{style:?}: the next heartbeat arrives"
    );
    r.enqueue(b"after the cable");
    assert!(r.run_until(10, |r| r
        .world
        .server
        .datagrams()
        .iter()
        .any(|d| d.bytes == b"after the cable")));
    assert_eq!(r.stats().connects, 1, "{style:?}: no reconnect needed");
}

#[test]
fn udp_cable_pull_polled_every_ms() {
    udp_cable_pull(Style::EveryMs);
}

#[test]
fn udp_cable_pull_polled_on_activity() {
    udp_cable_pull(Style::OnActivity);
}

// ------------------------------------------------------------ UDP burst

/// 40 datagrams queued at once, more than the socket's 16 packet slots:
/// returns (delivered in order, reconnects).
fn udp_burst(style: Style) -> (usize, u32) {
    let mut r = rig(style, config(Transport::Udp), ClientSockets::default());
    assert!(r.connected(10));
    r.run_for(100);
    let n = r.world.server.datagrams().len();
    for i in 0..40 {
        r.enqueue(format!("burst {i:02}").as_bytes());
    }
    // Long enough for reconnects (5 s retry delay) to deliver the rest.
    r.run_for(20_000);
    let got: Vec<String> = r.world.server.datagrams()[n..]
        .iter()
        .filter(|d| d.bytes.starts_with(b"burst"))
        .map(|d| String::from_utf8_lossy(&d.bytes).into_owned())
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("burst {i:02}")).collect();
    let reconnects = r.stats().connects - 1;
    eprintln!("{style:?}: {:?}", r.stats());
    eprintln!(
        "{style:?}: {} of 40 datagrams delivered, {} lost, {reconnects} reconnects",
        got.len(),
        40 - got.len()
    );
    if got.len() == 40 {
        assert_eq!(got, want, "in order");
    }
    (got.len(), reconnects)
}

#[test]
fn udp_burst_larger_than_the_socket_loses_nothing() {
    // Both styles measured first, for the numbers.
    let results = STYLES.map(|style| (style, udp_burst(style)));
    for (style, (delivered, reconnects)) in results {
        assert_eq!(delivered, 40, "{style:?}: nothing lost");
        assert_eq!(reconnects, 0, "{style:?}: no reconnect");
    }
}

/// A datagram larger than the receive buffer: never truncated into a
/// message, and the link stays up. smoltcp-nal itself drops it (it reports
/// `UdpReadFailure(Truncated)`, an error of the same type as an empty
/// receive, which a generic driver cannot tell apart), so unlike on the
/// other stacks it is not counted in `frames_rejected`: the README's
/// per-stack table says so.
#[test]
fn udp_oversize_datagram_is_never_truncated_and_the_link_stays_up() {
    for style in STYLES {
        let mut r = rig(style, config(Transport::Udp), ClientSockets::default());
        assert!(r.connected(10));
        r.run_for(100);
        let n = r.world.server.datagrams().len();
        let mut big = b"back ".to_vec();
        big.resize(R + 100, b'x');
        assert!(r.world.server.push(&big));
        r.run_for(100);
        assert!(r.world.server.push(b"back small"));
        assert!(r.run_until(50, |r| r
            .world
            .server
            .datagrams()
            .iter()
            .any(|d| d.bytes == b"back small")));
        let echoed: Vec<usize> = r.world.server.datagrams()[n..]
            .iter()
            .map(|d| d.bytes.len())
            .collect();
        eprintln!("{style:?}: echoed sizes {echoed:?}, {:?}", r.stats());
        assert!(
            !r.world.server.datagrams()[n..]
                .iter()
                .any(|d| d.bytes.starts_with(b"back x")),
            "{style:?}: no truncated echo"
        );
        // Dropped by the stack before the driver sees it: not counted.
        assert_eq!(r.stats().frames_rejected, 0, "{style:?}");
        assert_eq!(r.stats().connects, 1, "{style:?}");
    }
}

// ------------------------------------------------------------ socket pool

/// 30 reconnects (server FIN, then RST, alternately) on a pool of two TCP
/// sockets: no socket leaks, every reconnect succeeds on its first try.
#[test]
fn thirty_reconnects_on_a_two_socket_pool() {
    for style in STYLES {
        let cfg = Config {
            retry_delay: Duration::from_millis(200),
            ..config(Transport::Tcp)
        };
        let sockets = ClientSockets {
            tcp: 2,
            ..ClientSockets::default()
        };
        let mut r = rig(style, cfg, sockets);
        assert!(r.connected(100));
        for i in 0..30 {
            r.run_for(20);
            let ok = if i % 2 == 0 {
                r.world.server.fin()
            } else {
                r.world.server.reset()
            };
            assert!(ok, "{style:?} round {i}");
            assert!(
                r.run_until(50, |r| r.drv.status() != Status::Connected),
                "{style:?} round {i}: noticed"
            );
            assert!(r.connected(1_000), "{style:?} round {i}: reconnected");
        }
        r.run_for(20);
        let s = r.stats();
        assert_eq!(s.connects, 31, "{style:?}");
        assert_eq!(s.connect_attempts, 31, "{style:?}: no failed attempt");
        assert_eq!(s.connect_failures, 0, "{style:?}");
        assert_eq!(r.world.server.connections().len(), 31, "{style:?}");
        // Every connection carried its heartbeat.
        for (i, c) in r.world.server.connections().iter().enumerate() {
            assert!(
                count(&c.received, b"heart beat") >= 1,
                "{style:?}: connection {i} got {:?}",
                c.received
            );
        }
    }
}

// ------------------------------------------------------------ SNTP

/// SNTP over the stack's UDP at start, then `time` answered with the
/// synced wall clock.
#[test]
fn sntp_over_the_stack_then_time() {
    for style in STYLES {
        let world = World::new();
        let stack = client_stack(&world.link, &world.clock, ClientSockets::default());
        const UNIX_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let mut server = world.server;
        server.set_wall_ms(Some(UNIX_MS));
        let world = World { server, ..world };
        let sntp = Sntp::new(
            SocketAddr::new(IpAddr::V4(SERVER_IP), NTP_PORT),
            SntpConfig::default(),
            7,
        );
        let drv = Driver::new(
            stack,
            Clock(world.clock.clone()),
            AlwaysUp,
            Remote::Addr(server_addr()),
            config(Transport::Tcp),
            TestProtocol::default(),
        )
        .unwrap()
        .quirks(Quirks::SMOLTCP_NAL)
        .with_wall_clock(sntp);
        let mut r = Rig {
            world,
            drv,
            style,
            deadline: None,
            kick: true,
            polls: 0,
        };
        assert!(r.connected(100), "{style:?}");
        assert!(
            r.run_until(1_000, |r| r.world.server.ntp_answers() == 1),
            "{style:?}: SNTP request answered"
        );
        assert!(r.run_until(100, |r| r.drv.wall_clock().client().is_synced()));
        r.run_for(10);
        let before = r.received().len();
        let now = r.now_ms();
        assert!(r.world.server.push(b"time"));
        assert!(r.run_until(20, |r| r.received().len() >= before + 10));
        let answer = String::from_utf8(r.received()[before..].to_vec()).unwrap();
        let secs: u64 = answer.parse().unwrap();
        let want = (UNIX_MS + now) / 1000;
        assert!(
            secs.abs_diff(want) <= 1,
            "{style:?}: time {secs}, want {want}"
        );
        assert_eq!(r.drv.connection().handler().time_unsynced, 0);
    }
}

// ------------------------------------------------------------ flood

/// The lines the server sent in the flood and the client must echo.
fn flood_line(i: usize) -> String {
    format!("back {i:04}\n")
}

/// The client's echoes so far, heartbeats removed.
fn echoes(received: &[u8]) -> String {
    String::from_utf8_lossy(received)
        .lines()
        .filter(|l| *l != "heart beat")
        .map(|l| format!("{l}\n"))
        .collect()
}

/// 3,000 requests from the server as fast as its socket takes them
/// (newline framing: TCP splits and merges as it likes): every one answered,
/// once, in order, on one connection, with bounded buffers throughout.
#[test]
fn tcp_flood_of_requests_answered_in_order() {
    for style in STYLES {
        let cfg = Config {
            framing: Framing::Lines,
            ..config(Transport::Tcp)
        };
        let mut r = rig(style, cfg, ClientSockets::default());
        assert!(r.connected(100));
        let want: String = (0..3000).map(flood_line).collect();
        let mut pushed = 0;
        let done = r.run_until(60_000, |r| {
            while pushed < 3000 && r.world.server.tcp_send_room() >= 10 {
                assert!(r.world.server.push(flood_line(pushed).as_bytes()));
                pushed += 1;
            }
            echoes(&r.received()).len() >= want.len()
        });
        assert!(done, "{style:?}: {pushed} pushed, {:?}", r.stats());
        assert_eq!(echoes(&r.received()), want, "{style:?}");
        assert_eq!(r.stats().connects, 1, "{style:?}");
        assert_eq!(r.stats().messages_in, 3000, "{style:?}");
        eprintln!("{style:?}: 3000 requests answered in {} ms", r.now_ms());
    }
}

// ------------------------------------------------------------ quirks

/// Why `Quirks::SMOLTCP_NAL` exists, on the real stack: read as end of
/// stream (`Quirks::CONFORMANT`), smoltcp-nal's "no data yet" `Ok(0)`
/// closes every connection right after it opens.
#[test]
fn the_wrong_quirks_make_smoltcp_nal_flap() {
    let mut r = rig_with(
        Style::EveryMs,
        config(Transport::Tcp),
        ClientSockets::default(),
        Quirks::CONFORMANT,
    );
    r.run_for(30_000);
    let s = r.stats();
    assert!(s.disconnects >= 5, "{s:?}");
    // Each connection ended by the client, right after its heartbeat.
    assert!(s.connects >= s.disconnects, "{s:?}");
    assert!(r
        .world
        .server
        .connections()
        .iter()
        .all(|c| c.end.is_none() || c.end == Some(longlink_realnet::End::ClientClosed)));
}

// ------------------------------------------------------------ idle

/// An idle connection does not make the OnActivity loop poll the driver
/// more than its deadlines ask: about one poll per heartbeat.
#[test]
fn idle_connection_polls_the_driver_only_at_deadlines() {
    let mut r = rig(
        Style::OnActivity,
        config(Transport::Tcp),
        ClientSockets::default(),
    );
    assert!(r.connected(100));
    r.run_for(1_000);
    let polls = r.polls;
    r.run_for(60_000);
    let per_minute = r.polls - polls;
    eprintln!("OnActivity: {per_minute} driver polls in one idle minute");
    // 6 heartbeats, each: deadline, write, ACK; a few spare.
    assert!(per_minute <= 40, "{per_minute} polls in an idle minute");
    assert_eq!(count(&r.received(), b"heart beat"), 7);
}
