//! The lab: a test server in the spirit of the tutorial's TCP test lab.
//!
//! Plain blocking std sockets and a thread per client: the lab is the
//! independent party the client is tested against, so it deliberately shares
//! no I/O code with the client. Events go to a channel; `longlink lab` prints
//! them, `--check` and the demo script against them.
//!
//! With TLS ([`Lab::start_tls`], `longlink lab --tls`) each TCP client gets a
//! rustls server session: the reader thread feeds it what the socket
//! delivers, senders encrypt under its lock, and one more lock per client
//! keeps the encrypted records on the wire in the order they were made.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use longlink_core::framing::{self, Framing};
use longlink_core::Transport;
use rustls::{ServerConfig, ServerConnection};

/// The largest inbound frame the lab accepts (lines and len16 framing); a
/// longer one is reported and the client dropped.
pub const MAX_FRAME: usize = 1 << 20;

/// Something the lab saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabEvent {
    /// A client connected (TCP) or sent its first datagram (UDP).
    Connected {
        /// The client.
        peer: SocketAddr,
        /// When.
        at: Instant,
    },
    /// A whole message (per the framing) from a client.
    Message {
        /// The client.
        peer: SocketAddr,
        /// When it was read.
        at: Instant,
        /// The message, framing removed.
        bytes: Vec<u8>,
    },
    /// A TCP client went away (or was dropped).
    Disconnected {
        /// The client.
        peer: SocketAddr,
        /// When.
        at: Instant,
    },
    /// A client sent a frame the lab cannot decode (too large); it was
    /// dropped.
    BadFrame {
        /// The client.
        peer: SocketAddr,
        /// When.
        at: Instant,
    },
    /// TLS failed with a client (handshake or a bad record); it was
    /// dropped. A TLS client is [`Connected`](LabEvent::Connected) only once
    /// its handshake completed.
    TlsFailed {
        /// The client.
        peer: SocketAddr,
        /// When.
        at: Instant,
        /// What rustls said.
        error: String,
    },
}

/// A TLS client's server session.
struct TlsPeer {
    session: Mutex<ServerConnection>,
    /// Held while encrypted bytes are made and written, so records reach the
    /// socket in sequence order.
    wire: Mutex<TcpStream>,
}

impl TlsPeer {
    /// Encrypts `plaintext` (if any) and writes whatever rustls has for the
    /// client.
    fn send(&self, plaintext: &[u8]) -> std::io::Result<()> {
        let mut wire = self.wire.lock().unwrap_or_else(PoisonError::into_inner);
        let out = {
            let mut s = self.session.lock().unwrap_or_else(PoisonError::into_inner);
            if !plaintext.is_empty() {
                s.writer().write_all(plaintext)?;
            }
            let mut out = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut out)?;
            }
            out
        };
        wire.write_all(&out)
    }
}

struct Peer {
    stream: TcpStream,
    tls: Option<Arc<TlsPeer>>,
}

#[derive(Default)]
struct Peers {
    tcp: HashMap<SocketAddr, Peer>,
    udp: Vec<SocketAddr>,
}

struct Shared {
    peers: Mutex<Peers>,
    stopping: AtomicBool,
    events: Sender<LabEvent>,
}

impl Shared {
    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        // A reader thread that panicked leaves the map usable.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
    fn emit(&self, e: LabEvent) {
        let _ = self.events.send(e);
    }
}

/// A running lab server. Dropping it stops it.
pub struct Lab {
    addr: SocketAddr,
    transport: Transport,
    framing: Framing,
    shared: Arc<Shared>,
    udp: Option<UdpSocket>,
    /// Behind a mutex so a `Lab` can be shared with a thread that sends.
    events: Mutex<Receiver<LabEvent>>,
    threads: Vec<JoinHandle<()>>,
}

impl Lab {
    /// Listens on `addr` (port 0: any free port).
    pub fn start(addr: SocketAddr, transport: Transport, framing: Framing) -> std::io::Result<Lab> {
        Self::start_with(addr, transport, framing, None)
    }

    /// Listens on `addr` for TLS over TCP with this rustls configuration
    /// (see [`crate::tls::server_config`]).
    pub fn start_tls(
        addr: SocketAddr,
        framing: Framing,
        config: Arc<ServerConfig>,
    ) -> std::io::Result<Lab> {
        Self::start_with(addr, Transport::Tcp, framing, Some(config))
    }

