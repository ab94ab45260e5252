//! The in-memory Ethernet cable between the client's stack and the server.
//!
//! Two frame queues (one per direction), a switch that drops every frame
//! (a cable pull), and a log of every frame put on the cable, classified
//! (TCP flags, UDP datagrams), for assertions such as "one SYN per connect
//! attempt".

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

use crate::clock::VirtualClock;

/// Ethernet MTU of the link (IP MTU 1500 plus the 14-byte header).
pub const ETHERNET_MTU: usize = 1514;

/// Which end of the cable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The stack under test.
    Client,
    /// The scripted server.
    Server,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// What a frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ARP.
    Arp,
    /// A TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// SYN flag.
        syn: bool,
        /// ACK flag.
        ack: bool,
        /// FIN flag.
        fin: bool,
        /// RST flag.
        rst: bool,
        /// Payload bytes.
        len: usize,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Payload bytes.
        len: usize,
    },
    /// Anything else (ICMP, IPv6...).
    Other,
}

/// One frame put on the cable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Virtual time it was sent, in ms.
    pub at_ms: u64,
    /// Who sent it.
    pub from: Side,
    /// What it carried.
    pub kind: Kind,
    /// Dropped by the cable pull (never delivered).
    pub dropped: bool,
}

impl Frame {
    /// A connection request: SYN without ACK.
    pub fn is_syn(&self) -> bool {
        matches!(
            self.kind,
            Kind::Tcp {
                syn: true,
                ack: false,
                ..
            }
        )
    }

    /// SYN-ACK.
    pub fn is_syn_ack(&self) -> bool {
        matches!(
            self.kind,
            Kind::Tcp {
                syn: true,
                ack: true,
                ..
            }
        )
    }

    /// A TCP reset.
    pub fn is_rst(&self) -> bool {
        matches!(self.kind, Kind::Tcp { rst: true, .. })
    }

    /// A TCP FIN.
    pub fn is_fin(&self) -> bool {
        matches!(self.kind, Kind::Tcp { fin: true, .. })
    }

    /// A TCP segment with payload.
    pub fn is_tcp_data(&self) -> bool {
        matches!(self.kind, Kind::Tcp { len, .. } if len > 0)
    }

    /// A UDP datagram to `port`.
    pub fn is_udp_to(&self, port: u16) -> bool {
        matches!(self.kind, Kind::Udp { dst_port, .. } if dst_port == port)
    }
}

/// Classifies an Ethernet frame.
pub fn classify(bytes: &[u8]) -> Kind {
    let Ok(eth) = EthernetFrame::new_checked(bytes) else {
        return Kind::Other;
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => return Kind::Arp,
        EthernetProtocol::Ipv4 => {}
        _ => return Kind::Other,
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Kind::Other;
    };
    match ip.next_header() {
        IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
            Ok(tcp) => Kind::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
                len: tcp.payload().len(),
            },
            Err(_) => Kind::Other,
        },
        IpProtocol::Udp => match UdpPacket::new_checked(ip.payload()) {
            Ok(udp) => Kind::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
                len: udp.payload().len(),
            },
            Err(_) => Kind::Other,
        },
        _ => Kind::Other,
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Frames waiting to be received by `Side::index()`.
    queues: [VecDeque<Vec<u8>>; 2],
    /// Wakers of an async receiver on each side.
    wakers: [Option<Waker>; 2],
    cut: bool,
    filter: Option<fn(&Frame) -> bool>,
    log: Vec<Frame>,
}

/// The cable. Clones share it.
#[derive(Clone, Debug)]
pub struct Link {
    inner: Rc<RefCell<Inner>>,
    clock: VirtualClock,
}

impl Link {
    /// A cable on `clock` (for the frame log's timestamps).
    pub fn new(clock: &VirtualClock) -> Self {
        Link {
            inner: Rc::default(),
            clock: clock.clone(),
        }
    }

