//! # longlink-nal
//!
//! Drives a [`longlink_core::Connection`] over any blocking
//! [`embedded-nal`](embedded_nal) 0.9 stack (`TcpClientStack` +
//! `UdpClientStack`, and `Dns` when the server is a host name).
//!
//! The state machine in `longlink-core` decides everything (when to connect,
//! retry, reset the link, send a heartbeat, what to answer, which datagram
//! to reject). This crate is the thin loop around it: it reads your
//! [`Clock`], asks your [`Modem`] whether the network is up, carries out the
//! core's actions on the stack and the modem, moves bytes between the socket
//! and the core, forwards the core's events to your hook, and tells you when
//! it next needs to run.
//!
//! ## The loop
//!
//! [`Driver::poll`] is one non-blocking step. It never waits and never spins:
//! it does what is possible now (a bounded amount of work) and returns the
//! next deadline. Your firmware sleeps (`WFI`) until that deadline *or* the
//! network interrupt, then calls `poll` again. Queue messages at any time with
//! [`Driver::enqueue`] and call `poll` right after: the message goes out in
//! that call, not at the next timer.
//!
//! **A stack that needs polling of its own** (smoltcp-nal's
//! `NetworkStack::poll`, which moves frames between smoltcp and the NIC) is
//! polled by your loop, not by this driver: call it before every
//! `Driver::poll`, and at least as often as smoltcp asks
//! (`Interface::poll_delay`), which is usually sooner than the driver's
//! deadline.
//!
//! - `nb::WouldBlock`, a partial TCP send and a send of 0 bytes are not errors:
//!   the unsent rest stays queued and goes out on a later `poll`. Over TCP one
//!   send carries everything queued (the core's transmit view spans
//!   messages). A message leaves the queue only once fully written.
//! - A send or receive error closes the socket; the core reconnects after its
//!   retry delay. A refused connect counts towards the link reset
//!   ([`Modem::reset_link`]).
//! - A connect that a stack never reports as refused is ended by the core's
//!   `connect_timeout`; a dead peer that a stack never reports is found by
//!   the core's `idle_timeout`. Set both unless your stack is
//!   [`Quirks::CONFORMANT`] (see the README's per-stack table).
//!
//! ## Stacks disagree: [`Quirks`]
//!
//! Implementations of the same traits differ on edge cases: `std-embedded-nal`
//! returns `Ok(0)` from a TCP receive at end of stream (as the trait docs
//! imply), `smoltcp-nal` returns `Ok(0)` when there is no data yet, sends a
//! fresh SYN for every `connect()` on a socket the server refused, and reports
//! a full UDP transmit buffer, an empty UDP receive and an oversized datagram
//! as errors. [`Quirks`] says which reading applies; everything else (a fresh
//! socket for every connect, no trust in a refused connect being reported,
//! sends accepted after the peer's FIN) the driver handles the same way on
//! every stack.
//!
//! ## Wall clock for `time`
//!
//! The tutorial syncs time by NTP at boot. Attach [`Sntp`] with
//! [`Driver::with_wall_clock`] to sync over the stack's UDP at start and
//! every hour, or feed a reading from an RTC or the modem with
//! [`Driver::set_wall_clock`] (both may be used together).
//!
//! ## Example
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddr};
//! use longlink_core::{time::Instant, Config, Event as CoreEvent, Remote, Status, TestProtocol, Transport};
//! use longlink_nal::{AlwaysUp, Driver, Event, Quirks};
//! # use embedded_nal::{nb, TcpClientStack, TcpErrorKind, UdpClientStack};
//! # use core::net::SocketAddr as Sa;
//! # /// A stack whose connects never complete: enough to compile the loop.
//! # struct MyStack;
//! # #[derive(Debug)] struct E;
//! # impl embedded_nal::TcpError for E { fn kind(&self) -> TcpErrorKind { TcpErrorKind::Other } }
//! # impl TcpClientStack for MyStack {
//! #     type TcpSocket = ();
//! #     type Error = E;
//! #     fn socket(&mut self) -> Result<(), Self::Error> { Ok(()) }
//! #     fn connect(&mut self, _: &mut (), _: Sa) -> nb::Result<(), Self::Error> { Err(nb::Error::WouldBlock) }
//! #     fn send(&mut self, _: &mut (), _: &[u8]) -> nb::Result<usize, Self::Error> { Err(nb::Error::WouldBlock) }
//! #     fn receive(&mut self, _: &mut (), _: &mut [u8]) -> nb::Result<usize, Self::Error> { Err(nb::Error::WouldBlock) }
//! #     fn close(&mut self, _: ()) -> Result<(), Self::Error> { Ok(()) }
//! # }
//! # impl UdpClientStack for MyStack {
//! #     type UdpSocket = ();
//! #     type Error = ();
//! #     fn socket(&mut self) -> Result<(), ()> { Ok(()) }
//! #     fn connect(&mut self, _: &mut (), _: Sa) -> Result<(), ()> { Ok(()) }
//! #     fn send(&mut self, _: &mut (), _: &[u8]) -> nb::Result<(), ()> { Ok(()) }
//! #     fn receive(&mut self, _: &mut (), _: &mut [u8]) -> nb::Result<(usize, Sa), ()> { Err(nb::Error::WouldBlock) }
//! #     fn close(&mut self, _: ()) -> Result<(), ()> { Ok(()) }
//! # }
//! # let mut ticks = 0u64;
//! # let mut sleep_until = |_deadline: Option<Instant>| {};
//! # let stack = MyStack;
//!
//! let server = Remote::Addr(SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 50798)));
//! let config = Config {
//!     transport: Transport::Tcp, // or Transport::Udp: nothing else changes
//!     ..Config::default()        // the tutorial's timings
//! };
//! // The clock: milliseconds since boot from a hardware timer.
//! let clock = move || { ticks += 10; Instant::from_millis(ticks) };
//! // 512-byte outgoing queue, 256-byte receive buffer.
//! let mut link: Driver<_, _, _, TestProtocol, 512, 256> =
//!     Driver::new(stack, clock, AlwaysUp, server, config, TestProtocol::default())
//!         .unwrap()
//!         .quirks(Quirks::CONFORMANT)
//!         .on_event(|event| {
//!             if let Event::Core(CoreEvent::Status(status)) = event {
//!                 let _led_on = status == Status::Connected; // the tutorial's netLed
//!             }
//!         });
//!
//! link.enqueue(b"hello").unwrap(); // kept until written, across reconnects
//! link.set_wall_clock(1_732_492_800_000).unwrap(); // from an RTC: `time` is answered
//! for _ in 0..3 {
//!     let next = link.poll(); // does the work possible now
//!     // feed the watchdog here, then sleep until `next` or the network IRQ
//!     sleep_until(next);
//! }
//! let stats = link.connection().stats(); // counters: connects, messages, bytes...
//! assert_eq!(stats.connect_attempts, 1);
//! ```
//!
//! ## Features
//!
//! - `defmt` / `log`: the core's log lines go to defmt or `log`.
#![no_std]
#![forbid(unsafe_code)]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embedded_nal::{nb, AddrType, Dns, TcpClientStack, TcpError, TcpErrorKind, UdpClientStack};
pub use longlink_core;
pub use longlink_core::driver::{Event, Op};
use longlink_core::sntp::{SntpClient, SntpConfig, PACKET_LEN};
use longlink_core::time::Instant;
use longlink_core::{
    Action, Config, ConfigError, Connection, Handler, ImplausibleTime, QueueError, Remote, Status,
    Transport,
};

