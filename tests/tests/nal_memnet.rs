//! longlink-nal over a second stack: `longlink-memnet`, in memory, on a
//! virtual clock, once behaving like the trait docs (`std-embedded-nal`) and
//! once like `smoltcp-nal` 0.7 (`Ok(0)` = no data, refused connects never
//! reported, sends accepted after FIN, empty UDP receive = error). The
//! tutorial's own timings run here in milliseconds of real time.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod nal_common;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use longlink_core::sntp::SntpConfig;
use longlink_core::time::{Duration, Instant};
use longlink_core::{Config, Framing, Remote, Status, TestProtocol, Transport};
use longlink_memnet::lab::LabPeer;
use longlink_memnet::{Accept, Behaviour, MemNet};
use longlink_nal::{Clock, Driver, NoDns, Quirks, Sntp};
use nal_common::{count, ModemEvent, RecordingModem};

type Net = MemNet<LabPeer<8192>>;
type D<C> = Driver<'static, Net, C, RecordingModem, TestProtocol, 512, 256, NoDns, Sntp<Net>>;

/// 2024-11-25 00:00:00 UTC: the lab's wall clock at virtual time zero.
const BASE_UNIX_MS: u64 = 1_732_492_800_000;

fn lab_addr() -> SocketAddr {
    "127.0.0.1:50798".parse().unwrap()
}
fn ntp_addr() -> SocketAddr {
    "127.0.0.1:123".parse().unwrap()
}

struct Sim<C> {
    d: D<C>,
    clock: Rc<Cell<u64>>,
}

fn sim(behaviour: Behaviour, quirks: Quirks, config: Config) -> Sim<impl Clock> {
    let clock = Rc::new(Cell::new(0u64));
    let c = clock.clone();
    let mut peer = LabPeer::new(lab_addr());
    peer.ntp = Some(ntp_addr());
    let d = Driver::new(
        MemNet::new(peer, behaviour),
        move || Instant::from_millis(c.get()),
        RecordingModem::default(),
        Remote::Addr(lab_addr()),
        config,
        TestProtocol::default(),
    )
    .unwrap()
    .quirks(quirks)
    .with_wall_clock(Sntp::new(ntp_addr(), SntpConfig::default(), 42));
    Sim { d, clock }
}

