//! # longlink-core
//!
//! Keeps a long-lived TCP or UDP connection to one server alive: waits for
//! the network, cycles the radio when it does not come, connects, retries,
//! resets the data link after repeated failures, sends heartbeats, answers the
//! server, and queues outgoing messages without ever losing one. It is the
//! client of the Luat long-connection tutorial, rebuilt as a
//! **sans-IO state machine**: `#![no_std]`, no allocation, no sockets, no
//! clock reads, no globals.
//!
//! ## The model
//!
//! A [`Connection`] is pure state. The caller (a *shim*: `longlink-nal`,
//! `longlink-nal-async`, `longlink-std`, or your own loop) owns the socket,
//! the modem and the clock, and:
//!
//! 1. **feeds events in** with `handle_*`, always passing the current
//!    monotonic time: [`handle_network`](Connection::handle_network),
//!    [`handle_connected`](Connection::handle_connected),
//!    [`handle_connect_failed`](Connection::handle_connect_failed),
//!    [`handle_received`](Connection::handle_received),
//!    [`handle_written`](Connection::handle_written),
//!    [`handle_closed`](Connection::handle_closed),
//!    [`handle_io_error`](Connection::handle_io_error),
//!    [`handle_timeout`](Connection::handle_timeout),
//!    [`handle_wall_clock`](Connection::handle_wall_clock);
//! 2. **drains outputs** with `poll_*`: [`poll_action`](Connection::poll_action)
//!    until `None` (connect, close, reset the link, radio off/on), then
//!    [`poll_transmit`](Connection::poll_transmit) (bytes to write) until
//!    `None` or the socket would block;
//! 3. **reads** into [`receive_buffer`](Connection::receive_buffer) when it is
//!    not empty and the socket is readable;
//! 4. **sleeps** until [`poll_timeout`](Connection::poll_timeout), socket
//!    readiness, or the application calling [`enqueue`](Connection::enqueue),
//!    then re-reads the clock and starts again at 1.
//!
//! Every `handle_*` call first runs the timers due at its `now`, so calling
//! [`handle_timeout`](Connection::handle_timeout) early, late or twice is
//! harmless, and the deadline from `poll_timeout` is never before the last
//! `now`. Time is a [`time::Instant`] in milliseconds from any origin.
//!
//! ## The tutorial's behaviour, and where we differ
//!
//! [`Config::default()`] is the tutorial: wait up to 5 min for the network,
//! then 20 s of flight mode; 5 s between connect attempts; a link reset after
//! 5 consecutive failures (the count also resets on success and when the
//! network goes away); `heart beat` every 10 s while connected; raw framing.
//! The ready handler [`TestProtocol`] answers the tutorial's test commands
//! (`back...`, `bin`, `time`). Where the tutorial is weak, this crate is not:
//!
//! - a message leaves the queue only once fully written; a partial write
//!   resumes where it stopped; a message cut by a disconnect is sent again,
//!   whole, on the next connection;
//! - queued data is offered to the socket immediately, not after a 2 s
//!   receive timeout;
//! - at most one heartbeat is ever pending; the queue is bounded (`Q` bytes)
//!   and a full queue is an explicit [`QueueError::Full`];
//! - [`Framing`]: raw (tutorial), newline-delimited, or 2-byte length prefix;
//!   a frame larger than the receive buffer is counted and resets the
//!   connection, never truncated;
//! - optional idle timeout (dead-peer detection), connect timeout, and capped
//!   exponential backoff with jitter from a caller-supplied seed;
//! - `time` is never answered with a 1970 timestamp (see [`TestProtocol`]);
//! - replies that do not fit the queue make the state machine stop reading
//!   (backpressure), so a flood from the server neither drops replies nor
//!   grows memory.
//!
//! ## Memory
//!
//! `Connection<H, Q, R>` holds everything inline: the outgoing queue (`Q`
//! bytes, 4 bytes of header per message), the receive buffer (`R` bytes) and
//! the fixed state. The fixed part is `size_of::<Connection<(), 0, 0>>()`:
//! checked against the 256-byte goal at build time on 32-bit targets (a `const` assertion in this file), and printed by the QEMU firmware.
//!
//! ## Example: the call loop
//!
//! A complete loop over a pretend socket that accepts everything and where the
//! server sends `bin` once:
//!
//! ```
//! use longlink_core::{Action, Config, Connection, TestProtocol};
//! use longlink_core::time::{Duration, Instant};
//!
//! // 256-byte queue, 128-byte receive buffer.
//! let mut conn: Connection<TestProtocol, 256, 128> =
//!     Connection::new(Config::default(), TestProtocol::default(), Instant::ZERO).unwrap();
//!
//! let mut now = Instant::ZERO;
//! let mut wire = Vec::new(); // what the pretend socket sent
//! let mut server_says: Option<&[u8]> = Some(b"bin");
//!
//! conn.handle_network(now, true); // the modem got an IP address
//! conn.enqueue(b"hello").unwrap(); // allowed at any time
//!
//! for _ in 0..10 {
//!     // 2. drain actions
//!     while let Some(action) = conn.poll_action() {
//!         match action {
//!             Action::Connect { .. } => conn.handle_connected(now).unwrap(),
//!             Action::Close | Action::ResetLink | Action::RadioOff | Action::RadioOn => {}
//!         }
//!     }
//!     // 2. write what is queued (this socket takes everything)
//!     while let Some(bytes) = conn.poll_transmit() {
//!         wire.extend_from_slice(bytes);
//!         let n = bytes.len();
//!         conn.handle_written(now, n).unwrap();
//!     }
//!     // 3. read if there is room and data
//!     if let Some(data) = server_says.take() {
//!         let buf = conn.receive_buffer();
//!         buf[..data.len()].copy_from_slice(data);
//!         conn.handle_received(now, data.len()).unwrap();
//!         continue;
//!     }
//!     // 4. sleep until the next deadline
//!     now = conn.poll_timeout().unwrap();
//!     conn.handle_timeout(now);
//! }
//! // Our message (queued first), the heartbeat on connect, the reply to
//! // `bin`, then one heartbeat every 10 s (the one due at 90 s is still queued).
//! assert_eq!(now, Instant::ZERO + Duration::from_secs(90));
//! assert_eq!(conn.queued(), 1);
//! let mut expected = b"helloheart beat\x11\x22\x33".to_vec();
//! expected.extend_from_slice(&b"heart beat".repeat(8));
//! assert_eq!(wire, expected);
//! ```
//!
//! ## Features
//!
//! - `defmt`: derive `defmt::Format` on public types, log through defmt.
//! - `log`: log through the `log` crate.
//! - `std`: `std::error::Error` impls and `std::time::Duration` conversions.
//! - `acked`: the acknowledged delivery mode (`Delivery::Acked`, the
//!   `acked` module: the wire format of `PROTOCOL.md` and its server side);
//!   off, the state machine carries none of its code or state.
//! - `arbitrary` (implies `std`): `arbitrary::Arbitrary` for [`Config`] and
//!   its parts (the `arbitrary` module): valid `Config`s,
//!   framings and timings for a user's own cargo-fuzz target; see
//!   longlink-sim for driving a `Connection` from fuzz input.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod fmt;