// ------------------------------------------------------------------- traits

/// The monotonic clock the driver reads, in milliseconds since any origin
/// (typically boot). It must never go backwards.
///
/// Implemented for closures `FnMut() -> Instant`.
pub trait Clock {
    /// The current time.
    fn now(&mut self) -> Instant;
}

impl<F: FnMut() -> Instant> Clock for F {
    fn now(&mut self) -> Instant {
        self()
    }
}

/// The modem (or whatever owns the data link): network state, link reset,
/// flight mode. The same as `longlink-nal-async`'s `Modem`, less `async`
/// (and the network state is polled here, awaited there).
///
/// Every method has a no-op default, so an always-up link (Ethernet, Wi-Fi,
/// a desktop) implements only what it needs; [`AlwaysUp`] implements nothing.
/// A status LED follows the [`Event`]s instead (see [`Driver::on_event`]).
pub trait Modem {
    /// Whether the network is up (an IP address is assigned), read at every
    /// [`Driver::poll`]. The tutorial: `socket.isReady()`.
    fn network_ready(&mut self) -> bool {
        true
    }

    /// Tear down and re-establish the data link (PDP context) after
    /// repeated connect failures. The tutorial: `link.shut()`.
    fn reset_link(&mut self) {}

    /// Flight mode off (`true`) or on (`false`). The tutorial:
    /// `net.switchFly(false/true)`.
    fn set_radio(&mut self, on: bool) {
        let _ = on;
    }
}

/// A link that is always up and has no radio to cycle.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysUp;

impl Modem for AlwaysUp {}

/// Turns a host name into an address for [`Remote::Host`].
///
/// Takes the stack so that a stack implementing `Dns` itself can resolve
/// without a second handle to it ([`StackDns`]).
pub trait Resolver<S> {
    /// Looks `host` up. `WouldBlock` means "still resolving, ask again on
    /// the next poll"; any error is a failed connect attempt.
    fn resolve(&mut self, stack: &mut S, host: &str) -> nb::Result<IpAddr, ()>;
}

