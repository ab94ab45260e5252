//! The [`embedded-nal-async`](embedded_nal_async) 0.9 face of [`MemNet`]
//! (feature `async`): the same sockets, peer and
//! [`Behaviour`](crate::Behaviour) switches behind [`TcpConnect`]
//! (connections implement `embedded-io-async` `Read`/`Write`),
//! [`UdpStack`] / [`ConnectedUdp`] and [`Dns`], plus a
//! [`VirtualClock`] so that minutes of protocol time run in microseconds.
//!
//! ## How the far end and time move
//!
//! Nothing here runs by itself. The far end changes only inside
//! [`AsyncMemNet::with`] (the test or firmware scripting the [`Peer`]),
//! which then wakes every pending socket future so it looks again. Time
//! moves only when someone calls [`VirtualClock::advance_to`], which wakes
//! the [`Sleep`]s that fell due. The intended executor loop (see
//! `tests/tests/nal_async_memnet.rs`) polls the client until it is idle (it
//! returned `Pending` and nothing woke it meanwhile) and only then advances
//! the clock to [`VirtualClock::next_deadline`]: time never passes while the
//! client still has work to do, so timings are exact and runs reproducible.
//!
//! ## The [`Behaviour`](crate::Behaviour) switches, as async traits see them
//!
//! | switch | blocking face | async face |
//! |---|---|---|
//! | `zero_read_means_no_data` | `Ok(0)` means "nothing yet", and is all a FIN produces | "nothing yet" is `Pending` on every async stack; what survives is that a FIN is never reported: after it, `read` stays pending forever (only an idle timeout notices) |
//! | `hides_refused_connect` | `connect` stays `WouldBlock` | the TCP `connect` future never resolves (drop it: a connect timeout); UDP sends to a refused port succeed and are lost |
//! | `sends_after_fin` | sends succeed, bytes lost | same: `write` after the FIN returns `Ok(len)` and the bytes are lost |
//! | `refused_connect_resends` | every `connect` on a refused socket is a fresh SYN ([`Stats::syns`](crate::Stats)) | not reproduced: one `connect` future is one attempt; the refused socket stays dead and the future pends |
//! | `fin_is_error` | the FIN is `Err(PipeClosed)` | the FIN is reported (`Ok(0)`), even with `zero_read_means_no_data` |
//! | `oversize_datagram_is_error` | `Err(Truncated)`, datagram gone | not reproduced: truncated, as `receive_into` documents |
//! | `full_send_is_ok_zero` | a send the peer has no room for is `Ok(0)` | not reproduced: `write` pends until there is room, as embassy-net's does |
//! | `empty_udp_receive_is_error` | error instead of `WouldBlock` | not reproduced: `receive_into` pends until a datagram arrives. An async receive has no "nothing yet" to misreport, and one that failed instead would force every caller into a polling loop |
//! | `max_send` | partial sends | partial writes |
//! | `max_read` | short reads | short reads |
//! | `would_block_every` | every n-th send is `WouldBlock` | every n-th TCP write / UDP send first pends for [`Timing::pending_ms`] (0: wakes itself at once) before taking anything |
//!
//! Without a switch, a read pends while there is nothing and returns
//! `Ok(0)` at the FIN; a refused connect is an error. A refused connect is
//! hidden as a hang, as smoltcp-nal does, rather than as a success that
//! then carries nothing: a fake success cannot be told from a server that
//! accepts and stays silent, so no connect timeout or failure count would
//! ever see it (only an idle timeout). "A fresh socket after a FIN" holds
//! by construction: every `connect` opens a new socket.
//!
//! [`Timing`] adds what only an async stack has: reads that pend first,
//! and connects that take time. A full peer window ([`Peer::send`] taking
//! 0 bytes) or an unanswered SYN ([`Accept::Pending`](crate::Accept)) pends
//! until the next [`AsyncMemNet::with`].
//!
//! Every future here takes effect only in the poll that completes it, so
//! dropping a pending one loses and duplicates nothing (cancel-safe, which
//! the longlink drivers require). A dropped connection closes its socket.

use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal::{nb, AddrType, UdpClientStack};
use embedded_nal_async::{ConnectedUdp, Dns, TcpConnect, UdpStack, UnconnectedUdp};

use crate::{Error, MemNet, Peer, Proto, Socket, TcpRead, SOCKETS};

