//! `longlink-nal-async` over a real no_std stack: embassy-net 0.9 (its
//! `TcpClient` is the embedded-nal-async `TcpConnect`), joined by an
//! in-memory Ethernet link to a scripted smoltcp server
//! (`longlink-realnet`), on a virtual clock that also drives embassy-time's
//! mock driver. No host network.
//!
//! The executor is `EmbassyWorld::run_until`: two tasks, the embassy-net
//! runner and `Longlink::run`, each polled when its own waker fired; the
//! server answers in between; time moves 1 ms when all are idle.
//! embassy-time's mock driver is global, so these tests run one at a time
//! (the world holds a lock).
//!
//! embassy-net has no embedded-nal-async `UdpStack`: TCP only (see
//! `testing/STACKS.md`).
// Test code: a failed setup step should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::cell::{Cell, RefCell};
use core::future::Future;
use core::net::{IpAddr, SocketAddr};
use core::pin::{pin, Pin};

use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Config, Connection, Disconnect, Event as CoreEvent, Framing, Remote, Status, TestProtocol,
    BIN_REPLY,
};
use longlink_nal_async::{AlwaysUp, Event, Longlink, Net, NoopRawMutex};
use longlink_realnet::embassy::embassy_net::tcp::client::{TcpClient, TcpClientState};
use longlink_realnet::embassy::embassy_net::{self, StackResources};
use longlink_realnet::embassy::{client_config, embassy_time, EmbassyWorld};
use longlink_realnet::server::{PORT, SERVER_IP};
use longlink_realnet::{End, Frame, Side, VirtualClock};

const Q: usize = 1024;
const R: usize = 512;
type Link = Longlink<NoopRawMutex, TestProtocol, Q, R>;
/// One connection at a time: the driver drops its socket before the next
/// connect (STACKS.md, "Sizing").
type Client<'d> = TcpClient<'d, 1, 2048, 2048>;

/// The driver's clock: the virtual clock, embassy-time timers, and a wall
/// clock the test sets (Unix ms at virtual time 0).
struct Clock {
    clock: VirtualClock,
    wall_base: Cell<Option<u64>>,
}

impl longlink_nal_async::Clock for Clock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.clock.now_ms())
    }

    async fn sleep_until(&self, at: Instant) {
        embassy_time::Timer::at(embassy_time::Instant::from_millis(at.as_millis())).await;
    }

    fn unix_time_ms(&self) -> Option<u64> {
        self.wall_base.get().map(|b| b + self.clock.now_ms())
    }
}

fn config() -> Config {
    Config {
        // embassy-net never times a connect out by itself (STACKS.md).
        connect_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    }
}

fn server() -> Remote<'static> {
    Remote::Addr(SocketAddr::new(IpAddr::V4(SERVER_IP), PORT))
}

fn link(config: Config) -> Link {
    Longlink::new(
        Connection::new(config, TestProtocol::default(), Instant::from_millis(0)).unwrap(),
    )
}

/// What the event hook saw.
#[derive(Default, Debug)]
struct Seen {
    connected: u32,
    connect_failed: u32,
    closed: u32,
    io_errors: u32,
}

fn hook(seen: &RefCell<Seen>) -> impl FnMut(Event<'_>) + '_ {
    move |e| {
        let mut s = seen.borrow_mut();
        match e {
            Event::Core(CoreEvent::Connected) => s.connected += 1,
            Event::Core(CoreEvent::ConnectFailed(_)) => s.connect_failed += 1,
            Event::Core(CoreEvent::Disconnected(Disconnect::PeerClosed)) => s.closed += 1,
            Event::Core(CoreEvent::Disconnected(Disconnect::IoError)) => s.io_errors += 1,
            _ => {}
        }
    }
}

/// The two tasks: embassy-net's runner and the driver's `run`.
struct Tasks<'a, A: ?Sized, B: ?Sized> {
    runner: Pin<&'a mut A>,
    client: Pin<&'a mut B>,
}