/// No name resolution: a [`Remote::Host`] fails every connect attempt. The
/// default; use an IP address or attach [`StackDns`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDns;

impl<S> Resolver<S> for NoDns {
    fn resolve(&mut self, _: &mut S, _: &str) -> nb::Result<IpAddr, ()> {
        Err(nb::Error::Other(()))
    }
}

/// Resolves through the stack's own [`embedded_nal::Dns`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StackDns;

impl<S: Dns> Resolver<S> for StackDns {
    fn resolve(&mut self, stack: &mut S, host: &str) -> nb::Result<IpAddr, ()> {
        stack
            .get_host_by_name(host, AddrType::Either)
            .map_err(|e| e.map(drop))
    }
}

/// A source of wall-clock time polled by the driver ([`Sntp`], or
/// [`NoWallClock`] when the time comes from elsewhere or not at all).
pub trait WallClock<S> {
    /// Does the work possible at `now` and returns a fresh reading (Unix
    /// milliseconds at `now`) if one arrived.
    fn poll(&mut self, stack: &mut S, now: Instant, network_up: bool) -> Option<u64>;

    /// When [`poll`](Self::poll) next has something to do.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// No wall-clock source: feed one with [`Driver::set_wall_clock`], or
/// `time` stays unanswered.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWallClock;

impl<S> WallClock<S> for NoWallClock {
    fn poll(&mut self, _: &mut S, _: Instant, _: bool) -> Option<u64> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

// ------------------------------------------------------------------- quirks

/// What `Ok(0)` from a TCP `receive` means on this stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ZeroRead {
    /// End of stream: the peer closed (`std-embedded-nal`, and what the
    /// trait's docs imply, since "no data" is `WouldBlock`).
    EndOfStream,
    /// No data yet (`smoltcp-nal` 0.7, which reports the peer's FIN and RST
    /// as a receive error of kind `PipeClosed` instead).
    NoData,
}

/// How the driver learns that a TCP connect that returned `WouldBlock` has
/// completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectProgress {
    /// Call `connect()` again on every poll until it returns `Ok` or an
    /// error, as embedded-nal documents. Right for stacks on which a repeated
    /// `connect()` is idempotent and a refusal is an error.
    RepeatConnect,
    /// Call `connect()` once per attempt and watch for completion with a
    /// zero-length `send`, which succeeds once the connection is
    /// established. For `smoltcp-nal` 0.7: there a `connect()` on a socket
    /// the server refused silently starts a new connection (a fresh SYN from
    /// a new port), so repeating it floods a refusing server. The refusal is
    /// never reported; the core's `connect_timeout` ends the attempt.
    ProbeWithEmptySend,
}

/// What an error from a UDP `send` means on this stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UdpSendError {
    /// The socket failed: close and reconnect (a full buffer is
    /// `WouldBlock` on such stacks).
    Fatal,
    /// Possibly a full transmit buffer (`smoltcp-nal` 0.7:
    /// `UdpWriteFailure(BufferFull)`): the datagram stays queued and goes
    /// out once the stack has sent what it holds. Closing would throw away
    /// what the socket buffered. A datagram larger than the socket's
    /// payload buffer can then never be sent: size the buffer for the
    /// largest one.
    Backpressure,
}

/// What an error from a UDP `receive` means on this stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UdpReceiveError {
    /// A real failure (`std-embedded-nal`: an ICMP port unreachable shows up
    /// as `ECONNREFUSED`): close and reconnect.
    Fatal,
    /// Possibly just "nothing received" (`smoltcp-nal` 0.7: `Exhausted`, and
    /// `Truncated` for a datagram larger than the receive buffer, which the
    /// stack has then dropped unseen): ignored. A dead server is then found
    /// by the core's `idle_timeout`.
    NoData,
}

/// How a stack departs from the letter of the embedded-nal traits.
///
/// Only the cases where a wrong guess would break the connection or lose
/// data are here; each value is checked against the real stack in the
/// project's tests (`tests/tests/real_smoltcp.rs` for smoltcp-nal,
/// `nal_tcp.rs`/`nal_udp.rs` for std-embedded-nal). Everything else is
/// handled the same on every stack: a fresh socket for every connect, a
/// receive error of kind `PipeClosed` read as the peer's close, a TCP send of
/// `Ok(0)` read as a full buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Quirks {
    /// What `Ok(0)` from a TCP receive means.
    pub tcp_zero_read: ZeroRead,
    /// How a pending TCP connect is followed.
    pub connect_progress: ConnectProgress,
    /// What an error from a UDP send means.
    pub udp_send_error: UdpSendError,
    /// What an error from a UDP receive means.
    pub udp_receive_error: UdpReceiveError,
}

