//! The scripted server: a second smoltcp 0.12 `Interface` on the far end of
//! the [`Link`], with TCP and UDP sockets on [`PORT`] and an SNTP responder
//! on [`NTP_PORT`], all driven by the test between polls.
//!
//! - TCP: a few listening sockets accept connections (one per client
//!   address: a new connection from the same address aborts the older one,
//!   as a lab that keeps one session per device; a client that vanished
//!   without a FIN would otherwise hold a socket for ever). Every byte
//!   received is recorded per [`Connection`], and [`Server::push`] sends.
//!   [`Server::fin`] closes with a FIN, [`Server::reset`] aborts with an
//!   RST, [`Server::set_refuse`] stops listening so that the interface
//!   itself answers every SYN with an RST (a refused port).
//! - UDP: every datagram is recorded ([`Server::datagrams`]); `push` sends
//!   to the last sender. With `set_refuse` the socket is closed and the
//!   interface answers with ICMP port unreachable.
//! - SNTP: a 48-byte server reply carrying [`Server::set_wall_ms`]'s time.

use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::clock::VirtualClock;
use crate::link::{Link, Side, SmolDevice};

/// The server's address inside the emulated link.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The prefix length of 192.0.2.0/24.
pub const PREFIX_LEN: u8 = 24;
/// The lab's port, TCP and UDP (the tutorial's 50798).
pub const PORT: u16 = 50798;
/// The SNTP responder's port.
pub const NTP_PORT: u16 = 123;
/// The server's MAC address.
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The client's MAC address.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// TCP sockets kept listening (a real server's accept backlog): when one
/// accepts, another is added, so connections stuck closing (a client that
/// vanished without a FIN leaves one in FIN-WAIT until its FIN is answered
/// with an RST) never make the server refuse.
const SPARE_LISTENERS: usize = 2;
/// Upper bound on TCP sockets, so a runaway client cannot grow the server
/// without limit.
const MAX_TCP_SOCKETS: usize = 64;
/// TCP buffer size per direction.
const TCP_BUFFER: usize = 16 * 1024;
/// UDP receive slots: more than any test bursts.
const UDP_SLOTS: usize = 256;

/// How a TCP connection ended, seen from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent FIN (the server then closed its side too).
    ClientClosed,
    /// The server closed with a FIN ([`Server::fin`]).
    ServerFin,
    /// The server reset it ([`Server::reset`]).
    ServerReset,
    /// A newer connection from the same client replaced it (aborted with
    /// an RST).
    Superseded,
    /// The socket closed without a FIN from the client: an RST from the
    /// client, or smoltcp gave up.
    Lost,
}

/// One accepted TCP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// When it was established (virtual ms).
    pub at_ms: u64,
    /// The client's port.
    pub client_port: u16,
    /// Every byte the client sent, in order.
    pub received: Vec<u8>,
    /// The same bytes as the server's socket delivered them, one entry per
    /// read with its virtual time in ms (TCP may split or merge what the
    /// client wrote).
    pub reads: Vec<(u64, Vec<u8>)>,
    /// How it ended, if it did.
    pub end: Option<End>,
}

/// One UDP datagram received on [`PORT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// When (virtual ms).
    pub at_ms: u64,
    /// The client's port.
    pub client_port: u16,
    /// The payload.
    pub bytes: Vec<u8>,
}

struct Listener {
    handle: SocketHandle,
    /// Index into `Server::conns` while a connection lives on it.
    conn: Option<usize>,
}

/// The scripted server (see the module docs).
pub struct Server {
    clock: VirtualClock,
    link: Link,
    device: SmolDevice,
    iface: Interface,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    udp: SocketHandle,
    ntp: SocketHandle,
    refuse: bool,
    conns: Vec<Connection>,
    datagrams: Vec<Datagram>,
    last_udp_peer: Option<IpEndpoint>,
    wall_ms: Option<u64>,
    ntp_answers: u32,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("refuse", &self.refuse)
            .field("conns", &self.conns)
            .field("datagrams", &self.datagrams.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server at [`SERVER_IP`] on the server end of `link`, listening.
    pub fn new(link: &Link, clock: &VirtualClock) -> Self {
        let mut device = link.smoltcp_device(Side::Server);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(SERVER_MAC)));
        config.random_seed = 0x5EED_0001;
        let mut iface = Interface::new(config, &mut device, clock.smoltcp_now());
        iface.update_ip_addrs(|addrs| {
            // One address in an empty list: cannot be full.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(SERVER_IP), PREFIX_LEN));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let udp = sockets.add(udp_socket(PORT));
        let ntp = sockets.add(udp_socket(NTP_PORT));
        let mut server = Server {
            clock: clock.clone(),
            link: link.clone(),
            device,
            iface,
            sockets,
            listeners: Vec::new(),
            udp,
            ntp,
            refuse: false,
            conns: Vec::new(),
            datagrams: Vec::new(),
            last_udp_peer: None,
            wall_ms: None,
            ntp_answers: 0,
        };
        server.keep_listening();
        server
    }

    /// Adds listening sockets until [`SPARE_LISTENERS`] are listening.
    fn keep_listening(&mut self) {
        if self.refuse {
            return;
        }
        let listening = self
            .listeners
            .iter()
            .filter(|l| self.sockets.get::<tcp::Socket>(l.handle).is_listening())
            .count();
        for _ in listening..SPARE_LISTENERS {
            if self.listeners.len() >= MAX_TCP_SOCKETS {
                return;
            }
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
                tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
            );
            // Answer at once: no delayed ACKs muddling frame counts.
            s.set_ack_delay(None);
            let _ = s.listen(PORT);
            self.listeners.push(Listener {
                handle: self.sockets.add(s),
                conn: None,
            });
        }
    }

