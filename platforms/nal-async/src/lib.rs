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
//! - An event hook, `FnMut(Event<'_>)`: status changes (a network LED, like
//!   the tutorial's `netLed`), actions, bytes sent and received.
//!
//! ## What the stack must provide
//!
//! Stacks disagree on edge cases, so the driver leans on the core's timers
//! rather than on error codes: set [`Config::connect_timeout`] on stacks that
//! never report a refused connect, and [`Config::idle_timeout`] to notice a
//! dead peer on stacks that keep accepting sends after a FIN. Every socket is
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
//! writes and reads); UDP needs `max(R + 1, Q)` bytes, so a whole datagram
//! always fits and an oversized one is recognised rather than truncated.
//!
//! ## Example
//!
//! Generic over the stack, as firmware would write it (with embassy-net,
//! `tcp` is a `TcpClient` and the clock wraps `embassy_time`):
//!
//! ```
//! use longlink_core::{time::Instant, Config, Connection, TestProtocol};
//! use longlink_nal_async::{AlwaysUp, Clock, Event, Longlink, Net, NoopRawMutex};
//!
//! async fn keep_alive<T: embedded_nal_async::TcpConnect, C: Clock>(tcp: T, clock: C) {
//!     // 512-byte outgoing queue, 256-byte receive buffer; tutorial defaults.
//!     let conn: Connection<TestProtocol, 512, 256> =
//!         match Connection::new(Config::default(), TestProtocol::default(), clock.now()) {
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
//!         &clock,
//!         &mut modem,
//!         &mut scratch,
//!         |event| {
//!             if let Event::Status(status) = event {
//!                 let _ = status; // drive the network LED here
//!             }
//!         },
//!     );
//!     embassy_futures::join::join(run, app).await;
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
    Action, Config, Connection, Handler, QueueError, Remote, Stats, Status, Transport,
};

pub use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
pub use longlink_core;

mod placeholders;
pub use placeholders::{NoDns, NoTcp, NoUdp, Unreachable};
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
    /// RTC, SNTP, the host's clock). Read at every wake-up and fed to
    /// [`Connection::handle_wall_clock`]; until it returns a plausible value
    /// the `time` command goes unanswered. Default: unknown.
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
/// `IP_READY_IND` event, `link.shut()` and `net.switchFly()`.
#[allow(async_fn_in_trait)]
pub trait Modem {
    /// Resolves with the network state (`true`: has an IP address) as soon as
    /// it differs from `known`, at once if it already does. Must be
    /// cancel-safe. The driver starts with `known == false`.
    async fn network_change(&mut self, known: bool) -> bool;

    /// Tears down and re-establishes the data link (PDP context). Report the
    /// resulting network changes through [`network_change`](Self::network_change).
    async fn reset_link(&mut self);

    /// Turns the radio off (flight mode on).
    async fn radio_off(&mut self);

    /// Turns the radio on (flight mode off).
    async fn radio_on(&mut self);
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
    async fn radio_off(&mut self) {}
    async fn radio_on(&mut self) {}
}

/// The network stacks the driver may use. Which one is used follows
/// [`Config::transport`] and [`Config::remote`].
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