impl Quirks {
    /// Stacks that follow the trait docs: `std-embedded-nal` 0.4 and most
    /// modem AT-command drivers. The default.
    pub const CONFORMANT: Quirks = Quirks {
        tcp_zero_read: ZeroRead::EndOfStream,
        connect_progress: ConnectProgress::RepeatConnect,
        udp_send_error: UdpSendError::Fatal,
        udp_receive_error: UdpReceiveError::Fatal,
    };

    /// `smoltcp-nal` 0.7 (smoltcp 0.12). Pair with the core's
    /// `connect_timeout` (a refused connect is never reported) and
    /// `idle_timeout` (nor is a silently dead link). The peer's close is
    /// reported at once.
    pub const SMOLTCP_NAL: Quirks = Quirks {
        tcp_zero_read: ZeroRead::NoData,
        connect_progress: ConnectProgress::ProbeWithEmptySend,
        udp_send_error: UdpSendError::Backpressure,
        udp_receive_error: UdpReceiveError::NoData,
    };
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks::CONFORMANT
    }
}

// ------------------------------------------------------------------- driver

/// Rounds of (actions, connect, send, receive) one [`Driver::poll`] may run
/// before it yields. Bounds the time of one call under a flood; the
/// deadline it then returns is "now", so the caller comes straight back.
const BUDGET: usize = 16;

/// The socket and where it is in its life.
enum Link<T, U> {
    None,
    /// Waiting for the resolver.
    Resolving,
    /// TCP connect returned `WouldBlock`.
    Connecting(T),
    Tcp(T),
    Udp(U),
}

