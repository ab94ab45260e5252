//! [`LabPeer`]: a scripted stand-in for the tutorial's TCP test lab, with
//! fixed-size buffers so it also runs in firmware.
//!
//! The test (or firmware) drives it between polls of the client: queue what
//! the server says with [`push`](LabPeer::push), read what the client sent
//! with [`received`](LabPeer::received), end the connection with
//! [`fin`](LabPeer::fin) / [`reset`](LabPeer::reset), and choose how connects
//! are answered with [`accept`](LabPeer::accept). It also answers SNTP
//! requests sent to [`ntp`](LabPeer::ntp) with the time in
//! [`wall_ms`](LabPeer::wall_ms).

use core::net::SocketAddr;

use crate::{Accept, Conn, Peer, Proto, Read};

/// The tutorial's lab server, in memory. `N` bytes each for what the client
/// sent on the current connection and for what the server still has to say.
pub struct LabPeer<const N: usize> {
    /// The lab server's address; connects elsewhere are refused.
    pub server: SocketAddr,
    /// An SNTP server's address, answered from [`wall_ms`](Self::wall_ms).
    pub ntp: Option<SocketAddr>,
    /// A host name that resolves to [`server`](Self::server)'s address.
    pub name: Option<&'static str>,
    /// The current Unix time in milliseconds, for SNTP answers.
    pub wall_ms: u64,
    /// How connects to `server` are answered.
    pub accept: Accept,
    /// The established connection, if any.
    pub current: Option<Conn>,
    /// Connects refused so far.
    pub refused: u32,
    /// SNTP requests answered.
    pub ntp_answers: u32,
    /// Bytes the client sent that did not fit [`received`](Self::received).
    pub overflow: usize,
    rx: [u8; N],
    rx_len: usize,
    /// Outgoing messages, each behind a 2-byte length.
    tx: [u8; N],
    tx_len: usize,
    /// Bytes of the first outgoing message already delivered (TCP).
    tx_off: usize,
    ntp_reply: Option<[u8; 48]>,
    end: Option<Read>,
}

impl<const N: usize> LabPeer<N> {
    /// A lab server at `server` that accepts connects.
    pub fn new(server: SocketAddr) -> Self {
        LabPeer {
            server,
            ntp: None,
            name: None,
            wall_ms: 0,
            accept: Accept::Yes,
            current: None,
            refused: 0,
            ntp_answers: 0,
            overflow: 0,
            rx: [0; N],
            rx_len: 0,
            tx: [0; N],
            tx_len: 0,
            tx_off: 0,
            ntp_reply: None,
            end: None,
        }
    }

    /// Queues one message (one datagram over UDP) for the client. Returns
    /// `false` when it does not fit.
    pub fn push(&mut self, msg: &[u8]) -> bool {
        let Ok(len) = u16::try_from(msg.len()) else {
            return false;
        };
        let end = self.tx_len + 2 + msg.len();
        if end > N {
            return false;
        }
        self.tx[self.tx_len..self.tx_len + 2].copy_from_slice(&len.to_be_bytes());
        self.tx[self.tx_len + 2..end].copy_from_slice(msg);
        self.tx_len = end;
        true
    }

    /// Whether everything pushed was delivered.
    pub fn all_delivered(&self) -> bool {
        self.tx_len == 0
    }

    /// What the client sent on the current (or last) connection.
    pub fn received(&self) -> &[u8] {
        &self.rx[..self.rx_len]
    }

    /// Forgets what the client sent so far.
    pub fn clear_received(&mut self) {
        self.rx_len = 0;
    }

    /// Ends the connection with a FIN at the client's next read.
    pub fn fin(&mut self) {
        self.end = Some(Read::Fin);
    }

    /// Ends the connection with a reset at the client's next read.
    pub fn reset(&mut self) {
        self.end = Some(Read::Reset);
    }

    fn is_current(&self, conn: Conn) -> bool {
        self.current.map(|c| c.id) == Some(conn.id)
    }