impl embedded_io_async::Error for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::Refused => ErrorKind::ConnectionRefused,
            Error::PipeClosed => ErrorKind::BrokenPipe,
            Error::NoSocket => ErrorKind::OutOfMemory,
            Error::NotConnected => ErrorKind::NotConnected,
            Error::Misuse => ErrorKind::InvalidInput,
            Error::NotFound => ErrorKind::NotFound,
            Error::Truncated => ErrorKind::InvalidData,
        }
    }
}

/// Sleeps that can be pending at once. The longlink driver needs one; an
/// injected pending on a socket one more.
pub const SLEEPERS: usize = 8;

#[derive(Debug)]
struct Sleeper {
    at: u64,
    waker: Option<Waker>,
}

/// A clock that moves only when told to, with a fixed table of sleepers.
#[derive(Debug)]
pub struct VirtualClock {
    now: Cell<u64>,
    sleepers: RefCell<[Option<Sleeper>; SLEEPERS]>,
    overflows: Cell<u32>,
}

impl VirtualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        VirtualClock {
            now: Cell::new(start_ms),
            sleepers: RefCell::new([const { None }; SLEEPERS]),
            overflows: Cell::new(0),
        }
    }

    /// The time now, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now.get()
    }

    /// Resolves once the clock reads `at_ms` or later. Cancel-safe.
    pub fn sleep_until(&self, at_ms: u64) -> Sleep<'_> {
        Sleep {
            clock: self,
            at: at_ms,
            slot: None,
        }
    }

    /// Resolves `ms` milliseconds from now.
    pub fn sleep(&self, ms: u64) -> Sleep<'_> {
        self.sleep_until(self.now_ms().saturating_add(ms))
    }

    /// The earliest time a pending [`Sleep`] waits for: where an idle
    /// world's clock should jump to.
    pub fn next_deadline(&self) -> Option<u64> {
        self.sleepers.borrow().iter().flatten().map(|s| s.at).min()
    }

    /// Sets the clock to `ms` (never backwards) and wakes the sleepers that
    /// are due. Returns how many were woken.
    pub fn advance_to(&self, ms: u64) -> usize {
        let now = self.now.get().max(ms);
        self.now.set(now);
        // Wake outside the borrow: a waker may poll (or drop) a `Sleep`.
        let mut due: [Option<Waker>; SLEEPERS] = [const { None }; SLEEPERS];
        for (s, d) in self.sleepers.borrow_mut().iter_mut().zip(due.iter_mut()) {
            if let Some(s) = s.as_mut().filter(|s| s.at <= now) {
                *d = s.waker.take();
            }
        }
        let mut woken = 0;
        for w in due.into_iter().flatten() {
            w.wake();
            woken += 1;
        }
        woken
    }

    /// Sleeps pending now.
    pub fn sleepers(&self) -> usize {
        self.sleepers.borrow().iter().flatten().count()
    }

    /// Sleeps that found the table full and will never be woken (raise
    /// [`SLEEPERS`]); an executor should treat any as a failure.
    pub fn overflows(&self) -> u32 {
        self.overflows.get()
    }

    fn release(&self, slot: usize) {
        if let Some(s) = self.sleepers.borrow_mut().get_mut(slot) {
            *s = None;
        }
    }
}

/// The future of [`VirtualClock::sleep_until`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep<'c> {
    clock: &'c VirtualClock,
    at: u64,
    slot: Option<usize>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.clock.now_ms() >= this.at {
            if let Some(slot) = this.slot.take() {
                this.clock.release(slot);
            }
            return Poll::Ready(());
        }
        let mut table = this.clock.sleepers.borrow_mut();
        let slot = this.slot.or_else(|| table.iter().position(Option::is_none));
        match slot.and_then(|i| table.get_mut(i)) {
            Some(entry) => {
                let waker = Some(cx.waker().clone());
                match entry {
                    Some(s) => s.waker = waker,
                    None => *entry = Some(Sleeper { at: this.at, waker }),
                }
                this.slot = slot;
            }
            None => this.clock.overflows.set(this.clock.overflows.get() + 1),
        }
        Poll::Pending
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.clock.release(slot);
        }
    }
}