/// The event hook of a driver that was given none.
fn ignore(_: Event<'_>) {}

/// The embedded-nal driver: one [`Connection`] on one stack.
///
/// `S` is the stack, `C` the [`Clock`], `M` the [`Modem`], `H` the message
/// [`Handler`], `Q`/`R` the queue and receive buffer sizes, `D` the
/// [`Resolver`], `W` the [`WallClock`] source and `E` the event hook. See the
/// [crate documentation](crate) for the loop.
pub struct Driver<
    'r,
    S,
    C,
    M,
    H,
    const Q: usize,
    const R: usize,
    D = NoDns,
    W = NoWallClock,
    E = fn(Event<'_>),
> where
    S: TcpClientStack + UdpClientStack,
{
    stack: S,
    clock: C,
    modem: M,
    resolver: D,
    wall: W,
    on_event: E,
    quirks: Quirks,
    remote: Remote<'r>,
    link: Link<<S as TcpClientStack>::TcpSocket, <S as UdpClientStack>::UdpSocket>,
    /// The server's address for the current connect attempt (resolved).
    addr: SocketAddr,
    conn: Connection<H, Q, R>,
}

impl<'r, S, C, M, H, const Q: usize, const R: usize> Driver<'r, S, C, M, H, Q, R>
where
    S: TcpClientStack + UdpClientStack,
    C: Clock,
    M: Modem,
    H: Handler,
{
    /// A driver for `remote` with [`Quirks::CONFORMANT`], no DNS, no
    /// wall-clock source and no event hook.
    ///
    /// Fails when `config` does not suit the buffer sizes `Q` and `R`.
    pub fn new(
        stack: S,
        mut clock: C,
        modem: M,
        remote: Remote<'r>,
        config: Config,
        handler: H,
    ) -> Result<Self, ConfigError> {
        let now = clock.now();
        Ok(Driver {
            stack,
            clock,
            modem,
            resolver: NoDns,
            wall: NoWallClock,
            on_event: ignore,
            quirks: Quirks::CONFORMANT,
            remote,
            link: Link::None,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            conn: Connection::new(config, handler, now)?,
        })
    }
}

impl<'r, S, C, M, H, const Q: usize, const R: usize, D, W, E> Driver<'r, S, C, M, H, Q, R, D, W, E>
where
    S: TcpClientStack + UdpClientStack,
    C: Clock,
    M: Modem,
    H: Handler,
    D: Resolver<S>,
    W: WallClock<S>,
    E: FnMut(Event<'_>),
{
    /// Sets how this stack reads edge cases (see [`Quirks`]).
    #[must_use]
    pub fn quirks(mut self, quirks: Quirks) -> Self {
        self.quirks = quirks;
        self
    }

    /// Resolves [`Remote::Host`] with `resolver` ([`StackDns`] for the
    /// stack's own `Dns`).
    pub fn with_resolver<D2: Resolver<S>>(
        self,
        resolver: D2,
    ) -> Driver<'r, S, C, M, H, Q, R, D2, W, E> {
        self.with_parts(|_, wall, on_event| (resolver, wall, on_event))
    }

    /// Polls `wall` (for example [`Sntp`]) for wall-clock readings.
    pub fn with_wall_clock<W2: WallClock<S>>(
        self,
        wall: W2,
    ) -> Driver<'r, S, C, M, H, Q, R, D, W2, E> {
        self.with_parts(|resolver, _, on_event| (resolver, wall, on_event))
    }

    /// Hands every [`Event`] to `on_event`: the core's decisions (status for
    /// a network LED, connected, disconnected and why, link reset...), the
    /// stack's errors and the bytes that crossed the socket. Called from
    /// [`poll`](Self::poll).
    pub fn on_event<E2: FnMut(Event<'_>)>(
        self,
        on_event: E2,
    ) -> Driver<'r, S, C, M, H, Q, R, D, W, E2> {
        self.with_parts(|resolver, wall, _| (resolver, wall, on_event))
    }

    /// The driver with its resolver, wall clock and hook replaced by what
    /// `f` makes of them: the builder methods change a type parameter, so
    /// the struct is rebuilt, here only.
    fn with_parts<D2, W2, E2>(
        self,
        f: impl FnOnce(D, W, E) -> (D2, W2, E2),
    ) -> Driver<'r, S, C, M, H, Q, R, D2, W2, E2> {
        let Driver {
            stack,
            clock,
            modem,
            resolver,
            wall,
            on_event,
            quirks,
            remote,
            link,
            addr,
            conn,
        } = self;
        let (resolver, wall, on_event) = f(resolver, wall, on_event);
        Driver {
            stack,
            clock,
            modem,
            resolver,
            wall,
            on_event,
            quirks,
            remote,
            link,
            addr,
            conn,
        }
    }

    /// One step: everything that can be done now, without waiting.
    ///
    /// Returns when to call again at the latest (`None`: only when something
    /// happens: a network interrupt, or the application queued a message).
    /// A deadline equal to the current time means "more work is ready, call
    /// again now". Re-read nothing yourself: `poll` reads the clock.
    pub fn poll(&mut self) -> Option<Instant> {
        let mut now = self.clock.now();
        let up = self.modem.network_ready();
        // Also runs the timers due at `now` (every `handle_*` does).
        self.conn.handle_network(now, up);
        if let Some(unix_ms) = self.wall.poll(&mut self.stack, now, up) {
            // An implausible reading is the source's problem; the old offset
            // stays.
            let _ = self.conn.handle_wall_clock(now, unix_ms);
        }
        let mut busy = true;
        for _ in 0..BUDGET {
            let progress = self.step(now);
            self.forward_events();
            if !progress {
                busy = false;
                break;
            }
            now = self.clock.now();
        }
        if busy {
            return Some(now);
        }
        match (self.conn.poll_timeout(), self.wall.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues a message for the server (see [`Connection::enqueue`]). Call
    /// [`poll`](Self::poll) afterwards to send it at once.
    pub fn enqueue(&mut self, message: &[u8]) -> Result<(), QueueError> {
        self.conn.enqueue(message)
    }

    /// Feeds a wall-clock reading from elsewhere (an RTC, the modem's network
    /// time): Unix milliseconds, now. `time` is answered with it from the
    /// next message on.
    pub fn set_wall_clock(&mut self, unix_ms: u64) -> Result<(), ImplausibleTime> {
        let now = self.clock.now();
        self.conn.handle_wall_clock(now, unix_ms)
    }

    /// The state machine: [`stats`](Connection::stats),
    /// [`status`](Connection::status), queued messages.
    pub fn connection(&self) -> &Connection<H, Q, R> {
        &self.conn
    }

    /// The state machine, mutably (the handler, enqueue).
    pub fn connection_mut(&mut self) -> &mut Connection<H, Q, R> {
        &mut self.conn
    }

    /// The connection's status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.conn.status()
    }

    /// The stack, for work of your own between polls (smoltcp-nal's
    /// `poll`).
    pub fn stack_mut(&mut self) -> &mut S {
        &mut self.stack
    }

    /// The modem.
    pub fn modem_mut(&mut self) -> &mut M {
        &mut self.modem
    }

    /// The wall-clock source.
    pub fn wall_clock(&self) -> &W {
        &self.wall
    }

    /// One round: actions, a pending connect, sends, one receive. Returns
    /// whether anything happened (worth another round).
    fn step(&mut self, now: Instant) -> bool {
        let mut progress = self.run_actions(now);
        progress |= self.advance_connect(now);
        progress |= self.transmit(now);
        progress |= self.receive(now);
        progress
    }

    fn forward_events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            (self.on_event)(Event::Core(event));
        }
    }

    fn run_actions(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(action) = self.conn.poll_action() {
            any = true;
            match action {
                Action::Close => self.close(),
                Action::ResetLink => self.modem.reset_link(),
                Action::RadioOff => self.modem.set_radio(false),
                Action::RadioOn => self.modem.set_radio(true),
                Action::Connect { .. } => {
                    // Never reuse a socket: some stacks cannot after a FIN.
                    self.close();
                    self.link = Link::Resolving;
                    self.advance_connect(now);
                }
            }
        }
        any
    }

    /// Moves a connect attempt on: resolve, open, connect, then follow the
    /// pending connect as the quirks say. Reports the outcome to the core.
    fn advance_connect(&mut self, now: Instant) -> bool {
        if let Link::Resolving = self.link {
            match self.remote {
                Remote::Addr(a) => self.addr = a,
                Remote::Host { name, port } => match self.resolver.resolve(&mut self.stack, name) {
                    Ok(ip) => self.addr = SocketAddr::new(ip, port),
                    Err(nb::Error::WouldBlock) => return false,
                    Err(nb::Error::Other(())) => {
                        (self.on_event)(Event::StackError {
                            op: Op::Resolve,
                            error: &"no address",
                        });
                        return self.connect_failed(now);
                    }
                },
            }
            (self.on_event)(Event::Connecting(self.addr));
            return self.open(now);
        }
        let Link::Connecting(sock) = &mut self.link else {
            return false;
        };
        let done = match self.quirks.connect_progress {
            ConnectProgress::RepeatConnect => {
                match TcpClientStack::connect(&mut self.stack, sock, self.addr) {
                    Ok(()) => Ok(true),
                    Err(nb::Error::WouldBlock) => Ok(false),
                    Err(nb::Error::Other(e)) => Err(e),
                }
            }
            // Any error is "not yet": the refusal is never reported, the
            // core's connect timeout ends the attempt.
            ConnectProgress::ProbeWithEmptySend => {
                Ok(TcpClientStack::send(&mut self.stack, sock, &[]).is_ok())
            }
        };
        match done {
            Ok(true) => self.tcp_connected(now),
            Ok(false) => false,
            Err(error) => {
                (self.on_event)(Event::StackError {
                    op: Op::Connect,
                    error: &error,
                });
                self.close();
                self.connect_failed(now)
            }
        }
    }

    /// Opens a socket to the resolved address and makes the one `connect()`
    /// call of this attempt. Always progress.
    fn open(&mut self, now: Instant) -> bool {
        self.link = Link::None;
        match self.conn.config().transport {
            Transport::Tcp => {
                let mut sock = match TcpClientStack::socket(&mut self.stack) {
                    Ok(sock) => sock,
                    Err(error) => return self.open_failed(now, &error),
                };
                match TcpClientStack::connect(&mut self.stack, &mut sock, self.addr) {
                    Ok(()) => {
                        self.link = Link::Connecting(sock);
                        self.tcp_connected(now)
                    }
                    Err(nb::Error::WouldBlock) => {
                        self.link = Link::Connecting(sock);
                        true
                    }
                    Err(nb::Error::Other(error)) => {
                        let _ = TcpClientStack::close(&mut self.stack, sock);
                        self.open_failed(now, &error)
                    }
                }
            }
            Transport::Udp => {
                let mut sock = match UdpClientStack::socket(&mut self.stack) {
                    Ok(sock) => sock,
                    Err(error) => return self.open_failed(now, &error),
                };
                if let Err(error) = UdpClientStack::connect(&mut self.stack, &mut sock, self.addr) {
                    let _ = UdpClientStack::close(&mut self.stack, sock);
                    return self.open_failed(now, &error);
                }
                self.link = Link::Udp(sock);
                let accepted = self.conn.handle_connected(now);
                debug_assert!(accepted.is_ok());
                true
            }
        }
    }

    fn open_failed(&mut self, now: Instant, error: &dyn core::fmt::Debug) -> bool {
        (self.on_event)(Event::StackError {
            op: Op::Connect,
            error,
        });
        self.connect_failed(now)
    }

    /// The pending TCP connect completed. Always progress.
    fn tcp_connected(&mut self, now: Instant) -> bool {
        if let Link::Connecting(sock) = core::mem::replace(&mut self.link, Link::None) {
            self.link = Link::Tcp(sock);
        }
        let accepted = self.conn.handle_connected(now);
        debug_assert!(accepted.is_ok());
        true
    }

    /// The connect attempt failed; the link is already closed. Always
    /// progress.
    fn connect_failed(&mut self, now: Instant) -> bool {
        self.link = Link::None;
        let accepted = self.conn.handle_connect_failed(now);
        debug_assert!(accepted.is_ok());
        true
    }

    /// Offers the core's transmit view to the socket until it would block.
    fn transmit(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            let Some(bytes) = self.conn.poll_transmit() else {
                return any;
            };
            let sent = match &mut self.link {
                Link::Tcp(sock) => match TcpClientStack::send(&mut self.stack, sock, bytes) {
                    // A full send buffer shows as Ok(0) on some stacks
                    // (smoltcp-nal), WouldBlock on others: try later.
                    Ok(0) | Err(nb::Error::WouldBlock) => return any,
                    Ok(n) => Ok(n.min(bytes.len())),
                    Err(nb::Error::Other(e)) => Err(StackError::Tcp(e)),
                },
                Link::Udp(sock) => match UdpClientStack::send(&mut self.stack, sock, bytes) {
                    Ok(()) => Ok(bytes.len()),
                    Err(nb::Error::WouldBlock) => return any,
                    Err(nb::Error::Other(_))
                        if self.quirks.udp_send_error == UdpSendError::Backpressure =>
                    {
                        return any
                    }
                    Err(nb::Error::Other(e)) => Err(StackError::Udp(e)),
                },
                _ => return any,
            };
            any = true;
            match sent {
                Ok(n) => {
                    (self.on_event)(Event::Sent(&bytes[..n]));
                    let accepted = self.conn.handle_written(now, n);
                    debug_assert!(accepted.is_ok());
                }
                Err(error) => {
                    (self.on_event)(Event::StackError {
                        op: Op::Send,
                        error: &error,
                    });
                    let accepted = self.conn.handle_io_error(now);
                    debug_assert!(accepted.is_ok());
                    return true;
                }
            }
        }
    }

    /// One read into the core's receive buffer, if it has room.
    fn receive(&mut self, now: Instant) -> bool {
        let quirks = self.quirks;
        let buf = self.conn.receive_buffer();
        if buf.is_empty() {
            return false;
        }
        let read = match &mut self.link {
            Link::Tcp(sock) => match TcpClientStack::receive(&mut self.stack, sock, buf) {
                Ok(0) => match quirks.tcp_zero_read {
                    ZeroRead::EndOfStream => Read::Closed,
                    ZeroRead::NoData => Read::Nothing,
                },
                Ok(n) => Read::Data(n),
                Err(nb::Error::WouldBlock) => Read::Nothing,
                Err(nb::Error::Other(e)) if e.kind() == TcpErrorKind::PipeClosed => Read::Closed,
                Err(nb::Error::Other(e)) => Read::Error(StackError::Tcp(e)),
            },
            Link::Udp(sock) => match UdpClientStack::receive(&mut self.stack, sock, buf) {
                Ok((n, from)) if same_endpoint(&from, &self.addr) => Read::Data(n),
                // A datagram from elsewhere is dropped, but it was taken off
                // the socket: look again.
                Ok(_) => Read::Foreign,
                Err(nb::Error::WouldBlock) => Read::Nothing,
                Err(nb::Error::Other(e)) => match quirks.udp_receive_error {
                    UdpReceiveError::Fatal => Read::Error(StackError::Udp(e)),
                    UdpReceiveError::NoData => Read::Nothing,
                },
            },
            _ => Read::Nothing,
        };
        let accepted = match read {
            Read::Nothing => return false,
            Read::Foreign => return true,
            Read::Data(n) => {
                if let Some(data) = self.conn.receive_buffer().get(..n) {
                    (self.on_event)(Event::Received(data));
                }
                // A stack that claims more than the buffer held is refused
                // (`InvalidLength`, debug-asserted below).
                self.conn.handle_received(now, n)
            }
            Read::Closed => self.conn.handle_closed(now),
            Read::Error(error) => {
                (self.on_event)(Event::StackError {
                    op: Op::Receive,
                    error: &error,
                });
                self.conn.handle_io_error(now)
            }
        };
        debug_assert!(accepted.is_ok());
        true
    }

    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    fn close(&mut self) {
        match core::mem::replace(&mut self.link, Link::None) {
            Link::Connecting(sock) | Link::Tcp(sock) => {
                let _ = TcpClientStack::close(&mut self.stack, sock);
            }
            Link::Udp(sock) => {
                let _ = UdpClientStack::close(&mut self.stack, sock);
            }
            Link::None | Link::Resolving => {}
        }
    }
}

