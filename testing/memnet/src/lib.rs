//! # longlink-memnet
//!
//! An in-memory [`embedded-nal`](embedded_nal) 0.9 stack (TCP, UDP, DNS)
//! whose far end is a [`Peer`] you script: no sockets, no allocation, no
//! clock, so the same test server runs on a laptop and inside firmware under
//! QEMU.
//!
//! Its [`Behaviour`] switches reproduce how real stacks disagree, so a driver
//! can be tested against each: [`Behaviour::CONFORMANT`] follows the trait
//! docs like `std-embedded-nal`, [`Behaviour::SMOLTCP_NAL`] copies
//! `smoltcp-nal` 0.7 as checked against the real crate (`testing/STACKS.md`,
//! `testing/realnet`): `Ok(0)` from a TCP receive means "no data yet", the
//! peer's FIN and RST are errors at once, a refused connect is never
//! reported but every `connect()` call on the refused socket is a fresh
//! SYN, sends after the peer's FIN are accepted, an empty UDP receive is an
//! error and an oversize datagram an error (and gone).
//! [`Behaviour::SILENT`] is a stack that hides both a refusal and the peer's
//! close (what this crate used to take smoltcp-nal for), for testing the
//! timeouts that catch them. Partial sends, short reads and spurious
//! `WouldBlock`s can be switched on with any.
//!
//! ## Each mode against the real stacks
//!
//! | edge | `CONFORMANT` (std-embedded-nal 0.4) | `SMOLTCP_NAL` (smoltcp-nal 0.7.0, STACKS.md) | `SILENT` |
//! |---|---|---|---|
//! | TCP receive, no data | `WouldBlock` | `Ok(0)` (real: `Ok(0)`) | `Ok(0)` |
//! | TCP receive after FIN | `Ok(0)` | `Err(PipeClosed)` (real: `TcpReadFailure(Finished)`, kind `PipeClosed`) | `Ok(0)`, read as "no data": hidden |
//! | TCP receive after RST | `Err(PipeClosed)` | `Err(PipeClosed)` (real: `TcpReadFailure(InvalidState)`, kind `PipeClosed`) | same |
//! | refused connect | `Err(Refused)` | `WouldBlock`; each later `connect()` asks the peer again, one SYN each ([`Stats::syns`]) (real: a fresh SYN per call) | `WouldBlock` for ever, no new SYN |
//! | `connect()` while the peer has not answered | `WouldBlock`, no new SYN | same (real: SYN-SENT, no new SYN) | same |
//! | send after the peer's FIN | `Err(PipeClosed)` | accepted, counted in [`Stats::lost_after_fin`] (real: accepted and transmitted; lost unless the peer only half-closed) | same as `SMOLTCP_NAL` |
//! | TCP send, peer window full | `WouldBlock` | `Ok(0)` (real: `Ok(0)` from a full send buffer) | `Ok(0)` |
//! | UDP receive, nothing pending | `WouldBlock` | error (real: `UdpReadFailure(Exhausted)`) | error |
//! | UDP datagram larger than the buffer | truncated | `Err(Truncated)`, the datagram is gone (real: `UdpReadFailure(Truncated)`, dropped) | truncated |
//! | UDP send, buffer full | not modelled: the peer takes every datagram (real smoltcp-nal: `UdpWriteFailure(BufferFull)` after the socket's packet slots; see `tests/tests/real_smoltcp.rs`) | | |
//!
//! The async face ([`nal_async`]) maps the same switches onto what
//! embedded-nal-async can express (see its docs).
//!
//! With the `async` feature, [`nal_async`] puts the same stack behind the
//! `embedded-nal-async` traits, on a virtual clock, with the switches
//! mapped to what async traits can express (see its docs).
//!
//! The stack also checks its user: [`Stats::misuse`] counts calls a real
//! stack would reject or mishandle (a socket used after close, connecting
//! a socket twice, reusing a socket after a FIN), and a small socket table
//! makes a socket leak fail the next `socket()` call.
//!
//! ## Example: a firmware test
//!
//! Your firmware talks to its server through `longlink-nal`'s `Driver` over
//! any embedded-nal stack; in a test the stack is a [`MemNet`] and the
//! server a [`Peer`] you script. Here the server answers `ping` with
//! `pong`, and the test checks that the firmware's handler (a
//! `longlink-core` `Handler`) got it, over a stack that follows the trait
//! docs and over one that behaves like smoltcp-nal, with partial sends on
//! top. Code that calls the embedded-nal traits itself, without the
//! `Driver`, is tested the same way.
//!
//! ```
//! use core::net::SocketAddr;
//! use longlink_memnet::{Accept, Behaviour, Conn, MemNet, Peer, Proto, Read};
//! use longlink_nal::longlink_core::time::Instant;
//! use longlink_nal::longlink_core::{Config, Context, Framing, Handler, Remote, Reply, ReplyFull};
//! use longlink_nal::{AlwaysUp, Driver, Quirks};
//!
//! /// The test's server, scripted: answers every line `ping` with `pong` and
//! /// keeps everything the client sent.
//! #[derive(Default)]
//! struct PingServer {
//!     received: Vec<u8>,
//!     scanned: usize,
//!     outbox: Vec<u8>,
//! }
//!
//! impl Peer for PingServer {
//!     fn connect(&mut self, _: Proto, _: SocketAddr) -> Accept {
//!         Accept::Yes // or Accept::Refuse, Accept::Pending
//!     }
//!     fn send(&mut self, _: Conn, data: &[u8]) -> usize {
//!         self.received.extend_from_slice(data);
//!         // TCP may split or glue lines: answer whole ones only.
//!         while let Some(n) = self.received[self.scanned..].iter().position(|&b| b == b'\n') {
//!             if self.received[self.scanned..self.scanned + n] == *b"ping" {
//!                 self.outbox.extend_from_slice(b"pong\n");
//!             }
//!             self.scanned += n + 1;
//!         }
//!         data.len() // 0 would be a full window
//!     }
//!     fn receive(&mut self, _: Conn, buf: &mut [u8]) -> Read {
//!         if self.outbox.is_empty() {
//!             return Read::Nothing; // or Read::Fin, Read::Reset
//!         }
//!         let n = self.outbox.len().min(buf.len());
//!         buf[..n].copy_from_slice(&self.outbox[..n]);
//!         self.outbox.drain(..n);
//!         Read::Data(n)
//!     }
//! }
//!
//! /// The firmware's own code under test: what it does with the server's
//! /// messages.
//! #[derive(Default)]
//! struct App {
//!     pongs: u32,
//! }
//!
//! impl Handler for App {
//!     fn on_message(&mut self, msg: &[u8], _: &Context, _: &mut Reply<'_>) -> Result<(), ReplyFull> {
//!         if msg == b"pong" {
//!             self.pongs += 1;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let server: SocketAddr = "192.0.2.1:50798".parse().unwrap();
//! let config = Config {
//!     framing: Framing::Lines,
//!     heartbeat_interval: None, // nothing but our message on the wire
//!     ..Config::default()
//! };
//! // The same test over a stack that follows the trait docs and over one
//! // that behaves like smoltcp-nal, with the driver told which it is.
//! for (behaviour, quirks) in [
//!     (Behaviour::CONFORMANT, Quirks::CONFORMANT),
//!     (Behaviour::SMOLTCP_NAL, Quirks::SMOLTCP_NAL),
//! ] {
//!     let mut net = MemNet::new(PingServer::default(), behaviour);
//!     net.behaviour.max_send = 3; // and partial sends on top
//!     let mut ms = 0;
//!     let clock = move || {
//!         ms += 10; // a virtual clock: 10 ms per poll
//!         Instant::from_millis(ms)
//!     };
//!     let mut link: Driver<_, _, _, App, 256, 128> =
//!         Driver::new(net, clock, AlwaysUp, Remote::Addr(server), config.clone(), App::default())
//!             .unwrap()
//!             .quirks(quirks);
//!     link.enqueue(b"ping").unwrap();
//!     for _ in 0..10 {
//!         link.poll();
//!     }
//!     assert_eq!(link.connection().handler().pongs, 1);
//!     let net = link.stack_mut();
//!     assert_eq!(net.peer.received, b"ping\n");
//!     assert_eq!((net.stats.connects, net.stats.misuse), (1, 0));
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]

