//! A deterministic fault simulator for the state machine, in the spirit of
//! quinn-proto's test `Pair` and smoltcp's netsim.
//!
//! [`run_seed`] builds a world from one `u64`: a random [`Config`]
//! (transport, framing, every duration, heartbeat, idle and connect
//! timeouts, fixed or exponential backoff, queue and receive sizes), a mix
//! of faults, and a virtual clock. It then runs the core against a simulated
//! network and server until a random end time, drains (faults off), and
//! checks that everything owed was delivered. The same seed always gives
//! the same run.
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
//! - every message the core handled gets the test protocol's reply (from an
//!   independent reference), whole, in order, exactly once; which messages
//!   were handled and which frames must be rejected comes from a reference
//!   decoder over the bytes delivered;
//! - `Stats` agree with what the simulation counted (attempts, connects,
//!   failures, timeouts, disconnects, idle timeouts, link resets, radio
//!   cycles, messages and bytes in and out, heartbeats, rejected frames,
//!   dropped replies, discarded bytes, full-queue refusals).
//!
//! For UDP the "wire" is what the client's socket took: loss on the way to
//! the server is outside what a client can know.
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

mod harness;
mod ledger;
mod oracle;
mod world;

pub use harness::{Event, Harness, Socket};
pub use ledger::reference_reply;
pub use world::{run_seed, run_seed_traced, SimReport};

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