/// Runs both until `cond` (true) or `ms` passed (false).
fn until<A: Future + ?Sized, B: Future + ?Sized>(
    w: &mut EmbassyWorld,
    t: &mut Tasks<'_, A, B>,
    ms: u64,
    cond: impl FnMut(&mut EmbassyWorld) -> bool,
) -> bool {
    match w.run_until(t.runner.as_mut(), t.client.as_mut(), ms, cond) {
        Ok(done) => done,
        Err(_) => panic!("the driver's run future returned"),
    }
}

/// Runs both for `ms`.
fn run_for<A: Future + ?Sized, B: Future + ?Sized>(
    w: &mut EmbassyWorld,
    t: &mut Tasks<'_, A, B>,
    ms: u64,
) {
    until(w, t, ms, |_| false);
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn received(w: &EmbassyWorld) -> Vec<u8> {
    w.server
        .connections()
        .last()
        .map(|c| c.received.clone())
        .unwrap_or_default()
}

/// Builds the world, embassy-net, a `TcpClient` and a `Longlink`, then runs
/// `body` with a future that drives them all.
macro_rules! with_client {
    ($config:expr, |$w:ident, $link:ident, $clock:ident, $seen:ident, $fut:ident| $body:block) => {{
        let mut $w = EmbassyWorld::new();
        let mut resources = StackResources::<3>::new();
        let (stack, mut runner) =
            embassy_net::new($w.device(), client_config(), &mut resources, 0x5EED);
        let state = TcpClientState::<1, 2048, 2048>::new();
        let tcp: Client<'_> = TcpClient::new(stack, &state);
        let $link = link($config);
        let $clock = Clock {
            clock: $w.clock.clone(),
            wall_base: Cell::new(None),
        };
        let $seen = RefCell::new(Seen::default());
        let mut modem = AlwaysUp;
        let mut scratch = [0u8; 1024];
        let mut $fut = Tasks {
            runner: pin!(runner.run()),
            client: pin!($link.run(
                Net::tcp(&tcp),
                server(),
                &$clock,
                &mut modem,
                &mut scratch,
                hook(&$seen)
            )),
        };
        $body
    }};
}

// ------------------------------------------------------------ the tutorial

#[test]
fn tcp_tutorial_scenario() {
    with_client!(config(), |w, link, _clock, seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        assert_eq!(w.server.connections().len(), 1);
        let t0 = w.server.connections()[0].at_ms;

        run_for(&mut w, &mut fut, 30_500);
        let beats: Vec<u64> = w.server.connections()[0]
            .reads
            .iter()
            .filter(|(_, b)| b.as_slice() == b"heart beat")
            .map(|(t, _)| t - t0)
            .collect();
        assert_eq!(beats.len(), 4, "beats at {beats:?}");
        for (i, t) in beats.iter().enumerate() {
            let want = i as u64 * 10_000;
            assert!((want..=want + 5).contains(t), "beat {i} at +{t}");
        }

        let before = received(&w).len();
        assert!(w.server.push(b"back hello"));
        assert!(until(&mut w, &mut fut, 20, |w| received(w).len() >= before + 10));
        assert_eq!(&received(&w)[before..], b"back hello");
        let before = received(&w).len();
        assert!(w.server.push(b"bin"));
        assert!(until(&mut w, &mut fut, 20, |w| received(w).len() >= before + 3));
        assert_eq!(&received(&w)[before..], &BIN_REPLY);

        let before = received(&w).len();
        for i in 0..5 {
            link.try_enqueue(format!("msg {i};").as_bytes()).unwrap();
        }
        let want = b"msg 0;msg 1;msg 2;msg 3;msg 4;";
        assert!(until(&mut w, &mut fut, 20, |w| received(w).len()
            >= before + want.len()));
        assert_eq!(&received(&w)[before..], want);
        assert_eq!(link.stats().connects, 1);
        assert_eq!(seen.borrow().connected, 1);
    });
}

// ------------------------------------------------------------ refused

