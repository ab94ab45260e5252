//! Stand-ins for the stacks a device does not have, so that [`Net`](crate::Net)
//! can be built from a TCP-only or UDP-only stack. Each one fails every call.

use core::net::{IpAddr, SocketAddr};

use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_nal_async::{AddrType, ConnectedUdp, Dns, TcpConnect, UdpStack, UnconnectedUdp};

/// No TCP: every connect fails with [`ErrorKind::Unsupported`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTcp;

/// No UDP: every connect fails with [`ErrorKind::Unsupported`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUdp;

/// No name resolution: every lookup fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDns;

/// A socket that cannot exist (the connection type of [`NoTcp`] and
/// [`NoUdp`]).
#[derive(Debug)]
pub enum Unreachable {}

impl ErrorType for Unreachable {
    type Error = ErrorKind;
}

impl Read for Unreachable {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
        match *self {}
    }
}

impl Write for Unreachable {
    async fn write(&mut self, _: &[u8]) -> Result<usize, ErrorKind> {
        match *self {}
    }
    async fn flush(&mut self) -> Result<(), ErrorKind> {
        match *self {}
    }
}

impl ConnectedUdp for Unreachable {
    type Error = ErrorKind;
    async fn send(&mut self, _: &[u8]) -> Result<(), ErrorKind> {
        match *self {}
    }
    async fn receive_into(&mut self, _: &mut [u8]) -> Result<usize, ErrorKind> {
        match *self {}
    }
}

impl UnconnectedUdp for Unreachable {
    type Error = ErrorKind;
    async fn send(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) -> Result<(), ErrorKind> {
        match *self {}
    }
    async fn receive_into(
        &mut self,
        _: &mut [u8],
    ) -> Result<(usize, SocketAddr, SocketAddr), ErrorKind> {
        match *self {}
    }
}

impl TcpConnect for NoTcp {
    type Error = ErrorKind;
    type Connection<'a> = Unreachable;
    async fn connect(&self, _: SocketAddr) -> Result<Unreachable, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}

impl UdpStack for NoUdp {
    type Error = ErrorKind;
    type Connected = Unreachable;
    type UniquelyBound = Unreachable;
    type MultiplyBound = Unreachable;
    async fn connect_from(
        &self,
        _: SocketAddr,
        _: SocketAddr,
    ) -> Result<(SocketAddr, Unreachable), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    async fn bind_single(&self, _: SocketAddr) -> Result<(SocketAddr, Unreachable), ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    async fn bind_multiple(&self, _: SocketAddr) -> Result<Unreachable, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}

impl Dns for NoDns {
    type Error = ErrorKind;
    async fn get_host_by_name(&self, _: &str, _: AddrType) -> Result<IpAddr, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
    async fn get_host_by_address(&self, _: IpAddr, _: &mut [u8]) -> Result<usize, ErrorKind> {
        Err(ErrorKind::Unsupported)
    }
}