/// What one socket read brought ([`Driver::receive`]).
enum Read<A, B> {
    /// Nothing to report: no data, or a stack's way of saying so.
    Nothing,
    /// Bytes from the server in the core's receive buffer.
    Data(usize),
    /// A datagram from elsewhere, discarded.
    Foreign,
    /// End of stream.
    Closed,
    /// The socket failed.
    Error(StackError<A, B>),
}

/// A TCP or UDP stack error, for [`Event::StackError`].
#[derive(Debug)]
enum StackError<A, B> {
    Tcp(A),
    Udp(B),
}

/// Whether a datagram's source is the server, comparing IPv4-mapped IPv6
/// and IPv4 forms as equal (stacks differ in which one they report).
fn same_endpoint(a: &SocketAddr, b: &SocketAddr) -> bool {
    // Equal canonical forms is equal IPv4-mapped IPv6 forms; comparing those
    // as `u128` is two word compares, where `IpAddr == IpAddr` links memcmp.
    fn mapped(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
            IpAddr::V6(v6) => v6.to_bits(),
        }
    }
    a.port() == b.port() && mapped(a.ip()) == mapped(b.ip())
}

// --------------------------------------------------------------------- SNTP

/// Wall-clock time by SNTP over the stack's UDP: asks as soon as the network
/// is up, then every [`SntpConfig::resync`]; retries after a timeout.
///
/// Uses its own UDP socket, opened for each request and closed after the
/// answer, so it holds no socket between syncs. The server is an address:
/// resolve a pool name yourself if you use one.
pub struct Sntp<S: UdpClientStack> {
    server: SocketAddr,
    client: SntpClient,
    socket: Option<S::UdpSocket>,
    /// The network was up at the last poll.
    up: bool,
}