/// A refused port: embassy-net reports the RST as `ConnectionReset` at
/// once; one SYN per attempt; five failures reset the link.
#[test]
fn tcp_refused_one_syn_per_attempt_and_link_reset() {
    with_client!(config(), |w, link, _clock, seen, fut| {
        w.server.set_refuse(true);
        // Attempts at 0, 5, 10, 15, 20 s (5 s retry delay).
        run_for(&mut w, &mut fut, 22_000);
        let s = link.stats();
        let syns = w.link.count(Side::Client, |f| f.is_syn());
        eprintln!("{} refused attempts, {syns} SYNs", s.connect_attempts);
        assert_eq!(s.connect_attempts, 5);
        assert_eq!(s.connect_failures, 5);
        assert_eq!(s.connect_timeouts, 0, "the refusal is reported, no timeout");
        assert_eq!(syns, 5, "one SYN per attempt");
        assert_eq!(s.link_resets, 1);
        assert_eq!(seen.borrow().connect_failed, 5);
        // Accepting again: the next attempt connects.
        w.server.set_refuse(false);
        assert!(until(&mut w, &mut fut, 6_000, |_| link.status()
            == Status::Connected));
    });
}

/// A silent server (SYNs dropped): embassy-net would wait for ever; the
/// core's connect timeout ends each attempt, and smoltcp's SYN
/// retransmissions stay within the attempt.
#[test]
fn tcp_silent_server_is_timed_out_by_the_core() {
    with_client!(config(), |w, link, _clock, _seen, fut| {
        w.link.set_filter(Some(Frame::is_syn));
        run_for(&mut w, &mut fut, 13_500);
        let s = link.stats();
        let syns = w.link.count(Side::Client, |f| f.is_syn());
        eprintln!("{} silent attempts, {syns} SYNs", s.connect_attempts);
        assert_eq!(s.connect_attempts, 3);
        assert_eq!(s.connect_timeouts, 3);
        // The first SYN and smoltcp's retransmission (RTO 700 ms) within
        // the 1 s attempt.
        assert!((3..=3 * 2).contains(&syns), "{syns} SYNs in 3 attempts");
        w.link.set_filter(None);
        assert!(until(&mut w, &mut fut, 7_000, |_| link.status()
            == Status::Connected));
    });
}

// ------------------------------------------------------------ FIN, RST

fn server_ends(fin: bool) {
    with_client!(config(), |w, link, _clock, seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        run_for(&mut w, &mut fut, 50);
        let t = w.clock.now_ms();
        assert!(if fin {
            w.server.fin()
        } else {
            w.server.reset()
        });
        assert!(
            until(&mut w, &mut fut, 10, |_| link.status() != Status::Connected),
            "fin={fin}: noticed within 10 ms"
        );
        eprintln!("fin={fin}: noticed after {} ms", w.clock.now_ms() - t);
        if fin {
            assert_eq!(seen.borrow().closed, 1);
        } else {
            assert_eq!(seen.borrow().io_errors, 1);
        }
        link.try_enqueue(b"after the close").unwrap();
        assert!(until(&mut w, &mut fut, 6_000, |_| link.status()
            == Status::Connected));
        assert!(w.clock.now_ms() - t >= 5_000, "waited the retry delay");
        assert!(until(&mut w, &mut fut, 50, |w| count(
            &received(w),
            b"after the close"
        ) == 1));
        assert_eq!(w.server.connections().len(), 2);
        assert_eq!(link.stats().connects, 2);
    });
}

#[test]
fn tcp_server_fin() {
    server_ends(true);
}

#[test]
fn tcp_server_rst() {
    server_ends(false);
}

// ------------------------------------------------------------ cable pull