use core::net::{IpAddr, SocketAddr};

use embedded_nal::{nb, AddrType, Dns, TcpClientStack, TcpError, TcpErrorKind, UdpClientStack};

/// TCP or UDP, as the peer sees a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// A TCP connection.
    Tcp,
    /// A connected UDP socket.
    Udp,
}

/// The peer's answer to a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Connection established.
    Yes,
    /// Refused (RST / ICMP unreachable).
    Refuse,
    /// No answer yet (SYN lost, server slow): ask again later.
    Pending,
}

/// What the peer has for a receive call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// `n` bytes (TCP) were written to the buffer, or one datagram of `n`
    /// bytes arrived (UDP), of which `min(n, buf.len())` were written: an
    /// `n` above the buffer's length reports an oversize datagram.
    Data(usize),
    /// Nothing to read now.
    Nothing,
    /// TCP: the peer sent FIN (end of stream). The connection stays half
    /// open on this side until the client closes it.
    Fin,
    /// TCP: the peer reset the connection.
    Reset,
}

/// A connection's identity for the peer: a number that grows with every
/// established connection, plus where it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// 1 for the first established connection, then 2, 3...
    pub id: u32,
    /// TCP or UDP.
    pub proto: Proto,
    /// The address the client connected to.
    pub remote: SocketAddr,
}

