//! Property tests: random configs and random event sequences, checked against
//! a shadow model of the tutorial's client after every single call.
//!
//! The model predicts, for each operation, the status, the exact actions, the
//! result of the call, the heartbeat and idle timers and the failure count;
//! the app messages it enqueued must come out of `poll_transmit` whole, in
//! order and exactly once, and a cut message must be offered again whole on
//! the next connection. Time only moves in `Advance`/`ToDeadline` operations,
//! so every timer of the state machine fires in one of those and the model
//! can say exactly which.
//!
//! `PROPTEST_CASES=<n>` scales the run (proptest's own setting; 256 per
//! test by default).
//!
//! Why this model and the simulator's oracle (`tests/src/sim/oracle.rs`)
//! both exist: they check the same machine from two sides. This one is
//! exact and small (it predicts every action of every call, and proptest
//! shrinks a failure to a handful of operations with tiny buffers); the
//! oracle is coarser but runs inside a world of faults (refused and hanging
//! connects, partial writes, resets, UDP loss) at a million seeds. Merging
//! them is planned with the published simulator, whose proptest strategies
//! will drive the oracle directly.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test, with its location"
)]

use std::collections::VecDeque;

use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Action, Backoff, Config, Connection, Error, Framing, QueueError, Status, TestProtocol,
    Transport, MIN_PLAUSIBLE_UNIX_MS,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Queue header bytes per message (the queue's storage format, documented on
/// `Connection`'s memory section: 4 bytes per message).
const HEADER: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Network(bool),
    Advance(u32),
    ToDeadline,
    /// A clock that goes backwards: the state machine must clamp it.
    ClockBack(u16),
    ConnectOk,
    ConnectFail,
    Enqueue {
        pad: u8,
        newline: bool,
    },
    Write(WriteKind),
    /// The server queues a request for the client.
    Serve(Request),
    /// The socket delivers up to `n` bytes (TCP) or one datagram (UDP).
    Read(u8),
    Closed,
    IoError,
    WallClock(u64),
}

#[derive(Clone, Debug)]
enum WriteKind {
    All,
    Part(u8),
    WouldBlock,
}

#[derive(Clone, Debug)]
enum Request {
    Back(u8),
    Bin,
    Time,
    Garbage(Vec<u8>),
    Oversize,
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![1u64..100, 100u64..20_000, 20_000u64..400_000].prop_map(Duration::from_millis)
}