impl<S: UdpClientStack> Sntp<S> {
    /// SNTP against `server` (port 123 usually, see
    /// [`longlink_core::sntp::NTP_PORT`]). `seed` makes request nonces
    /// unpredictable: pass something device-specific.
    pub fn new(server: SocketAddr, config: SntpConfig, seed: u64) -> Self {
        Sntp {
            server,
            client: SntpClient::new(config, seed),
            socket: None,
            up: false,
        }
    }

    /// The schedule and sync state.
    pub fn client(&self) -> &SntpClient {
        &self.client
    }

    fn close(&mut self, stack: &mut S) {
        if let Some(sock) = self.socket.take() {
            let _ = stack.close(sock);
        }
    }
}

impl<S: UdpClientStack> WallClock<S> for Sntp<S> {
    fn poll(&mut self, stack: &mut S, now: Instant, network_up: bool) -> Option<u64> {
        if !network_up {
            // Paused: no deadline while down, or the caller would spin.
            self.up = false;
            self.close(stack);
            return None;
        }
        if !self.up {
            // (Re)gained the network: the tutorial syncs right away.
            self.up = true;
            self.client.restart(now);
        }
        if let Some(sock) = self.socket.as_mut() {
            let mut buf = [0u8; PACKET_LEN];
            // Bounded: a flood of junk cannot keep us here.
            for _ in 0..4 {
                match stack.receive(sock, &mut buf) {
                    Ok((n, from)) if same_endpoint(&from, &self.server) => {
                        if let Ok(unix_ms) = self.client.handle_response(now, &buf[..n]) {
                            self.close(stack);
                            return Some(unix_ms);
                        }
                        if !self.client.is_waiting() {
                            // Kiss-o'-death or unsynchronised: retry later.
                            self.close(stack);
                            return None;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let mut request = [0u8; PACKET_LEN];
        let due = self.client.poll_request(now, &mut request);
        if !self.client.is_waiting() {
            // Timed out (or never asked): nothing to keep open.
            self.close(stack);
        }
        if due {
            self.close(stack);
            let Ok(mut sock) = stack.socket() else {
                return None;
            };
            if stack.connect(&mut sock, self.server).is_err()
                || stack.send(&mut sock, &request).is_err()
            {
                // The request counts as sent; its timeout brings the retry.
                let _ = stack.close(sock);
                return None;
            }
            self.socket = Some(sock);
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.up.then(|| self.client.poll_timeout())
    }
}

impl<S: UdpClientStack> core::fmt::Debug for Sntp<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sntp")
            .field("server", &self.server)
            .field("client", &self.client)
            .finish()
    }
}

/// Re-exported so users need not depend on the core for the common types.
pub use longlink_core::time;

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn same_endpoint_is_canonical_equality() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let ips = [
            v4,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            // IPv4-compatible, not mapped: a different address.
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_compatible()),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ];
        for a in ips {
            for b in ips {
                for port in [50798, 50799] {
                    let same = same_endpoint(&SocketAddr::new(a, 50798), &SocketAddr::new(b, port));
                    let expected = port == 50798 && a.to_canonical() == b.to_canonical();
                    assert_eq!(same, expected, "{a} {b} {port}");
                }
            }
        }
    }
}