/// The far end: a scripted server (or several, told apart by
/// [`Conn::remote`]).
pub trait Peer {
    /// A client connects to `remote`.
    fn connect(&mut self, proto: Proto, remote: SocketAddr) -> Accept;
    /// The client sends `data` (TCP bytes or one UDP datagram) on `conn`.
    /// Returns how many bytes the peer takes (TCP; 0 means "window full")
    /// or anything for UDP (a datagram is all or nothing).
    fn send(&mut self, conn: Conn, data: &[u8]) -> usize;
    /// The client reads on `conn`.
    fn receive(&mut self, conn: Conn, buf: &mut [u8]) -> Read;
    /// The client closed `conn`.
    fn closed(&mut self, conn: Conn) {
        let _ = conn;
    }
    /// DNS: the address of `host`, if known.
    fn resolve(&mut self, host: &str) -> Option<IpAddr> {
        let _ = host;
        None
    }
}

/// How the stack behaves at the edges (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviour {
    /// TCP receive with nothing to read returns `Ok(0)` instead of
    /// `WouldBlock`.
    pub zero_read_means_no_data: bool,
    /// A refused connect is never reported: `connect` stays `WouldBlock`.
    pub hides_refused_connect: bool,
    /// With `hides_refused_connect`: every `connect` call on a refused
    /// socket is a new connect to the peer (a fresh SYN, as smoltcp-nal
    /// sends), counted in [`Stats::syns`]. Without it the socket stays
    /// silently dead.
    pub refused_connect_resends: bool,
    /// After the peer's FIN a TCP receive fails with `PipeClosed` instead of
    /// returning `Ok(0)` (smoltcp-nal: `TcpReadFailure(Finished)`).
    pub fin_is_error: bool,
    /// After the peer's FIN, sends succeed and the bytes are lost (instead
    /// of a `PipeClosed` error).
    pub sends_after_fin: bool,
    /// A TCP send the peer has no room for returns `Ok(0)` instead of
    /// `WouldBlock` (smoltcp-nal: a full send buffer). Blocking face only.
    pub full_send_is_ok_zero: bool,
    /// A UDP receive with nothing to read is an error instead of
    /// `WouldBlock`.
    pub empty_udp_receive_is_error: bool,
    /// A UDP datagram larger than the receive buffer is an error
    /// ([`Error::Truncated`]) and is gone, instead of being truncated into
    /// the buffer.
    pub oversize_datagram_is_error: bool,
    /// Largest number of bytes one TCP send takes (partial writes); 0 = no
    /// limit.
    pub max_send: usize,
    /// Every n-th send returns `WouldBlock` without taking anything; 0 = never.
    pub would_block_every: u32,
    /// Largest number of bytes one TCP receive returns (short reads); 0 = no
    /// limit.
    pub max_read: usize,
}