    /// Processes what arrived and sends what is due, at the clock's time.
    /// Returns whether anything happened (frames moved, data arrived).
    pub fn poll(&mut self) -> bool {
        let frames = self.link.frame_count();
        let now = self.clock.smoltcp_now();
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        let serviced = self.service();
        // Replies go out in the same tick.
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        serviced || self.link.frame_count() != frames
    }

    /// Refuses (`true`) or accepts new connections: TCP SYNs are answered
    /// with RST, UDP datagrams with ICMP port unreachable. Connections
    /// already established are left alone.
    pub fn set_refuse(&mut self, refuse: bool) {
        self.refuse = refuse;
        for l in &self.listeners {
            let s = self.sockets.get_mut::<tcp::Socket>(l.handle);
            if refuse && s.state() == tcp::State::Listen {
                s.abort();
            } else if !refuse && !s.is_open() {
                let _ = s.listen(PORT);
            }
        }
        self.keep_listening();
        let u = self.sockets.get_mut::<udp::Socket>(self.udp);
        if refuse {
            u.close();
        } else if !u.is_open() {
            let _ = u.bind(PORT);
        }
    }

    /// The wall clock the SNTP responder reports (Unix ms at virtual time
    /// 0; it advances with the clock). `None`: requests go unanswered.
    pub fn set_wall_ms(&mut self, unix_ms_at_now: Option<u64>) {
        self.wall_ms = unix_ms_at_now.map(|ms| ms.saturating_sub(self.clock.now_ms()));
    }

    /// SNTP requests answered.
    pub fn ntp_answers(&self) -> u32 {
        self.ntp_answers
    }

    /// Every TCP connection accepted so far, oldest first.
    pub fn connections(&self) -> &[Connection] {
        &self.conns
    }

    /// The connection still open, if any (the newest).
    pub fn current(&self) -> Option<&Connection> {
        self.conns.iter().rev().find(|c| c.end.is_none())
    }

    /// Every UDP datagram received on [`PORT`].
    pub fn datagrams(&self) -> &[Datagram] {
        &self.datagrams
    }