/// Pending once, waking itself at once: a stack that needs one more poll.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Async-only latencies (see the module docs). All in virtual
/// milliseconds; the default is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Every connect (TCP handshake) takes this long.
    pub connect_ms: u32,
    /// Every n-th TCP read / UDP receive first pends; 0 = never. (Writes
    /// follow [`Behaviour::would_block_every`](crate::Behaviour).)
    pub pending_reads_every: u32,
    /// How long an injected pending lasts; 0 = it wakes itself at once.
    /// While one lasts, every read and write on that socket waits for its
    /// end, so a call dropped and issued again does not wait twice.
    pub pending_ms: u32,
}

/// [`MemNet`] behind the embedded-nal-async traits, with its virtual clock.
///
/// The traits take `&self`, so the stack lives in a `RefCell` that is
/// borrowed only for the synchronous part of each poll, never across an
/// `.await`. Use `&AsyncMemNet` as the stack (`TcpConnect`, `UdpStack` and
/// `Dns` are all implemented for it; it is `Copy`).
pub struct AsyncMemNet<P> {
    net: RefCell<MemNet<P>>,
    clock: VirtualClock,
    timing: Cell<Timing>,
    /// One waiting socket future per socket slot.
    wakers: RefCell<[Option<Waker>; SOCKETS]>,
    /// Per slot: injected pendings last until then (a re-issued call waits
    /// for the same moment, as for a real buffer that drains at its pace).
    busy_until: RefCell<[u64; SOCKETS]>,
    reads: Cell<u32>,
}

impl<P: Peer> AsyncMemNet<P> {
    /// The async face of `net`, its clock reading `start_ms`.
    pub fn new(net: MemNet<P>, start_ms: u64) -> Self {
        AsyncMemNet {
            net: RefCell::new(net),
            clock: VirtualClock::new(start_ms),
            timing: Cell::new(Timing::default()),
            wakers: RefCell::new([const { None }; SOCKETS]),
            busy_until: RefCell::new([0; SOCKETS]),
            reads: Cell::new(0),
        }
    }

    /// The virtual clock the stack's own delays run on (share it with the
    /// driver's clock).
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// The async-only latencies.
    pub fn timing(&self) -> Timing {
        self.timing.get()
    }

    /// Changes the async-only latencies (takes effect at the next call).
    pub fn set_timing(&self, timing: Timing) {
        self.timing.set(timing);
    }

    /// Runs `f` on the stack (its peer, behaviour and counters), then wakes
    /// every pending socket future, since the far end may have changed.
    /// Must not be called from inside `f` (the stack is borrowed).
    pub fn with<T>(&self, f: impl FnOnce(&mut MemNet<P>) -> T) -> T {
        let out = f(&mut self.net.borrow_mut());
        self.wake(None);
        out
    }

    /// The blocking stack back.
    pub fn into_inner(self) -> MemNet<P> {
        self.net.into_inner()
    }

    fn register(&self, slot: usize, cx: &Context<'_>) {
        if let Some(w) = self.wakers.borrow_mut().get_mut(slot) {
            match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
    }

    /// Wakes every waiting socket future but `except`'s.
    fn wake(&self, except: Option<usize>) {
        let mut taken: [Option<Waker>; SOCKETS] = [const { None }; SOCKETS];
        for (i, (w, t)) in self
            .wakers
            .borrow_mut()
            .iter_mut()
            .zip(taken.iter_mut())
            .enumerate()
        {
            if Some(i) != except {
                *t = w.take();
            }
        }
        for w in taken.into_iter().flatten() {
            w.wake();
        }
    }

    /// The injected pending: a drawn one starts the slot's busy time
    /// unless one is running; any call on the slot waits for its end.
    async fn pend(&self, slot: usize, draw: bool) {
        let now = self.clock.now_ms();
        let ms = u64::from(self.timing.get().pending_ms);
        if draw && ms == 0 {
            return YieldOnce(false).await;
        }
        let until = {
            let mut busy = self.busy_until.borrow_mut();
            let Some(until) = busy.get_mut(slot) else {
                return;
            };
            // A call issued again during a stall waits for the same end.
            if draw && *until <= now {
                *until = now + ms;
            }
            *until
        };
        if until > now {
            self.clock.sleep_until(until).await;
        }
    }

    fn draw_read_pending(&self) -> bool {
        let n = self.reads.get().wrapping_add(1);
        self.reads.set(n);
        let every = self.timing.get().pending_reads_every;
        every != 0 && n.is_multiple_of(every)
    }

    fn close(&self, sock: Socket, proto: Proto) {
        let slot = sock.slot;
        // Only fails while `with` runs, which cannot drop a connection.
        if let Ok(mut net) = self.net.try_borrow_mut() {
            let _ = net.close_slot(sock, proto);
        }
        if let Some(w) = self.wakers.borrow_mut().get_mut(slot) {
            *w = None;
        }
        if let Some(b) = self.busy_until.borrow_mut().get_mut(slot) {
            *b = 0;
        }
        // The peer saw the close and may have something for another socket.
        self.wake(Some(slot));
    }
}

/// A TCP connection of [`AsyncMemNet`]; closes its socket when dropped.
pub struct TcpConnection<'a, P: Peer> {
    stack: &'a AsyncMemNet<P>,
    /// `Some` until dropped.
    sock: Option<Socket>,
}

