//! A plain loopback test server, independent of every longlink crate: it
//! records what clients send, with arrival times, and sends what a test
//! tells it to, byte for byte (no framing, so a test can send malformed
//! input). TCP and UDP.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes received, as read (TCP) or one datagram (UDP), with arrival time.
pub type Chunk = (Instant, Vec<u8>);

#[derive(Default)]
struct State {
    chunks: Mutex<Vec<Chunk>>,
    /// TCP: open client connections, newest last.
    conns: Mutex<Vec<TcpStream>>,
    /// UDP: clients seen, newest last.
    peers: Mutex<Vec<SocketAddr>>,
    accepted: AtomicUsize,
    /// While set, TCP readers stop reading (the client's writes back up).
    paused: AtomicBool,
    stopping: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running test server; dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    udp: Option<UdpSocket>,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// A TCP server on `addr` (use `127.0.0.1:0` for a free port).
    pub fn tcp(addr: SocketAddr) -> std::io::Result<TestServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let t = std::thread::spawn(move || {
            let mut readers = Vec::new();
            for conn in listener.incoming() {
                if st.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let Ok(reader) = conn.try_clone() else {
                    continue;
                };
                lock(&st.conns).push(conn);
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let st2 = st.clone();
                readers.push(std::thread::spawn(move || tcp_reader(reader, &st2)));
            }
            for r in readers {
                let _ = r.join();
            }
        });
        Ok(TestServer {
            addr,
            udp: None,
            state,
            threads: vec![t],
        })
    }

    /// A UDP server on `addr`.
    pub fn udp(addr: SocketAddr) -> std::io::Result<TestServer> {
        let socket = UdpSocket::bind(addr)?;
        let addr = socket.local_addr()?;
        let reader = socket.try_clone()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let t = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let r = reader.recv_from(&mut buf);
                if st.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok((n, peer)) = r else { continue };
                {
                    let mut peers = lock(&st.peers);
                    if !peers.contains(&peer) {
                        peers.push(peer);
                        st.accepted.fetch_add(1, Ordering::SeqCst);
                    }
                }
                lock(&st.chunks).push((Instant::now(), buf[..n].to_vec()));
            }
        });
        Ok(TestServer {
            addr,
            udp: Some(socket),
            state,
            threads: vec![t],
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted (TCP) or distinct peers seen (UDP) so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Everything received so far, in arrival order.
    pub fn chunks(&self) -> Vec<Chunk> {
        lock(&self.state.chunks).clone()
    }

    /// Everything received so far, concatenated.
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.state.chunks)
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        lock(&self.state.chunks).clear();
    }

    /// Polls every 5 ms until `ok(received bytes)` holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut ok: impl FnMut(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if ok(&self.bytes()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until at least `n` clients were accepted.
    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.accepted() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Sends bytes as they are to the newest client.
    pub fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        match &self.udp {
            Some(s) => {
                let peer = lock(&self.state.peers)
                    .last()
                    .copied()
                    .ok_or(std::io::ErrorKind::NotConnected)?;
                s.send_to(bytes, peer).map(|_| ())
            }
            None => {
                let conn = lock(&self.state.conns)
                    .last()
                    .map(TcpStream::try_clone)
                    .ok_or(std::io::ErrorKind::NotConnected)??;
                (&conn).write_all(bytes)
            }
        }
    }

    /// Stops (or resumes) reading from TCP clients.
    pub fn pause_reading(&self, paused: bool) {
        self.state.paused.store(paused, Ordering::SeqCst);
    }

    /// Closes every TCP connection; keeps listening.
    pub fn close_clients(&self) {
        for c in lock(&self.state.conns).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn halt(&mut self) {
        if self.state.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.close_clients();
        self.state.paused.store(false, Ordering::SeqCst);
        // Wake the thread blocked in accept or recv.
        match &self.udp {
            Some(_) => {
                if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
                    let _ = s.send_to(b"", self.addr);
                }
            }
            None => {
                let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn tcp_reader(mut conn: TcpStream, st: &State) {
    let mut buf = vec![0u8; 65536];
    loop {
        while st.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => lock(&st.chunks).push((Instant::now(), buf[..n].to_vec())),
        }
    }
}

/// Splits `bytes` at `\n`, dropping the last piece if unterminated.
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    out.pop();
    out
}

/// A deterministic byte stream for "random" input (xorshift64).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