fn config() -> impl Strategy<Value = Config> {
    (
        (
            prop_oneof![Just(Transport::Tcp), Just(Transport::Udp)],
            prop_oneof![
                Just(Framing::Raw),
                Just(Framing::Lines),
                Just(Framing::Len16)
            ],
            duration(),
            duration(),
            duration(),
            1u16..8,
        ),
        (
            proptest::option::weighted(0.8, duration()),
            prop_oneof![Just(&b"heart beat"[..]), Just(&b"hb"[..]), Just(&b"h"[..])],
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of(0u64..200_000),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (transport, framing, network_wait, radio_off, retry_delay, max_failures),
                (heartbeat_interval, heartbeat_payload, idle_timeout, connect_timeout, cap, seed),
            )| Config {
                transport,
                framing,
                network_wait,
                radio_off,
                retry_delay,
                max_failures,
                heartbeat_interval,
                heartbeat_payload: longlink_core::payload(heartbeat_payload).unwrap(),
                heartbeat_when_idle: false,
                idle_timeout,
                connect_timeout,
                backoff: match cap {
                    None => Backoff::Fixed,
                    Some(extra) => Backoff::Exponential {
                        max: Duration::from_millis(retry_delay.as_millis() + extra),
                    },
                },
                seed,
                #[cfg(feature = "acked")]
                delivery: longlink_core::Delivery::Socket,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let request = prop_oneof![
        (0u8..40).prop_map(Request::Back),
        Just(Request::Bin),
        Just(Request::Time),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Request::Garbage),
        Just(Request::Oversize),
    ];
    let write = prop_oneof![
        4 => Just(WriteKind::All),
        2 => any::<u8>().prop_map(WriteKind::Part),
        1 => Just(WriteKind::WouldBlock),
    ];
    prop_oneof![
        2 => any::<bool>().prop_map(Op::Network),
        4 => prop_oneof![0u32..50, 0u32..20_000, 0u32..600_000].prop_map(Op::Advance),
        3 => Just(Op::ToDeadline),
        1 => any::<u16>().prop_map(Op::ClockBack),
        3 => Just(Op::ConnectOk),
        2 => Just(Op::ConnectFail),
        4 => (any::<u8>(), prop::bool::weighted(0.05)).prop_map(|(pad, newline)| Op::Enqueue { pad, newline }),
        6 => write.prop_map(Op::Write),
        4 => request.prop_map(Op::Serve),
        5 => any::<u8>().prop_map(Op::Read),
        1 => Just(Op::Closed),
        1 => Just(Op::IoError),
        1 => prop_oneof![
            0..MIN_PLAUSIBLE_UNIX_MS,
            MIN_PLAUSIBLE_UNIX_MS..MIN_PLAUSIBLE_UNIX_MS * 2
        ]
        .prop_map(Op::WallClock),
    ]
}

/// The model's view of where the state machine is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    WaitNet {
        since: u64,
    },
    RadioOff {
        since: u64,
    },
    Backoff {
        due: u64,
    },
    /// The `Connect` action was taken at `since`.
    Connecting {
        since: u64,
    },
    Connected {
        hb_due: Option<u64>,
        idle_due: Option<u64>,
    },
}

impl Phase {
    fn status(self) -> Status {
        match self {
            Phase::WaitNet { .. } => Status::WaitingForNetwork,
            Phase::RadioOff { .. } => Status::RadioOff,
            Phase::Backoff { .. } => Status::BackingOff,
            Phase::Connecting { .. } => Status::Connecting,
            Phase::Connected { .. } => Status::Connected,
        }
    }
}

/// Actions in the order the state machine emits them (see `poll_action`).
#[derive(Default)]
struct Expected {
    close: bool,
    reset: bool,
    radio_off: bool,
    radio_on: bool,
    connect: bool,
}

impl Expected {
    fn list(&self, transport: Transport) -> Vec<Action> {
        let mut v = Vec::new();
        let flags = [
            (self.close, Action::Close),
            (self.reset, Action::ResetLink),
            (self.radio_off, Action::RadioOff),
            (self.radio_on, Action::RadioOn),
            (self.connect, Action::Connect { transport }),
        ];
        for (on, a) in flags {
            if on {
                v.push(a);
            }
        }
        v
    }
}

struct Model<const Q: usize, const R: usize> {
    c: Connection<TestProtocol, Q, R>,
    cfg: Config,
    /// The latest `now` passed in (the state machine clamps to it).
    now: u64,
    phase: Phase,
    network: bool,
    failures: u16,
    /// App frames enqueued and not yet fully written, in order.
    apps: VecDeque<Vec<u8>>,
    next_id: u32,
    /// Bytes of the head frame written on the current connection.
    partial: usize,
    /// Time of the last `Connect` action, and whether the network went down
    /// (which restarts the connect logic at once) since then.
    last_connect: Option<u64>,
    /// Server data not yet read by the client, per connection.
    stream: Vec<u8>,
    datagrams: VecDeque<Vec<u8>>,
    bytes_out: u64,
    bytes_in: u64,
    frames_out: u32,
    heartbeats_out: u32,
    actions_seen: usize,
}

fn heartbeats_issued<const Q: usize, const R: usize>(c: &Connection<TestProtocol, Q, R>) -> u64 {
    let pending = c.queued_frames().filter(|(_, hb)| *hb).count() as u64;
    u64::from(c.stats().heartbeats_sent) + u64::from(c.stats().heartbeats_skipped) + pending
}