impl<P: Peer> Drop for TcpConnection<'_, P> {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take() {
            self.stack.close(sock, Proto::Tcp);
        }
    }
}

impl<P: Peer> ErrorType for TcpConnection<'_, P> {
    type Error = Error;
}

impl<P: Peer> Read for TcpConnection<'_, P> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let stack = self.stack;
        let sock = self.sock.as_ref().ok_or(Error::Misuse)?;
        stack.pend(sock.slot, stack.draw_read_pending()).await;
        poll_fn(|cx| {
            let mut net = stack.net.borrow_mut();
            let hide_fin = net.behaviour.zero_read_means_no_data && !net.behaviour.fin_is_error;
            match net.tcp_read(sock, buf) {
                Ok(TcpRead::Data(n)) if n > 0 => Poll::Ready(Ok(n)),
                // Zero bytes is no TCP segment at all; look again.
                Ok(TcpRead::Data(_)) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Ok(TcpRead::Eof) if !hide_fin => Poll::Ready(Ok(0)),
                Ok(TcpRead::Nothing | TcpRead::Eof) | Err(nb::Error::WouldBlock) => {
                    drop(net);
                    stack.register(sock.slot, cx);
                    Poll::Pending
                }
                Err(nb::Error::Other(e)) => Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

impl<P: Peer> Write for TcpConnection<'_, P> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let stack = self.stack;
        let sock = self.sock.as_ref().ok_or(Error::Misuse)?;
        let draw = stack.net.borrow_mut().injected_block();
        stack.pend(sock.slot, draw).await;
        poll_fn(|cx| {
            let sent = stack.net.borrow_mut().tcp_send(sock, buf, false);
            match sent {
                Ok(n) => {
                    stack.wake(Some(sock.slot));
                    Poll::Ready(Ok(n))
                }
                // The peer's window is full: wait for it to read (`with`).
                Err(nb::Error::WouldBlock) => {
                    stack.register(sock.slot, cx);
                    Poll::Pending
                }
                Err(nb::Error::Other(e)) => Poll::Ready(Err(e)),
            }
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let sock = self.sock.as_ref().ok_or(Error::Misuse)?;
        self.stack
            .net
            .borrow_mut()
            .slot(sock, Proto::Tcp)
            .map(|_| ())
    }
}

impl<P: Peer> TcpConnect for AsyncMemNet<P> {
    type Error = Error;
    type Connection<'a>
        = TcpConnection<'a, P>
    where
        Self: 'a;

    async fn connect<'a>(&'a self, remote: SocketAddr) -> Result<TcpConnection<'a, P>, Error> {
        let sock = self.net.borrow_mut().open(Proto::Tcp)?;
        let slot = sock.slot;
        // Owned from here on, so a failed or dropped attempt closes it.
        let conn = TcpConnection {
            stack: self,
            sock: Some(sock),
        };
        let handshake = self.timing.get().connect_ms;
        if handshake > 0 {
            self.clock.sleep(u64::from(handshake)).await;
        }
        poll_fn(|cx| {
            let started = self.net.borrow_mut().start(slot, Proto::Tcp, remote, false);
            match started {
                Ok(()) => Poll::Ready(Ok(())),
                // No answer yet, or a refusal the stack hides.
                Err(nb::Error::WouldBlock) => {
                    self.register(slot, cx);
                    Poll::Pending
                }
                Err(nb::Error::Other(e)) => Poll::Ready(Err(e)),
            }
        })
        .await?;
        Ok(conn)
    }
}

/// A connected UDP socket of [`AsyncMemNet`]; closes when dropped.
pub struct UdpConnection<'a, P: Peer> {
    stack: &'a AsyncMemNet<P>,
    /// `Some` until dropped.
    sock: Option<Socket>,
}

