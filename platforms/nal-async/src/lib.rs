//! # longlink-nal-async
//!
//! Drives a [`longlink_core::Connection`] over any
//! [`embedded-nal-async`](embedded_nal_async) 0.9 stack: `TcpConnect` for
//! TCP, `UdpStack` for UDP, and `Dns` when the remote is a host name (resolved
//! at every connect attempt; a failed lookup is a failed connect).
//!
//! The driver is a thin loop and owns no policy: it feeds socket, clock and
//! modem events into the core's `handle_*` calls, carries out what
//! `poll_action` / `poll_transmit` ask for, and sleeps until the core's
//! deadline, socket readiness, a network change or a newly queued message,
//! re-reading the clock after every wake-up.
//!
//! ## Pieces
//!
//! - [`Longlink`]: the connection behind a blocking mutex (from `embassy-sync`,
//!   held only for short synchronous sections, never across an `.await`).
//!   It is also the *handle*: [`Longlink::enqueue`] may be called from any
//!   task (or thread, with a `CriticalSectionRawMutex`) while
//!   [`Longlink::run`] is pending, and wakes the run loop so the message is on
//!   the wire at once.
//! - [`Net`]: the stacks. Use [`NoTcp`], [`NoUdp`] or [`NoDns`] for the ones
//!   you do not have.
//! - [`Clock`]: your monotonic clock and async timer (and, optionally, a
//!   wall clock for the `time` command).
//! - [`Modem`]: network-ready events, link reset, radio off/on. [`AlwaysUp`]
//!   is the no-op for links that are always up (Ethernet, Wi-Fi, desktop).
//! - The server, a [`Remote`]: an address, or a host name resolved at every
//!   connect attempt.
//! - An event hook, `FnMut(Event<'_>)`: the core's decisions and their
//!   reasons (status for a network LED like the tutorial's `netLed`,
//!   connected, disconnected and why, link reset...), stack errors, bytes
//!   sent and received. The same [`Event`] type as `longlink-nal`'s.
//!
//! ## What the stack must provide
//!
//! Stacks disagree on edge cases, so the driver leans on the core's timers
//! rather than on error codes: set
//! [`Config::connect_timeout`](longlink_core::Config::connect_timeout) on
//! stacks that never time out a connect (embassy-net without
//! `TcpClient::set_timeout` waits for ever on a silent server), and
//! [`Config::idle_timeout`](longlink_core::Config::idle_timeout) to notice a
//! silently dead link (embassy-net notices one only while it has
//! unacknowledged data and a `set_timeout`). The idle timeout reconnects
//! whenever the server says nothing for that long: against a server that
//! only listens (the tutorial's), pick it above the heartbeat interval and
//! expect a reconnect per interval unless the server answers heartbeats. Every socket is
//! dropped on `Close` and a fresh one opened for the next attempt. A TCP read
//! of `Ok(0)` is end of stream (the `embedded-io-async` contract); a write of
//! `Ok(0)` and every error end the connection (the core retries after
//! `retry_delay`).
//!
//! The one requirement: the stack's `read`/`write`/`flush`/`receive_into`/
//! `send` futures must be cancel-safe (dropping a pending one loses no data),
//! as `embedded-io-async` encourages and as embassy-net and
//! std-embedded-nal-async are, because the driver drops a pending read when a
//! timer fires or a message is queued.
//!
//! "Written" means handed to the socket: a message written into a TCP
//! connection the peer has already dropped, or a UDP datagram to a server
//! that is down, is gone (no protocol here acknowledges messages). What the
//! driver guarantees is that nothing queued while the connection is known to
//! be down is lost, and nothing is written twice.
//!
//! ## Scratch buffer
//!
//! Reads and writes go through one caller-supplied scratch buffer, so the
//! connection is never borrowed across an `.await` (the application can
//! enqueue at any time). Any size works for TCP (smaller means more, shorter
//! writes and reads); UDP needs `max(R, Q)` bytes, so a whole datagram
//! always fits. A datagram that fills the core's `R`-byte receive buffer may
//! have been cut by the stack: the core rejects and counts it
//! ([`Stats::frames_rejected`](longlink_core::Stats::frames_rejected)),
//! exactly as with `longlink-nal`.
//!
//! ## Example
//!
//! Generic over the stack, as firmware would write it (with embassy-net,
//! `tcp` is a `TcpClient` and the clock wraps `embassy_time`):
//!
//! ```
//! use core::net::SocketAddr;
//! use longlink_core::{time::Duration, Config, Connection, Event as CoreEvent, Remote, TestProtocol};
//! use longlink_nal_async::{AlwaysUp, Clock, Event, Longlink, Net, NoopRawMutex};
//!
//! async fn keep_alive<T: embedded_nal_async::TcpConnect, C: Clock>(tcp: T, clock: C, server: SocketAddr) {
//!     // 512-byte outgoing queue, 256-byte receive buffer; tutorial timings,
//!     // plus the timeouts a stack that never gives up needs (embassy-net).
//!     let config = Config {
//!         connect_timeout: Some(Duration::from_secs(10)),
//!         idle_timeout: Some(Duration::from_secs(60)),
//!         ..Config::default() // `transport: Transport::Udp` for UDP (with `Net::udp`)
//!     };
//!     let conn: Connection<TestProtocol, 512, 256> =
//!         match Connection::new(config, TestProtocol::default(), clock.now()) {
//!             Ok(c) => c,
//!             Err(_) => return, // the config does not fit these sizes
//!         };
//!     let link: Longlink<NoopRawMutex, _, 512, 256> = Longlink::new(conn);
//!     let mut scratch = [0u8; 256];
//!     let mut modem = AlwaysUp; // or your modem driver
//!     let app = async {
//!         // Any task can queue while `run` is pending; it goes out at once.
//!         let _ = link.enqueue(b"hello").await;
//!     };
//!     let run = link.run(
//!         Net::tcp(tcp),
//!         Remote::Addr(server),
//!         &clock,
//!         &mut modem,
//!         &mut scratch,
//!         |event| {
//!             if let Event::Core(CoreEvent::Status(status)) = event {
//!                 let _ = status; // drive the network LED here
//!             }
//!         },
//!     );
//!     embassy_futures::join::join(run, app).await;
//!     // From any task: link.stats() (counters), link.status(),
//!     // link.set_wall_clock(now, unix_ms) after an SNTP sync.
//! }
//! ```
//!
//! A runnable desktop version of the same loop, over
//! `std-embedded-nal-async`, is `longlink client` in `longlink-std`.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::cell::RefCell;
use core::convert::Infallible;
use core::fmt::Debug;
use core::future::pending;
use core::net::SocketAddr;

