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

use embassy_futures::join::join;
use longlink_core::time::{Duration, Instant};
use longlink_core::Transport;
use longlink_core::{
    Action, Config, Connection, Disconnect, Event as CoreEvent, Framing, Remote, Stats, Status,
    TestProtocol,
};
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
        connect_timeout: Some(Duration::from_secs(10)),
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

const BOTH: [Behaviour; 2] = [Behaviour::CONFORMANT, Behaviour::SMOLTCP_NAL];

fn smoltcp(b: Behaviour) -> bool {
    b.hides_refused_connect
}

/// The stack never reports the peer's FIN ([`Behaviour::SILENT`]).
fn hides_fin(b: Behaviour) -> bool {
    b.zero_read_means_no_data && !b.fin_is_error
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
    async fn set_radio(&mut self, on: bool) {
        self.log(if on {
            ModemEv::RadioOn
        } else {
            ModemEv::RadioOff
        });
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
    remote: Remote<'static>,
    transport: Transport,
    net: AsyncMemNet<Lab>,
    modem: ModemState,
    link: Link,
    events: RefCell<Vec<(u64, Ev)>>,
}

impl World {
    fn new(behaviour: Behaviour, timing: Timing, config: Config) -> World {
        World::new_to(behaviour, timing, config, Remote::Addr(lab_addr()))
    }

    fn new_to(
        behaviour: Behaviour,
        timing: Timing,
        config: Config,
        remote: Remote<'static>,
    ) -> World {
        let transport = config.transport;
        let mut lab = LabPeer::new(lab_addr());
        lab.name = Some("lab.example");
        let net = AsyncMemNet::new(MemNet::new(lab, behaviour), 0);
        net.set_timing(timing);
        let conn =
            Connection::new(config, TestProtocol::default(), Instant::from_millis(0)).unwrap();
        World {
            remote,
            transport,
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
            Event::Core(CoreEvent::Status(s)) => Ev::Status(s),
            Event::Connecting(_) => Ev::Action(Action::Connect {
                transport: self.transport,
            }),
            Event::Core(CoreEvent::Connected) => Ev::Connected,
            Event::Core(CoreEvent::ConnectFailed(_)) => Ev::ConnectFailed,
            Event::Sent(b) => Ev::Sent(b.to_vec()),
            Event::Received(b) => Ev::Received(b.to_vec()),
            Event::Core(CoreEvent::Disconnected(Disconnect::PeerClosed)) => Ev::Closed,
            Event::Core(CoreEvent::Disconnected(Disconnect::IoError)) => Ev::IoError,
            Event::Core(CoreEvent::FrameRejected) => Ev::TooLarge,
            _ => Ev::Other,
        };
        self.events.borrow_mut().push((self.now(), ev));
    }

    /// Runs the driver with a scratch buffer of `scratch` bytes; `test`
    /// drives the executor.
    fn drive<T>(&self, scratch: usize, test: impl FnOnce(&mut Exec<'_>) -> T) -> T {
        self.drive_with(scratch, async {}, test)
    }

    /// Like [`drive`](Self::drive), with an application task `app` running
    /// beside the driver on the same executor.
    fn drive_with<T>(
        &self,
        scratch: usize,
        app: impl Future<Output = ()>,
        test: impl FnOnce(&mut Exec<'_>) -> T,
    ) -> T {
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
        let run = self.link.run(
            Net::all(&self.net),
            self.remote,
            &clock,
            &mut modem,
            &mut scratch,
            |e| self.record(e),
        );
        let run = async { join(run, app).await.0 };
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
    let hidden = hides_fin(behaviour);
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

        // The server drops the connection (FIN). A conforming or
        // smoltcp-like stack reports it at once; a silent one never does,
        // and the idle timeout (60 s after the last bytes received, at
        // 35 s) finds it.
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
        if smoltcp(behaviour) {
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
        // (Measured: at most 6 in a second, 36 in the whole run.)
        assert!(x.max_polls_per_second(0, secs) <= 10, "{:?}", x.polls);
        let total = x.polls_between(0, secs);
        assert!(total <= 60, "{total} polls in {secs} virtual seconds");
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

#[test]
fn tutorial_scenario_on_a_silent_stack() {
    scenario(Behaviour::SILENT);
}

// ---------------------------------------------------------------------------
// Partial writes, short reads, pending I/O.

/// Lines the server got, heartbeats left out.
fn lines_without_heartbeats(rx: &[u8]) -> Vec<String> {
    text(rx)
        .lines()
        .filter(|l| *l != "heart beat")
        .map(str::to_owned)
        .collect()
}

#[test]
fn partial_writes_short_reads_and_pending_io_lose_nothing() {
    for behaviour in BOTH {
        for pending_ms in [0, 7] {
            for scratch in [512, 5] {
                let case = format!("{behaviour:?} pending {pending_ms} ms, scratch {scratch}");
                let w = World::new(
                    Behaviour {
                        max_send: 3,
                        max_read: 2,
                        would_block_every: 2,
                        ..behaviour
                    },
                    Timing {
                        connect_ms: 20,
                        pending_reads_every: 3,
                        pending_ms,
                    },
                    Config {
                        framing: Framing::Lines,
                        ..tutorial()
                    },
                );
                let msgs: Vec<String> = (0..15).map(|i| format!("message number {i}")).collect();
                for m in &msgs {
                    w.link.try_enqueue(m.as_bytes()).unwrap();
                }
                let backs: Vec<String> = (0..10).map(|i| format!("back {i}")).collect();
                for b in &backs {
                    w.peer(|p| p.push(format!("{b}\n").as_bytes()));
                }
                let want: Vec<String> = msgs.iter().chain(&backs).cloned().collect();
                w.drive(scratch, |x| {
                    let done = x.run_until(10_000, || {
                        let mut got = lines_without_heartbeats(&w.received());
                        got.sort();
                        let mut want = want.clone();
                        want.sort();
                        got == want
                    });
                    assert!(done, "{case}: {}", text(&w.received()));
                    // Settle, then nothing more may arrive.
                    x.advance(1_000);
                });
                let got = lines_without_heartbeats(&w.received());
                let of = |prefix: &str| -> Vec<String> {
                    got.iter()
                        .filter(|l| l.starts_with(prefix))
                        .cloned()
                        .collect()
                };
                assert_eq!(of("message"), msgs, "{case}: once each, in order");
                assert_eq!(of("back"), backs, "{case}: once each, in order");
                let st = w.stats();
                assert_eq!((st.connects, st.disconnects), (1, 0), "{case}: {st:?}");
                assert!(
                    w.net_stats().would_blocks >= 20,
                    "{case}: pending writes happened"
                );
                w.assert_clean();
            }
        }
    }
}

#[test]
fn writes_pending_past_timers_and_enqueues_are_neither_lost_nor_duplicated() {
    for behaviour in BOTH {
        // Every write stalls for 15 s: the 10 s heartbeat timer and new
        // messages interrupt it, and the driver drops it and writes again.
        let w = World::new(
            Behaviour {
                would_block_every: 1,
                ..behaviour
            },
            Timing {
                pending_ms: 15_000,
                ..Timing::default()
            },
            Config {
                framing: Framing::Lines,
                idle_timeout: None,
                ..tutorial()
            },
        );
        let msgs: Vec<String> = (0..6).map(|i| format!("slow {i}")).collect();
        w.drive(512, |x| {
            for (i, m) in msgs.iter().enumerate() {
                x.advance_to(i as u64 * 4_000 + 1_000);
                w.link.try_enqueue(m.as_bytes()).unwrap();
            }
            assert!(x.run_until(300_000, || w.link.queued() == 0));
            x.advance(30_000);
        });
        let rx = w.received();
        assert_eq!(lines_without_heartbeats(&rx), msgs, "{behaviour:?}");
        assert_eq!(
            count(&w.all_sent(), b"slow "),
            msgs.len(),
            "written once each"
        );
        assert!(count(&rx, b"heart beat\n") >= 3);
        assert_eq!(w.stats().disconnects, 0);
        w.assert_clean();
    }
}

#[test]
fn a_flood_and_an_app_waiting_for_queue_room_on_a_slow_stack_lose_nothing() {
    for behaviour in BOTH {
        let w = World::new(
            Behaviour {
                max_send: 5,
                max_read: 7,
                would_block_every: 3,
                ..behaviour
            },
            Timing {
                pending_reads_every: 2,
                pending_ms: 3,
                ..Timing::default()
            },
            Config {
                framing: Framing::Lines,
                ..tutorial()
            },
        );
        // The server floods `back` requests: the replies fill the 512-byte
        // queue, and the driver must stop reading rather than drop any.
        let backs: Vec<String> = (0..150).map(|i| format!("back {i:03}")).collect();
        for b in &backs {
            w.peer(|p| p.push(format!("{b}\n").as_bytes()));
        }
        // Meanwhile an application task queues more than fits, waiting for
        // room each time the queue is full.
        let apps: Vec<String> = (0..150).map(|i| format!("app {i:03}")).collect();
        let app = async {
            for m in &apps {
                w.link.enqueue(m.as_bytes()).await.unwrap();
            }
        };
        w.drive_with(512, app, |x| {
            let done = x.run_until(60_000, || {
                let rx = w.received();
                count(&rx, b"back 149\n") == 1 && count(&rx, b"app 149\n") == 1
            });
            assert!(done, "{behaviour:?}: {}", text(&w.received()));
            x.advance(1_000);
        });
        let got = lines_without_heartbeats(&w.received());
        let of = |prefix: &str| -> Vec<String> {
            got.iter()
                .filter(|l| l.starts_with(prefix))
                .cloned()
                .collect()
        };
        assert_eq!(of("back"), backs, "{behaviour:?}");
        assert_eq!(of("app"), apps, "{behaviour:?}");
        let st = w.stats();
        assert!(st.queue_full > 0, "the app did wait for room: {st:?}");
        assert_eq!(
            (st.replies_dropped, st.frames_rejected, st.connects),
            (0, 0, 1),
            "{st:?}"
        );
        w.assert_clean();
    }
}

#[test]
fn a_message_cut_off_mid_write_is_sent_whole_on_the_next_connection() {
    for behaviour in BOTH {
        // 3 bytes per write, and every second write stalls for 1 s: the
        // network goes away while the message is half written.
        let w = World::new(
            Behaviour {
                max_send: 3,
                would_block_every: 2,
                ..behaviour
            },
            Timing {
                pending_ms: 1_000,
                ..Timing::default()
            },
            tutorial(),
        );
        w.drive(512, |x| {
            assert!(x.run_until(5_000, || w.link.stats().heartbeats_sent == 1));
            x.advance(1);
            w.link.try_enqueue(b"ABCDEFGHIJKL").unwrap();
            assert!(x.run_until(5_000, || w.received().ends_with(b"ABC")));
            w.modem.set_up(false);
            assert!(x.run_until(0, || w.link.status() != Status::Connected));
            w.modem.set_up(true);
            // The tutorial pauses the retry delay (5 s) after a network loss.
            assert!(x.run_until(10_000, || w.link.queued() == 0));
            x.advance(1);
        });
        // The new connection got the whole message, not its tail.
        assert!(
            w.received().starts_with(b"ABCDEFGHIJKL"),
            "{behaviour:?}: {}",
            text(&w.received())
        );
        assert_eq!(w.stats().connects, 2);
        w.assert_clean();
    }
}

// ---------------------------------------------------------------------------
// Connects that hang, are slow, or are refused.

#[test]
fn hanging_connects_time_out_and_count_to_a_link_reset_after_exactly_five() {
    for behaviour in BOTH {
        let w = World::tutorial(behaviour);
        // The server never answers the SYN: the connect pends on any stack.
        w.peer(|p| p.accept = Accept::Pending);
        w.drive(512, |x| {
            assert!(x.run_until(300_000, || w.stats().link_resets == 1));
            let tcp = Ev::Action(Action::Connect {
                transport: Transport::Tcp,
            });
            // 10 s connect timeout + 5 s retry delay, five times.
            assert_eq!(w.times(&tcp), [0, 15_000, 30_000, 45_000, 60_000]);
            assert_eq!(w.modem_log(), [(70_000, ModemEv::ResetLink)]);
            let st = w.stats();
            assert_eq!((st.connect_failures, st.connect_timeouts), (5, 5));
            // The count starts again: the 6th attempt 5 s after the reset.
            w.peer(|p| p.accept = Accept::Yes);
            assert!(x.run_until(10_000, || w.link.status() == Status::Connected));
            assert_eq!(x.now(), 75_000);
        });
        w.assert_clean();
    }
}

#[test]
fn a_slow_handshake_within_the_connect_timeout_connects() {
    for behaviour in BOTH {
        let w = World::new(
            behaviour,
            Timing {
                connect_ms: 9_999,
                ..Timing::default()
            },
            tutorial(),
        );
        w.drive(512, |x| {
            assert!(x.run_until(20_000, || w.link.status() == Status::Connected));
            assert_eq!(x.now(), 9_999);
            x.advance(1);
            assert_eq!(w.sent_at(b"heart beat"), [9_999]);
            assert_eq!(w.stats().connect_failures, 0);

            // The network goes away in the middle of a slow handshake: the
            // half-open socket is closed, and the next attempt starts afresh
            // (each loss is followed by the 5 s retry delay, as in the
            // tutorial).
            w.modem.set_up(false);
            assert!(x.run_until(0, || w.link.status() != Status::Connected));
            w.modem.set_up(true);
            let lost = x.now();
            assert!(x.run_until(10_000, || w.link.status() == Status::Connecting));
            assert_eq!(x.now(), lost + 5_000);
            x.advance(3_000);
            w.modem.set_up(false);
            assert!(x.run_until(0, || w.link.status() != Status::Connecting));
            w.modem.set_up(true);
            let from = x.now();
            assert!(x.run_until(30_000, || w.link.status() == Status::Connected));
            assert_eq!(x.now(), from + 5_000 + 9_999);
        });
        let st = w.net_stats();
        assert_eq!(st.sockets_opened, 3);
        assert_eq!(st.connects, 2);
        w.assert_clean();
    }
}

#[test]
fn host_names_are_resolved_and_unknown_ones_count_as_failed_connects() {
    let w = World::new_to(
        Behaviour::CONFORMANT,
        Timing::default(),
        tutorial(),
        Remote::Host {
            name: "lab.example",
            port: lab_addr().port(),
        },
    );
    w.drive(512, |x| {
        assert!(x.run_until(0, || w.link.status() == Status::Connected));
        x.advance(1);
        assert_eq!(w.received(), b"heart beat");
    });

    let w = World::new_to(
        Behaviour::SMOLTCP_NAL,
        Timing::default(),
        tutorial(),
        Remote::Host {
            name: "nowhere.example",
            port: 1,
        },
    );
    w.drive(512, |x| {
        assert!(x.run_until(60_000, || w.stats().link_resets == 1));
        assert_eq!(
            w.times(&Ev::ConnectFailed),
            [0, 5_000, 10_000, 15_000, 20_000]
        );
        assert_eq!(w.modem_log(), [(20_000, ModemEv::ResetLink)]);
    });
    assert_eq!(
        w.net_stats().sockets_opened,
        0,
        "no socket without an address"
    );
}

// ---------------------------------------------------------------------------
// UDP.

#[test]
fn udp_on_both_stacks() {
    for behaviour in BOTH {
        let w = World::new(
            behaviour,
            Timing::default(),
            Config {
                transport: Transport::Udp,
                ..tutorial()
            },
        );
        w.drive(Q.max(R), |x| {
            assert!(x.run_until(0, || w.link.status() == Status::Connected));
            w.peer(|p| {
                p.push(b"bin");
                p.push(b"back 1");
                p.push(b"");
            });
            x.run_until(1, || false);
            assert_eq!(x.now(), 1, "answered at once");
            // Larger than the receive buffer: dropped, not truncated into a
            // command.
            let big = [b"back ".as_slice(), &[b'y'; R * 2]].concat();
            w.peer(|p| p.push(&big));
            x.advance(1);
            w.peer(|p| p.push(b"back 2"));
            x.advance_to(15_000);
            assert!(count(&w.received(), b"yyyy") == 0, "never echoed");
        });
        assert_eq!(
            w.received(),
            b"heart beat\x11\x22\x33back 1back 2heart beat",
            "{behaviour:?}"
        );
        assert_eq!(w.times(&Ev::TooLarge), [1]);
        assert_eq!(w.sent_at(b"heart beat"), [0, 10_000]);
        assert_eq!(w.stats().disconnects, 0, "{behaviour:?}");
        w.assert_clean();
    }
}

#[test]
fn udp_to_a_server_that_is_down() {
    for behaviour in BOTH {
        let w = World::new(
            behaviour,
            Timing::default(),
            Config {
                transport: Transport::Udp,
                framing: Framing::Lines,
                ..tutorial()
            },
        );
        // ICMP port unreachable for every datagram.
        w.peer(|p| p.accept = Accept::Refuse);
        w.link.try_enqueue(b"keep me").unwrap();
        w.drive(Q.max(R), |x| {
            x.advance(30_000);
            let st = w.stats();
            let udp = Ev::Action(Action::Connect {
                transport: Transport::Udp,
            });
            if smoltcp(behaviour) {
                // The refusal is never reported: the message is "written"
                // into the void, and only the idle timeout reconnects.
                assert_eq!(w.times(&udp), [0]);
                assert_eq!(w.link.queued(), 0);
                assert!(x.run_until(60_000, || w.stats().idle_timeouts == 1));
                assert_eq!(x.now(), 60_000);
            } else {
                // Every send fails: reopen 5 s later, keep the message.
                assert_eq!(
                    w.times(&udp),
                    [0, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000]
                );
                assert!(st.disconnects >= 6, "{st:?}");
                // The message and one heartbeat (never more than one).
                assert_eq!(w.link.queued(), 2);
            }
            w.peer(|p| p.accept = Accept::Yes);
            assert!(
                x.run_until(10_000, || w.received().starts_with(b"heart beat\n")
                    || w.received().starts_with(b"keep me\n"))
            );
            x.advance(1_000);
        });
        let rx = text(&w.received());
        if smoltcp(behaviour) {
            assert_eq!(rx, "heart beat\n", "lost while unreachable");
        } else {
            assert_eq!(rx, "keep me\nheart beat\n");
            assert_eq!(count(&w.all_sent(), b"keep me"), 1);
        }
        w.assert_clean();
    }
}

// ---------------------------------------------------------------------------
// The network and the radio.

#[test]
fn network_loss_flight_mode_and_recovery_with_tutorial_timings() {
    let w = World::tutorial(Behaviour::CONFORMANT);
    w.modem.set_up(false);
    w.drive(512, |x| {
        // 5 minutes without network, then 20 s of flight mode, then wait
        // again.
        x.advance_to(400_000);
        assert_eq!(
            w.modem_log(),
            [(300_000, ModemEv::RadioOff), (320_000, ModemEv::RadioOn)]
        );
        assert_eq!(w.stats().connect_attempts, 0);
        assert_eq!(w.link.status(), Status::WaitingForNetwork);
        // Up: connect at once.
        w.modem.set_up(true);
        assert!(x.run_until(0, || w.link.status() == Status::Connected));
        assert_eq!(w.sent_at(b"heart beat"), [400_000]);

        // Lost while connected: the socket goes at once, messages wait.
        x.advance_to(405_000);
        w.modem.set_up(false);
        assert!(x.run_until(0, || w.link.status() != Status::Connected));
        w.link.try_enqueue(b"while down").unwrap();
        x.advance_to(450_000);
        assert_eq!(w.stats().connect_attempts, 1, "no connects without network");
        w.modem.set_up(true);
        assert!(x.run_until(10_000, || w.link.status() == Status::Connected));
        assert_eq!(x.now(), 450_000);
        x.advance(1);
        assert!(w.received().starts_with(b"while down"));
        // And the 5-minute wait restarts from scratch next time, after the
        // 5 s pause that follows any close.
        let down = x.now();
        w.modem.set_up(false);
        x.advance_to(down + 5_000 + 300_000 + 20_000);
        let log = w.modem_log();
        assert_eq!(
            log[2..],
            [
                (down + 305_000, ModemEv::RadioOff),
                (down + 325_000, ModemEv::RadioOn)
            ]
        );
    });
    w.assert_clean();
}

// ---------------------------------------------------------------------------
// Stopping and starting the driver.

#[test]
fn run_can_be_dropped_and_started_again() {
    for network_while_stopped in [true, false] {
        let w = World::tutorial(Behaviour::CONFORMANT);
        w.drive(512, |x| {
            assert!(x.run_until(0, || w.link.status() == Status::Connected));
            x.advance(5_000);
        });
        // Stopped (dropping `run` closed its socket); meanwhile the network
        // may have gone, and the application queued something.
        w.modem.set_up(network_while_stopped);
        w.link.try_enqueue(b"queued while stopped").unwrap();
        w.net.clock().advance_to(20_000);
        w.drive(512, |x| {
            // Not "connected" to nothing: the old connection is closed, and
            // the retry delay that follows any close runs first.
            assert!(x.run_until(0, || w.link.status() == Status::BackingOff));
            let from = x.now();
            if !network_while_stopped {
                x.advance(10_000);
                assert_eq!(w.link.status(), Status::WaitingForNetwork);
                assert_eq!(w.stats().connect_attempts, 1, "no connect without network");
                w.modem.set_up(true);
                let up = x.now();
                assert!(x.run_until(1_000, || w.link.status() == Status::Connected));
                assert_eq!(x.now(), up, "connects as soon as the network is back");
            } else {
                assert!(x.run_until(10_000, || w.link.status() == Status::Connected));
                assert_eq!(x.now(), from + 5_000, "reconnects after the retry delay");
            }
            x.advance(10_000);
        });
        let rx = w.received();
        assert!(rx.starts_with(b"queued while stopped"), "{}", text(&rx));
        assert_eq!(count(&rx, b"heart beat"), 2, "{}", text(&rx));
        assert_eq!(w.stats().connects, 2);
        w.assert_clean();
    }
}

// ---------------------------------------------------------------------------
// Idle means idle.

#[test]
fn idle_driver_wakes_only_for_its_timers() {
    // Connected, nothing to do but heartbeats: one wake-up each.
    let w = World::new(
        Behaviour::CONFORMANT,
        Timing::default(),
        Config {
            idle_timeout: None,
            ..tutorial()
        },
    );
    w.drive(512, |x| {
        x.advance_to(599_999);
        assert_eq!(w.sent_at(b"heart beat").len(), 60);
        assert!(x.max_polls_per_second(1, 600) <= 1, "{:?}", x.polls);
        let total = x.polls_between(0, 600);
        assert!(total <= 62, "{total} polls in 600 virtual seconds");
    });

    // A hidden FIN and no idle timeout: the driver cannot know, and sits
    // there sending heartbeats into the void, still without spinning. (Why
    // the idle timeout matters on such a stack.)
    let w = World::new(
        Behaviour::SILENT,
        Timing::default(),
        Config {
            idle_timeout: None,
            ..tutorial()
        },
    );
    w.drive(512, |x| {
        x.advance(1);
        w.peer(|p| p.fin());
        x.advance_to(600_000);
        assert_eq!(w.link.status(), Status::Connected);
        // The heartbeats at 10, 20 ... 600 s.
        assert_eq!(w.net_stats().lost_after_fin, 60 * 10);
        assert!(x.polls_between(0, 600) <= 70, "{:?}", x.polls);
    });

    // A connect that hangs with no connect timeout: nothing to do at all.
    let w = World::new(
        Behaviour::SMOLTCP_NAL,
        Timing::default(),
        Config {
            connect_timeout: None,
            ..tutorial()
        },
    );
    w.peer(|p| p.accept = Accept::Refuse);
    w.drive(512, |x| {
        x.advance_to(600_000);
        assert_eq!(w.link.status(), Status::Connecting);
        assert!(x.polls_between(0, 600) <= 3, "{:?}", x.polls);
    });
}

// ---------------------------------------------------------------------------
// The harness itself can fail.

/// A future that always wakes itself: never idle.
struct Spin;

impl Future for Spin {
    type Output = Result<Infallible, RunError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
#[should_panic(expected = "spins at 0 ms")]
fn the_executor_catches_a_future_that_never_goes_idle() {
    let clock = VirtualClock::new(0);
    let mut spin = Spin;
    let spin: Pin<&mut Spin> = Pin::new(&mut spin);
    let mut x = Exec::new(spin, &clock);
    x.advance(1_000);
}

#[test]
#[should_panic(expected = "spins at 5 ms")]
fn the_clock_catches_a_loop_on_an_expired_deadline() {
    let clock = VirtualClock::new(0);
    let vclock = VClock {
        clock: &clock,
        instant: Cell::new(0),
        reads: Cell::new(0),
    };
    // Sleeps until "now" forever: never pending, so never idle.
    let mut fut = pin!(async {
        clock.sleep(5).await;
        loop {
            let now = vclock.now();
            vclock.sleep_until(now).await;
        }
    });
    let mut x = Exec::new(fut.as_mut(), &clock);
    x.advance(1_000);
}