impl<P: Peer> Drop for UdpConnection<'_, P> {
    fn drop(&mut self) {
        if let Some(sock) = self.sock.take() {
            self.stack.close(sock, Proto::Udp);
        }
    }
}

impl<P: Peer> ConnectedUdp for UdpConnection<'_, P> {
    type Error = Error;

    async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        let stack = self.stack;
        let sock = self.sock.as_ref().ok_or(Error::Misuse)?;
        let draw = stack.net.borrow_mut().injected_block();
        stack.pend(sock.slot, draw).await;
        let sent = stack.net.borrow_mut().udp_send(sock, data, false);
        match sent {
            Ok(()) => {
                stack.wake(Some(sock.slot));
                Ok(())
            }
            // Not injected here, and a datagram never waits for a window.
            Err(nb::Error::WouldBlock) => Ok(()),
            Err(nb::Error::Other(e)) => Err(e),
        }
    }

    async fn receive_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let stack = self.stack;
        let sock = self.sock.as_ref().ok_or(Error::Misuse)?;
        stack.pend(sock.slot, stack.draw_read_pending()).await;
        poll_fn(|cx| {
            // Truncated, as embedded-nal-async's `receive_into` documents (the
            // driver reads one byte more to tell).
            let got = stack.net.borrow_mut().udp_read(sock, buf, false);
            match got {
                Ok(Some((n, _))) => Poll::Ready(Ok(n)),
                Ok(None) => {
                    stack.register(sock.slot, cx);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

/// Unconnected UDP is not modelled: [`UdpStack::bind_single`] and
/// [`UdpStack::bind_multiple`] fail, so this type has no values.
#[derive(Debug)]
pub enum Unbound {}

impl UnconnectedUdp for Unbound {
    type Error = Error;

    async fn send(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) -> Result<(), Error> {
        match *self {}
    }

    async fn receive_into(
        &mut self,
        _: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), Error> {
        match *self {}
    }
}

impl<'a, P: Peer> UdpStack for &'a AsyncMemNet<P> {
    type Error = Error;
    type Connected = UdpConnection<'a, P>;
    type UniquelyBound = Unbound;
    type MultiplyBound = Unbound;

    async fn connect_from(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(SocketAddr, UdpConnection<'a, P>), Error> {
        let stack: &'a AsyncMemNet<P> = self;
        let mut net = stack.net.borrow_mut();
        let mut sock = net.open(Proto::Udp)?;
        if let Err(e) = UdpClientStack::connect(&mut *net, &mut sock, remote) {
            let _ = net.close_slot(sock, Proto::Udp);
            return Err(e);
        }
        drop(net);
        let ip = match (local.ip(), remote) {
            (ip, _) if !ip.is_unspecified() => ip,
            (_, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            (_, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2)),
        };
        let port = match local.port() {
            // An ephemeral port per slot.
            0 => 49_152 + sock.slot as u16,
            p => p,
        };
        let conn = UdpConnection {
            stack,
            sock: Some(sock),
        };
        Ok((SocketAddr::new(ip, port), conn))
    }

    async fn bind_single(&self, _: SocketAddr) -> Result<(SocketAddr, Unbound), Error> {
        Err(Error::Misuse)
    }

    async fn bind_multiple(&self, _: SocketAddr) -> Result<Unbound, Error> {
        Err(Error::Misuse)
    }
}

impl<P: Peer> Dns for AsyncMemNet<P> {
    type Error = Error;

    async fn get_host_by_name(&self, host: &str, addr_type: AddrType) -> Result<IpAddr, Error> {
        let found =
            embedded_nal::Dns::get_host_by_name(&mut *self.net.borrow_mut(), host, addr_type);
        found.map_err(|e| match e {
            nb::Error::Other(e) => e,
            nb::Error::WouldBlock => Error::NotFound,
        })
    }

    async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, Error> {
        Err(Error::NotFound)
    }
}