/// The tutorial's config plus the two timeouts a stack that hides refused
/// connects and FINs needs.
fn tutorial() -> Config {
    Config {
        connect_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

impl<C: Clock> Sim<C> {
    fn now(&self) -> u64 {
        self.clock.get()
    }

    fn peer(&mut self) -> &mut LabPeer<8192> {
        &mut self.d.stack_mut().peer
    }

    /// Runs the driver like firmware on a 100 ms tick: sleep until the
    /// deadline or the next tick, whichever is first. Stops when `done`
    /// holds or after `limit_ms`. Fails the test if the driver keeps asking
    /// to be polled at once (a spin).
    fn run(&mut self, limit_ms: u64, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now() + limit_ms;
        let mut same = 0;
        loop {
            let now = self.now();
            self.peer().wall_ms = BASE_UNIX_MS + now;
            let next = self.d.poll();
            if done(self) {
                return true;
            }
            if now >= end {
                return false;
            }
            let next = next.map_or(u64::MAX, Instant::as_millis);
            let step = next.max(now).min(now + 100).min(end);
            if step == now {
                same += 1;
                assert!(same < 1000, "the driver spins at {now} ms");
            } else {
                same = 0;
            }
            self.clock.set(step);
        }
    }

    fn advance(&mut self, ms: u64) {
        self.run(ms, |_| false);
    }

    fn received(&mut self) -> Vec<u8> {
        self.peer().received().to_vec()
    }
}

fn scenario(behaviour: Behaviour, quirks: Quirks) {
    let mut s = sim(behaviour, quirks, tutorial());
    // Connect, first heartbeat, SNTP sync at boot.
    assert!(s.run(1_000, |s| s.d.status() == Status::Connected));
    s.advance(500);
    assert_eq!(s.received(), b"heart beat");
    assert_eq!(s.peer().ntp_answers, 1);
    let now = Instant::from_millis(s.now());
    let wall = s.d.connection().unix_time_ms(now).unwrap();
    assert!(
        wall.abs_diff(BASE_UNIX_MS + s.now()) < 200,
        "synced by SNTP"
    );

    // A heartbeat every 10 s: at 0, 10, 20, 30 s.
    s.advance(35_000 - s.now());
    assert_eq!(count(&s.received(), b"heart beat"), 4);

    // The test protocol.
    s.peer().clear_received();
    s.peer().push(b"back hello");
    s.advance(200);
    assert_eq!(s.received(), b"back hello");
    s.peer().push(b"bin");
    s.advance(200);
    assert_eq!(s.received(), b"back hello\x11\x22\x33");
    s.peer().push(b"time");
    s.advance(200);
    let rx = s.received();
    assert_eq!(rx.len(), 13 + 10, "{:?}", String::from_utf8_lossy(&rx));
    let answered: u64 = String::from_utf8_lossy(&rx[13..]).parse().unwrap();
    assert!(answered.abs_diff((BASE_UNIX_MS + s.now()) / 1000) <= 1);

    // The server drops the connection (FIN). A conforming stack and
    // smoltcp-nal report it at once; a silent stack never does, and the
    // idle timeout finds it.
    let dropped_at = s.now();
    s.peer().fin();
    assert!(s.run(120_000, |s| s.d.status() != Status::Connected));
    let noticed = s.now() - dropped_at;
    let fin_hidden = behaviour.zero_read_means_no_data && !behaviour.fin_is_error;
    if fin_hidden {
        assert!(noticed <= 60_000, "{noticed} ms");
        assert_eq!(s.d.connection().stats().idle_timeouts, 1);
    } else {
        assert!(noticed < 1_000, "{noticed} ms");
        assert_eq!(s.d.connection().stats().idle_timeouts, 0);
    }

    // Queued while disconnected: delivered once, in order, first thing on
    // the new connection.
    let msgs: Vec<String> = (0..10).map(|i| format!("m-{i:02};")).collect();
    for m in &msgs {
        s.d.enqueue(m.as_bytes()).unwrap();
    }
    assert!(s.run(10_000, |s| s.d.status() == Status::Connected));
    s.advance(100);
    let rx = s.received();
    let all: String = msgs.concat();
    assert!(
        rx.starts_with(all.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&rx)
    );
    assert_eq!(count(&rx, b"m-"), 10);
    assert_eq!(s.d.connection().stats().connects, 2);

    // The server goes away for good: refused connects count to a link reset.
    s.peer().accept = Accept::Refuse;
    s.peer().reset();
    assert!(s.run(300_000, |s| s.d.connection().stats().link_resets == 1));
    let st = *s.d.connection().stats();
    assert_eq!(st.connect_failures, 5);
    if quirks == Quirks::SMOLTCP_NAL {
        assert_eq!(st.connect_timeouts, 5, "refusal hidden: timed out");
    }
    assert!(s.d.modem_mut().log().contains(&ModemEvent::ResetLink));

    // Back again.
    s.peer().accept = Accept::Yes;
    assert!(s.run(120_000, |s| s.d.status() == Status::Connected));
    s.advance(1_000);

    let net = s.d.stack_mut();
    assert_eq!(net.stats.misuse, 0, "{:?}", net.stats);
    assert_eq!(net.stats.sockets_exhausted, 0, "no socket leak");
    assert!(net.open_sockets() <= 2);
}

#[test]
fn tutorial_scenario_on_a_conforming_stack() {
    scenario(Behaviour::CONFORMANT, Quirks::CONFORMANT);
}

#[test]
fn tutorial_scenario_on_a_smoltcp_nal_like_stack() {
    scenario(Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL);
}

#[test]
fn tutorial_scenario_on_a_silent_stack() {
    scenario(Behaviour::SILENT, Quirks::SMOLTCP_NAL);
}

#[test]
fn partial_sends_and_would_block_lose_nothing() {
    for behaviour in [Behaviour::CONFORMANT, Behaviour::SMOLTCP_NAL] {
        let quirks = if behaviour == Behaviour::CONFORMANT {
            Quirks::CONFORMANT
        } else {
            Quirks::SMOLTCP_NAL
        };
        let mut s = sim(
            Behaviour {
                max_send: 3,
                would_block_every: 2,
                ..behaviour
            },
            quirks,
            Config {
                framing: Framing::Lines,
                ..tutorial()
            },
        );
        let msgs: Vec<String> = (0..15).map(|i| format!("message number {i}")).collect();
        for m in &msgs {
            s.d.enqueue(m.as_bytes()).unwrap();
        }
        assert!(s.run(5_000, |s| s.d.connection().queued() == 0));
        let rx = String::from_utf8(s.received()).unwrap();
        let lines: Vec<&str> = rx.lines().filter(|l| *l != "heart beat").collect();
        assert_eq!(lines, msgs);
        assert!(s.d.stack_mut().stats.would_blocks > 10);
    }
}

#[test]
fn udp_on_both_stacks() {
    for (behaviour, quirks) in [
        (Behaviour::CONFORMANT, Quirks::CONFORMANT),
        (Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL),
    ] {
        let mut s = sim(
            behaviour,
            quirks,
            Config {
                transport: Transport::Udp,
                ..tutorial()
            },
        );
        assert!(s.run(1_000, |s| s.d.status() == Status::Connected));
        s.peer().push(b"bin");
        s.peer().push(b"back 1");
        s.advance(15_000);
        assert_eq!(s.received(), b"heart beat\x11\x22\x33back 1heart beat");
        assert_eq!(s.d.connection().stats().disconnects, 0, "{behaviour:?}");
    }
}

#[test]
fn the_wrong_quirks_make_a_smoltcp_stack_flap() {
    // Why `Quirks` exists: read as end of stream, smoltcp-nal's "no data
    // yet" closes every connection right after it opens.
    let mut wrong = sim(Behaviour::SMOLTCP_NAL, Quirks::CONFORMANT, tutorial());
    wrong.advance(60_000);
    assert!(wrong.d.connection().stats().disconnects >= 5);
    let mut right = sim(Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL, tutorial());
    right.peer().push(b"back keepalive");
    right.advance(50_000);
    assert_eq!(right.d.connection().stats().disconnects, 0);
}

#[test]
fn network_loss_flight_mode_and_recovery_with_tutorial_timings() {
    let mut s = sim(Behaviour::CONFORMANT, Quirks::CONFORMANT, tutorial());
    s.d.modem_mut().down = true;
    // 5 minutes without network, then 20 s of flight mode.
    assert!(s.run(400_000, |s| s
        .d
        .modem_mut()
        .log()
        .contains(&ModemEvent::Radio(true))));
    assert_eq!(s.now(), 320_000);
    assert_eq!(s.d.connection().stats().connect_attempts, 0);
    assert_eq!(s.peer().ntp_answers, 0, "no SNTP without network");
    s.d.modem_mut().down = false;
    assert!(s.run(1_000, |s| s.d.status() == Status::Connected));
    s.advance(100);
    assert_eq!(s.peer().ntp_answers, 1);
}

/// memnet's smoltcp-nal mode now sends a fresh SYN for every `connect()` on
/// a refused socket, as the real crate does (`testing/STACKS.md`): the
/// driver must call `connect()` once per attempt for one SYN per attempt.
/// `real_smoltcp::tcp_refused_*` is the same check on the real stack.
#[test]
fn refused_connect_one_syn_per_attempt_on_a_smoltcp_nal_like_stack() {
    let mut s = sim(Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL, tutorial());
    s.peer().accept = Accept::Refuse;
    // Three attempts (10 s connect timeout, 5 s retry delay).
    s.advance(31_000);
    let attempts = s.d.connection().stats().connect_attempts;
    let syns = s.d.stack_mut().stats.syns;
    eprintln!("memnet SMOLTCP_NAL: {attempts} attempts, {syns} SYNs");
    assert_eq!(attempts, 3);
    assert_eq!(syns, attempts, "one SYN per attempt");
}

/// The same on memnet's silent mode, which never re-sends: passes today,
/// and shows the count is the stack's doing.
#[test]
fn refused_connect_one_syn_per_attempt_on_a_silent_stack() {
    let mut s = sim(Behaviour::SILENT, Quirks::SMOLTCP_NAL, tutorial());
    s.peer().accept = Accept::Refuse;
    s.advance(31_000);
    let attempts = s.d.connection().stats().connect_attempts;
    assert_eq!(attempts, 3);
    assert_eq!(s.d.stack_mut().stats.syns, attempts);
    assert_eq!(s.peer().refused, attempts);
}
