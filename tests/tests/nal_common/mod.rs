//! Shared pieces of the `nal_*` tests: a plain loopback lab server on
//! `std::net` (TCP and UDP, one thread, bounded life), a modem that records
//! what the driver asked of it, and a loop that polls the driver until a
//! condition holds or a time limit passes.
// Test harness: a failed setup step should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use longlink_core::time::{Duration, Instant};
use longlink_core::{Config, Status};
use longlink_nal::Modem;

/// The lab server gives up by itself after this long, so a broken test
/// cannot leave a thread behind forever.
const SERVER_LIFETIME: StdDuration = StdDuration::from_secs(60);

/// What the lab server saw and still has to send.
#[derive(Default)]
pub struct LabState {
    /// Bytes (TCP) or datagrams (UDP, each pushed whole) received per
    /// connection, in order. For UDP, one "connection" per client address.
    pub conns: Vec<Vec<u8>>,
    /// UDP: each datagram received, in order.
    pub datagrams: Vec<Vec<u8>>,
    /// To send to the current client: TCP bytes, or UDP datagrams.
    pub outbox: VecDeque<Vec<u8>>,
    /// Close the current TCP connection (or forget the UDP client).
    pub drop_now: bool,
    /// Stop reading from the client (TCP): lets its send buffer fill up.
    pub stop_reading: bool,
    /// Connections accepted.
    pub accepted: u32,
}