impl Behaviour {
    /// Follows the trait docs, like `std-embedded-nal` 0.4.
    pub const CONFORMANT: Behaviour = Behaviour {
        zero_read_means_no_data: false,
        hides_refused_connect: false,
        refused_connect_resends: false,
        fin_is_error: false,
        sends_after_fin: false,
        full_send_is_ok_zero: false,
        empty_udp_receive_is_error: false,
        oversize_datagram_is_error: false,
        max_send: 0,
        would_block_every: 0,
        max_read: 0,
    };

    /// Like `smoltcp-nal` 0.7.0 over smoltcp 0.12, as checked against the
    /// real crate (`testing/STACKS.md`).
    pub const SMOLTCP_NAL: Behaviour = Behaviour {
        zero_read_means_no_data: true,
        hides_refused_connect: true,
        refused_connect_resends: true,
        fin_is_error: true,
        sends_after_fin: true,
        full_send_is_ok_zero: true,
        empty_udp_receive_is_error: true,
        oversize_datagram_is_error: true,
        max_send: 0,
        would_block_every: 0,
        max_read: 0,
    };

    /// A stack that reports neither a refused connect (nor sends a new SYN
    /// for it) nor the peer's close: `Ok(0)` is all a FIN produces. No real
    /// stack checked so far is this silent; it is the worst case that the
    /// core's `connect_timeout` and `idle_timeout` exist for.
    pub const SILENT: Behaviour = Behaviour {
        zero_read_means_no_data: true,
        hides_refused_connect: true,
        refused_connect_resends: false,
        fin_is_error: false,
        sends_after_fin: true,
        full_send_is_ok_zero: true,
        empty_udp_receive_is_error: true,
        oversize_datagram_is_error: false,
        max_send: 0,
        would_block_every: 0,
        max_read: 0,
    };
}

/// Counters, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `socket()` calls that succeeded.
    pub sockets_opened: u32,
    /// `close()` calls.
    pub sockets_closed: u32,
    /// `socket()` calls refused because every slot was in use (a leak).
    pub sockets_exhausted: u32,
    /// Connects the peer accepted.
    pub connects: u32,
    /// Connects the peer refused (reported or not).
    pub refused: u32,
    /// TCP connects offered to the peer: the SYNs a real stack would send
    /// (a socket's first `connect`, and with
    /// [`Behaviour::refused_connect_resends`] every later one on a refused
    /// socket). Asking again while the peer has not answered is not one.
    pub syns: u32,
    /// Calls a real stack would reject or mishandle.
    pub misuse: u32,
    /// Sends that returned `WouldBlock` (injected or window full).
    pub would_blocks: u32,
    /// Bytes sent after the peer's FIN and lost (`sends_after_fin`).
    pub lost_after_fin: u32,
}

/// The stack's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Connection refused.
    Refused,
    /// The peer closed or reset the connection.
    PipeClosed,
    /// No free socket.
    NoSocket,
    /// Not connected, or a UDP receive with nothing to read
    /// (`empty_udp_receive_is_error`).
    NotConnected,
    /// The socket handle is stale or was used the wrong way.
    Misuse,
    /// Name not found.
    NotFound,
    /// A UDP datagram did not fit the buffer and was discarded
    /// ([`Behaviour::oversize_datagram_is_error`]).
    Truncated,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Refused => "connection refused",
            Error::PipeClosed => "connection closed by the peer",
            Error::NoSocket => "no free socket",
            Error::NotConnected => "not connected",
            Error::Misuse => "socket misused",
            Error::NotFound => "name not found",
            Error::Truncated => "datagram larger than the buffer, discarded",
        })
    }
}

impl core::error::Error for Error {}

impl TcpError for Error {
    fn kind(&self) -> TcpErrorKind {
        match self {
            Error::PipeClosed => TcpErrorKind::PipeClosed,
            _ => TcpErrorKind::Other,
        }
    }
}

/// A socket handle: an index into the stack's table plus a generation, so a
/// stale handle is caught.
#[derive(Debug, PartialEq, Eq)]
pub struct Socket {
    slot: usize,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    Connecting(SocketAddr),
    Connected(Conn),
    /// The peer sent FIN.
    Fin(Conn),
    /// Refused: the socket is dead (reported or not).
    Dead,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    state: State,
    generation: u32,
    proto: Proto,
    /// Was connected once: connecting it again is misuse (a fresh socket is
    /// needed after a FIN on smoltcp).
    used: bool,
}