use embassy_futures::select::{select3, select4, Either3, Either4};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::signal::Signal;
use embedded_io_async::{Read, Write};
use embedded_nal_async::{AddrType, ConnectedUdp, Dns, TcpConnect, UdpStack};
use longlink_core::time::Instant;
use longlink_core::{
    Action, Connection, Handler, ImplausibleTime, QueueError, Remote, Stats, Status, Transport,
};

pub use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
pub use longlink_core;
pub use longlink_core::driver::{Event, Op};

mod unsupported;
pub use unsupported::{NoDns, NoTcp, NoUdp, Unreachable};
#[cfg(feature = "tls")]
pub mod tls;

/// Your monotonic clock and timer.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The monotonic time now (any origin, milliseconds).
    fn now(&self) -> Instant;

    /// Resolves at `at` or soon after (at once if `at` has passed). Must be
    /// cancel-safe: the driver drops it when something else happens first.
    async fn sleep_until(&self, at: Instant);

    /// The wall clock, in milliseconds since the Unix epoch, if known (an
    /// RTC, the host's clock). Read after every wake-up, before what woke the
    /// driver is handed to the core (so a `time` request that arrives right
    /// after the clock was set is answered with it), and fed to
    /// [`Connection::handle_wall_clock`]; until it returns a plausible value
    /// the `time` command goes unanswered. Default: unknown. A reading that
    /// arrives by itself (an SNTP task) goes in with
    /// [`Longlink::set_wall_clock`] instead.
    fn unix_time_ms(&self) -> Option<u64> {
        None
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }
    async fn sleep_until(&self, at: Instant) {
        (**self).sleep_until(at).await;
    }
    fn unix_time_ms(&self) -> Option<u64> {
        (**self).unix_time_ms()
    }
}

