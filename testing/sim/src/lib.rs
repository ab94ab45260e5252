//! # longlink-sim
//!
//! A deterministic fault simulator for a device's long connection: your
//! [`Handler`] and your [`Config`] inside
//! [longlink-core](longlink_core)'s state machine, a seeded world of
//! network trouble around it, your server's script on the far side, and
//! every invariant checked after every call. In the spirit of smoltcp's
//! `FaultInjector`, tokio's turmoil and quinn-proto's test `Pair`, for the
//! one connection an embedded device keeps.
//!
//! You describe your device and its server with a [`Scenario`]: the
//! handler to test, a **model** of what it must answer (the reply each
//! message deserves), the requests your server sends and what it makes of
//! each message it gets, the messages your application queues, and any
//! invariant of your own over the handler's state. [`Sim`] runs it in a
//! world built from one `u64` seed; the same seed always gives the same
//! run, and a failing seed comes back with its transcript.
//!
//! ```
//! use longlink_core::{Context, Handler, Reply, ReplyFull};
//! use longlink_sim::{Rng, Scenario, Sim};
//!
//! /// The device: answers `ping` with `pong`.
//! #[derive(Default)]
//! struct Pinger;
//!
//! impl Handler for Pinger {
//!     fn on_message(&mut self, m: &[u8], _: &Context, reply: &mut Reply<'_>) -> Result<(), ReplyFull> {
//!         if m == b"ping" {
//!             reply.write(b"pong")?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// What the server does, and what the device must answer.
//! #[derive(Clone, Default)]
//! struct PingServer;
//!
//! impl Scenario for PingServer {
//!     type Handler = Pinger;
//!     fn handler(&mut self) -> Pinger {
//!         Pinger
//!     }
//!     fn request(&mut self, _id: u64, rng: &mut Rng, _room: usize) -> Option<Vec<u8>> {
//!         Some(if rng.chance(0.8) { b"ping".to_vec() } else { b"noise".to_vec() })
//!     }
//!     fn reply(&mut self, message: &[u8], _: &Context) -> Option<Vec<u8>> {
//!         (message == b"ping").then(|| b"pong".to_vec())
//!     }
//! }
//!
//! for seed in 0..20 {
//!     // A queue of 256 bytes, a receive buffer of 64.
//!     let report = Sim::<PingServer, 256, 64>::new(PingServer).check(seed).unwrap();
//!     assert!(report.violation.is_none());
//! }
//! ```
//!
//! With [proptest](https://docs.rs/proptest), [`strategy`] draws configs
//! and fault mixes that shrink:
//!
//! ```
//! # use longlink_core::{Context, Handler, Reply, ReplyFull};
//! # use longlink_sim::{Rng, Scenario, Sim};
//! # #[derive(Clone, Default)] struct Echo;
//! # impl Handler for Echo {
//! #     fn on_message(&mut self, m: &[u8], _: &Context, r: &mut Reply<'_>) -> Result<(), ReplyFull> { r.write(m) }
//! # }
//! # impl Scenario for Echo {
//! #     type Handler = Echo;
//! #     fn handler(&mut self) -> Echo { Echo }
//! #     fn request(&mut self, id: u64, _: &mut Rng, _: usize) -> Option<Vec<u8>> { Some(format!("m{id}").into_bytes()) }
//! #     fn reply(&mut self, m: &[u8], _: &Context) -> Option<Vec<u8>> { Some(m.to_vec()) }
//! # }
//! use proptest::prelude::*;
//!
//! proptest!(ProptestConfig::with_cases(16), |(cfg in longlink_sim::strategy::config(), seed: u64)| {
//!     Sim::<Echo, 256, 64>::new(Echo).config(cfg).check(seed).unwrap();
//! });
//! ```
//!
//! For fuzzing, [`Harness`] takes one call at a time ([`Input`], with the
//! `arbitrary` feature) and checks the same invariants after each; see the
//! README's "Test your own device logic".
//!
//! ## The world
//!
//! A world is a random [`Config`] (unless you give one, or your scenario
//! draws its own: transport, framing, every duration, heartbeats always or
//! only when idle, idle and connect timeouts, fixed or exponential backoff,
//! and half the time the acknowledged mode), a mix of [`Faults`] (unless
//! you give one; [`Faults::default`] is a perfect network), and a virtual
//! clock. It runs the core
//! against a simulated network and server until a random end time
//! (20–240 s of virtual time), drains (faults off, up to 2 h), and checks
//! that everything owed was delivered.
//!
//! Faults, each on or off per seed with a random intensity: connect refused,
//! DNS failure, connect hanging until the connect timeout (or an OS-like
//! timeout), reset during the handshake, network down/up (short and longer
//! than the network wait), link resets that drop the IP for a while, partial
//! writes, would-block, reset in the middle of a send, peer close (graceful
//! after its data, or abrupt), silent peer (half-open; caught by the idle
//! timeout, or by a late socket error without one), UDP loss, duplication
//! and reordering of inbound datagrams, bursts of requests (coalesced and
//! split arbitrarily on TCP with `Lines`/`Len16`), oversize and garbage
//! frames in each framing, an application that fills the queue, wall-clock
//! jumps and implausible wall-clock readings.
//!
//! Checked after **every call** into the core (see [`Harness`]):
//!
//! - no panic; the deadline equals an independent model's (so radio cycle,
//!   retry spacing, link reset after exactly `max_failures`, heartbeat
//!   cadence and idle timeout are exact) and is never at or before `now`;
//! - the actions, status and failure count are the model's;
//! - app messages are written whole, in order, exactly once; a copy cut by
//!   a disconnect is a prefix of the message, which is then sent whole on a
//!   later connection; the queue holds exactly what is owed, bounded, with at
//!   most one heartbeat;
//! - every message the core handled gets the reply the scenario's model
//!   gives ([`Scenario::reply`]), whole, in order, exactly once; which
//!   messages were handled and which frames must be rejected comes from a
//!   reference decoder over the bytes delivered;
//! - the scenario's own invariant holds ([`Scenario::check`]);
//! - `Stats` agree with what the simulation counted (attempts, connects,
//!   failures, timeouts, disconnects, idle timeouts, link resets, radio
//!   cycles, messages and bytes in and out, heartbeats, rejected frames,
//!   dropped replies, discarded bytes, full-queue refusals).
//!
//! A reply the model gives that cannot be framed (`Lines` with a `\n` or a
//! trailing `\r`) or never fits the queue must be dropped and counted in
//! `Stats::replies_dropped`, not sent. Which frame comes next on the wire
//! (the next message owed, or a heartbeat) is read from the heartbeat tags
//! of the state machine's queue; the bytes must be exactly that frame.
//!
//! For UDP the "wire" is what the client's socket took: loss on the way to
//! the server is outside what a client can know.
//!
//! ## Limits
//!
//! Your replies are checked against your model, so a model that shares the
//! handler's mistake passes. The model is called once per message the state
//! machine handled, in order, with the simulator's own clock and wall
//! clock; the handler may be called more than once for a message (when its
//! reply did not fit). In the socket mode, [`Scenario::delivered`] reports
//! what the device's socket took whole, before the server's own losses.
//!
//! ## The server can lose what its socket accepted
//!
//! Every world has a server application behind the server's socket: it
//! reads what the client wrote at once or after a lag, and it can lose what
//! its socket accepted but it had not read yet: a stall (it stops reading)
//! then a reset, a crash and restart, and any close while bytes are unread.
//! The bytes are accounted for at the end: everything that reached the
//! server's socket was read or lost, and (socket mode) everything the
//! client's socket took reached it. In `Delivery::Socket` mode such loss is
//! expected: counted, never blamed on the client.
//!
//! ## The acknowledged mode
//!
//! Half the worlds run `Delivery::Acked` (random session, ack timeout,
//! retransmissions and window; `Len16` over TCP, `Raw` or `Len16` over
//! UDP). The server application runs `acked::Dedup` over what it reads and
//! sends its acks through the same faults as everything else (over UDP:
//! lost, duplicated, reordered, and so are the client's datagrams on the
//! way to it), plus bogus acks (another session, stale, far beyond
//! anything written); its requests are `M` frames. Its dedup record
//! survives its crashes, as `PROTOCOL.md` asks of an exactly-once server.
//! Checked, on top of the above:
//!
//! - **every message queued (app messages and replies) reaches the server
//!   application exactly once, in order, end to end**, under every fault;
//! - every `D` frame on the wire carries the payload queued under its seq;
//!   none is started again on a connection after its ack;
//! - the queue holds every message not acknowledged (by the acks the
//!   client must believe: its session, nothing beyond what it wrote), in
//!   seq order, and at most one heartbeat;
//! - `acks_ignored` and `messages_acked` agree with the simulation;
//! - "queued data but nothing to transmit" only while something written
//!   waits for its ack;
//! - the ack timer is not modelled to the millisecond (its jitter hashes
//!   the sequence number): while connected the deadline may come before the
//!   oracle's (never after it, never in the past), and each ack timeout
//!   (read from `Stats::ack_timeouts`) has the oracle drop the connection
//!   (TCP, or UDP after `max_retransmissions` in a row) or not.