/// Sockets available at once: the driver needs one, SNTP a second. A third
/// would be a leak.
pub const SOCKETS: usize = 3;

/// The in-memory stack.
pub struct MemNet<P> {
    /// The far end.
    pub peer: P,
    /// Edge-case behaviour; may be changed at any time.
    pub behaviour: Behaviour,
    /// Counters.
    pub stats: Stats,
    slots: [Slot; SOCKETS],
    next_conn: u32,
    sends: u32,
}

impl<P: Peer> MemNet<P> {
    /// A stack in front of `peer`.
    pub fn new(peer: P, behaviour: Behaviour) -> Self {
        MemNet {
            peer,
            behaviour,
            stats: Stats::default(),
            slots: [Slot {
                state: State::Free,
                generation: 0,
                proto: Proto::Tcp,
                used: false,
            }; SOCKETS],
            next_conn: 0,
            sends: 0,
        }
    }

    /// Sockets currently open (not closed by the user).
    pub fn open_sockets(&self) -> usize {
        self.slots.iter().filter(|s| s.state != State::Free).count()
    }

    fn open(&mut self, proto: Proto) -> Result<Socket, Error> {
        let Some(slot) = self.slots.iter().position(|s| s.state == State::Free) else {
            self.stats.sockets_exhausted += 1;
            return Err(Error::NoSocket);
        };
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        s.state = State::Open;
        s.proto = proto;
        s.used = false;
        self.stats.sockets_opened += 1;
        Ok(Socket {
            slot,
            generation: s.generation,
        })
    }

    fn slot(&mut self, sock: &Socket, proto: Proto) -> Result<usize, Error> {
        match self.slots.get(sock.slot) {
            Some(s)
                if s.generation == sock.generation
                    && s.state != State::Free
                    && s.proto == proto =>
            {
                Ok(sock.slot)
            }
            _ => {
                self.stats.misuse += 1;
                Err(Error::Misuse)
            }
        }
    }

    fn close_slot(&mut self, sock: Socket, proto: Proto) -> Result<(), Error> {
        let i = self.slot(&sock, proto)?;
        if let State::Connected(c) | State::Fin(c) = self.slots[i].state {
            self.peer.closed(c);
        }
        self.slots[i].state = State::Free;
        self.stats.sockets_closed += 1;
        Ok(())
    }

    /// `blocking`: called by the blocking face's `connect` (the async face
    /// polls one connect; it never calls `connect` again, so a refused
    /// socket just stays dead there).
    fn start(
        &mut self,
        i: usize,
        proto: Proto,
        remote: SocketAddr,
        blocking: bool,
    ) -> nb::Result<(), Error> {
        match self.slots[i].state {
            State::Open if self.slots[i].used => {
                self.stats.misuse += 1;
                return Err(nb::Error::Other(Error::Misuse));
            }
            State::Open => {
                if proto == Proto::Tcp {
                    self.stats.syns += 1;
                }
            }
            State::Connecting(addr) if addr == remote => {}
            // smoltcp-nal: the RST closed the socket, and `connect` on a
            // closed socket starts over from a new port.
            State::Dead
                if self.behaviour.hides_refused_connect
                    && self.behaviour.refused_connect_resends
                    && blocking
                    && proto == Proto::Tcp =>
            {
                self.stats.syns += 1;
            }
            State::Dead if self.behaviour.hides_refused_connect => {
                return Err(nb::Error::WouldBlock)
            }
            _ => {
                self.stats.misuse += 1;
                return Err(nb::Error::Other(Error::Misuse));
            }
        }
        match self.peer.connect(proto, remote) {
            Accept::Yes => {
                self.next_conn += 1;
                self.stats.connects += 1;
                let conn = Conn {
                    id: self.next_conn,
                    proto,
                    remote,
                };
                self.slots[i].state = State::Connected(conn);
                self.slots[i].used = true;
                Ok(())
            }
            Accept::Pending => {
                self.slots[i].state = State::Connecting(remote);
                Err(nb::Error::WouldBlock)
            }
            Accept::Refuse => {
                self.stats.refused += 1;
                self.slots[i].state = State::Dead;
                if self.behaviour.hides_refused_connect {
                    Err(nb::Error::WouldBlock)
                } else {
                    Err(nb::Error::Other(Error::Refused))
                }
            }
        }
    }