#[cfg(feature = "acked")]
pub mod acked;
#[cfg(feature = "arbitrary")]
pub mod arbitrary;
mod config;
mod connection;
pub mod driver;
mod event;
pub mod framing;
mod handler;
mod queue;
pub mod rng;
pub mod sntp;
pub mod time;

pub use config::{
    payload, Backoff, Config, ConfigError, Payload, Remote, Transport, HEARTBEAT_MAX,
    TUTORIAL_HEARTBEAT,
};
#[cfg(feature = "acked")]
pub use config::{Acked, Delivery};
pub use connection::{
    Action, Connection, Error, ImplausibleTime, QueueError, Stats, MIN_PLAUSIBLE_UNIX_MS,
};
pub use event::{ConnectFailure, Disconnect, Event, Status};
pub use framing::Framing;
pub use handler::{Context, Handler, Reply, ReplyFull, TestProtocol, BIN_REPLY};

// The project's RAM goal (README): at most 256 bytes of fixed state on a 32-bit MCU,
// queue and receive buffer aside. Checked at build time for every 32-bit
// target CI builds (thumbv6m, thumbv7em, riscv32imc). The acknowledged mode
// adds its own state (sequence numbers, a timer, counters, its settings):
// bounded at 320 bytes in all.
#[cfg(all(target_pointer_width = "32", not(feature = "acked")))]
const _: () = assert!(
    core::mem::size_of::<Connection<(), 0, 0>>() <= 256,
    "the state machine's fixed overhead grew beyond 256 bytes"
);
#[cfg(all(target_pointer_width = "32", feature = "acked"))]
const _: () = assert!(
    core::mem::size_of::<Connection<(), 0, 0>>() <= 320,
    "the acknowledged state machine's fixed overhead grew beyond 320 bytes"
);