/// The modem (or whatever brings the network up): the tutorial's
/// `IP_READY_IND` event, `link.shut()` and `net.switchFly()`. The same as
/// `longlink-nal`'s `Modem` with `async` (and the network state awaited
/// rather than polled).
#[allow(async_fn_in_trait)]
pub trait Modem {
    /// Resolves with the network state (`true`: has an IP address) as soon as
    /// it differs from `known`, at once if it already does. Must be
    /// cancel-safe. The driver starts with `known == false`.
    async fn network_change(&mut self, known: bool) -> bool;

    /// Tears down and re-establishes the data link (PDP context). Report the
    /// resulting network changes through [`network_change`](Self::network_change).
    async fn reset_link(&mut self);

    /// Flight mode off (`true`) or on (`false`).
    async fn set_radio(&mut self, on: bool);
}

/// A link that is always up (Ethernet, Wi-Fi managed elsewhere, a desktop):
/// the network is up from the start, and link reset and radio control do
/// nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysUp;

impl Modem for AlwaysUp {
    async fn network_change(&mut self, known: bool) -> bool {
        if known {
            pending().await
        } else {
            true
        }
    }
    async fn reset_link(&mut self) {}
    async fn set_radio(&mut self, _: bool) {}
}

/// The network stacks the driver may use. Which one is used follows
/// [`Config::transport`](longlink_core::Config::transport) and the
/// [`Remote`] given to [`Longlink::run`].
#[derive(Clone, Copy, Debug)]
pub struct Net<T, U, D> {
    /// TCP.
    pub tcp: T,
    /// UDP.
    pub udp: U,
    /// Name resolution, for [`Remote::Host`].
    pub dns: D,
}

impl<T: TcpConnect> Net<T, NoUdp, NoDns> {
    /// TCP only, to an IP address.
    pub fn tcp(tcp: T) -> Self {
        Net {
            tcp,
            udp: NoUdp,
            dns: NoDns,
        }
    }
}

impl<U: UdpStack> Net<NoTcp, U, NoDns> {
    /// UDP only, to an IP address.
    pub fn udp(udp: U) -> Self {
        Net {
            tcp: NoTcp,
            udp,
            dns: NoDns,
        }
    }
}

impl<S: TcpConnect + UdpStack + Dns + Clone> Net<S, S, S> {
    /// One stack that does it all (std-embedded-nal-async's `Stack`).
    pub fn all(stack: S) -> Self {
        Net {
            tcp: stack.clone(),
            udp: stack.clone(),
            dns: stack,
        }
    }
}

/// [`Longlink::run`] cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError {
    /// The scratch buffer is empty, or too small for UDP (which needs
    /// `max(R, Q)` bytes).
    ScratchTooSmall,
}

impl core::fmt::Display for RunError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("scratch buffer too small")
    }
}

/// A [`Connection`] shared between the driver ([`run`](Self::run)) and the
/// application ([`enqueue`](Self::enqueue), [`stats`](Self::stats)...).
///
/// `M` is the mutex flavour: [`NoopRawMutex`] when everything runs on one
/// executor, [`CriticalSectionRawMutex`] when other threads or interrupts
/// enqueue.
pub struct Longlink<M: RawMutex, H, const Q: usize, const R: usize> {
    conn: Mutex<M, RefCell<Connection<H, Q, R>>>,
    /// Set by `enqueue`: something new to send.
    wake: Signal<M, ()>,
    /// Set by the driver when a message left the queue.
    room: Signal<M, ()>,
}

impl<M: RawMutex, H: Handler, const Q: usize, const R: usize> Longlink<M, H, Q, R> {
    /// Wraps a connection.
    pub fn new(conn: Connection<H, Q, R>) -> Self {
        Longlink {
            conn: Mutex::new(RefCell::new(conn)),
            wake: Signal::new(),
            room: Signal::new(),
        }
    }