#![forbid(unsafe_code)]

// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod harness;
mod input;
mod ledger;
mod oracle;
mod scenario;
pub mod strategy;
mod tutorial;
mod world;

pub use harness::{Event, Harness, Socket};
pub use input::Input;
pub use scenario::{default_app_message, server_frame, Failure, Scenario, Sim};
/// The two strategies most tests start from, at the top for
/// `proptest!(|(cfg in longlink_sim::config(), seed: u64)| ...)`.
pub use strategy::{config, faults};
pub use tutorial::{reference_reply, run_seed, run_seed_traced, Tutorial};
pub use world::{random_config, Faults, Report};

#[doc(no_inline)]
pub use longlink_core::{Config, Context, Handler};

/// An invariant that did not hold, at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time in milliseconds.
    pub at_ms: u64,
    /// What went wrong.
    pub message: String,
}

impl Violation {
    /// A violation at `at_ms`.
    pub fn new(at_ms: u64, message: String) -> Self {
        Violation { at_ms, message }
    }
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "at {} ms: {}", self.at_ms, self.message)
    }
}

impl std::error::Error for Violation {}

/// A small deterministic generator (splitmix64): the simulator's only
/// source of randomness.
#[derive(Clone, Debug)]
pub struct Rng(longlink_core::rng::SplitMix64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(longlink_core::rng::SplitMix64(seed ^ 0x5EED_1EAF_0DD5_EED5))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