    fn start_with(
        addr: SocketAddr,
        transport: Transport,
        framing: Framing,
        tls: Option<Arc<ServerConfig>>,
    ) -> std::io::Result<Lab> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            peers: Mutex::new(Peers::default()),
            stopping: AtomicBool::new(false),
            events: tx,
        });
        let mut lab = Lab {
            addr,
            transport,
            framing,
            shared: shared.clone(),
            udp: None,
            events: Mutex::new(rx),
            threads: Vec::new(),
        };
        match transport {
            Transport::Tcp => {
                let listener = TcpListener::bind(addr)?;
                lab.addr = listener.local_addr()?;
                let t = std::thread::Builder::new()
                    .name("lab-accept".into())
                    .spawn(move || accept_loop(&listener, &shared, framing, tls.as_ref()))?;
                lab.threads.push(t);
            }
            Transport::Udp => {
                let socket = UdpSocket::bind(addr)?;
                lab.addr = socket.local_addr()?;
                let reader = socket.try_clone()?;
                lab.udp = Some(socket);
                let t = std::thread::Builder::new()
                    .name("lab-udp".into())
                    .spawn(move || udp_loop(&reader, &shared, framing))?;
                lab.threads.push(t);
            }
        }
        Ok(lab)
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP or UDP.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The framing in both directions.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The next event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<LabEvent> {
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.recv_timeout(timeout).ok()
    }

    /// Waits until `deadline` for an event `pick` accepts, returning what it
    /// made of it; events it rejects are passed to `skipped`.
    pub fn wait_for<T>(
        &self,
        deadline: Instant,
        mut pick: impl FnMut(&LabEvent) -> Option<T>,
        mut skipped: impl FnMut(LabEvent),
    ) -> Option<T> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.next_event(left)?;
            match pick(&e) {
                Some(t) => return Some(t),
                None => skipped(e),
            }
        }
    }

    /// Clients currently known (TCP: connected; UDP: seen since the last
    /// [`drop_clients`](Self::drop_clients)).
    pub fn clients(&self) -> Vec<SocketAddr> {
        let p = self.shared.peers();
        match self.transport {
            Transport::Tcp => p.tcp.keys().copied().collect(),
            Transport::Udp => p.udp.clone(),
        }
    }

    /// Sends `message` (framed) to every client; returns how many it reached.
    pub fn send_all(&self, message: &[u8]) -> usize {
        self.clients()
            .into_iter()
            .filter(|peer| self.send_to(*peer, message).is_ok())
            .count()
    }

    /// Sends `message` (framed) to one client.
    pub fn send_to(&self, peer: SocketAddr, message: &[u8]) -> std::io::Result<()> {
        let frame = frame(self.framing, message)?;
        self.send_raw(peer, &frame)
    }

    /// Sends bytes as they are, without framing (for malformed-input tests).
    pub fn send_raw(&self, peer: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
        match (&self.udp, self.transport) {
            (Some(s), Transport::Udp) => s.send_to(bytes, peer).map(|_| ()),
            _ => {
                let (stream, tls) = {
                    let peers = self.shared.peers();
                    let p = peers
                        .tcp
                        .get(&peer)
                        .ok_or(std::io::ErrorKind::NotConnected)?;
                    (p.stream.try_clone()?, p.tls.clone())
                };
                match tls {
                    Some(t) => t.send(bytes),
                    None => (&stream).write_all(bytes),
                }
            }
        }
    }

    /// Closes every client connection (TCP) or forgets every client (UDP);
    /// the lab keeps listening.
    pub fn drop_clients(&self) {
        let mut p = self.shared.peers();
        for p in p.tcp.values() {
            let _ = p.stream.shutdown(Shutdown::Both);
        }
        p.udp.clear();
    }

    /// Stops listening and closes every client.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.drop_clients();
        // Unblock the accept or recv the listener thread sits in.
        let wake = loopback_of(self.addr);
        match self.transport {
            Transport::Tcp => {
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            }
            Transport::Udp => {
                if let Ok(s) = UdpSocket::bind(SocketAddr::new(wake.ip(), 0)) {
                    let _ = s.send_to(b"", wake);
                }
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Frames `message` for the wire.
pub fn frame(framing: Framing, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0; message.len() + framing.overhead()];
    framing
        .encode(message, &mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e:?}")))?;
    Ok(out)
}

fn loopback_of(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    framing: Framing,
    tls: Option<&Arc<ServerConfig>>,
) {
    let mut readers = Vec::new();
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        let session = match tls {
            None => None,
            Some(config) => {
                let Ok(wire) = stream.try_clone() else {
                    continue;
                };
                match ServerConnection::new(config.clone()) {
                    Ok(s) => Some(Arc::new(TlsPeer {
                        session: Mutex::new(s),
                        wire: Mutex::new(wire),
                    })),
                    Err(e) => {
                        shared.emit(LabEvent::TlsFailed {
                            peer,
                            at: Instant::now(),
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
            }
        };
        shared.peers().tcp.insert(
            peer,
            Peer {
                stream: writer,
                tls: session.clone(),
            },
        );
        if session.is_none() {
            shared.emit(LabEvent::Connected {
                peer,
                at: Instant::now(),
            });
        }
        let sh = shared.clone();
        if let Ok(t) = std::thread::Builder::new()
            .name("lab-client".into())
            .spawn(move || tcp_reader(stream, peer, &sh, framing, session.as_deref()))
        {
            readers.push(t);
        }
        readers.retain(|t: &JoinHandle<()>| !t.is_finished());
    }
    for t in readers {
        let _ = t.join();
    }
}

fn tcp_reader(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    framing: Framing,
    tls: Option<&TlsPeer>,
) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut buf = Vec::new();
    let mut plain = Vec::new();
    let mut announced = false;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = Instant::now();
        let data: &[u8] = match tls {
            None => &chunk[..n],
            Some(t) => {
                plain.clear();
                match decrypt(t, &chunk[..n], &mut plain) {
                    Ok(handshaking) => {
                        if !handshaking && !announced {
                            announced = true;
                            shared.emit(LabEvent::Connected { peer, at });
                        }
                    }
                    Err(error) => {
                        shared.emit(LabEvent::TlsFailed { peer, at, error });
                        let _ = stream.shutdown(Shutdown::Both);
                        break;
                    }
                }
                if plain.is_empty() {
                    continue;
                }
                &plain
            }
        };
        if framing == Framing::Raw {
            shared.emit(LabEvent::Message {
                peer,
                at,
                bytes: data.to_vec(),
            });
            continue;
        }
        buf.extend_from_slice(data);
        if decode_all(framing, &mut buf, |bytes| {
            shared.emit(LabEvent::Message { peer, at, bytes });
        })
        .is_err()
        {
            shared.emit(LabEvent::BadFrame { peer, at });
            let _ = stream.shutdown(Shutdown::Both);
            break;
        }
    }
    shared.peers().tcp.remove(&peer);
    shared.emit(LabEvent::Disconnected {
        peer,
        at: Instant::now(),
    });
}

/// Feeds what the socket delivered to the TLS session, appends the
/// plaintext to `plain`, sends what the session has to say (handshake,
/// alerts). `Ok(true)` while the handshake is still going on.
fn decrypt(t: &TlsPeer, mut data: &[u8], plain: &mut Vec<u8>) -> Result<bool, String> {
    let (failed, handshaking, wants_write) = {
        let mut s = t.session.lock().unwrap_or_else(PoisonError::into_inner);
        let mut failed = None;
        while !data.is_empty() && failed.is_none() {
            if let Err(e) = s.read_tls(&mut data) {
                failed = Some(e.to_string());
                break;
            }
            match s.process_new_packets() {
                Ok(_) => {
                    let _ = s.reader().read_to_end(plain);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        (failed, s.is_handshaking(), s.wants_write())
    };
    if wants_write {
        // Handshake messages, tickets, or the alert that explains a failure.
        let _ = t.send(&[]);
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(handshaking),
    }
}

/// Emits every complete frame at the front of `buf` and removes it.
fn decode_all(
    framing: Framing,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(Vec<u8>),
) -> Result<(), ()> {
    let mut start = 0;
    let result = loop {
        match framing::decode(framing, &buf[start..], MAX_FRAME) {
            Ok(Some(f)) => {
                emit(buf[start + f.start..start + f.end].to_vec());
                start += f.consumed;
                if framing == Framing::Raw {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(_) => break Err(()),
        }
    };
    buf.drain(..start);
    result
}

fn udp_loop(socket: &UdpSocket, shared: &Shared, framing: Framing) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let r = socket.recv_from(&mut chunk);
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        // ICMP errors from earlier sends surface here; they are not fatal.
        let Ok((n, peer)) = r else { continue };
        let at = Instant::now();
        let new = {
            let mut p = shared.peers();
            if p.udp.contains(&peer) {
                false
            } else {
                p.udp.push(peer);
                true
            }
        };
        if new {
            shared.emit(LabEvent::Connected { peer, at });
        }
        if framing == Framing::Raw {
            shared.emit(LabEvent::Message {
                peer,
                at,
                bytes: chunk[..n].to_vec(),
            });
            continue;
        }
        let mut buf = chunk[..n].to_vec();
        let ok = decode_all(framing, &mut buf, |bytes| {
            shared.emit(LabEvent::Message { peer, at, bytes });
        });
        if ok.is_err() || !buf.is_empty() {
            shared.emit(LabEvent::BadFrame { peer, at });
        }
    }
}

/// `longlink lab` without `--check`: prints what clients send, sends them
/// stdin lines.
pub fn main(args: &crate::cli::LabArgs) -> std::process::ExitCode {
    let transport = if args.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let tls = match args.tls_config() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("longlink lab: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let secure = tls.is_some();
    let started = match tls {
        Some(config) => Lab::start_tls(args.listen, args.framing.into(), config),
        None => Lab::start(args.listen, transport, args.framing.into()),
    };
    let lab = match started {
        Ok(l) => l,
        Err(e) => {
            eprintln!("longlink lab: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(2);
        }
    };
    if args.check {
        return crate::check::main(&lab, args);
    }
    println!(
        "longlink lab: {:?}{} on {} ({:?} framing); type a line to send it to every client",
        transport,
        if secure { " + TLS" } else { "" },
        lab.local_addr(),
        lab.framing()
    );
    let lab = Arc::new(lab);
    let sender = lab.clone();
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut line = String::new();
            while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
                let msg = line.trim_end_matches(['\n', '\r']);
                let n = sender.send_all(msg.as_bytes());
                println!(
                    "{} sent {:?} to {n} client(s)",
                    crate::logger::timestamp(std::time::SystemTime::now()),
                    msg
                );
                line.clear();
            }
        });
    loop {
        if let Some(e) = lab.next_event(Duration::from_secs(3600)) {
            println!("{}", describe(&e));
        }
    }
}

/// One line for a lab event: time, peer, what.
pub fn describe(e: &LabEvent) -> String {
    let now = crate::logger::timestamp(std::time::SystemTime::now());
    match e {
        LabEvent::Connected { peer, .. } => format!("{now} {peer} connected"),
        LabEvent::Disconnected { peer, .. } => format!("{now} {peer} disconnected"),
        LabEvent::BadFrame { peer, .. } => {
            format!("{now} {peer} sent an undecodable frame; dropped")
        }
        LabEvent::TlsFailed { peer, error, .. } => {
            format!("{now} {peer} TLS failed: {error}; dropped")
        }
        LabEvent::Message { peer, bytes, .. } => format!(
            "{now} {peer} -> {} bytes: {}",
            bytes.len(),
            crate::text::text_and_hex(bytes, 256)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn tcp_lines_are_split_into_messages_both_ways() {
        let lab = Lab::start(local(), Transport::Tcp, Framing::Lines).unwrap();
        let mut c = TcpStream::connect(lab.local_addr()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let peer = lab
            .wait_for(
                deadline,
                |e| match e {
                    LabEvent::Connected { peer, .. } => Some(*peer),
                    _ => None,
                },
                drop,
            )
            .unwrap();
        c.write_all(b"heart beat\nback 1\nbi").unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(LabEvent::Message { bytes, .. }) = lab.next_event(Duration::from_secs(5)) {
                got.push(bytes);
            }
        }
        assert_eq!(got, vec![b"heart beat".to_vec(), b"back 1".to_vec()]);
        assert_eq!(lab.send_all(b"bin"), 1);
        let mut reply = [0u8; 4];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"bin\n");
        lab.drop_clients();
        let gone = lab.wait_for(
            deadline,
            |e| matches!(e, LabEvent::Disconnected { peer: p, .. } if *p == peer).then_some(()),
            drop,
        );
        assert_eq!(gone, Some(()));
        assert_eq!(c.read(&mut reply).unwrap(), 0);
    }

    #[test]
    fn udp_peers_are_remembered_and_answered() {
        let lab = Lab::start(local(), Transport::Udp, Framing::Raw).unwrap();
        let c = UdpSocket::bind(local()).unwrap();
        c.connect(lab.local_addr()).unwrap();
        c.send(b"heart beat").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let msg = lab.wait_for(
            deadline,
            |e| match e {
                LabEvent::Message { bytes, .. } => Some(bytes.clone()),
                _ => None,
            },
            drop,
        );
        assert_eq!(msg.as_deref(), Some(&b"heart beat"[..]));
        assert_eq!(lab.send_all(b"time"), 1);
        let mut buf = [0u8; 16];
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.recv(&mut buf).unwrap(), 4);
        lab.stop();
    }

    #[test]
    fn an_oversized_line_drops_the_client() {
        let lab = Lab::start(local(), Transport::Tcp, Framing::Lines).unwrap();
        let mut c = TcpStream::connect(lab.local_addr()).unwrap();
        let junk = vec![b'x'; MAX_FRAME + 10];
        let _ = c.write_all(&junk);
        let deadline = Instant::now() + Duration::from_secs(10);
        let bad = lab.wait_for(
            deadline,
            |e| matches!(e, LabEvent::BadFrame { .. }).then_some(()),
            drop,
        );
        assert_eq!(bad, Some(()));
    }
}
