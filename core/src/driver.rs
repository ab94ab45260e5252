//! What a driver reports to the application: the one [`Event`] type both
//! drivers (`longlink-nal`, `longlink-nal-async`) hand to their event hook,
//! so an application or a test reads the same events whichever it uses.
//!
//! The core's own [`Event`](crate::Event)s carry every decision; a driver
//! adds what only it sees: the address it connects to, the stack's errors,
//! and the bytes that crossed the socket.

use core::fmt::Debug;
use core::net::SocketAddr;

/// Which socket operation a stack error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Op {
    /// Resolving the server's host name.
    Resolve,
    /// Opening the socket or connecting it.
    Connect,
    /// Writing.
    Send,
    /// Reading.
    Receive,
}

/// Something a driver saw or the core decided, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A decision or change of the state machine (status, connected,
    /// disconnected and why, link reset...), forwarded as it is.
    Core(crate::Event),
    /// A connect attempt to this address starts (after name resolution).
    Connecting(SocketAddr),
    /// The stack reported an error; what follows (a failed connect, a
    /// disconnect) is the core's decision and comes as an [`Event::Core`].
    StackError {
        /// The operation that failed.
        op: Op,
        /// The stack's error.
        error: &'a dyn Debug,
    },
    /// These bytes were written to the socket (one datagram over UDP).
    Sent(&'a [u8]),
    /// These bytes were read from the socket (one datagram over UDP).
    Received(&'a [u8]),
}

impl core::fmt::Display for Op {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Op::Resolve => "name lookup",
            Op::Connect => "connect",
            Op::Send => "send",
            Op::Receive => "receive",
        })
    }
}