    /// Pulls the cable (`true`: every frame from now on is dropped, in both
    /// directions, frames already in flight too) or plugs it back in.
    pub fn set_cut(&self, cut: bool) {
        let mut inner = self.inner.borrow_mut();
        inner.cut = cut;
        if cut {
            inner.queues.iter_mut().for_each(VecDeque::clear);
        }
    }

    /// Drops the frames (either direction) for which `filter` is true, from
    /// now on; `None` stops. `Some(Frame::is_syn)` makes a silent server:
    /// ARP works, SYNs vanish.
    pub fn set_filter(&self, filter: Option<fn(&Frame) -> bool>) {
        self.inner.borrow_mut().filter = filter;
    }

    /// Whether the cable is pulled.
    pub fn is_cut(&self) -> bool {
        self.inner.borrow().cut
    }

    /// Every frame put on the cable so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.inner.borrow().log.clone()
    }

    /// How many frames so far were sent by `from` and match `f`.
    pub fn count(&self, from: Side, f: impl Fn(&Frame) -> bool) -> usize {
        self.inner
            .borrow()
            .log
            .iter()
            .filter(|fr| fr.from == from && f(fr))
            .count()
    }

    /// Frames put on the cable so far (a cheap activity counter).
    pub fn frame_count(&self) -> usize {
        self.inner.borrow().log.len()
    }

    /// Frames waiting to be received by `side`.
    pub fn pending(&self, side: Side) -> usize {
        self.inner.borrow().queues[side.index()].len()
    }

    /// The smoltcp `phy::Device` for one end.
    pub fn smoltcp_device(&self, side: Side) -> SmolDevice {
        SmolDevice {
            link: self.clone(),
            side,
        }
    }

    fn send(&self, from: Side, frame: Vec<u8>) {
        let to = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let mut inner = self.inner.borrow_mut();
        let mut logged = Frame {
            at_ms: self.clock.now_ms(),
            from,
            kind: classify(&frame),
            dropped: inner.cut,
        };
        logged.dropped |= inner.filter.is_some_and(|f| f(&logged));
        let dropped = logged.dropped;
        inner.log.push(logged);
        if !dropped {
            inner.queues[to.index()].push_back(frame);
            if let Some(w) = inner.wakers[to.index()].take() {
                w.wake();
            }
        }
    }

    fn take(&self, side: Side) -> Option<Vec<u8>> {
        self.inner.borrow_mut().queues[side.index()].pop_front()
    }

    pub(crate) fn take_or_register(&self, side: Side, cx: &Context<'_>) -> Option<Vec<u8>> {
        let mut inner = self.inner.borrow_mut();
        let frame = inner.queues[side.index()].pop_front();
        if frame.is_none() {
            inner.wakers[side.index()] = Some(cx.waker().clone());
        }
        frame
    }

    pub(crate) fn transmit_frame(&self, from: Side, frame: Vec<u8>) {
        self.send(from, frame);
    }
}

/// One end of the cable as a smoltcp 0.12 [`smoltcp::phy::Device`].
#[derive(Debug)]
pub struct SmolDevice {
    link: Link,
    side: Side,
}

/// A received frame ([`smoltcp::phy::RxToken`]).
#[derive(Debug)]
pub struct SmolRx(Vec<u8>);

/// A frame to send ([`smoltcp::phy::TxToken`]).
#[derive(Debug)]
pub struct SmolTx {
    link: Link,
    side: Side,
}

impl smoltcp::phy::RxToken for SmolRx {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for SmolTx {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.link.send(self.side, frame);
        r
    }
}

impl smoltcp::phy::Device for SmolDevice {
    type RxToken<'a> = SmolRx;
    type TxToken<'a> = SmolTx;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.link.take(self.side)?;
        Some((
            SmolRx(frame),
            SmolTx {
                link: self.link.clone(),
                side: self.side,
            },
        ))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(SmolTx {
            link: self.link.clone(),
            side: self.side,
        })
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut caps = smoltcp::phy::DeviceCapabilities::default();
        caps.medium = smoltcp::phy::Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_MTU;
        caps
    }
}
