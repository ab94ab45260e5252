//! longlink-nal-async over a second stack: `longlink-memnet`'s async face,
//! in memory, on a virtual clock, once behaving like the trait docs and once
//! like `smoltcp-nal` 0.7 (FIN never reported, refused connects never
//! reported, sends accepted after FIN), plus partial writes, short reads and
//! pending I/O. The tutorial's own timings are asserted to the millisecond.
//!
//! ## The executor and the virtual clock
//!
//! One thread, no sockets, no real time. [`Exec`] polls the driver's `run`
//! future with a waker that only raises a flag. After a poll:
//! - if someone woke the driver during it (a socket, a signal, a due
//!   sleep), it polls again at the same virtual instant;
//! - otherwise the driver is idle (everything it awaits is pending and
//!   nothing is ready), and only then does the clock jump to the earliest
//!   pending sleep (`VirtualClock::next_deadline`), which wakes it.
//!
//! So time never passes while the driver has work, every timing is exact,
//! and a run is reproducible. The test script runs between `run_until`
//! calls: it changes the peer through `AsyncMemNet::with` (which wakes the
//! socket futures) or the modem, then lets the driver run again. A driver
//! that never goes idle is caught twice: by a cap on polls at one instant
//! (spinning through the executor) and by a cap on clock reads at one
//! instant (spinning inside one poll on an already-expired sleep).
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use longlink_core::time::{Duration, Instant};
use longlink_core::Transport;
use longlink_core::{Action, Config, Connection, Framing, Remote, Stats, Status, TestProtocol};
use longlink_memnet::lab::LabPeer;
use longlink_memnet::nal_async::{AsyncMemNet, Timing, VirtualClock};
use longlink_memnet::{Accept, Behaviour, MemNet};
use longlink_nal_async::{Clock, Event, Longlink, Modem, Net, NoopRawMutex, RunError};

const Q: usize = 512;
const R: usize = 256;
type Link = Longlink<NoopRawMutex, TestProtocol, Q, R>;
type Lab = LabPeer<8192>;

/// 2024-11-25 00:00:00 UTC: the wall clock at virtual time zero.
const BASE_UNIX_MS: u64 = 1_732_492_800_000;
/// Polls of the driver at one virtual instant before it counts as a spin.
const MAX_POLLS_PER_INSTANT: u32 = 5_000;
/// Clock reads at one virtual instant before it counts as a spin.
const MAX_READS_PER_INSTANT: u32 = 50_000;

fn lab_addr() -> SocketAddr {
    "10.0.0.1:50798".parse().unwrap()
}