/// What happened, for logs and a status LED. Delivered to the hook given to
/// [`Longlink::run`], never while the connection is locked (the hook may call
/// [`Longlink::stats`] or [`Longlink::enqueue`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The status changed (also reported once at start).
    Status(Status),
    /// The driver is about to carry out this action.
    Action(Action),
    /// A connect attempt succeeded.
    Connected {
        /// The server's address (after name resolution).
        remote: SocketAddr,
    },
    /// A connect attempt (or its name lookup) failed.
    ConnectFailed {
        /// The stack's error.
        error: &'a dyn Debug,
    },
    /// These bytes were written to the socket.
    Sent(&'a [u8]),
    /// These bytes were read from the socket (one datagram over UDP).
    Received(&'a [u8]),
    /// The peer closed the TCP connection.
    Closed,
    /// A read, write or flush failed; the connection is dropped.
    IoError {
        /// The stack's error.
        error: &'a dyn Debug,
    },
    /// A datagram larger than the receive buffer arrived and was discarded.
    DatagramTooLarge,
}

/// [`Longlink::run`] cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RunError {
    /// The scratch buffer is empty, or too small for UDP (which needs
    /// `max(R + 1, Q)` bytes).
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

    /// The connection's counters.
    pub fn stats(&self) -> Stats {
        self.lock(|c| *c.stats())
    }

    /// Messages waiting in the outgoing queue.
    pub fn queued(&self) -> usize {
        self.lock(|c| c.queued())
    }

    /// Drives the connection forever: connects, reconnects, sends, receives,
    /// cycles the radio. Returns only if it cannot start (see [`RunError`]);
    /// to stop it, drop the future (for example in a `select` with a
    /// shutdown signal). It may be called again later: the new run treats
    /// the old run's connection as lost with the network, and reconnects
    /// (queued messages are kept).
    ///
    /// `scratch` carries every read and write (see the crate docs for its
    /// size). `on_event` sees every [`Event`].
    pub async fn run<T, U, D, C, Mo, F>(
        &self,
        net: Net<T, U, D>,
        clock: &C,
        modem: &mut Mo,
        scratch: &mut [u8],
        mut on_event: F,
    ) -> Result<Infallible, RunError>
    where
        T: TcpConnect,
        U: UdpStack,
        D: Dns,
        C: Clock,
        Mo: Modem,
        F: FnMut(Event<'_>),
    {
        let config: Config = self.lock(|c| *c.config());
        let udp = config.transport == Transport::Udp;
        if scratch.is_empty() || (udp && scratch.len() < Q.max(R + 1)) {
            return Err(RunError::ScratchTooSmall);
        }
        let mut socket: Option<Socket<T::Connection<'_>, U::Connected>> = None;
        let mut network = false;
        let mut unflushed = false;
        let mut status = None;
        // This run starts with no socket and believes the network down until
        // the modem says otherwise; the core must start from the same belief.
        // After an earlier run was dropped, the core may still think it is
        // connected (through a socket that was dropped with that run) or
        // that the network is up: it would then wait on a connection that
        // does not exist and never hear of a network loss. Telling it "down"
        // (a no-op on a fresh core) makes a restart a clean reconnect.
        self.lock(|c| c.handle_network(clock.now(), false));

        loop {
            let now = clock.now();
            let wall = clock.unix_time_ms();
            self.wake.reset();
            let (action, new_status) = self.lock(|c| {
                if let Some(ms) = wall {
                    // An implausible reading (an unset RTC) is simply not used.
                    let _ = c.handle_wall_clock(now, ms);
                }
                c.handle_timeout(now);
                (c.poll_action(), c.status())
            });
            if status != Some(new_status) {
                status = Some(new_status);
                on_event(Event::Status(new_status));
            }

            if let Some(action) = action {
                on_event(Event::Action(action));
                match action {
                    Action::Close => {
                        socket = None;
                        unflushed = false;
                    }
                    Action::ResetLink => modem.reset_link().await,
                    Action::RadioOff => modem.radio_off().await,
                    Action::RadioOn => modem.radio_on().await,
                    Action::Connect { transport } => {
                        socket = None;
                        unflushed = false;
                        let deadline = self.lock(|c| c.poll_timeout());
                        // A queued message must not abort a connect in progress,
                        // so `wake` is not watched here; the connect timeout and
                        // a lost network are.
                        let outcome = select3(
                            open(&net, config.remote, transport, &mut on_event),
                            sleep(clock, deadline),
                            modem.network_change(network),
                        )
                        .await;
                        let now = clock.now();
                        match outcome {
                            Either3::First(Some(s)) => {
                                if self.lock(|c| c.handle_connected(now)).is_ok() {
                                    socket = Some(s);
                                }
                            }
                            Either3::First(None) => {
                                let _ = self.lock(|c| c.handle_connect_failed(now));
                            }
                            // The core times the attempt out at the top of the loop.
                            Either3::Second(()) => {}
                            Either3::Third(up) => {
                                network = up;
                                self.lock(|c| c.handle_network(now, up));
                            }
                        }
                    }
                }
                continue;
            }

            let Some(sock) = socket.as_mut() else {
                let deadline = self.lock(|c| c.poll_timeout());
                let outcome = select3(
                    sleep(clock, deadline),
                    self.wake.wait(),
                    modem.network_change(network),
                )
                .await;
                if let Either3::Third(up) = outcome {
                    network = up;
                    let now = clock.now();
                    self.lock(|c| c.handle_network(now, up));
                }
                continue;
            };

            // Copy what to send (or size what to read) under the lock; the
            // I/O itself runs unlocked.
            let (deadline, tx, rx) = self.lock(|c| {
                let tx = match c.poll_transmit() {
                    Some(bytes) => {
                        // UDP: the whole datagram (the scratch size check makes
                        // it fit); TCP: as much as fits, the rest next time.
                        let mut n = bytes.len().min(scratch.len());
                        scratch[..n].copy_from_slice(&bytes[..n]);
                        if !udp {
                            // TCP: the frames queued behind it go in the same
                            // write (one system call for a burst of replies
                            // rather than one each).
                            for (frame, _) in c.queued_frames().skip(1) {
                                let k = frame.len().min(scratch.len() - n);
                                scratch[n..n + k].copy_from_slice(&frame[..k]);
                                n += k;
                                if n == scratch.len() {
                                    break;
                                }
                            }
                        }
                        n
                    }
                    None => 0,
                };
                let room = c.receive_buffer().len();
                // UDP reads one byte more than fits, to tell an oversized
                // datagram from one that exactly fits.
                let rx = if udp && room > 0 { room + 1 } else { room };
                (c.poll_timeout(), tx, rx.min(scratch.len()))
            });

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
                sleep(clock, deadline),
                self.wake.wait(),
                modem.network_change(network),
            )
            .await;
            let now = clock.now();
            match outcome {
                Either4::First(Ok(Io::Sent(n))) => {
                    // A write may span several queued frames: report them to
                    // the core one at a time, each to the hook as it completes
                    // (the hook runs unlocked: it may enqueue).
                    let mut done = 0;
                    while done < n {
                        let k = self.lock(|c| {
                            let k = c.poll_transmit().map_or(0, |rest| rest.len().min(n - done));
                            if k > 0 {
                                let _ = c.handle_written(now, k);
                            }
                            k
                        });
                        if k == 0 {
                            break;
                        }
                        on_event(Event::Sent(&scratch[done..done + k]));
                        done += k;
                    }
                    unflushed = !udp;
                    self.room.signal(());
                }
                Either4::First(Ok(Io::Flushed)) => unflushed = false,
                Either4::First(Ok(Io::Received(0))) if !udp => {
                    on_event(Event::Closed);
                    let _ = self.lock(|c| c.handle_closed(now));
                }
                Either4::First(Ok(Io::Received(n))) if n == rx && udp => {
                    on_event(Event::DatagramTooLarge);
                }
                Either4::First(Ok(Io::Received(n))) => {
                    on_event(Event::Received(&scratch[..n]));
                    // `n` is within the room measured above and only this loop
                    // changes it, so the core takes all of it.
                    let _ = self.lock(|c| c.handle_received_bytes(now, &scratch[..n]));
                }
                Either4::First(Err(error)) => {
                    on_event(Event::IoError { error: &error });
                    let _ = self.lock(|c| c.handle_io_error(now));
                }
                Either4::Second(()) | Either4::Third(()) => {}
                Either4::Fourth(up) => {
                    network = up;
                    self.lock(|c| c.handle_network(now, up));
                }
            }
        }
    }
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

/// A TCP or UDP error, for [`Event`].
#[derive(Debug)]
enum SocketError<A, B> {
    Tcp(A),
    Udp(B),
}

/// The socket refused a write without an error (`Ok(0)`): treated as a
/// broken connection, since retrying would spin.
#[derive(Debug)]
struct WriteZero;

impl<T, U> Socket<T, U>
where
    T: Read + Write,
    U: ConnectedUdp,
{
    async fn send(
        &mut self,
        data: &[u8],
    ) -> Result<usize, SocketError<T::Error, Result<U::Error, WriteZero>>> {
        match self {
            Socket::Tcp(s) => match s.write(data).await {
                Ok(0) => Err(SocketError::Udp(Err(WriteZero))),
                Ok(n) => Ok(n),
                Err(e) => Err(SocketError::Tcp(e)),
            },
            Socket::Udp(s) => s
                .send(data)
                .await
                .map(|()| data.len())
                .map_err(|e| SocketError::Udp(Ok(e))),
        }
    }

    async fn flush(&mut self) -> Result<(), SocketError<T::Error, Result<U::Error, WriteZero>>> {
        match self {
            Socket::Tcp(s) => s.flush().await.map_err(SocketError::Tcp),
            Socket::Udp(_) => Ok(()),
        }
    }

    async fn receive(
        &mut self,
        buf: &mut [u8],
    ) -> Result<usize, SocketError<T::Error, Result<U::Error, WriteZero>>> {
        match self {
            Socket::Tcp(s) => s.read(buf).await.map_err(SocketError::Tcp),
            Socket::Udp(s) => s
                .receive_into(buf)
                .await
                .map_err(|e| SocketError::Udp(Ok(e))),
        }
    }
}

/// Resolves (if needed) and connects. `None` is a failed attempt, already
/// reported to `on_event`.
async fn open<'n, T, U, D, F>(
    net: &'n Net<T, U, D>,
    remote: Remote,
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
                on_event(Event::ConnectFailed { error: &error });
                return None;
            }
        },
    };
    let socket = match transport {
        Transport::Tcp => net
            .tcp
            .connect(addr)
            .await
            .map(Socket::Tcp)
            .map_err(SocketError::Tcp),
        Transport::Udp => net
            .udp
            .connect(addr)
            .await
            .map(|(_, s)| Socket::Udp(s))
            .map_err(SocketError::Udp),
    };
    match socket {
        Ok(s) => {
            on_event(Event::Connected { remote: addr });
            Some(s)
        }
        Err(error) => {
            on_event(Event::ConnectFailed { error: &error });
            None
        }
    }
}