    fn answer_ntp(&mut self, request: &[u8]) {
        if request.len() < 48 {
            return;
        }
        let mut a = [0u8; 48];
        a[0] = (4 << 3) | 4;
        a[1] = 1;
        a[24..32].copy_from_slice(&request[40..48]);
        let secs = (self.wall_ms / 1000 + 2_208_988_800) & 0xFFFF_FFFF;
        let frac = ((self.wall_ms % 1000) << 32) / 1000 + 1;
        let ts = (secs << 32) | frac;
        a[32..40].copy_from_slice(&ts.to_be_bytes());
        a[40..48].copy_from_slice(&ts.to_be_bytes());
        self.ntp_reply = Some(a);
        self.ntp_answers += 1;
    }
}

impl<const N: usize> Peer for LabPeer<N> {
    fn connect(&mut self, proto: Proto, remote: SocketAddr) -> Accept {
        if Some(remote) == self.ntp && proto == Proto::Udp {
            return Accept::Yes;
        }
        if remote != self.server {
            self.refused += 1;
            return Accept::Refuse;
        }
        match self.accept {
            Accept::Yes => {
                // The id is assigned by the stack after this returns: the
                // next one is current from its first send or receive.
                self.current = None;
                self.rx_len = 0;
                self.tx_off = 0;
                self.end = None;
                Accept::Yes
            }
            Accept::Refuse => {
                self.refused += 1;
                Accept::Refuse
            }
            Accept::Pending => Accept::Pending,
        }
    }

    fn send(&mut self, conn: Conn, data: &[u8]) -> usize {
        if Some(conn.remote) == self.ntp && conn.proto == Proto::Udp {
            self.answer_ntp(data);
            return data.len();
        }
        if self.current.is_none() {
            self.current = Some(conn);
        }
        if !self.is_current(conn) {
            // An old connection the server already forgot.
            return data.len();
        }
        let room = N - self.rx_len;
        let n = data.len().min(room);
        self.overflow += data.len() - n;
        self.rx[self.rx_len..self.rx_len + n].copy_from_slice(&data[..n]);
        self.rx_len += n;
        data.len()
    }

    fn receive(&mut self, conn: Conn, buf: &mut [u8]) -> Read {
        if Some(conn.remote) == self.ntp && conn.proto == Proto::Udp {
            return match self.ntp_reply.take() {
                Some(a) => {
                    let n = a.len().min(buf.len());
                    buf[..n].copy_from_slice(&a[..n]);
                    Read::Data(n)
                }
                None => Read::Nothing,
            };
        }
        if self.current.is_none() {
            self.current = Some(conn);
        }
        if !self.is_current(conn) {
            return Read::Reset;
        }
        if let Some(end) = self.end.take() {
            self.current = None;
            return end;
        }
        if self.tx_len == 0 {
            return Read::Nothing;
        }
        let len = usize::from(u16::from_be_bytes([self.tx[0], self.tx[1]]));
        let msg = &self.tx[2 + self.tx_off..2 + len];
        // A datagram larger than the buffer: what fits is written, and its
        // full size reported (the stack decides: cut, or an error).
        let size = msg.len();
        let n = size.min(buf.len());
        buf[..n].copy_from_slice(&msg[..n]);
        if conn.proto == Proto::Tcp && n < size {
            self.tx_off += n;
        } else {
            self.tx.copy_within(2 + len..self.tx_len, 0);
            self.tx_len -= 2 + len;
            self.tx_off = 0;
        }
        match conn.proto {
            Proto::Tcp => Read::Data(n),
            Proto::Udp => Read::Data(size),
        }
    }

    fn closed(&mut self, conn: Conn) {
        if self.is_current(conn) {
            self.current = None;
        }
    }

    fn resolve(&mut self, host: &str) -> Option<core::net::IpAddr> {
        (self.name == Some(host)).then(|| self.server.ip())
    }
}
