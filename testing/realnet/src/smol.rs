//! The client stack for `longlink-nal`: smoltcp-nal 0.7's `NetworkStack`
//! over smoltcp 0.12, on the client end of the [`Link`].

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::clock::{NalClock, VirtualClock};
use crate::link::{Link, Side, SmolDevice};
use crate::server::{CLIENT_IP, CLIENT_MAC, PREFIX_LEN};

/// smoltcp-nal's stack as the tests build it.
pub type NalStack = smoltcp_nal::NetworkStack<'static, SmolDevice, NalClock>;

/// The client's sockets (smoltcp-nal hands out what it is given, at most 16
/// of each kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSockets {
    /// TCP sockets.
    pub tcp: usize,
    /// Bytes per TCP buffer (each direction).
    pub tcp_buffer: usize,
    /// UDP sockets (the driver needs one, `Sntp` another).
    pub udp: usize,
    /// Packet slots per UDP buffer (each direction): how many datagrams a
    /// socket holds before `send` fails with `BufferFull`.
    pub udp_slots: usize,
    /// Payload bytes per UDP buffer (each direction).
    pub udp_payload: usize,
}

impl Default for ClientSockets {
    /// Two TCP sockets of 2 KiB, two UDP sockets of 16 slots and 2 KiB.
    fn default() -> Self {
        ClientSockets {
            tcp: 2,
            tcp_buffer: 2048,
            udp: 2,
            udp_slots: 16,
            udp_payload: 2048,
        }
    }
}

/// smoltcp-nal's `NetworkStack` at [`CLIENT_IP`] on the client end of
/// `link`, reading `clock`. Call its `poll()` in the loop, as firmware
/// must.
pub fn client_stack(link: &Link, clock: &VirtualClock, sockets: ClientSockets) -> NalStack {
    let mut device = link.smoltcp_device(Side::Client);
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(CLIENT_MAC)));
    config.random_seed = 0x5EED_0002;
    // smoltcp-nal starts its own smoltcp clock at 0 on its first poll.
    let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::from_millis(0));
    iface.update_ip_addrs(|addrs| {
        // One address in an empty list: cannot be full.
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(CLIENT_IP), PREFIX_LEN));
    });
    let mut set = SocketSet::new(Vec::new());
    for _ in 0..sockets.tcp {
        set.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; sockets.tcp_buffer]),
            tcp::SocketBuffer::new(vec![0; sockets.tcp_buffer]),
        ));
    }
    for _ in 0..sockets.udp {
        set.add(udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; sockets.udp_slots],
                vec![0; sockets.udp_payload],
            ),
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; sockets.udp_slots],
                vec![0; sockets.udp_payload],
            ),
        ));
    }
    let mut stack = smoltcp_nal::NetworkStack::new(iface, device, set, clock.embedded_time());
    stack.seed_random_port(&0x5EED_0003u64.to_le_bytes());
    stack
}