    /// Sends `bytes` to the client: on the open TCP connection if there is
    /// one, else as a UDP datagram to the last UDP sender. Returns whether
    /// it was queued whole.
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        if let Some(h) = self.current_handle() {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            return s.send_slice(bytes) == Ok(bytes.len());
        }
        let Some(peer) = self.last_udp_peer else {
            return false;
        };
        self.sockets
            .get_mut::<udp::Socket>(self.udp)
            .send_slice(bytes, peer)
            .is_ok()
    }

    /// Bytes [`push`](Self::push) can queue whole on the open TCP
    /// connection now (0 without one).
    pub fn tcp_send_room(&self) -> usize {
        self.current_handle().map_or(0, |h| {
            let s = self.sockets.get::<tcp::Socket>(h);
            s.send_capacity() - s.send_queue()
        })
    }

    /// Closes the open TCP connection with a FIN.
    pub fn fin(&mut self) -> bool {
        self.end_current(End::ServerFin, |s| s.close())
    }

    /// Resets the open TCP connection (RST).
    pub fn reset(&mut self) -> bool {
        self.end_current(End::ServerReset, |s| s.abort())
    }

    fn end_current(&mut self, end: End, f: impl FnOnce(&mut tcp::Socket)) -> bool {
        let Some(i) = self.conns.iter().rposition(|c| c.end.is_none()) else {
            return false;
        };
        let Some(l) = self.listeners.iter().find(|l| l.conn == Some(i)) else {
            return false;
        };
        f(self.sockets.get_mut::<tcp::Socket>(l.handle));
        self.conns[i].end = Some(end);
        true
    }

    fn current_handle(&self) -> Option<SocketHandle> {
        let i = self.conns.iter().rposition(|c| c.end.is_none())?;
        self.listeners
            .iter()
            .find(|l| l.conn == Some(i))
            .map(|l| l.handle)
    }

    fn service(&mut self) -> bool {
        let mut any = false;
        let now_ms = self.clock.now_ms();
        for li in 0..self.listeners.len() {
            let handle = self.listeners[li].handle;
            let s = self.sockets.get_mut::<tcp::Socket>(handle);
            let state = s.state();
            // A new connection on this listener.
            if self.listeners[li].conn.is_none()
                && !matches!(
                    state,
                    tcp::State::Listen
                        | tcp::State::Closed
                        | tcp::State::TimeWait
                        | tcp::State::SynReceived
                )
            {
                let client_port = s.remote_endpoint().map_or(0, |e| e.port);
                self.conns.push(Connection {
                    at_ms: now_ms,
                    client_port,
                    received: Vec::new(),
                    reads: Vec::new(),
                    end: None,
                });
                let idx = self.conns.len() - 1;
                self.listeners[li].conn = Some(idx);
                any = true;
                // One session per client: abort the older ones.
                for other in 0..self.listeners.len() {
                    let Some(c) = self.listeners[other].conn else {
                        continue;
                    };
                    if other != li && self.conns[c].end.is_none() {
                        self.sockets
                            .get_mut::<tcp::Socket>(self.listeners[other].handle)
                            .abort();
                        self.conns[c].end = Some(End::Superseded);
                    }
                }
            }
            let s = self.sockets.get_mut::<tcp::Socket>(handle);
            if let Some(c) = self.listeners[li].conn {
                let mut buf = [0u8; 2048];
                while s.can_recv() {
                    match s.recv_slice(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            self.conns[c].received.extend_from_slice(&buf[..n]);
                            self.conns[c].reads.push((now_ms, buf[..n].to_vec()));
                            any = true;
                        }
                    }
                }
                if state == tcp::State::CloseWait {
                    // The client closed: close our side too.
                    s.close();
                    if self.conns[c].end.is_none() {
                        self.conns[c].end = Some(End::ClientClosed);
                    }
                    any = true;
                }
                if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                    if self.conns[c].end.is_none() {
                        self.conns[c].end = Some(End::Lost);
                    }
                    self.listeners[li].conn = None;
                    any = true;
                }
            }
            if self.listeners[li].conn.is_none() && !self.refuse && !s.is_open() {
                let _ = s.listen(PORT);
            }
        }
        self.keep_listening();
        any |= self.service_udp(now_ms);
        any |= self.service_ntp(now_ms);
        any
    }

    fn service_udp(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        let s = self.sockets.get_mut::<udp::Socket>(self.udp);
        while let Ok((data, meta)) = s.recv() {
            self.datagrams.push(Datagram {
                at_ms: now_ms,
                client_port: meta.endpoint.port,
                bytes: data.to_vec(),
            });
            self.last_udp_peer = Some(meta.endpoint);
            any = true;
        }
        any
    }

    fn service_ntp(&mut self, now_ms: u64) -> bool {
        let mut any = false;
        let s = self.sockets.get_mut::<udp::Socket>(self.ntp);
        while let Ok((data, meta)) = s.recv() {
            any = true;
            let (Some(base), Ok(request)) = (self.wall_ms, <[u8; 48]>::try_from(data)) else {
                continue;
            };
            let reply = ntp_reply(&request, base + now_ms);
            if s.send_slice(&reply, meta.endpoint).is_ok() {
                self.ntp_answers += 1;
            }
        }
        any
    }
}

fn udp_socket(port: u16) -> udp::Socket<'static> {
    let mut s = udp::Socket::new(
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
            vec![0; UDP_SLOTS * 64],
        ),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
            vec![0; UDP_SLOTS * 64],
        ),
    );
    let _ = s.bind(port);
    s
}

/// A server-mode (4) NTPv4 reply to `request`, stratum 1, with receive and
/// transmit timestamps at `unix_ms` and the request's transmit timestamp
/// as the originate timestamp.
pub fn ntp_reply(request: &[u8; 48], unix_ms: u64) -> [u8; 48] {
    let mut a = [0u8; 48];
    a[0] = (4 << 3) | 4;
    a[1] = 1;
    a[24..32].copy_from_slice(&request[40..48]);
    let secs = (unix_ms / 1000 + 2_208_988_800) & 0xFFFF_FFFF;
    let frac = ((unix_ms % 1000) << 32) / 1000 + 1;
    let ts = (secs << 32) | frac;
    a[32..40].copy_from_slice(&ts.to_be_bytes());
    a[40..48].copy_from_slice(&ts.to_be_bytes());
    a
}
