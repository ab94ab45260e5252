//! # longlink-realnet
//!
//! Test support: the longlink drivers over two real third-party no_std
//! TCP/IP stacks, in one process, with no TUN/TAP and no host network.
//!
//! - [`link`]: an in-memory Ethernet cable (frame queues, a switch that
//!   drops every frame, a log of every frame classified by TCP flags and
//!   UDP datagrams).
//! - [`server`]: a scripted server, a second smoltcp 0.12 interface on the
//!   far end (accept, refuse with RST, FIN, RST, record, SNTP).
//! - [`clock`]: the virtual clock everything reads.
//! - [`smol`]: smoltcp-nal 0.7's `NetworkStack` for `longlink-nal`.
//! - [`embassy`]: an embassy-net 0.9 stack's driver and an executor loop for
//!   `longlink-nal-async`.
//!
//! Addresses are 192.0.2.0/24 (TEST-NET-1): server [`server::SERVER_IP`],
//! client [`server::CLIENT_IP`]. What the stacks do at the edges, with
//! file and line evidence, is in `testing/STACKS.md`.
//!
//! Nothing here knows the longlink API: the tests glue the two.
#![forbid(unsafe_code)]

pub mod clock;
pub mod embassy;
pub mod link;
pub mod server;
pub mod smol;

pub use clock::VirtualClock;
pub use link::{Frame, Kind, Link, Side};
pub use server::{Connection, Datagram, End, Server};
pub use smoltcp;
pub use smoltcp_nal;

/// A link, a clock and a server: the world for a blocking client
/// ([`smol::client_stack`] on `link`).
#[derive(Debug)]
pub struct World {
    /// The virtual clock.
    pub clock: VirtualClock,
    /// The cable.
    pub link: Link,
    /// The scripted server.
    pub server: Server,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A fresh world at time 0.
    pub fn new() -> Self {
        let clock = VirtualClock::new();
        let link = Link::new(&clock);
        let server = Server::new(&link, &clock);
        World {
            clock,
            link,
            server,
        }
    }
}