    /// Injected `WouldBlock` on every n-th send.
    fn injected_block(&mut self) -> bool {
        self.sends = self.sends.wrapping_add(1);
        let every = self.behaviour.would_block_every;
        let block = every != 0 && self.sends.is_multiple_of(every);
        if block {
            self.stats.would_blocks += 1;
        }
        block
    }
}

impl<P: Peer> TcpClientStack for MemNet<P> {
    type TcpSocket = Socket;
    type Error = Error;

    fn socket(&mut self) -> Result<Socket, Error> {
        self.open(Proto::Tcp)
    }

    fn connect(&mut self, sock: &mut Socket, remote: SocketAddr) -> nb::Result<(), Error> {
        let i = self.slot(sock, Proto::Tcp)?;
        self.start(i, Proto::Tcp, remote, true)
    }

    fn send(&mut self, sock: &mut Socket, data: &[u8]) -> nb::Result<usize, Error> {
        self.tcp_send(sock, data, true)
    }

    fn receive(&mut self, sock: &mut Socket, buf: &mut [u8]) -> nb::Result<usize, Error> {
        match self.tcp_read(sock, buf)? {
            TcpRead::Data(n) => Ok(n),
            TcpRead::Nothing if self.behaviour.zero_read_means_no_data => Ok(0),
            TcpRead::Nothing => Err(nb::Error::WouldBlock),
            TcpRead::Eof if self.behaviour.fin_is_error => Err(nb::Error::Other(Error::PipeClosed)),
            TcpRead::Eof => Ok(0),
        }
    }

    fn close(&mut self, sock: Socket) -> Result<(), Error> {
        self.close_slot(sock, Proto::Tcp)
    }
}

/// What a TCP receive found, before a [`Behaviour`] decides how to report
/// it (the blocking and async faces report "nothing" differently).
enum TcpRead {
    Data(usize),
    Nothing,
    Eof,
}

impl<P: Peer> MemNet<P> {
    /// `inject`: whether `would_block_every` applies here (the async face
    /// injects its own pending instead).
    fn tcp_send(&mut self, sock: &Socket, data: &[u8], inject: bool) -> nb::Result<usize, Error> {
        let i = self.slot(sock, Proto::Tcp)?;
        match self.slots[i].state {
            State::Connected(c) => {
                if inject && self.injected_block() {
                    return Err(nb::Error::WouldBlock);
                }
                let max = match self.behaviour.max_send {
                    0 => data.len(),
                    m => m.min(data.len()),
                };
                match self.peer.send(c, &data[..max]).min(max) {
                    // `inject` is the blocking face: the async one pends.
                    0 if !data.is_empty() && inject && self.behaviour.full_send_is_ok_zero => {
                        self.stats.would_blocks += 1;
                        Ok(0)
                    }
                    0 if !data.is_empty() => {
                        self.stats.would_blocks += 1;
                        Err(nb::Error::WouldBlock)
                    }
                    n => Ok(n),
                }
            }
            State::Fin(_) if self.behaviour.sends_after_fin => {
                self.stats.lost_after_fin += data.len() as u32;
                Ok(data.len())
            }
            State::Fin(_) => Err(nb::Error::Other(Error::PipeClosed)),
            State::Connecting(_) => Err(nb::Error::WouldBlock),
            _ => Err(nb::Error::Other(Error::NotConnected)),
        }
    }

    fn tcp_read(&mut self, sock: &Socket, buf: &mut [u8]) -> nb::Result<TcpRead, Error> {
        let i = self.slot(sock, Proto::Tcp)?;
        let c = match self.slots[i].state {
            State::Connected(c) => c,
            State::Fin(_) => return Ok(TcpRead::Eof),
            State::Connecting(_) => return Err(nb::Error::WouldBlock),
            _ => return Err(nb::Error::Other(Error::NotConnected)),
        };
        let buf = match self.behaviour.max_read {
            0 => buf,
            m => {
                let m = m.min(buf.len());
                &mut buf[..m]
            }
        };
        match self.peer.receive(c, buf) {
            Read::Data(n) => Ok(TcpRead::Data(n.min(buf.len()))),
            Read::Nothing => Ok(TcpRead::Nothing),
            Read::Fin => {
                self.slots[i].state = State::Fin(c);
                Ok(TcpRead::Eof)
            }
            Read::Reset => {
                self.slots[i].state = State::Dead;
                self.peer.closed(c);
                Err(nb::Error::Other(Error::PipeClosed))
            }
        }
    }