    /// Runs `f` on the connection, under the lock.
    ///
    /// For inspection and for inputs the driver does not own
    /// ([`Connection::handle_wall_clock`] from an SNTP task,
    /// [`Connection::handler_mut`]). Do not call other `handle_*` or `poll_*`
    /// methods here: they belong to the driver. Must not be called from
    /// inside the connection's [`Handler`] (the lock is not re-entrant).
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection<H, Q, R>) -> T) -> T {
        let out = self.conn.lock(|c| f(&mut c.borrow_mut()));
        // Whatever changed (a wall clock, a handler's state) is looked at now.
        self.wake.signal(());
        out
    }

    fn lock<T>(&self, f: impl FnOnce(&mut Connection<H, Q, R>) -> T) -> T {
        self.conn.lock(|c| f(&mut c.borrow_mut()))
    }

    /// Queues a message for the server and wakes the driver, which writes it
    /// at once if connected. It stays queued across disconnects until fully
    /// written once. A full queue is an error ([`QueueError::Full`]).
    pub fn try_enqueue(&self, message: &[u8]) -> Result<(), QueueError> {
        self.lock(|c| c.enqueue(message))?;
        self.wake.signal(());
        Ok(())
    }

    /// Like [`try_enqueue`](Self::try_enqueue), but waits for room while the
    /// queue is full. Errors that waiting cannot cure
    /// ([`QueueError::TooLarge`], [`QueueError::Unframeable`],
    /// [`QueueError::Empty`]) are returned at once.
    ///
    /// One waiting task at a time: a second concurrent waiter may not be
    /// woken until the next message leaves the queue.
    pub async fn enqueue(&self, message: &[u8]) -> Result<(), QueueError> {
        loop {
            self.room.reset();
            match self.try_enqueue(message) {
                Err(QueueError::Full) => self.room.wait().await,
                other => return other,
            }
        }
    }

    /// The connection's status.
    pub fn status(&self) -> Status {
        self.lock(|c| c.status())
    }

    /// Feeds a wall-clock reading (Unix milliseconds at `now`) from an
    /// SNTP task or an RTC, and wakes the run loop.
    pub fn set_wall_clock(&self, now: Instant, unix_ms: u64) -> Result<(), ImplausibleTime> {
        self.lock(|c| c.handle_wall_clock(now, unix_ms))?;
        self.wake.signal(());
        Ok(())
    }

    /// The connection's counters.
    pub fn stats(&self) -> Stats {
        self.lock(|c| *c.stats())
    }

    /// Messages waiting in the outgoing queue.
    pub fn queued(&self) -> usize {
        self.lock(|c| c.queued())
    }

    /// Drives the connection to `remote` forever: connects, reconnects,
    /// sends, receives, cycles the radio. Returns only if it cannot start
    /// (see [`RunError`]); to stop it, drop the future (for example in a
    /// `select` with a shutdown signal). It may be called again later: the
    /// new run treats the old run's connection as lost with the network, and
    /// reconnects (queued messages are kept).
    ///
    /// `scratch` carries every read and write (see the crate docs for its
    /// size). `on_event` sees every [`Event`]: the core's decisions, the
    /// stack's errors, the bytes on the socket; it runs unlocked, so it may
    /// call [`stats`](Self::stats) or [`try_enqueue`](Self::try_enqueue).
    pub async fn run<T, U, D, C, Mo, F>(
        &self,
        net: Net<T, U, D>,
        remote: Remote<'_>,
        clock: &C,
        modem: &mut Mo,
        scratch: &mut [u8],
        on_event: F,
    ) -> Result<Infallible, RunError>
    where
        T: TcpConnect,
        U: UdpStack,
        D: Dns,
        C: Clock,
        Mo: Modem,
        F: FnMut(Event<'_>),
    {
        let udp = self.lock(|c| c.config().transport == Transport::Udp);
        if scratch.is_empty() || (udp && scratch.len() < Q.max(R)) {
            return Err(RunError::ScratchTooSmall);
        }
        let mut run = Run {
            link: self,
            net: &net,
            remote,
            clock,
            modem,
            scratch,
            on_event,
            socket: None,
            network: false,
            unflushed: false,
        };
        // This run starts with no socket and believes the network down until
        // the modem says otherwise; the core must start from the same belief.
        // After an earlier run was dropped, the core may still think it is
        // connected (through a socket that was dropped with that run) or
        // that the network is up: it would then wait on a connection that
        // does not exist and never hear of a network loss. Telling it "down"
        // (a no-op on a fresh core) makes a restart a clean reconnect.
        run.core(|c, now| c.handle_network(now, false));
        loop {
            match run.core(|c, _| c.poll_action()) {
                Some(action) => run.act(action).await,
                None if run.socket.is_some() => run.io().await,
                None => run.idle().await,
            }
        }
    }
}