/// A loopback lab server on an ephemeral port.
pub struct Lab {
    pub addr: SocketAddr,
    state: Arc<Mutex<LabState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Lab {
    /// A TCP lab server on 127.0.0.1.
    pub fn tcp() -> Lab {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        Lab::spawn(addr, move |state, stop| tcp_server(listener, state, stop))
    }

    /// A UDP lab server on 127.0.0.1.
    pub fn udp() -> Lab {
        Lab::udp_at("127.0.0.1:0".parse().unwrap())
    }

    /// A UDP lab server on `addr` (to restart one on the same port).
    pub fn udp_at(addr: SocketAddr) -> Lab {
        let sock = UdpSocket::bind(addr).unwrap();
        sock.set_nonblocking(true).unwrap();
        let addr = sock.local_addr().unwrap();
        Lab::spawn(addr, move |state, stop| udp_server(sock, state, stop))
    }

    fn spawn(
        addr: SocketAddr,
        f: impl FnOnce(Arc<Mutex<LabState>>, Arc<AtomicBool>) + Send + 'static,
    ) -> Lab {
        let state = Arc::new(Mutex::new(LabState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || f(s, st));
        Lab {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, LabState> {
        self.state.lock().unwrap()
    }

    /// Queues bytes (a datagram over UDP) for the client.
    pub fn say(&self, bytes: &[u8]) {
        self.state().outbox.push_back(bytes.to_vec());
    }

    /// What the client sent on connection `i` (0-based).
    pub fn received(&self, i: usize) -> Vec<u8> {
        self.state().conns.get(i).cloned().unwrap_or_default()
    }

    pub fn accepted(&self) -> u32 {
        self.state().accepted
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_server(listener: TcpListener, state: Arc<Mutex<LabState>>, stop: Arc<AtomicBool>) {
    let start = StdInstant::now();
    let mut client: Option<TcpStream> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < SERVER_LIFETIME {
        let mut idle = true;
        if let Ok((s, _)) = listener.accept() {
            s.set_nonblocking(true).unwrap();
            s.set_nodelay(true).unwrap();
            // One client at a time, as the tutorial's lab: a new one
            // replaces the old.
            client = Some(s);
            pending.clear();
            let mut st = state.lock().unwrap();
            st.accepted += 1;
            st.conns.push(Vec::new());
            idle = false;
        }
        let mut st = state.lock().unwrap();
        if st.drop_now {
            st.drop_now = false;
            if let Some(s) = client.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(s) = client.as_mut() {
            if !st.stop_reading {
                match s.read(&mut buf) {
                    Ok(0) => client = None,
                    Ok(n) => {
                        if let Some(c) = st.conns.last_mut() {
                            c.extend_from_slice(&buf[..n]);
                        }
                        idle = false;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => client = None,
                }
            }
        }
        if let Some(s) = client.as_mut() {
            if pending.is_empty() {
                if let Some(next) = st.outbox.pop_front() {
                    pending = next;
                }
            }
            if !pending.is_empty() {
                match s.write(&pending) {
                    Ok(n) => {
                        pending.drain(..n);
                        idle = false;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => client = None,
                }
            }
        }
        drop(st);
        if idle {
            std::thread::sleep(StdDuration::from_micros(200));
        }
    }
}

fn udp_server(sock: UdpSocket, state: Arc<Mutex<LabState>>, stop: Arc<AtomicBool>) {
    let start = StdInstant::now();
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < SERVER_LIFETIME {
        let mut idle = true;
        let mut st = state.lock().unwrap();
        if st.drop_now {
            st.drop_now = false;
            client = None;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if client != Some(from) {
                    client = Some(from);
                    st.accepted += 1;
                    st.conns.push(Vec::new());
                }
                if let Some(c) = st.conns.last_mut() {
                    c.extend_from_slice(&buf[..n]);
                }
                st.datagrams.push(buf[..n].to_vec());
                idle = false;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {}
        }
        if let Some(to) = client {
            if let Some(d) = st.outbox.pop_front() {
                match sock.send_to(&d, to) {
                    Ok(_) => idle = false,
                    Err(_) => st.outbox.push_front(d),
                }
            }
        }
        drop(st);
        if idle {
            std::thread::sleep(StdDuration::from_micros(200));
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// What the driver asked the modem to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModemEvent {
    ResetLink,
    Radio(bool),
    Status(Status),
}

/// A modem that records every request, and (through [`RecordingModem::hook`])
/// every status the driver reports, in one log; the network is up unless
/// told otherwise.
#[derive(Default)]
pub struct RecordingModem {
    pub down: bool,
    events: Rc<RefCell<Vec<ModemEvent>>>,
}

/// The driver's event hook in these tests.
pub type Hook = Box<dyn FnMut(longlink_nal::Event<'_>)>;

impl RecordingModem {
    /// What was recorded so far.
    pub fn log(&self) -> Vec<ModemEvent> {
        self.events.borrow().clone()
    }

    /// An event hook that records status changes in the same log.
    pub fn hook(&self) -> Hook {
        let events = self.events.clone();
        Box::new(move |e| {
            if let longlink_nal::Event::Core(longlink_core::Event::Status(s)) = e {
                events.borrow_mut().push(ModemEvent::Status(s));
            }
        })
    }
}

impl Modem for RecordingModem {
    fn network_ready(&mut self) -> bool {
        !self.down
    }
    fn reset_link(&mut self) {
        self.events.borrow_mut().push(ModemEvent::ResetLink);
    }
    fn set_radio(&mut self, on: bool) {
        self.events.borrow_mut().push(ModemEvent::Radio(on));
    }
}

/// A monotonic clock from the test's start.
pub fn wall_clock() -> impl FnMut() -> Instant {
    let t0 = StdInstant::now();
    move || Instant::from_millis(t0.elapsed().as_millis() as u64)
}

/// Tutorial behaviour at test speed: 60 ms between attempts, a heartbeat
/// every 150 ms.
pub fn fast_config() -> Config {
    Config {
        retry_delay: Duration::from_millis(60),
        heartbeat_interval: Some(Duration::from_millis(150)),
        network_wait: Duration::from_millis(300),
        radio_off: Duration::from_millis(100),
        ..Config::default()
    }
}

/// Polls until `done` holds or `limit` passes; sleeps until the driver's
/// deadline but at most 1 ms (the host stack has no wake-up interrupt).
/// Returns whether `done` held.
pub fn poll_until<T>(
    target: &mut T,
    mut poll: impl FnMut(&mut T) -> Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
    limit: StdDuration,
) -> bool {
    let start = StdInstant::now();
    while start.elapsed() < limit {
        let _next = poll(target);
        if done(target) {
            return true;
        }
        std::thread::sleep(StdDuration::from_micros(500));
    }
    false
}

/// Counts non-overlapping occurrences of `needle` in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if &hay[i..i + needle.len()] == needle {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    count(hay, needle) > 0
}

/// A small xorshift generator for reproducible junk.
pub fn junk(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