    /// `inject` as for [`tcp_send`](Self::tcp_send).
    fn udp_send(&mut self, sock: &Socket, data: &[u8], inject: bool) -> nb::Result<(), Error> {
        let i = self.slot(sock, Proto::Udp)?;
        match self.slots[i].state {
            State::Connected(c) => {
                if inject && self.injected_block() {
                    return Err(nb::Error::WouldBlock);
                }
                self.peer.send(c, data);
                Ok(())
            }
            // Port unreachable. smoltcp never learns it; std reports
            // ECONNREFUSED.
            State::Dead if self.behaviour.hides_refused_connect => Ok(()),
            State::Dead => Err(nb::Error::Other(Error::Refused)),
            _ => Err(nb::Error::Other(Error::NotConnected)),
        }
    }

    /// One datagram, or `None` when there is none (how "none" is reported is
    /// up to the face). An oversize datagram is truncated, or an error when
    /// `oversize_is_error`.
    fn udp_read(
        &mut self,
        sock: &Socket,
        buf: &mut [u8],
        oversize_is_error: bool,
    ) -> Result<Option<(usize, SocketAddr)>, Error> {
        let i = self.slot(sock, Proto::Udp)?;
        let State::Connected(c) = self.slots[i].state else {
            return Ok(None);
        };
        match self.peer.receive(c, buf) {
            Read::Data(n) if n > buf.len() && oversize_is_error => Err(Error::Truncated),
            Read::Data(n) => Ok(Some((n.min(buf.len()), c.remote))),
            _ => Ok(None),
        }
    }
}

impl<P: Peer> UdpClientStack for MemNet<P> {
    type UdpSocket = Socket;
    type Error = Error;

    fn socket(&mut self) -> Result<Socket, Error> {
        self.open(Proto::Udp)
    }

    fn connect(&mut self, sock: &mut Socket, remote: SocketAddr) -> Result<(), Error> {
        let i = self.slot(sock, Proto::Udp)?;
        match self.start(i, Proto::Udp, remote, true) {
            Ok(()) => Ok(()),
            // UDP has no handshake: an unreachable port shows up later, on
            // send, as ICMP would.
            Err(nb::Error::WouldBlock) | Err(nb::Error::Other(Error::Refused)) => {
                self.slots[i].state = State::Dead;
                Ok(())
            }
            Err(nb::Error::Other(e)) => Err(e),
        }
    }

    fn send(&mut self, sock: &mut Socket, data: &[u8]) -> nb::Result<(), Error> {
        self.udp_send(sock, data, true)
    }

    fn receive(
        &mut self,
        sock: &mut Socket,
        buf: &mut [u8],
    ) -> nb::Result<(usize, SocketAddr), Error> {
        let oversize_is_error = self.behaviour.oversize_datagram_is_error;
        match self.udp_read(sock, buf, oversize_is_error)? {
            Some(got) => Ok(got),
            None if self.behaviour.empty_udp_receive_is_error => {
                Err(nb::Error::Other(Error::NotConnected))
            }
            None => Err(nb::Error::WouldBlock),
        }
    }

    fn close(&mut self, sock: Socket) -> Result<(), Error> {
        self.close_slot(sock, Proto::Udp)
    }
}

impl<P: Peer> Dns for MemNet<P> {
    type Error = Error;

    fn get_host_by_name(&mut self, host: &str, _: AddrType) -> nb::Result<IpAddr, Error> {
        self.peer
            .resolve(host)
            .ok_or(nb::Error::Other(Error::NotFound))
    }

    fn get_host_by_address(&mut self, _: IpAddr, _: &mut [u8]) -> nb::Result<usize, Error> {
        Err(nb::Error::Other(Error::NotFound))
    }
}

pub mod lab;
#[cfg(feature = "async")]
pub mod nal_async;

// The README's example runs as a doctest too, so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
