//! The desktop client's TCP stack: `std-embedded-nal-async`'s connect, with
//! `TCP_NODELAY` set on every connection.
//!
//! The driver already gathers whatever is queued into one write, so Nagle's
//! algorithm only adds delay: with it on, a line queued while an earlier
//! segment (a heartbeat, the previous line) waits for its ACK is held until
//! that ACK arrives, which the server's delayed ACK can put off for tens of
//! milliseconds. `std-embedded-nal-async` 0.4 does not expose its socket, so
//! [`NoDelayTcp`] connects through async-io itself; UDP and DNS still use
//! [`std_embedded_nal_async::Stack`].
//!
//! On embedded stacks the same switch is the stack's own: smoltcp's
//! `tcp::Socket::set_nagle_enabled(false)` (smoltcp-nal and embassy-net
//! leave Nagle on by default), lwIP's `tcp_nagle_disable`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use async_io::Async;
use embedded_io_async::{ErrorType, Read, Write};
use embedded_nal_async::TcpConnect;

/// A [`TcpConnect`] over OS sockets with Nagle's algorithm off.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDelayTcp;

/// One connection of [`NoDelayTcp`]. Reads and writes are cancel-safe: the
/// operation only runs when the socket is ready, and never awaits once it
/// has moved bytes.
#[derive(Debug)]
pub struct NoDelayConnection(Async<TcpStream>);

impl NoDelayConnection {
    /// The OS socket.
    pub fn get_ref(&self) -> &TcpStream {
        self.0.get_ref()
    }
}

impl TcpConnect for NoDelayTcp {
    type Error = std::io::Error;
    type Connection<'a> = NoDelayConnection;

    async fn connect(&self, remote: SocketAddr) -> std::io::Result<NoDelayConnection> {
        let stream = Async::<TcpStream>::connect(remote).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(NoDelayConnection(stream))
    }
}

impl ErrorType for NoDelayConnection {
    type Error = std::io::Error;
}

impl Read for NoDelayConnection {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_with(|s| (&*s).read(buf)).await
    }
}

impl Write for NoDelayConnection {
    async fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_with(|s| (&*s).write(buf)).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        // A TCP socket has no user-space buffer to flush.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_have_nodelay_and_move_bytes() -> std::io::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        async_io::block_on(async {
            let mut conn = NoDelayTcp.connect(addr).await?;
            assert!(conn.get_ref().nodelay()?, "TCP_NODELAY not set");
            let (mut peer, _) = listener.accept()?;
            conn.write_all(b"ping")
                .await
                .map_err(std::io::Error::other)?;
            let mut got = [0u8; 4];
            std::io::Read::read_exact(&mut peer, &mut got)?;
            assert_eq!(&got, b"ping");
            std::io::Write::write_all(&mut peer, b"pong")?;
            let mut back = [0u8; 4];
            conn.read_exact(&mut back)
                .await
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            assert_eq!(&back, b"pong");
            Ok(())
        })
    }
}