/// Frames dropped for longer than the idle timeout, then restored.
#[test]
fn tcp_cable_pull() {
    let cfg = Config {
        idle_timeout: Some(Duration::from_secs(15)),
        ..config()
    };
    with_client!(cfg, |w, link, _clock, _seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        run_for(&mut w, &mut fut, 1_000);
        w.link.set_cut(true);
        let cut_at = w.clock.now_ms();
        assert!(until(&mut w, &mut fut, 20_000, |_| link.status()
            != Status::Connected));
        let noticed = w.clock.now_ms() - cut_at;
        assert!(
            (13_000..=16_100).contains(&noticed),
            "noticed after {noticed}"
        );
        assert_eq!(link.stats().idle_timeouts, 1);
        link.try_enqueue(b"queued while down").unwrap();
        run_for(&mut w, &mut fut, 25_000);
        assert_ne!(link.status(), Status::Connected);
        w.link.set_cut(false);
        assert!(until(&mut w, &mut fut, 12_000, |_| link.status()
            == Status::Connected));
        assert!(until(&mut w, &mut fut, 200, |w| count(
            &received(w),
            b"queued while down"
        ) == 1));
        run_for(&mut w, &mut fut, 1_000);
        assert_eq!(link.status(), Status::Connected);
        // The old connection vanished without a FIN (embassy-net drops the
        // socket at once, STACKS.md); the server replaced it.
        assert_eq!(w.server.connections()[0].end, Some(End::Superseded));
        assert_eq!(
            w.link
                .frames()
                .iter()
                .filter(|f| f.from == Side::Client && f.is_fin())
                .count(),
            0
        );
    });
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

/// 3,000 requests as fast as the server's socket takes them: every one
/// answered, once, in order, on one connection.
#[test]
fn tcp_flood_of_requests_answered_in_order() {
    let cfg = Config {
        framing: Framing::Lines,
        ..config()
    };
    with_client!(cfg, |w, link, _clock, _seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        let want: String = (0..3000).map(flood_line).collect();
        let mut pushed = 0;
        let done = until(&mut w, &mut fut, 60_000, |w| {
            while pushed < 3000 && w.server.tcp_send_room() >= 10 {
                assert!(w.server.push(flood_line(pushed).as_bytes()));
                pushed += 1;
            }
            echoes(&received(w)).len() >= want.len()
        });
        assert!(done, "{pushed} pushed, {:?}", link.stats());
        assert_eq!(echoes(&received(&w)), want);
        assert_eq!(link.stats().connects, 1);
        assert_eq!(link.stats().messages_in, 3000);
        eprintln!("3000 requests answered in {} ms", w.clock.now_ms());
    });
}

// ------------------------------------------------------------ socket pool

/// 30 reconnects on a `TcpClientState` of one socket: every connect gets
/// the pool's only slot back.
#[test]
fn thirty_reconnects_on_a_one_socket_pool() {
    let cfg = Config {
        retry_delay: Duration::from_millis(200),
        ..config()
    };
    with_client!(cfg, |w, link, _clock, seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        for i in 0..30 {
            run_for(&mut w, &mut fut, 20);
            assert!(if i % 2 == 0 {
                w.server.fin()
            } else {
                w.server.reset()
            });
            assert!(
                until(&mut w, &mut fut, 50, |_| link.status() != Status::Connected),
                "round {i}: noticed"
            );
            assert!(
                until(&mut w, &mut fut, 1_000, |_| link.status()
                    == Status::Connected),
                "round {i}: reconnected; {:?} {:?} {:?}",
                link.stats(),
                seen.borrow(),
                w.server.connections().last()
            );
        }
        run_for(&mut w, &mut fut, 20);
        let s = link.stats();
        assert_eq!(s.connects, 31);
        assert_eq!(s.connect_attempts, 31, "no failed attempt");
        assert_eq!(seen.borrow().connect_failed, 0);
        assert_eq!(w.server.connections().len(), 31);
        for (i, c) in w.server.connections().iter().enumerate() {
            assert!(count(&c.received, b"heart beat") >= 1, "connection {i}");
        }
    });
}

// ------------------------------------------------------------ restart