/// The message inside a queued frame.
fn payload(framing: Framing, frame: &[u8]) -> &[u8] {
    match framing {
        Framing::Raw => frame,
        Framing::Lines => &frame[..frame.len().saturating_sub(1)],
        Framing::Len16 => frame.get(2..).unwrap_or_default(),
    }
}

fn encode(framing: Framing, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0; msg.len() + framing.overhead()];
    let n = framing.encode(msg, &mut out).unwrap();
    out.truncate(n);
    out
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        prop_assert!($cond, $($fmt)*)
    };
}

impl<const Q: usize, const R: usize> Model<Q, R> {
    fn new(cfg: Config) -> Self {
        let c = Connection::new(cfg.clone(), TestProtocol::default(), Instant::ZERO).unwrap();
        Model {
            c,
            cfg,
            now: 0,
            phase: Phase::WaitNet { since: 0 },
            network: false,
            failures: 0,
            apps: VecDeque::new(),
            next_id: 0,
            partial: 0,
            last_connect: None,
            stream: Vec::new(),
            datagrams: VecDeque::new(),
            bytes_out: 0,
            bytes_in: 0,
            frames_out: 0,
            heartbeats_out: 0,
            actions_seen: 0,
        }
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn retry_range(&self) -> (u64, u64) {
        let base = self.cfg.retry_delay.as_millis();
        match self.cfg.backoff {
            Backoff::Fixed => (base, base),
            Backoff::Exponential { max } => (base, max.as_millis()),
        }
    }

    /// A failed connect attempt at `now` (refused, timed out, closed early).
    fn fail(&mut self, e: &mut Expected) {
        self.failures += 1;
        e.close = true;
        if self.failures == self.cfg.max_failures {
            e.reset = true;
            self.failures = 0;
        }
        self.enter_backoff();
    }

    /// The backoff deadline is drawn by the state machine (jitter); the model
    /// takes it after the step and checks its range.
    fn enter_backoff(&mut self) {
        self.phase = Phase::Backoff { due: u64::MAX };
    }

    fn drop_connection(&mut self, e: &mut Expected) {
        e.close = true;
        self.enter_backoff();
    }

    fn start_connect(&mut self, e: &mut Expected) {
        e.connect = true;
        self.phase = Phase::Connecting { since: self.now };
    }

    fn next_due(&self) -> Option<u64> {
        let c = &self.cfg;
        match self.phase {
            Phase::WaitNet { since } => Some(since + c.network_wait.as_millis()),
            Phase::RadioOff { since } => Some(since + c.radio_off.as_millis()),
            Phase::Backoff { due } => Some(due),
            Phase::Connecting { since } => c.connect_timeout.map(|t| since + t.as_millis()),
            Phase::Connected { hb_due, idle_due } => match (hb_due, idle_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn heartbeat_on(&self) -> bool {
        self.cfg.heartbeat_interval.is_some()
    }

    /// Time moves to `to`: the model fires what is due, then the machine does.
    fn advance(&mut self, to: u64, e: &mut Expected, hb: &mut u64, idle: &mut u32) {
        let to = to.max(self.now);
        self.now = to;
        let cfg = self.cfg.clone();
        match self.phase {
            Phase::WaitNet { since } => {
                if to >= since + cfg.network_wait.as_millis() {
                    e.radio_off = true;
                    self.phase = Phase::RadioOff { since: to };
                }
            }
            Phase::RadioOff { since } => {
                if to >= since + cfg.radio_off.as_millis() {
                    e.radio_on = true;
                    if self.network {
                        self.start_connect(e);
                    } else {
                        self.phase = Phase::WaitNet { since: to };
                    }
                }
            }
            Phase::Backoff { due } => {
                if to >= due {
                    // The retry delay also runs after a network loss; if the
                    // network is still down then, wait for it.
                    if self.network {
                        self.start_connect(e);
                    } else {
                        self.phase = Phase::WaitNet { since: to };
                    }
                }
            }
            Phase::Connecting { since } => {
                if let Some(ct) = cfg.connect_timeout {
                    if to >= since + ct.as_millis() {
                        self.fail(e);
                    }
                }
            }
            Phase::Connected { hb_due, idle_due } => {
                let hb_fires = hb_due.is_some_and(|d| to >= d);
                let idle_fires = idle_due.is_some_and(|d| to >= d);
                // Earlier deadline first; on a tie the heartbeat goes first.
                let hb_first = match (hb_due, idle_due) {
                    (Some(h), Some(i)) => h <= i,
                    _ => true,
                };
                let mut next_hb = hb_due;
                if hb_fires && (hb_first || !idle_fires) {
                    *hb += 1;
                    next_hb = cfg.heartbeat_interval.map(|i| to + i.as_millis());
                }
                if idle_fires {
                    *idle += 1;
                    self.drop_connection(e);
                } else {
                    self.phase = Phase::Connected {
                        hb_due: next_hb,
                        idle_due,
                    };
                }
            }
        }
        self.c.handle_timeout(self.t());
    }

    fn connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    fn fresh_connection_state(&mut self) {
        self.partial = 0;
        self.stream.clear();
        self.datagrams.clear();
    }

    fn used(&self) -> usize {
        self.c.queued_frames().map(|(f, _)| f.len() + HEADER).sum()
    }

    fn hb_slot(&self) -> usize {
        if self.heartbeat_on() {
            HEADER + self.cfg.heartbeat_payload.len() + self.cfg.framing.overhead()
        } else {
            0
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let before = *self.c.stats();
        let hb_before = heartbeats_issued(&self.c);
        let hb_pending_before = self.c.queued_frames().any(|(_, hb)| hb);
        let status_before = self.c.status();
        let mut e = Expected::default();
        let mut hb_expected = 0u64;
        let mut idle_expected = 0u32;
        let mut connects_expected = 0u32;
        let mut received_data = false;
        let mut may_reject = false;
        let cfg = self.cfg.clone();
        let t = self.t();

        match op {
            Op::Advance(ms) => {
                let to = self.now + u64::from(*ms);
                self.advance(to, &mut e, &mut hb_expected, &mut idle_expected);
            }
            Op::ToDeadline => {
                if let Some(d) = self.c.poll_timeout() {
                    self.advance(d.as_millis(), &mut e, &mut hb_expected, &mut idle_expected);
                }
            }
            Op::ClockBack(ms) => {
                // Nothing may fire: the clamped time was already processed.
                self.c.handle_timeout(Instant::from_millis(
                    self.now.saturating_sub(u64::from(*ms)),
                ));
            }
            Op::Network(up) => {
                self.c.handle_network(t, *up);
                if *up != self.network {
                    self.network = *up;
                    if *up {
                        if let Phase::WaitNet { .. } = self.phase {
                            self.start_connect(&mut e);
                        }
                    } else {
                        self.failures = 0;
                        // As the tutorial: close, pause the retry delay, then
                        // look at the network again.
                        match self.phase {
                            Phase::Connected { .. } | Phase::Connecting { .. } => {
                                self.drop_connection(&mut e);
                            }
                            Phase::Backoff { .. }
                            | Phase::WaitNet { .. }
                            | Phase::RadioOff { .. } => {}
                        }
                    }
                }
            }
            Op::ConnectOk => {
                let r = self.c.handle_connected(t);
                if self.connecting() {
                    check!(r == Ok(()), "handle_connected while connecting: {r:?}");
                    connects_expected = 1;
                    self.failures = 0;
                    let hb_due = cfg.heartbeat_interval.map(|i| {
                        hb_expected += 1;
                        self.now + i.as_millis()
                    });
                    let idle_due = cfg.idle_timeout.map(|i| self.now + i.as_millis());
                    self.phase = Phase::Connected { hb_due, idle_due };
                    self.fresh_connection_state();
                } else {
                    check!(
                        r == Err(Error::InvalidState),
                        "handle_connected in {:?}: {r:?}",
                        self.phase
                    );
                }
            }
            Op::ConnectFail => {
                let r = self.c.handle_connect_failed(t);
                if self.connecting() {
                    check!(r == Ok(()), "handle_connect_failed while connecting: {r:?}");
                    self.fail(&mut e);
                } else {
                    check!(
                        r == Err(Error::InvalidState),
                        "handle_connect_failed in {:?}: {r:?}",
                        self.phase
                    );
                }
            }
            Op::Closed | Op::IoError => {
                let r = if matches!(op, Op::Closed) {
                    self.c.handle_closed(t)
                } else {
                    self.c.handle_io_error(t)
                };
                if self.connecting() {
                    check!(r == Ok(()), "close while connecting: {r:?}");
                    self.fail(&mut e);
                } else if self.connected() {
                    check!(r == Ok(()), "close while connected: {r:?}");
                    self.drop_connection(&mut e);
                } else {
                    check!(
                        r == Err(Error::InvalidState),
                        "close in {:?}: {r:?}",
                        self.phase
                    );
                }
            }
            Op::Enqueue { pad, newline } => {
                let mut msg = format!("APP{}:", self.next_id).into_bytes();
                msg.extend((0..*pad % 80).map(|i| b'a' + i % 26));
                if *newline {
                    msg.push(b'\n');
                }
                let frame_len = msg.len() + cfg.framing.overhead();
                let hb_pending = self.c.queued_frames().any(|(_, hb)| hb);
                let reserve = if hb_pending { 0 } else { self.hb_slot() };
                let expected = if cfg.framing == Framing::Lines && msg.contains(&b'\n') {
                    Err(QueueError::Unframeable)
                } else if frame_len > Q.saturating_sub(self.hb_slot() + HEADER) {
                    Err(QueueError::TooLarge)
                } else if self.used() + HEADER + frame_len + reserve > Q {
                    Err(QueueError::Full)
                } else {
                    Ok(())
                };
                let room = self.c.queue_room();
                let r = self.c.enqueue(&msg);
                check!(r == expected, "enqueue of {} bytes (used {}, reserve {reserve}): {r:?}, expected {expected:?}", frame_len, self.used());
                if r.is_ok() {
                    check!(
                        msg.len() <= room,
                        "queue_room {room} < accepted {}",
                        msg.len()
                    );
                    self.apps.push_back(encode(cfg.framing, &msg));
                    self.next_id += 1;
                } else if r == Err(QueueError::Full) {
                    check!(
                        msg.len() > room,
                        "queue_room {room} but {} refused",
                        msg.len()
                    );
                }
            }
            Op::Write(kind) => self.write(kind)?,
            Op::Serve(req) => {
                if self.connected() {
                    let bytes = self.request_bytes(req);
                    match cfg.transport {
                        Transport::Tcp => self.stream.extend_from_slice(&bytes),
                        Transport::Udp => self.datagrams.push_back(bytes),
                    }
                }
            }
            Op::Read(n) => {
                if !self.connected() {
                    check!(
                        self.c.handle_received(t, 0) == Err(Error::InvalidState),
                        "receive while not connected"
                    );
                    check!(
                        self.c.receive_buffer().is_empty(),
                        "a buffer while not connected"
                    );
                } else {
                    match cfg.transport {
                        Transport::Tcp => {
                            let want = usize::from(*n).min(self.stream.len());
                            let room = self.c.receive_buffer().len();
                            let took = self.c.handle_received_bytes(t, &self.stream[..want]);
                            check!(
                                took == Ok(want.min(room)),
                                "TCP read of {want} into {room}: {took:?}"
                            );
                            let took = want.min(room);
                            self.stream.drain(..took);
                            self.bytes_in += took as u64;
                            received_data = took > 0;
                            may_reject = took > 0;
                        }
                        Transport::Udp => {
                            if let Some(d) = self.datagrams.front() {
                                let buf = self.c.receive_buffer();
                                if !buf.is_empty() {
                                    check!(
                                        buf.len() == R,
                                        "UDP buffer is all or nothing: {}",
                                        buf.len()
                                    );
                                    // Whole, or consumed and counted when it can
                                    // never fit (a driver reading R + 1 bytes
                                    // reports a truncated one the same way).
                                    let d = d.clone();
                                    let r = self.c.handle_received_bytes(t, &d);
                                    check!(r == Ok(d.len()), "UDP receive: {r:?}");
                                    self.datagrams.pop_front();
                                    self.bytes_in += d.len() as u64;
                                    received_data = true;
                                    may_reject = true;
                                }
                            }
                        }
                    }
                }
            }
            Op::WallClock(ms) => {
                let r = self.c.handle_wall_clock(t, *ms);
                check!(
                    r.is_ok() == (*ms >= MIN_PLAUSIBLE_UNIX_MS),
                    "wall clock {ms}: {r:?}"
                );
            }
        }

        // A frame rejection is the only drop the model does not predict by
        // itself (it would need the framing decoder): take it from the stats.
        let st = *self.c.stats();
        let rejected = st.frames_rejected - before.frames_rejected;
        check!(rejected <= 1, "{rejected} rejections in one step");
        if rejected == 1 {
            check!(
                may_reject || matches!(op, Op::Write(_)),
                "frame rejected without data received or written"
            );
            check!(
                cfg.framing != Framing::Raw || cfg.transport == Transport::Udp,
                "raw framing cannot reject a frame on a stream"
            );
            if cfg.transport == Transport::Tcp {
                // A stream out of step: reconnect. A bad datagram is only
                // dropped (it still counts as something received).
                self.drop_connection(&mut e);
            } else if let Phase::Connected { hb_due, .. } = self.phase {
                let idle_due = cfg.idle_timeout.map(|i| self.now + i.as_millis());
                self.phase = Phase::Connected { hb_due, idle_due };
            }
        } else if received_data {
            if let Phase::Connected { hb_due, .. } = self.phase {
                let idle_due = cfg.idle_timeout.map(|i| self.now + i.as_millis());
                self.phase = Phase::Connected { hb_due, idle_due };
            }
        }

        // Actions: exactly what the model expects, in the fixed order.
        let actions: Vec<Action> = core::iter::from_fn(|| self.c.poll_action()).collect();
        self.actions_seen += actions.len();
        let expected = e.list(cfg.transport);
        check!(
            actions == expected,
            "{op:?} at {}: actions {actions:?}, model expects {expected:?} (phase {:?})",
            self.now,
            self.phase
        );
        if e.close {
            self.fresh_connection_state();
        }
        if e.connect {
            // Attempts are at least retry_delay apart, a network that comes
            // and goes included.
            if let Some(prev) = self.last_connect {
                check!(
                    self.now - prev >= cfg.retry_delay.as_millis(),
                    "connect attempts at {prev} and {} closer than {:?}",
                    self.now,
                    cfg.retry_delay
                );
            }
            self.last_connect = Some(self.now);
        }
        if let Phase::Backoff { due: u64::MAX } = self.phase {
            let d = self.c.poll_timeout().map(Instant::as_millis);
            let (lo, hi) = self.retry_range();
            let delay = d.map(|d| d - self.now);
            check!(
                delay.is_some_and(|x| (lo..=hi).contains(&x)),
                "backoff delay {delay:?} outside [{lo}, {hi}]"
            );
            self.phase = Phase::Backoff {
                due: d.unwrap_or(u64::MAX),
            };
        }

        // Status, failure count, counters.
        check!(
            self.c.status() == self.phase.status(),
            "{op:?}: status {:?} (was {status_before:?}), model {:?}",
            self.c.status(),
            self.phase
        );
        check!(
            self.c.consecutive_failures() == self.failures,
            "failure count {} vs model {}",
            self.c.consecutive_failures(),
            self.failures
        );
        check!(
            self.network
                || matches!(
                    self.phase,
                    Phase::WaitNet { .. } | Phase::RadioOff { .. } | Phase::Backoff { .. }
                ),
            "active without network: {:?}",
            self.phase
        );
        check!(
            !self.network || !matches!(self.phase, Phase::WaitNet { .. }),
            "network up but still waiting for it"
        );
        check!(
            st.connects - before.connects == connects_expected,
            "connects counter"
        );
        check!(
            st.idle_timeouts - before.idle_timeouts == idle_expected,
            "idle timeouts: {} vs model {idle_expected}",
            st.idle_timeouts - before.idle_timeouts
        );
        check!(
            st.link_resets - before.link_resets == u32::from(e.reset),
            "link_resets counter"
        );
        check!(
            st.radio_cycles - before.radio_cycles == u32::from(e.radio_off),
            "radio_cycles counter"
        );
        check!(
            st.connect_attempts - before.connect_attempts == u32::from(e.connect),
            "connect_attempts counter"
        );
        check!(
            st.bytes_out == self.bytes_out && st.bytes_in == self.bytes_in,
            "byte counters"
        );
        check!(
            st.messages_out == self.frames_out && st.heartbeats_sent == self.heartbeats_out,
            "message counters"
        );

        // Heartbeats: exactly when due, never more than one pending.
        let hb_after = heartbeats_issued(&self.c);
        check!(
            hb_after - hb_before == hb_expected,
            "{op:?} at {}: {} heartbeats issued, model expects {hb_expected}",
            self.now,
            hb_after - hb_before
        );
        if hb_expected > 0 && hb_pending_before && !matches!(op, Op::Write(_)) {
            check!(
                st.heartbeats_skipped > before.heartbeats_skipped,
                "a pending heartbeat was not counted as skipped"
            );
        }
        let hb_frames = self.c.queued_frames().filter(|(_, hb)| *hb).count();
        check!(hb_frames <= 1, "{hb_frames} heartbeats pending");

        self.check_queue()?;

        // The deadline: exactly the model's next timer (so every cadence is
        // exact), never in the past, and no due timer left unfired.
        let deadline = self.c.poll_timeout().map(Instant::as_millis);
        let model_due = self.next_due();
        check!(
            deadline == model_due,
            "{op:?}: deadline {deadline:?}, model {model_due:?} ({:?})",
            self.phase
        );
        if let Some(d) = self.c.poll_timeout() {
            check!(
                d.as_millis() > self.now,
                "deadline {d:?} not after now {}",
                self.now
            );
        }
        Ok(())
    }

    fn request_bytes(&self, req: &Request) -> Vec<u8> {
        let framing = self.cfg.framing;
        match req {
            Request::Back(n) => encode(
                framing,
                format!("back {}", "x".repeat(usize::from(*n))).as_bytes(),
            ),
            Request::Bin => encode(framing, b"bin"),
            Request::Time => encode(framing, b"time"),
            Request::Garbage(g) => g.clone(),
            Request::Oversize => match framing {
                Framing::Raw => vec![b'z'; 2 * R],
                Framing::Lines => {
                    let mut v = vec![b'z'; R];
                    v.push(b'\n');
                    v
                }
                Framing::Len16 => {
                    let mut v = (R as u16).to_be_bytes().to_vec();
                    v.resize(2 + R, b'z');
                    v
                }
            },
        }
    }

    fn write(&mut self, kind: &WriteKind) -> Result<(), TestCaseError> {
        let t = self.t();
        let udp = self.cfg.transport == Transport::Udp;
        let frames: Vec<(Vec<u8>, bool)> = self
            .c
            .queued_frames()
            .map(|(f, hb)| (f.to_vec(), hb))
            .collect();
        let Some(rest) = self.c.poll_transmit().map(<[u8]>::to_vec) else {
            check!(
                !self.connected() || frames.is_empty(),
                "nothing to transmit while connected with {} queued",
                self.c.queued()
            );
            check!(
                self.c.handle_written(t, 0).is_ok() || !self.connected(),
                "zero write"
            );
            if !self.connected() {
                check!(
                    self.c.handle_written(t, 1) == Err(Error::InvalidState),
                    "write while not connected"
                );
            }
            return Ok(());
        };
        check!(self.connected(), "transmit offered while not connected");
        check!(!frames.is_empty(), "transmit without a queued frame");
        // Over UDP the head datagram; over TCP every queued frame back to
        // back. Either way resumed exactly where this connection stopped; a
        // new connection starts the head frame again from its first byte.
        let offered: Vec<u8> = if udp {
            frames[0].0.clone()
        } else {
            frames.iter().flat_map(|(f, _)| f.iter().copied()).collect()
        };
        check!(
            rest == offered[self.partial..],
            "transmit {rest:?} is not the unwritten rest of {offered:?} at {}",
            self.partial
        );
        let n = match kind {
            WriteKind::All => rest.len(),
            WriteKind::Part(_) if udp => rest.len(),
            WriteKind::Part(k) => usize::from(*k) % rest.len(),
            WriteKind::WouldBlock => 0,
        };
        check!(
            self.c.handle_written(t, rest.len() + 1) == Err(Error::InvalidLength),
            "a write beyond what was offered must be refused"
        );
        let r = self.c.handle_written(t, n);
        check!(r == Ok(()), "handle_written({n}): {r:?}");
        self.bytes_out += n as u64;
        self.partial += n;
        for (frame, hb) in &frames {
            if self.partial < frame.len() {
                break;
            }
            self.partial -= frame.len();
            self.frames_out += 1;
            if *hb {
                self.heartbeats_out += 1;
            } else if payload(self.cfg.framing, frame).starts_with(b"APP") {
                let expected = self.apps.pop_front();
                check!(
                    expected.as_deref() == Some(&frame[..]),
                    "app message written out of order or twice: {frame:?}, expected {expected:?}"
                );
            }
        }
        Ok(())
    }

    /// The queue is bounded and holds exactly the unwritten app messages,
    /// in order (interleaved with heartbeats and replies).
    fn check_queue(&self) -> Result<(), TestCaseError> {
        let used = self.used();
        check!(used <= Q, "queue uses {used} > {Q} bytes");
        let queued_apps: Vec<&[u8]> = self
            .c
            .queued_frames()
            .filter(|(f, hb)| !hb && payload(self.cfg.framing, f).starts_with(b"APP"))
            .map(|(f, _)| f)
            .collect();
        let model: Vec<&[u8]> = self.apps.iter().map(Vec::as_slice).collect();
        check!(
            queued_apps == model,
            "queued app messages {queued_apps:?} differ from the model {model:?}"
        );
        Ok(())
    }
}

fn run<const Q: usize, const R: usize>(cfg: Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m = Model::<Q, R>::new(cfg.clone());
    check!(
        m.c.poll_timeout() == Some(Instant::from_millis(cfg.network_wait.as_millis())),
        "first deadline"
    );
    for op in ops {
        m.step(op)?;
    }
    Ok(())
}

proptest! {

    /// Small buffers: a full queue, backpressure and rejected frames are common.
    #[test]
    fn small_buffers(cfg in config(), ops in proptest::collection::vec(op(), 1..200)) {
        run::<64, 16>(cfg, &ops)?;
    }

    #[test]
    fn roomy_buffers(cfg in config(), ops in proptest::collection::vec(op(), 1..200)) {
        run::<256, 96>(cfg, &ops)?;
    }
}