/// The tutorial's config plus the two timeouts a stack that hides refused
/// connects and FINs needs.
fn tutorial() -> Config {
    Config {
        remote: Remote::Addr(lab_addr()),
        connect_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

const BOTH: [Behaviour; 2] = [Behaviour::CONFORMANT, Behaviour::SMOLTCP_NAL];

fn smoltcp(b: Behaviour) -> bool {
    b.hides_refused_connect
}

// ---------------------------------------------------------------------------
// The world: stack, modem, driver handle, and what happened when.

/// What the driver reported, with the virtual time.
#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Status(Status),
    Action(Action),
    Connected,
    ConnectFailed,
    Sent(Vec<u8>),
    Received(Vec<u8>),
    Closed,
    IoError,
    TooLarge,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ModemEv {
    ResetLink,
    RadioOff,
    RadioOn,
}

/// The modem the test scripts.
struct ModemState {
    up: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    log: RefCell<Vec<(u64, ModemEv)>>,
}

impl ModemState {
    fn set_up(&self, up: bool) {
        self.up.set(up);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

struct TestModem<'a> {
    state: &'a ModemState,
    clock: &'a VirtualClock,
}

impl TestModem<'_> {
    fn log(&self, ev: ModemEv) {
        self.state.log.borrow_mut().push((self.clock.now_ms(), ev));
    }
}

impl Modem for TestModem<'_> {
    async fn network_change(&mut self, known: bool) -> bool {
        poll_fn(|cx| {
            let up = self.state.up.get();
            if up != known {
                Poll::Ready(up)
            } else {
                *self.state.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
    async fn reset_link(&mut self) {
        self.log(ModemEv::ResetLink);
    }
    async fn radio_off(&mut self) {
        self.log(ModemEv::RadioOff);
    }
    async fn radio_on(&mut self) {
        self.log(ModemEv::RadioOn);
    }
}

/// The driver's clock: the stack's virtual clock, plus a spin detector.
struct VClock<'a> {
    clock: &'a VirtualClock,
    instant: Cell<u64>,
    reads: Cell<u32>,
}

impl Clock for VClock<'_> {
    fn now(&self) -> Instant {
        let t = self.clock.now_ms();
        if t != self.instant.get() {
            self.instant.set(t);
            self.reads.set(0);
        }
        let reads = self.reads.get() + 1;
        self.reads.set(reads);
        assert!(
            reads < MAX_READS_PER_INSTANT,
            "the driver spins at {t} ms: {reads} clock reads without time moving"
        );
        Instant::from_millis(t)
    }
    async fn sleep_until(&self, at: Instant) {
        self.clock.sleep_until(at.as_millis()).await;
    }
    fn unix_time_ms(&self) -> Option<u64> {
        Some(BASE_UNIX_MS + self.clock.now_ms())
    }
}

struct World {
    net: AsyncMemNet<Lab>,
    modem: ModemState,
    link: Link,
    events: RefCell<Vec<(u64, Ev)>>,
}

impl World {
    fn new(behaviour: Behaviour, timing: Timing, config: Config) -> World {
        let mut lab = LabPeer::new(lab_addr());
        lab.name = Some("lab.example");
        let net = AsyncMemNet::new(MemNet::new(lab, behaviour), 0);
        net.set_timing(timing);
        let conn =
            Connection::new(config, TestProtocol::default(), Instant::from_millis(0)).unwrap();
        World {
            net,
            modem: ModemState {
                up: Cell::new(true),
                waker: RefCell::new(None),
                log: RefCell::new(Vec::new()),
            },
            link: Longlink::new(conn),
            events: RefCell::new(Vec::new()),
        }
    }

    fn tutorial(behaviour: Behaviour) -> World {
        World::new(behaviour, Timing::default(), tutorial())
    }

    fn now(&self) -> u64 {
        self.net.clock().now_ms()
    }

    fn record(&self, event: Event<'_>) {
        let ev = match event {
            Event::Status(s) => Ev::Status(s),
            Event::Action(a) => Ev::Action(a),
            Event::Connected { .. } => Ev::Connected,
            Event::ConnectFailed { .. } => Ev::ConnectFailed,
            Event::Sent(b) => Ev::Sent(b.to_vec()),
            Event::Received(b) => Ev::Received(b.to_vec()),
            Event::Closed => Ev::Closed,
            Event::IoError { .. } => Ev::IoError,
            Event::DatagramTooLarge => Ev::TooLarge,
            _ => Ev::Other,
        };
        self.events.borrow_mut().push((self.now(), ev));
    }

    /// Runs the driver with a scratch buffer of `scratch` bytes; `test`
    /// drives the executor.
    fn drive<T>(&self, scratch: usize, test: impl FnOnce(&mut Exec<'_>) -> T) -> T {
        let clock = VClock {
            clock: self.net.clock(),
            instant: Cell::new(0),
            reads: Cell::new(0),
        };
        let mut modem = TestModem {
            state: &self.modem,
            clock: self.net.clock(),
        };
        let mut scratch = vec![0u8; scratch];
        let run = self
            .link
            .run(Net::all(&self.net), &clock, &mut modem, &mut scratch, |e| {
                self.record(e)
            });
        let run: Pin<&mut dyn Future<Output = Result<Infallible, RunError>>> = pin!(run);
        test(&mut Exec::new(run, self.net.clock()))
    }

    fn peer<T>(&self, f: impl FnOnce(&mut Lab) -> T) -> T {
        self.net.with(|n| f(&mut n.peer))
    }

    /// What the server got on the current (or last) connection.
    fn received(&self) -> Vec<u8> {
        self.peer(|p| p.received().to_vec())
    }

    fn stats(&self) -> Stats {
        self.link.stats()
    }

    fn net_stats(&self) -> longlink_memnet::Stats {
        self.net.with(|n| n.stats)
    }

    /// When the driver wrote exactly `bytes` (a whole write).
    fn sent_at(&self, bytes: &[u8]) -> Vec<u64> {
        self.events
            .borrow()
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Sent(b) if b == bytes))
            .map(|(t, _)| *t)
            .collect()
    }

    /// When `ev` was reported.
    fn times(&self, ev: &Ev) -> Vec<u64> {
        self.events
            .borrow()
            .iter()
            .filter(|(_, e)| e == ev)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Everything the driver wrote, in order, across connections.
    fn all_sent(&self) -> Vec<u8> {
        self.events
            .borrow()
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Sent(b) => Some(b.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn modem_log(&self) -> Vec<(u64, ModemEv)> {
        self.modem.log.borrow().clone()
    }

    /// The stack was used correctly: no misuse, no socket leak.
    fn assert_clean(&self) {
        let (st, open) = self.net.with(|n| (n.stats, n.open_sockets()));
        assert_eq!(st.misuse, 0, "{st:?}");
        assert_eq!(st.sockets_exhausted, 0, "no socket leak: {st:?}");
        assert!(open <= 1, "{open} sockets open");
        assert_eq!(self.net.clock().overflows(), 0);
    }
}

// ---------------------------------------------------------------------------
// The executor.

#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type RunFuture<'w> = Pin<&'w mut dyn Future<Output = Result<Infallible, RunError>>>;

struct Exec<'w> {
    fut: RunFuture<'w>,
    clock: &'w VirtualClock,
    flag: Arc<Flag>,
    waker: Waker,
    /// Polls per virtual second.
    polls: BTreeMap<u64, u32>,
    polls_here: u32,
}

impl<'w> Exec<'w> {
    fn new(fut: RunFuture<'w>, clock: &'w VirtualClock) -> Self {
        let flag = Arc::new(Flag::default());
        Exec {
            fut,
            clock,
            waker: Waker::from(flag.clone()),
            flag,
            polls: BTreeMap::new(),
            polls_here: 0,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Runs the driver until `done` holds (checked after every poll) or
    /// `limit_ms` of virtual time have passed. Returns whether `done` held.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut() -> bool) -> bool {
        let end = self.now() + limit_ms;
        loop {
            self.flag.0.store(false, Ordering::SeqCst);
            let mut cx = Context::from_waker(&self.waker);
            if let Poll::Ready(r) = self.fut.as_mut().poll(&mut cx) {
                panic!("run returned {r:?}");
            }
            let now = self.now();
            *self.polls.entry(now / 1000).or_default() += 1;
            self.polls_here += 1;
            assert!(
                self.polls_here < MAX_POLLS_PER_INSTANT,
                "the driver spins at {now} ms: {} polls without time moving",
                self.polls_here
            );
            assert_eq!(self.clock.overflows(), 0, "sleeper table full");
            if done() {
                return true;
            }
            if self.flag.0.load(Ordering::SeqCst) {
                continue; // Not idle yet.
            }
            // Idle: only time can move things on now.
            if now >= end {
                return false;
            }
            let next = self.clock.next_deadline().unwrap_or(u64::MAX).min(end);
            assert!(next > now, "a sleeper due at {next} ms was not polled");
            self.clock.advance_to(next);
            self.polls_here = 0;
        }
    }

    /// Runs the driver for `ms` of virtual time.
    fn advance(&mut self, ms: u64) {
        self.run_until(ms, || false);
    }

    /// Runs the driver until virtual time `t`.
    fn advance_to(&mut self, t: u64) {
        let now = self.now();
        assert!(t >= now);
        self.advance(t - now);
    }

    /// Polls in the virtual seconds `[from, to)`.
    fn polls_between(&self, from_s: u64, to_s: u64) -> u32 {
        self.polls.range(from_s..to_s).map(|(_, n)| n).sum()
    }

    /// The most polls in any one virtual second of `[from, to)`.
    fn max_polls_per_second(&self, from_s: u64, to_s: u64) -> u32 {
        self.polls
            .range(from_s..to_s)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// The tutorial's scenario, to the millisecond.

fn scenario(behaviour: Behaviour) {
    let w = World::tutorial(behaviour);
    let hidden = smoltcp(behaviour);
    w.drive(512, |x| {
        // Connected at once, first heartbeat at 0 s.
        assert!(x.run_until(0, || w.link.status() == Status::Connected));
        assert_eq!(x.now(), 0);

        // A heartbeat every 10 s, exactly, and nothing else.
        x.advance_to(35_000);
        assert_eq!(w.sent_at(b"heart beat"), [0, 10_000, 20_000, 30_000]);
        assert_eq!(w.received(), b"heart beat".repeat(4));

        // The test protocol, answered at the instant the request arrives.
        w.peer(|p| {
            p.clear_received();
            p.push(b"back hello");
        });
        assert!(x.run_until(1, || w.received() == b"back hello"));
        w.peer(|p| p.push(b"bin"));
        assert!(x.run_until(1, || w.received().ends_with(b"\x11\x22\x33")));
        w.peer(|p| p.push(b"time"));
        let want = ((BASE_UNIX_MS + 35_000) / 1000).to_string();
        assert!(x.run_until(1, || w.received().ends_with(want.as_bytes())));
        assert_eq!(
            w.received(),
            [b"back hello\x11\x22\x33", want.as_bytes()].concat()
        );
        assert_eq!(x.now(), 35_000, "answers take no virtual time");

        // The server drops the connection (FIN). A conforming stack reports
        // it at once; a smoltcp-like one never does, and the idle timeout
        // (60 s after the last bytes received, at 35 s) finds it.
        w.peer(|p| p.fin());
        assert!(x.run_until(120_000, || w.link.status() != Status::Connected));
        let down = x.now();
        if hidden {
            assert_eq!(down, 95_000);
            assert_eq!(w.stats().idle_timeouts, 1);
            assert!(w.times(&Ev::Closed).is_empty());
            // The heartbeats at 40..90 s went into the void: "written".
            assert_eq!(w.net_stats().lost_after_fin, 6 * 10);
        } else {
            assert_eq!(down, 35_000);
            assert_eq!(w.times(&Ev::Closed), [35_000]);
            assert_eq!(w.stats().idle_timeouts, 0);
        }

        // Queued while disconnected: delivered once, in order, first thing
        // on the new connection, which comes exactly 5 s later.
        let msgs: Vec<String> = (0..10).map(|i| format!("m-{i:02};")).collect();
        for m in &msgs {
            w.link.try_enqueue(m.as_bytes()).unwrap();
        }
        assert!(x.run_until(10_000, || w.link.status() == Status::Connected));
        assert_eq!(x.now(), down + 5_000);
        x.advance(100);
        let rx = w.received();
        let all = msgs.concat();
        assert!(rx.starts_with(all.as_bytes()), "{}", text(&rx));
        assert_eq!(count(&w.all_sent(), b"m-"), 10, "each written once");
        assert_eq!(w.stats().connects, 2);
        assert_eq!(w.link.queued(), 0);

        // The server goes away for good: 5 failed connects, 5 s apart (each
        // timed out after 10 s where the refusal is hidden), then a link
        // reset at once.
        w.peer(|p| {
            p.accept = Accept::Refuse;
            p.reset();
        });
        let before = w.stats();
        assert!(x.run_until(300_000, || w.stats().link_resets == 1));
        let gone = w.times(&Ev::IoError)[0];
        let attempts: Vec<u64> = w
            .times(&Ev::Action(Action::Connect {
                transport: Transport::Tcp,
            }))
            .into_iter()
            .filter(|t| *t > gone)
            .collect();
        let st = w.stats();
        assert_eq!(st.connect_failures - before.connect_failures, 5);
        let reset_at = w.modem_log().last().copied().unwrap();
        if hidden {
            assert_eq!(st.connect_timeouts, 5, "refusal hidden: timed out");
            let want: Vec<u64> = (0..5).map(|k| gone + 5_000 + 15_000 * k).collect();
            assert_eq!(attempts, want);
            assert_eq!(
                reset_at,
                (gone + 5_000 + 15_000 * 4 + 10_000, ModemEv::ResetLink)
            );
        } else {
            assert_eq!(st.connect_timeouts, 0);
            let want: Vec<u64> = (1..=5).map(|k| gone + 5_000 * k).collect();
            assert_eq!(attempts, want);
            assert_eq!(reset_at, (gone + 25_000, ModemEv::ResetLink));
            assert_eq!(w.times(&Ev::ConnectFailed).len(), 5);
        }
        assert_eq!(w.net_stats().refused, 5);

        // Back again.
        w.peer(|p| p.accept = Accept::Yes);
        assert!(x.run_until(120_000, || w.link.status() == Status::Connected));
        x.advance(1_000);
        assert_eq!(w.stats().connect_failures - before.connect_failures, 5);

        // Never a spin: at most a handful of wake-ups in any virtual second,
        // and about one per event over the whole run.
        let secs = x.now() / 1000 + 1;
        assert!(x.max_polls_per_second(0, secs) <= 30, "{:?}", x.polls);
        let total = x.polls_between(0, secs);
        assert!(total <= 400, "{total} polls in {secs} virtual seconds");
    });
    w.assert_clean();
}

#[test]
fn tutorial_scenario_on_a_conforming_stack() {
    scenario(Behaviour::CONFORMANT);
}

#[test]
fn tutorial_scenario_on_a_smoltcp_like_stack() {
    scenario(Behaviour::SMOLTCP_NAL);
}