/// The run future dropped and restarted 12 times, a message queued in
/// each: every message arrives exactly once, in order.
#[test]
fn run_future_dropped_and_restarted() {
    let mut w = EmbassyWorld::new();
    let mut resources = StackResources::<3>::new();
    let (stack, mut runner) = embassy_net::new(w.device(), client_config(), &mut resources, 0x5EED);
    let state = TcpClientState::<1, 2048, 2048>::new();
    let tcp: Client<'_> = TcpClient::new(stack, &state);
    let link = link(config());
    let clock = Clock {
        clock: w.clock.clone(),
        wall_base: Cell::new(None),
    };
    let seen = RefCell::new(Seen::default());
    let mut modem = AlwaysUp;
    let mut scratch = [0u8; 1024];
    let mut runner = pin!(runner.run());
    for round in 0..12 {
        link.try_enqueue(format!("round {round:02};").as_bytes())
            .unwrap();
        let mut fut = Tasks {
            runner: runner.as_mut(),
            client: pin!(link.run(
                Net::tcp(&tcp),
                server(),
                &clock,
                &mut modem,
                &mut scratch,
                hook(&seen)
            )),
        };
        assert!(
            until(&mut w, &mut fut, 7_000, |w| {
                let all: Vec<u8> = w
                    .server
                    .connections()
                    .iter()
                    .flat_map(|c| c.received.clone())
                    .collect();
                count(&all, format!("round {round:02};").as_bytes()) == 1
            }),
            "round {round}"
        );
        run_for(&mut w, &mut fut, 5);
        // The future is dropped here, mid-connection.
    }
    let all: Vec<u8> = w
        .server
        .connections()
        .iter()
        .flat_map(|c| c.received.clone())
        .collect();
    let text = String::from_utf8_lossy(&all).replace("heart beat", "");
    let want: String = (0..12).map(|r| format!("round {r:02};")).collect();
    assert_eq!(text, want);
    assert_eq!(w.server.connections().len(), 12);
}

// ------------------------------------------------------------ wall clock

/// The wall clock is set while the connection idles; a `time` request right
/// after must be answered with it.
#[test]
fn wall_clock_set_while_idle_then_time_at_once() {
    with_client!(config(), |w, link, clock, _seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        run_for(&mut w, &mut fut, 1_000);
        const UNIX_MS: u64 = 1_767_225_600_000;
        clock.wall_base.set(Some(UNIX_MS - w.clock.now_ms()));
        run_for(&mut w, &mut fut, 100);
        let before = received(&w).len();
        assert!(w.server.push(b"time"));
        let answered = until(&mut w, &mut fut, 20, |w| received(w).len() >= before + 10);
        let unanswered = link.with(|c| c.handler().time_unsynced);
        eprintln!("answered: {answered:?}, time_unsynced: {unanswered}");
        assert!(answered, "`time` answered at once");
        let secs: u64 = String::from_utf8(received(&w)[before..].to_vec())
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs.abs_diff((UNIX_MS + 1_100) / 1000) <= 1, "{secs}");
    });
}

/// The same with the wall clock set through `Longlink::with` (which wakes
/// the driver): answered at once today.
#[test]
fn wall_clock_set_through_with_then_time_at_once() {
    with_client!(config(), |w, link, _clock, _seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        run_for(&mut w, &mut fut, 1_000);
        const UNIX_MS: u64 = 1_767_225_600_000;
        let now = Instant::from_millis(w.clock.now_ms());
        link.with(|c| c.handle_wall_clock(now, UNIX_MS)).unwrap();
        run_for(&mut w, &mut fut, 100);
        let before = received(&w).len();
        assert!(w.server.push(b"time"));
        assert!(until(&mut w, &mut fut, 20, |w| received(w).len() >= before + 10));
        let secs: u64 = String::from_utf8(received(&w)[before..].to_vec())
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs.abs_diff((UNIX_MS + 100) / 1000) <= 1, "{secs}");
    });
}

// ------------------------------------------------------------ idle

/// An idle connection: the client future is polled only when woken, about
/// once per heartbeat (write, ACK), not every millisecond.
#[test]
fn idle_connection_does_not_spin() {
    with_client!(config(), |w, link, _clock, _seen, fut| {
        assert!(until(&mut w, &mut fut, 100, |_| link.status()
            == Status::Connected));
        run_for(&mut w, &mut fut, 1_000);
        let polls = w.client_polls;
        run_for(&mut w, &mut fut, 60_000);
        let per_minute = w.client_polls - polls;
        eprintln!("{per_minute} client polls in one idle minute");
        assert!(per_minute <= 100, "{per_minute} polls in an idle minute");
        assert_eq!(count(&received(&w), b"heart beat"), 7);
    });
}