/// One [`Longlink::run`]: the borrowed parts and the socket.
struct Run<'a, 'n, M: RawMutex, H, const Q: usize, const R: usize, T, U, D, C, Mo, F>
where
    T: TcpConnect + 'n,
    U: UdpStack + 'n,
{
    link: &'a Longlink<M, H, Q, R>,
    net: &'n Net<T, U, D>,
    remote: Remote<'a>,
    clock: &'a C,
    modem: &'a mut Mo,
    scratch: &'a mut [u8],
    on_event: F,
    socket: Option<Socket<T::Connection<'n>, U::Connected>>,
    /// The network state last reported by the modem.
    network: bool,
    /// TCP bytes written since the last flush.
    unflushed: bool,
}

impl<M, H, const Q: usize, const R: usize, T, U, D, C, Mo, F>
    Run<'_, '_, M, H, Q, R, T, U, D, C, Mo, F>
where
    M: RawMutex,
    H: Handler,
    T: TcpConnect,
    U: UdpStack,
    D: Dns,
    C: Clock,
    Mo: Modem,
    F: FnMut(Event<'_>),
{
    /// Runs `f` on the core at the current time, with the wall clock read
    /// just before, then forwards the events it produced (unlocked).
    fn core<X>(&mut self, f: impl FnOnce(&mut Connection<H, Q, R>, Instant) -> X) -> X {
        with_core(self.link, self.clock, &mut self.on_event, f)
    }

    fn network_changed(&mut self, up: bool) {
        self.network = up;
        self.core(|c, now| c.handle_network(now, up));
    }

    /// Carries out an action from the core.
    async fn act(&mut self, action: Action) {
        match action {
            Action::Close => self.close(),
            Action::ResetLink => self.modem.reset_link().await,
            Action::RadioOff => self.modem.set_radio(false).await,
            Action::RadioOn => self.modem.set_radio(true).await,
            Action::Connect { transport } => self.open(transport).await,
        }
    }

    fn close(&mut self) {
        self.socket = None;
        self.unflushed = false;
    }

    /// One connect attempt, until it succeeds, fails, times out (the core's
    /// deadline) or the network goes away.
    async fn open(&mut self, transport: Transport) {
        self.close();
        let deadline = self.link.lock(|c| c.poll_timeout());
        // A queued message must not abort a connect in progress, so `wake`
        // is not watched here; the connect timeout and a lost network are.
        let outcome = select3(
            connect(self.net, self.remote, transport, &mut self.on_event),
            sleep(self.clock, deadline),
            self.modem.network_change(self.network),
        )
        .await;
        match outcome {
            Either3::First(Some(socket)) => {
                if self.core(|c, now| c.handle_connected(now)).is_ok() {
                    self.socket = Some(socket);
                }
            }
            Either3::First(None) => {
                let accepted = self.core(|c, now| c.handle_connect_failed(now));
                debug_assert!(accepted.is_ok());
            }
            // The core times the attempt out when the loop looks next.
            Either3::Second(()) => {}
            Either3::Third(up) => self.network_changed(up),
        }
    }

    /// No socket: wait for a deadline, a queued message or the network.
    async fn idle(&mut self) {
        let deadline = self.link.lock(|c| c.poll_timeout());
        let outcome = select3(
            sleep(self.clock, deadline),
            self.link.wake.wait(),
            self.modem.network_change(self.network),
        )
        .await;
        if let Either3::Third(up) = outcome {
            self.network_changed(up);
        }
    }

    /// One socket operation: write what is queued, else flush, else read;
    /// or whatever comes first of a deadline, a queued message, the network.
    async fn io(&mut self) {
        let udp = self.link.lock(|c| c.config().transport == Transport::Udp);
        // Copy what to send (or size what to read) under the lock; the I/O
        // itself runs unlocked.
        let scratch = &mut *self.scratch;
        self.link.wake.reset();
        let (deadline, tx, rx) = self.link.lock(|c| {
            // TCP: everything queued, as much as fits; UDP: one datagram
            // (the scratch size check makes it fit).
            let tx = c.poll_transmit().map_or(0, |bytes| {
                let n = bytes.len().min(scratch.len());
                scratch[..n].copy_from_slice(&bytes[..n]);
                n
            });
            (c.poll_timeout(), tx, c.receive_room().min(scratch.len()))
        });
        let Some(sock) = self.socket.as_mut() else {
            return;
        };
        let unflushed = self.unflushed;
        let io = async {
            if tx > 0 {
                sock.send(&scratch[..tx]).await.map(Io::Sent)
            } else if unflushed {
                sock.flush().await.map(|()| Io::Flushed)
            } else if rx > 0 {
                sock.receive(&mut scratch[..rx]).await.map(Io::Received)
            } else {
                // Backpressure: the core wants nothing read now.
                pending().await
            }
        };
        let outcome = select4(
            io,
            sleep(self.clock, deadline),
            self.link.wake.wait(),
            self.modem.network_change(self.network),
        )
        .await;
        match outcome {
            Either4::First(Ok(Io::Sent(n))) => {
                (self.on_event)(Event::Sent(&self.scratch[..n]));
                let accepted = self.core(|c, now| c.handle_written(now, n));
                debug_assert!(accepted.is_ok());
                self.unflushed = !udp;
                self.link.room.signal(());
            }
            Either4::First(Ok(Io::Flushed)) => self.unflushed = false,
            Either4::First(Ok(Io::Received(0))) if !udp => {
                let accepted = self.core(|c, now| c.handle_closed(now));
                debug_assert!(accepted.is_ok());
            }
            Either4::First(Ok(Io::Received(n))) => {
                let data = &self.scratch[..n];
                (self.on_event)(Event::Received(data));
                // `n` is within the room measured above and only this loop
                // changes it, so the core takes all of it (over UDP one that
                // fills the buffer is rejected by the core, counted).
                let taken = with_core(self.link, self.clock, &mut self.on_event, |c, now| {
                    c.handle_received_bytes(now, data)
                });
                debug_assert_eq!(taken, Ok(n));
            }
            Either4::First(Err(error)) => {
                (self.on_event)(Event::StackError {
                    op: error.op,
                    error: &error.error,
                });
                let accepted = self.core(|c, now| c.handle_io_error(now));
                debug_assert!(accepted.is_ok());
            }
            Either4::Second(()) | Either4::Third(()) => {}
            Either4::Fourth(up) => self.network_changed(up),
        }
    }
}

/// Runs `f` on the core at the current time, with the wall clock read just
/// before, then forwards the events it produced (unlocked).
fn with_core<M: RawMutex, H: Handler, const Q: usize, const R: usize, X>(
    link: &Longlink<M, H, Q, R>,
    clock: &impl Clock,
    on_event: &mut impl FnMut(Event<'_>),
    f: impl FnOnce(&mut Connection<H, Q, R>, Instant) -> X,
) -> X {
    let now = clock.now();
    let wall = clock.unix_time_ms();
    let mut events = heapless::Vec::<longlink_core::Event, 8>::new();
    let out = link.lock(|c| {
        if let Some(ms) = wall {
            // An implausible reading (an unset RTC) is simply not used.
            let _ = c.handle_wall_clock(now, ms);
        }
        // Also runs the timers due now.
        c.handle_timeout(now);
        let out = f(c, now);
        // At most one of each kind is pending: eight fit.
        while let Some(e) = c.poll_event() {
            if events.push(e).is_err() {
                break;
            }
        }
        out
    });
    for e in events {
        on_event(Event::Core(e));
    }
    out
}

async fn sleep<C: Clock>(clock: &C, deadline: Option<Instant>) {
    match deadline {
        Some(at) => clock.sleep_until(at).await,
        None => pending().await,
    }
}

enum Io {
    Sent(usize),
    Flushed,
    Received(usize),
}

/// An open socket of either transport.
enum Socket<T, U> {
    Tcp(T),
    Udp(U),
}

/// A TCP or UDP error, for [`Event::StackError`].
#[derive(Debug)]
enum SocketError<A, B> {
    Tcp(A),
    Udp(B),
    /// The socket refused a write without an error (`Ok(0)`): treated as a
    /// broken connection, since retrying would spin.
    WriteZero,
}

/// A failed socket operation.
struct Failed<A, B> {
    op: Op,
    error: SocketError<A, B>,
}

type Failure<T, U> = Failed<<T as embedded_io_async::ErrorType>::Error, <U as ConnectedUdp>::Error>;

impl<T, U> Socket<T, U>
where
    T: Read + Write,
    U: ConnectedUdp,
{
    async fn send(&mut self, data: &[u8]) -> Result<usize, Failure<T, U>> {
        let fail = |error| Failed {
            op: Op::Send,
            error,
        };
        match self {
            Socket::Tcp(s) => match s.write(data).await {
                Ok(0) => Err(fail(SocketError::WriteZero)),
                Ok(n) => Ok(n),
                Err(e) => Err(fail(SocketError::Tcp(e))),
            },
            Socket::Udp(s) => s
                .send(data)
                .await
                .map(|()| data.len())
                .map_err(|e| fail(SocketError::Udp(e))),
        }
    }

    async fn flush(&mut self) -> Result<(), Failure<T, U>> {
        match self {
            Socket::Tcp(s) => s.flush().await.map_err(|e| Failed {
                op: Op::Send,
                error: SocketError::Tcp(e),
            }),
            Socket::Udp(_) => Ok(()),
        }
    }

    async fn receive(&mut self, buf: &mut [u8]) -> Result<usize, Failure<T, U>> {
        let fail = |error| Failed {
            op: Op::Receive,
            error,
        };
        match self {
            Socket::Tcp(s) => s.read(buf).await.map_err(|e| fail(SocketError::Tcp(e))),
            Socket::Udp(s) => s
                .receive_into(buf)
                .await
                .map_err(|e| fail(SocketError::Udp(e))),
        }
    }
}

/// Resolves (if needed) and connects. `None` is a failed attempt, already
/// reported to `on_event`.
async fn connect<'n, T, U, D, F>(
    net: &'n Net<T, U, D>,
    remote: Remote<'_>,
    transport: Transport,
    on_event: &mut F,
) -> Option<Socket<T::Connection<'n>, U::Connected>>
where
    T: TcpConnect,
    U: UdpStack,
    D: Dns,
    F: FnMut(Event<'_>),
{
    let addr = match remote {
        Remote::Addr(a) => a,
        Remote::Host { name, port } => match net.dns.get_host_by_name(name, AddrType::Either).await
        {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(error) => {
                on_event(Event::StackError {
                    op: Op::Resolve,
                    error: &error,
                });
                return None;
            }
        },
    };
    on_event(Event::Connecting(addr));
    let socket = match transport {
        Transport::Tcp => net
            .tcp
            .connect(addr)
            .await
            .map(Socket::Tcp)
            .map_err(SocketError::<_, U::Error>::Tcp),
        Transport::Udp => net
            .udp
            .connect(addr)
            .await
            .map(|(_, s)| Socket::Udp(s))
            .map_err(SocketError::Udp),
    };
    match socket {
        Ok(s) => Some(s),
        Err(error) => {
            on_event(Event::StackError {
                op: Op::Connect,
                error: &error,
            });
            None
        }
    }
}
