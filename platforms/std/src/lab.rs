//! The lab: a test server in the spirit of the tutorial's TCP test lab.
//!
//! The lab is the independent party the client is tested against, so it
//! deliberately shares no I/O code with the client. It may face a network of
//! devices, so it is built like a server:
//!
//! - **One I/O thread** serves every socket: the listener (or the UDP
//!   socket) and each client is a *slot* polled when async-io's reactor says
//!   its socket is ready (or when the printer freed room, or a sender queued
//!   bytes). An idle client costs one descriptor and about a kilobyte.
//! - **Bounded everywhere, backpressure instead of buffering.** Events go to a
//!   bounded queue ([`EVENT_MESSAGES`], [`EVENT_BYTES`]); when it is full the
//!   I/O thread stops reading from the senders (TCP's flow control then slows
//!   them) and stops accepting. Each client has its own bounded outgoing
//!   buffer ([`OUTBOX`]); a client that does not read is skipped by
//!   broadcasts (counted, logged once per stall), never waited for.
//! - A connection cap ([`Limits::max_clients`]), an optional idle timeout,
//!   accept errors (out of descriptors) backed off instead of retried at once,
//!   UDP peers kept in a constant-time LRU that expires them.
//!
//! Events go to [`Lab::next_event`]; `longlink lab` prints them, `--check`
//! and the demo script against them.
//!
//! With TLS ([`Lab::start_tls`], `longlink lab --tls`) each TCP client gets a
//! rustls server session, driven by the same I/O thread.
//!
//! With acknowledged delivery ([`Lab::start_acked`], `longlink lab --acked`)
//! the lab speaks `PROTOCOL.md`: the I/O thread decodes each `D`/`H` frame,
//! keeps one [`Dedup`] record per device *session* (not per connection: a
//! device that reconnects from a new port keeps its session), at most
//! [`Limits::max_sessions`] of them (the least recently heard is forgotten
//! for a new one, counted), emits each application message once
//! ([`LabEvent::Message`]; heartbeats as [`LabEvent::Beat`]), drops and
//! counts duplicates, and acknowledges cumulatively: one `A` per session for
//! all the frames of one read (or datagram), sent after the messages were
//! queued as events. What the lab sends to clients goes as `M` frames.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use log::{debug, info, warn};
use longlink_core::acked::{self, seq_before, Dedup, Frame, Verdict};
use longlink_core::framing::{self, Framing};
use longlink_core::Transport;
use rustls::{ServerConfig, ServerConnection};

/// The largest inbound frame the lab accepts (lines and len16 framing); a
/// longer one is reported and the client dropped.
pub const MAX_FRAME: usize = 1 << 20;
/// Bytes read from a socket at a time (also the largest raw TCP message and
/// UDP datagram).
pub const READ_CHUNK: usize = 64 * 1024;
/// Queued events at most (messages and connection events) before the lab
/// stops reading from clients.
pub const EVENT_MESSAGES: usize = 4096;
/// Message bytes queued for the printer at most before the lab stops reading
/// from clients.
pub const EVENT_BYTES: usize = 2 << 20;
/// Each client's outgoing buffer. A broadcast that does not fit waits at
/// most [`STALL`] for room, then skips the client (and does not wait for it
/// again until it drained its buffer).
pub const OUTBOX: usize = 64 * 1024;
/// Bytes of unfinished frames held for all clients together; a client whose
/// partial frame would push the total past it is dropped.
pub const INBOUND_BUDGET: usize = 32 << 20;
/// How long a broadcast waits for room in a client's full outgoing buffer
/// before it skips that client.
pub const STALL: Duration = Duration::from_millis(500);
/// How long a direct send ([`Lab::send_to`]) waits for room in a client's
/// outgoing buffer before it gives up.
pub const SEND_PATIENCE: Duration = Duration::from_secs(10);
/// The longest stdin line `longlink lab` sends (the len16 limit).
pub const MAX_LINE: usize = 65_535;
/// `--max-clients` by default: well under the common limit of 1,024 open
/// files (each client takes one).
pub const DEFAULT_MAX_CLIENTS: usize = 512;
/// `--peer-expiry` by default: a UDP peer silent this long is forgotten.
pub const DEFAULT_PEER_EXPIRY: Duration = Duration::from_secs(120);
/// `--max-sessions` by default (acknowledged mode).
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// An acknowledgement is not queued to a client whose outgoing buffer holds
/// more than [`OUTBOX`] plus this (it is dropped and counted; acks are
/// cumulative, so the next one covers it, and a device that gets none
/// reconnects and sends again).
const ACK_SLACK: usize = 4096;

/// Accept errors (out of descriptors) are retried after this, doubling up to
/// [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Work done for one slot before the others get their turn.
const READS_PER_POLL: usize = 4;
const ACCEPTS_PER_POLL: usize = 64;
const DATAGRAMS_PER_POLL: usize = 64;
/// Slots polled before the reactor is asked for new readiness.
const SLOTS_PER_ROUND: usize = 256;
/// Buffers larger than this are freed when they empty, so an idle client
/// keeps no memory from an earlier burst.
const KEEP_CAPACITY: usize = 4096;

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
    /// Acknowledged mode: a heartbeat (`H` frame) from a client; its
    /// payload (the acked mode's heartbeats never reach
    /// [`Message`](LabEvent::Message)).
    Beat {
        /// The client.
        peer: SocketAddr,
        /// When it was read.
        at: Instant,
        /// The heartbeat's payload.
        payload: Vec<u8>,
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

/// The lab's limits (`longlink lab --max-clients/--idle-timeout/--peer-expiry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP clients served at once (more are accepted and closed at once);
    /// UDP peers remembered (the least recently heard is forgotten for a new
    /// one).
    pub max_clients: usize,
    /// Drop a TCP client that sent nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Forget a UDP peer that sent nothing for this long.
    pub peer_expiry: Duration,
    /// Acknowledged mode: device sessions remembered (the least recently
    /// heard is forgotten for a new one, counted in
    /// [`LabStats::sessions_evicted`]).
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: None,
            peer_expiry: DEFAULT_PEER_EXPIRY,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl Limits {
    /// The most memory the lab's own buffers can hold with these limits, in
    /// bytes: the event queue, every client's outgoing buffer and TLS
    /// buffers, the shared budget for unfinished frames, the read buffer.
    /// (Allocator overhead and the process's baseline come on top.)
    pub fn memory_bound(&self, tls: bool) -> usize {
        let per_client = OUTBOX + PER_CLIENT_FIXED + if tls { PER_TLS_CLIENT } else { 0 };
        EVENT_BYTES
            + MAX_FRAME
            + (EVENT_MESSAGES + 2 * self.max_clients) * PER_EVENT
            + INBOUND_BUDGET
            + READ_CHUNK
            + self.max_clients * per_client
            + self.max_sessions * PER_SESSION
    }
}

/// The bookkeeping of one client (slot, outgoing buffer, reactor source,
/// map entries), rounded up; measured at about 1 KiB (BENCHMARKS.md).
const PER_CLIENT_FIXED: usize = 2048;
/// rustls's buffers for one session: a record in each direction and its
/// sendable buffer (capped at [`OUTBOX`]) on top of ours.
const PER_TLS_CLIENT: usize = 2 * 18 * 1024 + OUTBOX;
/// One queued event without its payload.
const PER_EVENT: usize = 128;
/// One session record (acknowledged mode): its hash-map entry and its
/// place in the least-recently-heard order, rounded up.
const PER_SESSION: usize = 64;

/// Counters since the lab started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabStats {
    /// TCP connections accepted (refusals excluded) or UDP peers first heard.
    pub clients_seen: u64,
    /// Most TCP clients (UDP peers) at once.
    pub peak_clients: u64,
    /// Connections accepted and closed at once because of `max_clients`.
    pub refused: u64,
    /// Failed accepts (out of descriptors, aborted connections).
    pub accept_errors: u64,
    /// Messages received (after framing).
    pub messages_in: u64,
    /// Bytes received (TLS: ciphertext).
    pub bytes_in: u64,
    /// Messages queued to clients (direct sends and broadcasts).
    pub messages_out: u64,
    /// Bytes handed to the sockets (TLS: plaintext handed to rustls).
    pub bytes_out: u64,
    /// Broadcast copies skipped because the client was not reading.
    pub skipped: u64,
    /// Clients dropped by the idle timeout.
    pub dropped_idle: u64,
    /// Clients dropped for an undecodable frame.
    pub dropped_bad_frame: u64,
    /// Clients dropped because TLS failed.
    pub dropped_tls: u64,
    /// Clients dropped because their unfinished frame exceeded the shared
    /// budget.
    pub dropped_budget: u64,
    /// Clients lost to a socket error (reset, broken pipe).
    pub dropped_error: u64,
    /// UDP peers forgotten after `peer_expiry` of silence.
    pub peers_expired: u64,
    /// UDP peers forgotten early to make room for a new one.
    pub peers_evicted: u64,
    /// Acknowledged mode: heartbeats (`H`) received.
    pub beats: u64,
    /// Acknowledged mode: messages already delivered, received again
    /// (dropped; acknowledged again).
    pub duplicates: u64,
    /// Acknowledged mode: messages after a gap (dropped; the ack says where
    /// to resume).
    pub gaps: u64,
    /// Acknowledged mode: messages of a session the lab has no record of
    /// that are not its first (dropped; the device's heartbeat restores it).
    pub unknown_session: u64,
    /// Acknowledged mode: frames that are not `D` or `H` (dropped, the
    /// connection stays up).
    pub malformed: u64,
    /// Acknowledged mode: `A` frames sent.
    pub acks_sent: u64,
    /// Acknowledged mode: acks not sent because the client's buffer was
    /// full (a later ack covers them).
    pub acks_dropped: u64,
    /// Acknowledged mode: acks held back by [`Lab::withhold_acks`].
    pub acks_withheld: u64,
    /// Acknowledged mode: device sessions remembered now.
    pub sessions: u64,
    /// Acknowledged mode: sessions forgotten to make room for a new one.
    pub sessions_evicted: u64,
}

#[derive(Default)]
struct Counters {
    clients_seen: AtomicU64,
    peak_clients: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    skipped: AtomicU64,
    dropped_idle: AtomicU64,
    dropped_bad_frame: AtomicU64,
    dropped_tls: AtomicU64,
    dropped_budget: AtomicU64,
    dropped_error: AtomicU64,
    peers_expired: AtomicU64,
    peers_evicted: AtomicU64,
    beats: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    unknown_session: AtomicU64,
    malformed: AtomicU64,
    acks_sent: AtomicU64,
    acks_dropped: AtomicU64,
    acks_withheld: AtomicU64,
    sessions: AtomicU64,
    sessions_evicted: AtomicU64,
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> LabStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LabStats {
            clients_seen: g(&self.clients_seen),
            peak_clients: g(&self.peak_clients),
            refused: g(&self.refused),
            accept_errors: g(&self.accept_errors),
            messages_in: g(&self.messages_in),
            bytes_in: g(&self.bytes_in),
            messages_out: g(&self.messages_out),
            bytes_out: g(&self.bytes_out),
            skipped: g(&self.skipped),
            dropped_idle: g(&self.dropped_idle),
            dropped_bad_frame: g(&self.dropped_bad_frame),
            dropped_tls: g(&self.dropped_tls),
            dropped_budget: g(&self.dropped_budget),
            dropped_error: g(&self.dropped_error),
            peers_expired: g(&self.peers_expired),
            peers_evicted: g(&self.peers_evicted),
            beats: g(&self.beats),
            duplicates: g(&self.duplicates),
            gaps: g(&self.gaps),
            unknown_session: g(&self.unknown_session),
            malformed: g(&self.malformed),
            acks_sent: g(&self.acks_sent),
            acks_dropped: g(&self.acks_dropped),
            acks_withheld: g(&self.acks_withheld),
            sessions: g(&self.sessions),
            sessions_evicted: g(&self.sessions_evicted),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked leaves the data usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The event queue: bounded, the I/O thread waits for room by registering a
// waker, the consumer blocks on a condition variable.

struct Events {
    state: Mutex<EventState>,
    ready: Condvar,
}

#[derive(Default)]
struct EventState {
    queue: VecDeque<LabEvent>,
    bytes: usize,
    /// Slots waiting for room, woken when the queue is half empty.
    waiters: Vec<Waker>,
    /// Bumped each time the waiters are woken: a slot registers once per
    /// epoch.
    epoch: u64,
    consumer_waiting: bool,
    interrupted: bool,
}

impl EventState {
    fn full(&self) -> bool {
        self.queue.len() >= EVENT_MESSAGES || self.bytes >= EVENT_BYTES
    }

    fn push(&mut self, e: LabEvent) {
        self.bytes += payload_len(&e);
        self.queue.push_back(e);
    }

    /// Registers `waker` for room, once per epoch.
    fn wait_for_room(&mut self, waker: &Waker, registered: &mut Option<u64>) {
        if *registered != Some(self.epoch) {
            *registered = Some(self.epoch);
            self.waiters.push(waker.clone());
        }
    }
}

/// The bytes an event carries (counted against [`EVENT_BYTES`]).
fn payload_len(e: &LabEvent) -> usize {
    match e {
        LabEvent::Message { bytes, .. } => bytes.len(),
        LabEvent::Beat { payload, .. } => payload.len(),
        _ => 0,
    }
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, EventState> {
        lock(&self.state)
    }

    /// Wakes the consumer if it waits (after pushes, with the lock released).
    fn notify(&self, state: MutexGuard<'_, EventState>) {
        let waiting = state.consumer_waiting;
        drop(state);
        if waiting {
            self.ready.notify_all();
        }
    }

    fn push(&self, e: LabEvent) {
        let mut s = self.lock();
        s.push(e);
        self.notify(s);
    }

    fn next(&self, timeout: Duration) -> Option<LabEvent> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            if s.interrupted {
                return None;
            }
            if let Some(e) = s.queue.pop_front() {
                s.bytes -= payload_len(&e);
                let wake = if !s.waiters.is_empty()
                    && s.queue.len() <= EVENT_MESSAGES / 2
                    && s.bytes <= EVENT_BYTES / 2
                {
                    s.epoch += 1;
                    std::mem::take(&mut s.waiters)
                } else {
                    Vec::new()
                };
                drop(s);
                for w in wake {
                    w.wake();
                }
                return Some(e);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            s.consumer_waiting = true;
            s = self
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            s.consumer_waiting = false;
        }
    }

    fn interrupt(&self) {
        self.lock().interrupted = true;
        self.ready.notify_all();
    }
}

// ---------------------------------------------------------------------------
// The scheduler of the I/O thread: a slot's waker puts its id on the ready
// queue (once until it is polled) and wakes the thread.

#[derive(Default)]
struct ReadyState {
    ids: VecDeque<usize>,
    thread: Option<Waker>,
    stop: bool,
}

#[derive(Default)]
struct Ready {
    state: Mutex<ReadyState>,
}

impl Ready {
    fn push(&self, id: usize) {
        let thread = {
            let mut s = lock(&self.state);
            s.ids.push_back(id);
            s.thread.take()
        };
        if let Some(t) = thread {
            t.wake();
        }
    }

    fn stop(&self) {
        let thread = {
            let mut s = lock(&self.state);
            s.stop = true;
            s.thread.take()
        };
        if let Some(t) = thread {
            t.wake();
        }
    }
}

struct SlotWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.push(self.id);
        }
    }
}

fn slot_waker(id: usize, ready: &Arc<Ready>) -> (Arc<SlotWaker>, Waker) {
    let flag = Arc::new(SlotWaker {
        id,
        queued: AtomicBool::new(false),
        ready: ready.clone(),
    });
    (flag.clone(), Waker::from(flag))
}

// ---------------------------------------------------------------------------
// A client's outgoing buffer, filled by senders on any thread, drained by the
// I/O thread.

struct Outbox {
    peer: SocketAddr,
    state: Mutex<OutState>,
    /// Signalled when bytes leave (or the client closes).
    room: Condvar,
    /// The client's slot.
    waker: Waker,
}

struct OutState {
    buf: VecDeque<u8>,
    closed: bool,
    /// Senders waiting for room.
    waiting: usize,
    /// Broadcast copies skipped since the client fell behind; broadcasts
    /// do not wait for it until it drained its buffer.
    skipped: u64,
}

/// Why a frame did not get into an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The client is gone or being dropped.
    Closed,
    /// The buffer is full and did not make room within the patience given
    /// (or, for a broadcast, the client is being skipped already).
    Stalled,
}

impl Outbox {
    fn new(peer: SocketAddr, waker: Waker) -> Outbox {
        Outbox {
            peer,
            state: Mutex::new(OutState {
                buf: VecDeque::new(),
                closed: false,
                waiting: 0,
                skipped: 0,
            }),
            room: Condvar::new(),
            waker,
        }
    }

    /// Queues `frame` whole. A frame that does not fit waits for room, at
    /// most `patience`; a broadcast does not wait at all for a client that
    /// is already being skipped (until it drained its buffer). A frame
    /// larger than [`OUTBOX`] goes alone into an empty buffer.
    fn push(&self, frame: &[u8], patience: Duration, broadcast: bool) -> Result<(), Refused> {
        let give_up = Instant::now() + patience;
        let mut s = lock(&self.state);
        loop {
            if s.closed {
                return Err(Refused::Closed);
            }
            if s.buf.is_empty() || s.buf.len() + frame.len() <= OUTBOX {
                s.buf.extend(frame);
                drop(s);
                self.waker.wake_by_ref();
                return Ok(());
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() || broadcast && s.skipped > 0 {
                return Err(Refused::Stalled);
            }
            s.waiting += 1;
            s = self
                .room
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            s.waiting -= 1;
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.room.notify_all();
        self.waker.wake_by_ref();
    }

    fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

impl OutState {
    /// `n` bytes left the buffer.
    fn consumed(&mut self, n: usize, peer: SocketAddr, room: &Condvar) {
        self.buf.drain(..n);
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = VecDeque::new();
        }
        if self.skipped > 0 && self.buf.is_empty() {
            info!(
                "{peer} is reading again; {} broadcast message(s) were skipped meanwhile",
                self.skipped
            );
            self.skipped = 0;
        }
        if self.waiting > 0 {
            room.notify_all();
        }
    }
}

// ---------------------------------------------------------------------------
// UDP peers: a least-recently-heard list in a slab, found through a hash map,
// every operation in constant time.

const NIL: usize = usize::MAX;

struct PeerNode {
    addr: SocketAddr,
    last: Instant,
    prev: usize,
    next: usize,
}

struct UdpPeers {
    map: HashMap<SocketAddr, usize>,
    nodes: Vec<PeerNode>,
    free: Vec<usize>,
    /// Least recently heard.
    head: usize,
    /// Most recently heard.
    tail: usize,
    cap: usize,
    expiry: Duration,
}

impl UdpPeers {
    fn new(cap: usize, expiry: Duration) -> UdpPeers {
        UdpPeers {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            cap: cap.max(1),
            expiry,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
    }

    fn link_tail(&mut self, i: usize) {
        self.nodes[i].prev = self.tail;
        self.nodes[i].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.nodes[self.tail].next = i;
        }
        self.tail = i;
    }

    fn remove_head(&mut self) {
        let i = self.head;
        if i == NIL {
            return;
        }
        self.unlink(i);
        self.map.remove(&self.nodes[i].addr);
        self.free.push(i);
    }

    /// Forgets peers silent for the expiry; returns how many.
    fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self.head != NIL
            && now.saturating_duration_since(self.nodes[self.head].last) >= self.expiry
        {
            self.remove_head();
            n += 1;
        }
        n
    }

    /// Records a datagram from `addr`: `(new peer, peers evicted for it)`.
    fn touch(&mut self, addr: SocketAddr, now: Instant) -> (bool, usize) {
        if let Some(&i) = self.map.get(&addr) {
            self.nodes[i].last = now;
            self.unlink(i);
            self.link_tail(i);
            return (false, 0);
        }
        let mut evicted = 0;
        while self.map.len() >= self.cap {
            self.remove_head();
            evicted += 1;
        }
        let node = PeerNode {
            addr,
            last: now,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(addr, i);
        self.link_tail(i);
        (true, evicted)
    }

    fn clear(&mut self) {
        self.map.clear();
        self.nodes.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut i = self.head;
        while i != NIL {
            out.push(self.nodes[i].addr);
            i = self.nodes[i].next;
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Acknowledged mode: one `Dedup` record per device session, the least
// recently heard forgotten first.

struct Record {
    dedup: Dedup,
    /// Its key in `Sessions::order`.
    tick: u64,
}

/// What [`Dedup::on_frame`] says: the verdict and the ack to send.
type Outcome = (Verdict, Option<[u8; acked::ACK_LEN]>);

struct Sessions {
    map: HashMap<u32, Record>,
    /// Sessions by when they were last heard, oldest first.
    order: std::collections::BTreeMap<u64, u32>,
    tick: u64,
    cap: usize,
    /// Evicting sessions for new ones (logged once per run).
    evicting: bool,
    /// While acks are withheld: the first message delivered meanwhile.
    withheld_from: Option<(u32, u32)>,
}

impl Sessions {
    fn new(cap: usize) -> Sessions {
        Sessions {
            map: HashMap::new(),
            order: std::collections::BTreeMap::new(),
            tick: 0,
            cap: cap.max(1),
            evicting: false,
            withheld_from: None,
        }
    }

    /// Runs `session`'s record over a `D` or `H` frame: what to do and the
    /// ack, and how many sessions were forgotten to make room. A frame that
    /// creates no state (a message of an unknown session that is not its
    /// first) creates no record.
    fn on_frame(&mut self, session: u32, frame: &Frame<'_>) -> (Option<Outcome>, usize) {
        let mut dedup = self.map.get(&session).map(|r| r.dedup).unwrap_or_default();
        let out = dedup.on_frame(frame);
        let mut evicted = 0;
        if dedup.state.is_some() {
            self.tick += 1;
            let tick = self.tick;
            if let Some(r) = self.map.get_mut(&session) {
                self.order.remove(&r.tick);
                r.tick = tick;
                r.dedup = dedup;
            } else {
                while self.map.len() >= self.cap {
                    let Some((_, old)) = self.order.pop_first() else {
                        break;
                    };
                    self.map.remove(&old);
                    evicted += 1;
                }
                self.map.insert(session, Record { dedup, tick });
            }
            self.order.insert(tick, session);
        }
        (out, evicted)
    }
}

/// Where the frames of one read (or datagram) go: plain mode, each is a
/// message; acknowledged mode, through the session records, collecting one
/// cumulative ack per session.
struct Sink<'a> {
    stats: &'a Counters,
    withhold: &'a AtomicBool,
    sessions: Option<&'a mut Sessions>,
    acks: Vec<(u32, [u8; acked::ACK_LEN])>,
}

impl<'a> Sink<'a> {
    fn new(shared: &'a Shared, sessions: &'a mut Option<Sessions>) -> Sink<'a> {
        Sink {
            stats: &shared.stats,
            withhold: &shared.withhold,
            sessions: sessions.as_mut(),
            acks: Vec::new(),
        }
    }

    /// One whole frame (framing removed) from `peer`.
    fn frame(&mut self, peer: SocketAddr, at: Instant, bytes: &[u8], ev: &mut EventState) {
        let stats = self.stats;
        let Some(sessions) = self.sessions.as_deref_mut() else {
            ev.push(LabEvent::Message {
                peer,
                at,
                bytes: bytes.to_vec(),
            });
            add(&stats.messages_in, 1);
            return;
        };
        // Only `D` and `H` come from a device; anything else is malformed.
        let (frame, session, seq) = match Frame::decode(bytes) {
            Ok(
                f @ (Frame::Data { session, seq, .. }
                | Frame::Beat {
                    session, base: seq, ..
                }),
            ) => (f, session, seq),
            Ok(_) | Err(_) => {
                add(&stats.malformed, 1);
                debug!(
                    "{peer}: malformed frame dropped: {}",
                    crate::text::text_and_hex(bytes, 32)
                );
                return;
            }
        };
        if !self.withhold.load(Ordering::Acquire) {
            // Not withholding (any more): no marker from an earlier run.
            sessions.withheld_from = None;
        }
        let (result, evicted) = sessions.on_frame(session, &frame);
        if evicted > 0 {
            add(&stats.sessions_evicted, evicted);
            if !sessions.evicting {
                sessions.evicting = true;
                warn!(
                    "{} sessions (--max-sessions): forgetting the least recently heard for new ones (logged once per run)",
                    sessions.cap
                );
            }
        }
        stats
            .sessions
            .store(sessions.map.len() as u64, Ordering::Relaxed);
        let Some((verdict, ack)) = result else {
            return;
        };
        match (verdict, frame) {
            (Verdict::Deliver, Frame::Data { payload, .. }) => {
                ev.push(LabEvent::Message {
                    peer,
                    at,
                    bytes: payload.to_vec(),
                });
                add(&stats.messages_in, 1);
                if self.withhold.load(Ordering::Acquire) && sessions.withheld_from.is_none() {
                    sessions.withheld_from = Some((session, seq));
                }
            }
            (Verdict::Beat, Frame::Beat { payload, .. }) => {
                ev.push(LabEvent::Beat {
                    peer,
                    at,
                    payload: payload.to_vec(),
                });
                add(&stats.beats, 1);
            }
            (Verdict::Duplicate, _) => {
                add(&stats.duplicates, 1);
                debug!("{peer}: session {session:08x} seq {seq}: duplicate dropped");
                // A copy of a message delivered while acks were withheld:
                // the device did resend it; acknowledge again.
                let resent = sessions
                    .withheld_from
                    .is_some_and(|(s, first)| s == session && !seq_before(seq, first));
                if resent && self.withhold.swap(false, Ordering::AcqRel) {
                    sessions.withheld_from = None;
                    info!("{peer}: a message delivered while acks were withheld came again; acknowledging again");
                }
            }
            (Verdict::Gap, _) => {
                add(&stats.gaps, 1);
                debug!("{peer}: session {session:08x} seq {seq}: after a gap, dropped");
            }
            (Verdict::Unknown, _) => {
                add(&stats.unknown_session, 1);
                debug!("{peer}: session {session:08x} seq {seq}: unknown session, dropped");
            }
            // `Dedup` gives Deliver only for D and Beat only for H.
            (Verdict::Deliver | Verdict::Beat, _) => {}
        }
        let Some(ack) = ack else {
            return;
        };
        if self.withhold.load(Ordering::Acquire) {
            add(&stats.acks_withheld, 1);
            return;
        }
        match self.acks.iter_mut().find(|(s, _)| *s == session) {
            Some(slot) => slot.1 = ack,
            None => self.acks.push((session, ack)),
        }
    }

    /// The acks collected, framed for the wire.
    fn framed_acks(&mut self, framing: Framing) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.acks)
            .into_iter()
            .filter_map(|(_, a)| frame(framing, &a).ok())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// State shared by the I/O thread and the API.

struct Shared {
    events: Events,
    ready: Arc<Ready>,
    stopping: AtomicBool,
    /// TCP clients by address.
    tcp: Mutex<HashMap<SocketAddr, Arc<Outbox>>>,
    udp_peers: Mutex<UdpPeers>,
    udp: Option<Arc<Async<UdpSocket>>>,
    stats: Counters,
    /// Acknowledged mode.
    acked: bool,
    /// Acks are held back until a duplicate arrives ([`Lab::withhold_acks`]).
    withhold: AtomicBool,
}

impl Shared {
    fn expire_peers(&self, peers: &mut UdpPeers, now: Instant) {
        let n = peers.expire(now);
        if n > 0 {
            add(&self.stats.peers_expired, n);
            debug!("forgot {n} UDP peer(s) silent for {:?}", peers.expiry);
        }
    }
}

/// A running lab server. Dropping it stops it.
pub struct Lab {
    addr: SocketAddr,
    transport: Transport,
    framing: Framing,
    limits: Limits,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
}

impl Lab {
    /// Listens on `addr` (port 0: any free port) with the default
    /// [`Limits`].
    pub fn start(addr: SocketAddr, transport: Transport, framing: Framing) -> std::io::Result<Lab> {
        Self::start_with(addr, transport, framing, None, Limits::default())
    }

    /// Listens on `addr` for TLS over TCP with this rustls configuration
    /// (see [`crate::tls::server_config`]).
    pub fn start_tls(
        addr: SocketAddr,
        framing: Framing,
        config: Arc<ServerConfig>,
    ) -> std::io::Result<Lab> {
        Self::start_with(
            addr,
            Transport::Tcp,
            framing,
            Some(config),
            Limits::default(),
        )
    }

    /// Listens on `addr` with these limits; `tls` (TCP only) serves TLS.
    pub fn start_with(
        addr: SocketAddr,
        transport: Transport,
        framing: Framing,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> std::io::Result<Lab> {
        Self::start_mode(addr, transport, framing, tls, limits, false)
    }

    /// Like [`start_with`](Self::start_with), speaking the acknowledged
    /// mode of `PROTOCOL.md` (see the module docs). `framing` must be
    /// `Len16` over TCP, `Raw` or `Len16` over UDP.
    pub fn start_acked(
        addr: SocketAddr,
        transport: Transport,
        framing: Framing,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> std::io::Result<Lab> {
        Self::start_mode(addr, transport, framing, tls, limits, true)
    }

    fn start_mode(
        addr: SocketAddr,
        transport: Transport,
        framing: Framing,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
        acked: bool,
    ) -> std::io::Result<Lab> {
        if acked {
            let fits = match transport {
                Transport::Tcp => framing == Framing::Len16,
                Transport::Udp => framing != Framing::Lines,
            };
            if !fits {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "acknowledged mode over {transport:?} needs len16 framing{} (PROTOCOL.md), not {framing:?}",
                        if transport == Transport::Udp { " or raw" } else { "" }
                    ),
                ));
            }
        }
        let ready = Arc::new(Ready::default());
        let (server, local, udp) = match transport {
            Transport::Tcp => {
                let listener = Async::new(listen(addr)?)?;
                let local = listener.get_ref().local_addr()?;
                let server = Server::Tcp(Listener {
                    socket: listener,
                    tls,
                    backoff: None,
                    delay: ACCEPT_BACKOFF_MIN,
                    failing: 0,
                    refusing: 0,
                    waited: None,
                });
                (server, local, None)
            }
            Transport::Udp => {
                let socket = Arc::new(Async::new(UdpSocket::bind(addr)?)?);
                let local = socket.get_ref().local_addr()?;
                let server = Server::Udp(UdpServer {
                    socket: socket.clone(),
                    held: None,
                    waited: None,
                    evicting: false,
                });
                (server, local, Some(socket))
            }
        };
        let shared = Arc::new(Shared {
            events: Events {
                state: Mutex::new(EventState::default()),
                ready: Condvar::new(),
            },
            ready: ready.clone(),
            stopping: AtomicBool::new(false),
            tcp: Mutex::new(HashMap::new()),
            udp_peers: Mutex::new(UdpPeers::new(limits.max_clients, limits.peer_expiry)),
            udp,
            stats: Counters::default(),
            acked,
            withhold: AtomicBool::new(false),
        });
        let (flag, waker) = slot_waker(0, &ready);
        let mut io = Io {
            server,
            server_flag: flag,
            server_waker: waker,
            slots: Vec::new(),
            free: Vec::new(),
            ctx: Ctx {
                shared: shared.clone(),
                framing,
                limits,
                scratch: vec![0; READ_CHUNK],
                inbound: 0,
                clients: 0,
                sessions: acked.then(|| Sessions::new(limits.max_sessions)),
            },
        };
        // The first poll registers every source.
        io.server_flag.queued.store(true, Ordering::Release);
        ready.push(0);
        let thread = std::thread::Builder::new()
            .name("lab-io".into())
            .spawn(move || async_io::block_on(std::future::poll_fn(|cx| io.poll(cx))))?;
        Ok(Lab {
            addr: local,
            transport,
            framing,
            limits,
            shared,
            thread: Mutex::new(Some(thread)),
            started: Instant::now(),
        })
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

    /// The limits it runs with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether it speaks the acknowledged mode ([`start_acked`](Self::start_acked)).
    pub fn acked(&self) -> bool {
        self.shared.acked
    }

    /// Acknowledged mode, for tests and `--check`: from now on, send no ack
    /// (not even for heartbeats) until a client sends again a message the
    /// lab delivered while withholding, as if every ack were lost. Combined
    /// with [`drop_clients`](Self::drop_clients) it makes a device resend
    /// what the lab delivered, which the lab must recognise as duplicates.
    pub fn withhold_acks(&self) {
        self.shared.withhold.store(true, Ordering::Release);
    }

    /// Sends acks again (ends [`withhold_acks`](Self::withhold_acks)).
    pub fn release_acks(&self) {
        self.shared.withhold.store(false, Ordering::Release);
    }

    /// Whether acks are still withheld ([`withhold_acks`](Self::withhold_acks)):
    /// no copy of a message delivered meanwhile came back yet.
    pub fn withholding(&self) -> bool {
        self.shared.withhold.load(Ordering::Acquire)
    }

    /// Frames an application message for the clients: in acknowledged mode
    /// inside an `M` frame.
    fn frame_out(&self, message: &[u8]) -> std::io::Result<Vec<u8>> {
        if self.shared.acked {
            let mut m = Vec::with_capacity(message.len() + 1);
            m.push(acked::MSG);
            m.extend_from_slice(message);
            frame(self.framing, &m)
        } else {
            frame(self.framing, message)
        }
    }

    /// Counters since the start.
    pub fn stats(&self) -> LabStats {
        self.shared.stats.snapshot()
    }

    /// The next event, waiting at most `timeout`. Events are queued in a
    /// bounded queue: while nobody takes them, the lab stops reading from
    /// clients (and accepting new ones).
    pub fn next_event(&self, timeout: Duration) -> Option<LabEvent> {
        self.shared.events.next(timeout)
    }

    /// Makes every pending and later [`next_event`](Self::next_event) return
    /// `None` at once (for a signal handler: the consumer winds up).
    pub fn interrupt(&self) {
        self.shared.events.interrupt();
    }

    /// Whether [`interrupt`](Self::interrupt) was called.
    pub fn interrupted(&self) -> bool {
        self.shared.events.lock().interrupted
    }

    /// Waits until `deadline` for an event `pick` accepts, returning what it
    /// made of it; events it rejects are passed to `skipped`. Returns `None`
    /// at the deadline even while events keep coming.
    pub fn wait_for<T>(
        &self,
        deadline: Instant,
        mut pick: impl FnMut(&LabEvent) -> Option<T>,
        mut skipped: impl FnMut(LabEvent),
    ) -> Option<T> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let e = self.next_event(left)?;
            match pick(&e) {
                Some(t) => return Some(t),
                None => skipped(e),
            }
        }
    }

    /// Clients currently known (TCP: connected and not being dropped; UDP:
    /// heard within the peer expiry, since the last
    /// [`drop_clients`](Self::drop_clients)).
    pub fn clients(&self) -> Vec<SocketAddr> {
        match self.transport {
            Transport::Tcp => lock(&self.shared.tcp)
                .iter()
                .filter(|(_, o)| !o.is_closed())
                .map(|(a, _)| *a)
                .collect(),
            Transport::Udp => {
                let mut p = lock(&self.shared.udp_peers);
                self.shared.expire_peers(&mut p, Instant::now());
                p.addrs()
            }
        }
    }

    /// Sends `message` (framed) to every client; returns how many it reached.
    /// Never waits for a client that is not reading: it is skipped (counted
    /// in [`LabStats::skipped`], logged once per stall).
    pub fn send_all(&self, message: &[u8]) -> usize {
        let frame = match self.frame_out(message) {
            Ok(f) => f,
            Err(e) => {
                warn!("not sent to any client: {e}");
                return 0;
            }
        };
        match self.transport {
            Transport::Tcp => {
                let outboxes: Vec<Arc<Outbox>> = lock(&self.shared.tcp).values().cloned().collect();
                let mut reached = 0;
                for o in outboxes {
                    match o.push(&frame, STALL, true) {
                        Ok(()) => {
                            reached += 1;
                            add(&self.shared.stats.messages_out, 1);
                        }
                        Err(Refused::Closed) => {}
                        Err(Refused::Stalled) => {
                            add(&self.shared.stats.skipped, 1);
                            let mut s = lock(&o.state);
                            if s.skipped == 0 {
                                warn!(
                                    "{} is not reading fast enough (its {} KiB buffer stayed full for {STALL:?}): skipping broadcasts to it until it drained it",
                                    o.peer,
                                    OUTBOX / 1024
                                );
                            }
                            s.skipped += 1;
                        }
                    }
                }
                reached
            }
            Transport::Udp => self
                .clients()
                .into_iter()
                .filter(|peer| match self.udp_send(*peer, &frame, STALL) {
                    Ok(()) => true,
                    Err(_) => {
                        add(&self.shared.stats.skipped, 1);
                        false
                    }
                })
                .count(),
        }
    }

    /// Sends `message` (framed; in acknowledged mode as an `M` frame) to
    /// one client.
    pub fn send_to(&self, peer: SocketAddr, message: &[u8]) -> std::io::Result<()> {
        let frame = self.frame_out(message)?;
        self.send_raw(peer, &frame)
    }

    /// Sends bytes as they are, without framing (for malformed-input tests).
    /// Waits while the client's buffer is full; gives up after
    /// [`SEND_PATIENCE`].
    pub fn send_raw(&self, peer: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::ErrorKind;
        if bytes.len() > MAX_FRAME + 2 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                format!("{} bytes: more than the lab sends at once", bytes.len()),
            ));
        }
        match self.transport {
            Transport::Udp => self.udp_send(peer, bytes, SEND_PATIENCE),
            Transport::Tcp => {
                let o = lock(&self.shared.tcp)
                    .get(&peer)
                    .cloned()
                    .ok_or(ErrorKind::NotConnected)?;
                match o.push(bytes, SEND_PATIENCE, false) {
                    Ok(()) => {
                        add(&self.shared.stats.messages_out, 1);
                        Ok(())
                    }
                    Err(Refused::Closed) => Err(ErrorKind::NotConnected.into()),
                    Err(Refused::Stalled) => Err(std::io::Error::new(
                        ErrorKind::TimedOut,
                        format!("{peer} made no room for {SEND_PATIENCE:?}"),
                    )),
                }
            }
        }
    }

    fn udp_send(&self, peer: SocketAddr, bytes: &[u8], patience: Duration) -> std::io::Result<()> {
        let Some(s) = &self.shared.udp else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let give_up = Instant::now() + patience;
        loop {
            match s.get_ref().send_to(bytes, peer) {
                Ok(_) => {
                    add(&self.shared.stats.messages_out, 1);
                    add(&self.shared.stats.bytes_out, bytes.len());
                    return Ok(());
                }
                // The socket is non-blocking (the I/O thread reads it): a
                // full send buffer is waited out, not a lost datagram.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < give_up =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes every client connection (TCP) or forgets every client (UDP);
    /// the lab keeps listening.
    pub fn drop_clients(&self) {
        for o in lock(&self.shared.tcp).values() {
            o.close();
        }
        lock(&self.shared.udp_peers).clear();
    }

    /// Stops listening and closes every client.
    pub fn stop(self) {
        self.halt();
    }

    /// Stops the I/O thread (once) and waits for it.
    pub fn halt(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.drop_clients();
        self.shared.ready.stop();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// How long since it started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A TCP listener on `addr` with a backlog of [`BACKLOG`] (std's is 128:
/// a burst of connects while the I/O thread is busy would overflow it and
/// each dropped SYN costs its client a one-second retransmit).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restarted lab can listen on its port at once.
    #[cfg(unix)]
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Connections the kernel queues for the lab to accept.
pub const BACKLOG: i32 = 1024;

/// Frames `message` for the wire.
pub fn frame(framing: Framing, message: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0; message.len() + framing.overhead()];
    framing
        .encode(message, &mut out)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e:?}")))?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// The I/O thread.

struct Ctx {
    shared: Arc<Shared>,
    framing: Framing,
    limits: Limits,
    /// The read buffer every slot reads into in turn.
    scratch: Vec<u8>,
    /// Bytes held in all clients' inbound buffers.
    inbound: usize,
    /// TCP clients served.
    clients: usize,
    /// Acknowledged mode: the session records.
    sessions: Option<Sessions>,
}

struct Io {
    server: Server,
    server_flag: Arc<SlotWaker>,
    server_waker: Waker,
    /// Clients, at index id - 1.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    ctx: Ctx,
}

enum Server {
    Tcp(Listener),
    Udp(UdpServer),
}

struct Listener {
    socket: Async<TcpListener>,
    tls: Option<Arc<ServerConfig>>,
    /// Waiting out an accept error.
    backoff: Option<Timer>,
    delay: Duration,
    /// Accept errors in the current run of them.
    failing: u64,
    /// Connections refused in the current run at the cap.
    refusing: u64,
    waited: Option<u64>,
}

struct UdpServer {
    socket: Arc<Async<UdpSocket>>,
    /// A datagram whose frames did not all fit in the event queue.
    held: Option<(SocketAddr, Instant, Vec<u8>)>,
    waited: Option<u64>,
    /// Evicting peers for new ones (logged once per run).
    evicting: bool,
}

struct Slot {
    flag: Arc<SlotWaker>,
    waker: Waker,
    conn: Conn,
}

struct Conn {
    peer: SocketAddr,
    stream: Async<TcpStream>,
    tls: Option<Box<ServerConnection>>,
    announced: bool,
    /// Received bytes not yet emitted as messages: complete frames waiting
    /// for room in the event queue, then an unfinished frame.
    inbuf: Vec<u8>,
    /// Bytes of `inbuf` already searched for a newline without success.
    scanned: usize,
    /// `inbuf`'s capacity as counted in `Ctx::inbound`.
    charged: usize,
    outbox: Arc<Outbox>,
    last_rx: Instant,
    idle: Option<Timer>,
    waited: Option<u64>,
}

/// Why a client's slot ended.
enum End {
    Eof,
    Dropped,
    Error(std::io::Error),
    Idle,
    BadFrame,
    Tls(String),
    Budget,
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
}

fn interrupted(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Interrupted
}

impl Io {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut r = lock(&self.ctx.shared.ready.state);
            if r.stop {
                return Poll::Ready(());
            }
            r.thread = Some(cx.waker().clone());
        }
        for _ in 0..SLOTS_PER_ROUND {
            let Some(id) = lock(&self.ctx.shared.ready.state).ids.pop_front() else {
                return Poll::Pending;
            };
            if id == 0 {
                self.server_flag.queued.store(false, Ordering::Release);
                self.poll_server();
            } else {
                self.poll_client(id);
            }
        }
        // More is ready: let the reactor look at the sockets, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_server(&mut self) {
        let waker = self.server_waker.clone();
        let mut cx = Context::from_waker(&waker);
        let accepted = match &mut self.server {
            Server::Tcp(l) => l.poll(&mut cx, &mut self.ctx),
            Server::Udp(u) => {
                u.poll(&mut cx, &mut self.ctx);
                Vec::new()
            }
        };
        for (stream, peer, tls) in accepted {
            self.admit(stream, peer, tls);
        }
    }

    fn admit(
        &mut self,
        stream: Async<TcpStream>,
        peer: SocketAddr,
        tls: Option<Box<ServerConnection>>,
    ) {
        let ctx = &mut self.ctx;
        let id = match self.free.pop() {
            Some(i) => i + 1,
            None => {
                self.slots.push(None);
                self.slots.len()
            }
        };
        let (flag, waker) = slot_waker(id, &ctx.shared.ready);
        let outbox = Arc::new(Outbox::new(peer, waker.clone()));
        let secure = tls.is_some();
        let conn = Conn {
            peer,
            stream,
            tls,
            announced: !secure,
            inbuf: Vec::new(),
            scanned: 0,
            charged: 0,
            outbox: outbox.clone(),
            last_rx: Instant::now(),
            idle: None,
            waited: None,
        };
        lock(&ctx.shared.tcp).insert(peer, outbox);
        ctx.clients += 1;
        let stats = &ctx.shared.stats;
        add(&stats.clients_seen, 1);
        stats
            .peak_clients
            .fetch_max(ctx.clients as u64, Ordering::Relaxed);
        if !secure {
            ctx.shared.events.push(LabEvent::Connected {
                peer,
                at: Instant::now(),
            });
        }
        self.slots[id - 1] = Some(Slot { flag, waker, conn });
        // The first poll registers the socket with the reactor.
        self.poll_client(id);
    }

    fn poll_client(&mut self, id: usize) {
        let Some(Some(slot)) = self.slots.get_mut(id - 1) else {
            return;
        };
        slot.flag.queued.store(false, Ordering::Release);
        let waker = slot.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(end) = slot.conn.poll(&mut cx, &mut self.ctx) else {
            return;
        };
        let Some(slot) = self.slots[id - 1].take() else {
            return;
        };
        self.free.push(id - 1);
        self.finish(slot.conn, end);
    }

    fn finish(&mut self, conn: Conn, end: End) {
        let ctx = &mut self.ctx;
        let Conn {
            peer,
            stream,
            tls,
            outbox,
            charged,
            ..
        } = conn;
        ctx.inbound -= charged;
        ctx.clients -= 1;
        outbox.close();
        {
            let mut map = lock(&ctx.shared.tcp);
            if map.get(&peer).is_some_and(|o| Arc::ptr_eq(o, &outbox)) {
                map.remove(&peer);
            }
        }
        let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
        drop(stream);
        drop(tls);
        let stats = &ctx.shared.stats;
        let at = Instant::now();
        let events = &ctx.shared.events;
        match end {
            End::Eof | End::Dropped => {}
            End::Error(e) => {
                add(&stats.dropped_error, 1);
                debug!("{peer}: {e}");
            }
            End::Idle => {
                add(&stats.dropped_idle, 1);
                info!(
                    "{peer} sent nothing for {:?} (--idle-timeout): dropped",
                    ctx.limits.idle_timeout.unwrap_or_default()
                );
            }
            End::BadFrame => {
                add(&stats.dropped_bad_frame, 1);
                events.push(LabEvent::BadFrame { peer, at });
            }
            End::Tls(error) => {
                add(&stats.dropped_tls, 1);
                events.push(LabEvent::TlsFailed { peer, at, error });
            }
            End::Budget => {
                add(&stats.dropped_budget, 1);
                warn!(
                    "{peer}: unfinished frames of all clients exceed {} MiB: dropped",
                    INBOUND_BUDGET >> 20
                );
            }
        }
        events.push(LabEvent::Disconnected { peer, at });
    }
}

impl Listener {
    /// Accepts what it may; returns the new clients.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        ctx: &mut Ctx,
    ) -> Vec<(Async<TcpStream>, SocketAddr, Option<Box<ServerConnection>>)> {
        let mut out = Vec::new();
        if let Some(t) = &mut self.backoff {
            if Pin::new(t).poll(cx).is_pending() {
                return out;
            }
            self.backoff = None;
        }
        for _ in 0..ACCEPTS_PER_POLL {
            {
                // No room for events: leave new connections in the backlog.
                let mut ev = ctx.shared.events.lock();
                if ev.full() {
                    ev.wait_for_room(cx.waker(), &mut self.waited);
                    return out;
                }
            }
            match self.socket.get_ref().accept() {
                Ok((stream, peer)) => {
                    if self.failing > 0 {
                        info!("accepting again after {} failed accept(s)", self.failing);
                        self.failing = 0;
                        self.delay = ACCEPT_BACKOFF_MIN;
                    }
                    if ctx.clients + out.len() >= ctx.limits.max_clients {
                        add(&ctx.shared.stats.refused, 1);
                        if self.refusing == 0 {
                            warn!(
                                "{} clients (--max-clients): refusing new connections (logged once until one is accepted again)",
                                ctx.limits.max_clients
                            );
                        }
                        self.refusing += 1;
                        drop(stream);
                        continue;
                    }
                    if self.refusing > 0 {
                        info!(
                            "below --max-clients again; refused {} connection(s) meanwhile",
                            self.refusing
                        );
                        self.refusing = 0;
                    }
                    let _ = stream.set_nodelay(true);
                    let stream = match Async::new(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("{peer}: cannot watch the socket ({e}): closed");
                            add(&ctx.shared.stats.accept_errors, 1);
                            continue;
                        }
                    };
                    let tls = match &self.tls {
                        None => None,
                        Some(config) => match ServerConnection::new(config.clone()) {
                            Ok(mut s) => {
                                s.set_buffer_limit(Some(OUTBOX));
                                Some(Box::new(s))
                            }
                            Err(e) => {
                                ctx.shared.events.push(LabEvent::TlsFailed {
                                    peer,
                                    at: Instant::now(),
                                    error: e.to_string(),
                                });
                                add(&ctx.shared.stats.dropped_tls, 1);
                                continue;
                            }
                        },
                    };
                    out.push((stream, peer, tls));
                }
                Err(e) if would_block(&e) => match self.socket.poll_readable(cx) {
                    Poll::Ready(_) => continue,
                    Poll::Pending => return out,
                },
                Err(e) if interrupted(&e) => continue,
                // The connection went away before it was accepted: nothing
                // to retry, the next one may be fine.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                    add(&ctx.shared.stats.accept_errors, 1);
                }
                // Out of descriptors (EMFILE, ENFILE) or memory: the
                // listener stays readable, so trying again at once would
                // spin. Back off.
                Err(e) => {
                    add(&ctx.shared.stats.accept_errors, 1);
                    if self.failing == 0 {
                        warn!("accept failed: {e}; backing off (up to {ACCEPT_BACKOFF_MAX:?}) until it works again");
                    }
                    self.failing += 1;
                    let mut t = Timer::after(self.delay);
                    self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
                    if Pin::new(&mut t).poll(cx).is_pending() {
                        self.backoff = Some(t);
                        return out;
                    }
                }
            }
        }
        cx.waker().wake_by_ref();
        out
    }
}

/// Emits the complete frames at the front of `data` as messages until the
/// event queue is full. Returns the bytes consumed and, when it stopped for
/// want of a complete frame, how many of the rest were searched.
fn emit_frames(
    framing: Framing,
    peer: SocketAddr,
    at: Instant,
    data: &[u8],
    mut scanned: usize,
    ev: &mut EventState,
    sink: &mut Sink<'_>,
) -> Result<(usize, usize), ()> {
    let mut used = 0;
    loop {
        if ev.full() {
            return Ok((used, scanned));
        }
        match framing::decode_after(framing, &data[used..], MAX_FRAME, scanned) {
            Ok(Some(f)) => {
                sink.frame(peer, at, &data[used + f.start..used + f.end], ev);
                used += f.consumed;
                scanned = 0;
                if framing == Framing::Raw {
                    return Ok((used, 0));
                }
            }
            Ok(None) => return Ok((used, data.len() - used)),
            Err(_) => return Err(()),
        }
    }
}

impl Conn {
    fn poll(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx) -> Poll<End> {
        if let Err(end) = self.flush(cx, ctx) {
            return Poll::Ready(end);
        }
        if let Err(end) = self.input(cx, ctx) {
            return Poll::Ready(end);
        }
        // Handshake messages, tickets, alerts, what waited for the
        // handshake to complete, and acks.
        if self.tls.is_some() || ctx.sessions.is_some() {
            if let Err(end) = self.flush(cx, ctx) {
                return Poll::Ready(end);
            }
        }
        if let Some(limit) = ctx.limits.idle_timeout {
            let last = self.last_rx;
            let timer = self.idle.get_or_insert_with(|| Timer::at(last + limit));
            while Pin::new(&mut *timer).poll(cx).is_ready() {
                if last.elapsed() >= limit {
                    return Poll::Ready(End::Idle);
                }
                timer.set_at(last + limit);
            }
        }
        Poll::Pending
    }

    /// Writes what the outbox (and TLS) holds until the socket is full.
    fn flush(&mut self, cx: &mut Context<'_>, ctx: &Ctx) -> Result<(), End> {
        let stats = &ctx.shared.stats;
        let mut wire: &TcpStream = self.stream.get_ref();
        loop {
            if let Some(tls) = &mut self.tls {
                if tls.wants_write() {
                    match tls.write_tls(&mut wire) {
                        Ok(_) => continue,
                        Err(e) if would_block(&e) => match self.stream.poll_writable(cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(e)) => return Err(End::Error(e)),
                            Poll::Pending => return Ok(()),
                        },
                        Err(e) if interrupted(&e) => continue,
                        Err(e) => return Err(End::Error(e)),
                    }
                }
            }
            let mut o = lock(&self.outbox.state);
            if o.closed {
                return Err(End::Dropped);
            }
            if o.buf.is_empty() {
                return Ok(());
            }
            let result = match &mut self.tls {
                Some(tls) if tls.is_handshaking() => return Ok(()),
                Some(tls) => tls.writer().write(o.buf.as_slices().0),
                None => wire.write(o.buf.as_slices().0),
            };
            match result {
                Ok(0) if self.tls.is_some() => {
                    drop(o);
                    // rustls's buffer is full: write it out first.
                    if !self.tls.as_ref().is_some_and(|t| t.wants_write()) {
                        return Ok(());
                    }
                }
                Ok(0) => return Err(End::Error(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    add(&stats.bytes_out, n);
                    o.consumed(n, self.peer, &self.outbox.room);
                }
                Err(e) if would_block(&e) => {
                    drop(o);
                    match self.stream.poll_writable(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Err(End::Error(e)),
                        Poll::Pending => return Ok(()),
                    }
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(End::Error(e)),
            }
        }
    }

    /// Emits what `inbuf` holds, then reads while the event queue has room.
    fn input(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx) -> Result<(), End> {
        let mut reads = 0;
        let shared = ctx.shared.clone();
        loop {
            {
                let mut ev = shared.events.lock();
                if self.inbuf.len() > self.scanned
                    || ctx.framing == Framing::Raw && !self.inbuf.is_empty()
                {
                    self.emit_held(&mut ev, ctx)?;
                }
                if ev.full() {
                    ev.wait_for_room(cx.waker(), &mut self.waited);
                    shared.events.notify(ev);
                    return Ok(());
                }
                shared.events.notify(ev);
            }
            if reads == READS_PER_POLL {
                cx.waker().wake_by_ref();
                return Ok(());
            }
            let n = match self.stream.get_ref().read(&mut ctx.scratch) {
                Ok(0) => return Err(End::Eof),
                Ok(n) => n,
                Err(e) if would_block(&e) => match self.stream.poll_readable(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(e)) => return Err(End::Error(e)),
                    Poll::Pending => return Ok(()),
                },
                Err(e) if interrupted(&e) => continue,
                Err(e) => return Err(End::Error(e)),
            };
            reads += 1;
            self.last_rx = Instant::now();
            add(&ctx.shared.stats.bytes_in, n);
            self.received(n, ctx)?;
        }
    }

    /// Handles `ctx.scratch[..n]`, fresh from the socket.
    fn received(&mut self, n: usize, ctx: &mut Ctx) -> Result<(), End> {
        let at = self.last_rx;
        if let Some(tls) = &mut self.tls {
            let mut data = &ctx.scratch[..n];
            let mut plain = Vec::new();
            while !data.is_empty() {
                if let Err(e) = tls.read_tls(&mut data) {
                    return Err(End::Tls(e.to_string()));
                }
                if let Err(e) = tls.process_new_packets() {
                    // The alert that explains it, if the socket takes it.
                    let mut wire: &TcpStream = self.stream.get_ref();
                    let _ = tls.write_tls(&mut wire);
                    return Err(End::Tls(e.to_string()));
                }
                let _ = tls.reader().read_to_end(&mut plain);
            }
            if !self.announced && !tls.is_handshaking() {
                self.announced = true;
                ctx.shared.events.push(LabEvent::Connected {
                    peer: self.peer,
                    at,
                });
            }
            if plain.is_empty() {
                return Ok(());
            }
            if ctx.framing == Framing::Raw {
                // Each read is a message, as for plain TCP.
                let mut ev = ctx.shared.events.lock();
                ev.push(LabEvent::Message {
                    peer: self.peer,
                    at,
                    bytes: plain,
                });
                add(&ctx.shared.stats.messages_in, 1);
                ctx.shared.events.notify(ev);
                return Ok(());
            }
            self.hold(&plain, ctx)?;
            return Ok(());
        }
        if !self.inbuf.is_empty() {
            self.inbuf.extend_from_slice(&ctx.scratch[..n]);
            return self.charge(ctx);
        }
        // Straight from the read buffer; only what is left is copied.
        let shared = ctx.shared.clone();
        let mut ev = shared.events.lock();
        let data = &ctx.scratch[..n];
        let mut sink = Sink::new(&shared, &mut ctx.sessions);
        let result = emit_frames(ctx.framing, self.peer, at, data, 0, &mut ev, &mut sink);
        shared.events.notify(ev);
        self.queue_acks(&mut sink, ctx.framing);
        let (used, scanned) = result.map_err(|()| End::BadFrame)?;
        if used < n {
            self.inbuf.extend_from_slice(&ctx.scratch[used..n]);
            self.scanned = scanned;
            return self.charge(ctx);
        }
        Ok(())
    }

    /// Queues the acks of a batch (acknowledged mode). They go past the
    /// [`OUTBOX`] cap by at most [`ACK_SLACK`]; beyond it an ack is dropped
    /// and counted (the next one covers it).
    fn queue_acks(&mut self, sink: &mut Sink<'_>, framing: Framing) {
        if sink.acks.is_empty() {
            return;
        }
        let stats = sink.stats;
        let mut o = lock(&self.outbox.state);
        if o.closed {
            // Being dropped: the device resends on its next connection.
            add(&stats.acks_dropped, sink.acks.len());
            sink.acks.clear();
            return;
        }
        for a in sink.framed_acks(framing) {
            if o.buf.len() + a.len() <= OUTBOX + ACK_SLACK {
                o.buf.extend(&a);
                add(&stats.acks_sent, 1);
            } else {
                add(&stats.acks_dropped, 1);
                debug!("{}: outgoing buffer full: ack dropped", self.peer);
            }
        }
    }

    /// Appends to `inbuf` within the shared budget.
    fn hold(&mut self, data: &[u8], ctx: &mut Ctx) -> Result<(), End> {
        self.inbuf.extend_from_slice(data);
        self.charge(ctx)
    }

    /// Counts `inbuf` against the shared budget.
    fn charge(&mut self, ctx: &mut Ctx) -> Result<(), End> {
        self.recharge(ctx);
        if ctx.inbound > INBOUND_BUDGET {
            return Err(End::Budget);
        }
        Ok(())
    }

    fn recharge(&mut self, ctx: &mut Ctx) {
        let cap = self.inbuf.capacity();
        ctx.inbound = ctx.inbound - self.charged + cap;
        self.charged = cap;
    }

    /// Emits the complete frames `inbuf` holds, as room allows.
    fn emit_held(&mut self, ev: &mut EventState, ctx: &mut Ctx) -> Result<(), End> {
        let shared = ctx.shared.clone();
        let mut sink = Sink::new(&shared, &mut ctx.sessions);
        let result = emit_frames(
            ctx.framing,
            self.peer,
            self.last_rx,
            &self.inbuf,
            self.scanned,
            ev,
            &mut sink,
        );
        self.queue_acks(&mut sink, ctx.framing);
        let (used, scanned) = result.map_err(|()| End::BadFrame)?;
        self.scanned = scanned;
        if used > 0 {
            self.inbuf.drain(..used);
            if self.inbuf.is_empty() && self.inbuf.capacity() > KEEP_CAPACITY {
                self.inbuf = Vec::new();
            }
            self.recharge(ctx);
        }
        Ok(())
    }
}

impl UdpServer {
    /// Sends the acks of a datagram (acknowledged mode); one the socket
    /// cannot take at once is dropped and counted (the device sends again
    /// after its ack timeout).
    fn send_acks(&self, peer: SocketAddr, sink: &mut Sink<'_>, framing: Framing) {
        if sink.acks.is_empty() {
            return;
        }
        let stats = sink.stats;
        for a in sink.framed_acks(framing) {
            match self.socket.get_ref().send_to(&a, peer) {
                Ok(_) => {
                    add(&stats.acks_sent, 1);
                    add(&stats.bytes_out, a.len());
                }
                Err(e) => {
                    add(&stats.acks_dropped, 1);
                    debug!("{peer}: ack not sent: {e}");
                }
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>, ctx: &mut Ctx) {
        let shared = ctx.shared.clone();
        let stats = &shared.stats;
        for _ in 0..DATAGRAMS_PER_POLL {
            let mut ev = shared.events.lock();
            if let Some((peer, at, data)) = self.held.take() {
                let mut sink = Sink::new(&shared, &mut ctx.sessions);
                let result = emit_frames(ctx.framing, peer, at, &data, 0, &mut ev, &mut sink);
                self.send_acks(peer, &mut sink, ctx.framing);
                match result {
                    Ok((used, _)) if ev.full() && used < data.len() => {
                        self.held = Some((peer, at, data[used..].to_vec()));
                    }
                    Ok((used, _)) if used == data.len() => {}
                    _ => {
                        ev.push(LabEvent::BadFrame { peer, at });
                        add(&stats.dropped_bad_frame, 1);
                    }
                }
            }
            if ev.full() {
                ev.wait_for_room(cx.waker(), &mut self.waited);
                shared.events.notify(ev);
                return;
            }
            shared.events.notify(ev);
            let (n, peer) = match self.socket.get_ref().recv_from(&mut ctx.scratch) {
                Ok(r) => r,
                Err(e) if would_block(&e) => match self.socket.poll_readable(cx) {
                    Poll::Ready(_) => continue,
                    Poll::Pending => return,
                },
                // ICMP errors from earlier sends surface here; they are not
                // fatal, and each one is consumed.
                Err(e) => {
                    debug!("UDP receive: {e}");
                    continue;
                }
            };
            let at = Instant::now();
            add(&stats.bytes_in, n);
            let (new, evicted) = {
                let mut peers = lock(&shared.udp_peers);
                shared.expire_peers(&mut peers, at);
                peers.touch(peer, at)
            };
            if evicted > 0 {
                add(&stats.peers_evicted, evicted);
                if !self.evicting {
                    self.evicting = true;
                    warn!(
                        "{} UDP peers (--max-clients): forgetting the least recently heard for new ones (logged once per run)",
                        ctx.limits.max_clients
                    );
                }
            } else if new {
                self.evicting = false;
            }
            let mut ev = shared.events.lock();
            if new {
                add(&stats.clients_seen, 1);
                let now_peers = lock(&shared.udp_peers).map.len() as u64;
                stats.peak_clients.fetch_max(now_peers, Ordering::Relaxed);
                ev.push(LabEvent::Connected { peer, at });
            }
            let data = &ctx.scratch[..n];
            let mut sink = Sink::new(&shared, &mut ctx.sessions);
            if ctx.framing == Framing::Raw {
                // Each datagram is a message (a frame), even an empty one.
                sink.frame(peer, at, data, &mut ev);
                shared.events.notify(ev);
                self.send_acks(peer, &mut sink, ctx.framing);
                continue;
            }
            let result = emit_frames(ctx.framing, peer, at, data, 0, &mut ev, &mut sink);
            self.send_acks(peer, &mut sink, ctx.framing);
            match result {
                Ok((used, _)) if used == n => {}
                Ok((used, _)) if ev.full() => {
                    self.held = Some((peer, at, data[used..].to_vec()));
                }
                // A datagram holds whole frames: a partial one is bad.
                _ => {
                    ev.push(LabEvent::BadFrame { peer, at });
                    add(&stats.dropped_bad_frame, 1);
                }
            }
            shared.events.notify(ev);
        }
        cx.waker().wake_by_ref();
    }
}

// ---------------------------------------------------------------------------
// `longlink lab`.

/// The statistics summary printed when the lab ends; `acked` adds the
/// acknowledged mode's line.
pub fn summary_acked(s: &LabStats, elapsed: Duration, acked: bool) -> String {
    let mut out = summary(s, elapsed);
    if acked {
        out.push_str(&format!(
            "\nacked: messages delivered {} (each once), duplicates dropped {}, after a gap {}, unknown session {}, malformed {}, heartbeats {}; acks sent {}, dropped {}, withheld {}; sessions {} (evicted {})",
            s.messages_in,
            s.duplicates,
            s.gaps,
            s.unknown_session,
            s.malformed,
            s.beats,
            s.acks_sent,
            s.acks_dropped,
            s.acks_withheld,
            s.sessions,
            s.sessions_evicted,
        ));
    }
    out
}

/// The statistics summary printed when the lab ends.
pub fn summary(s: &LabStats, elapsed: Duration) -> String {
    format!(
        "longlink lab ran {:.1}s\n\
         clients seen {} (peak {} at once), refused {} (--max-clients), accept errors {}\n\
         messages in {}, bytes in {}; messages out {}, bytes out {}\n\
         broadcast copies skipped {} (client not reading)\n\
         dropped: idle {}, bad frame {}, TLS {}, inbound budget {}, socket error {}; UDP peers expired {}, evicted {}",
        elapsed.as_secs_f64(),
        s.clients_seen,
        s.peak_clients,
        s.refused,
        s.accept_errors,
        s.messages_in,
        s.bytes_in,
        s.messages_out,
        s.bytes_out,
        s.skipped,
        s.dropped_idle,
        s.dropped_bad_frame,
        s.dropped_tls,
        s.dropped_budget,
        s.dropped_error,
        s.peers_expired,
        s.peers_evicted,
    )
}

/// Reads lines of at most [`MAX_LINE`] bytes from `input` and hands each to
/// `line` (without `\n` / `\r\n`); a longer line is reported and skipped.
pub fn read_lines(mut input: impl BufRead, mut line: impl FnMut(&[u8])) {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok([]) => break,
            Ok(c) => c,
            Err(e) if interrupted(&e) => continue,
            Err(_) => break,
        };
        let (part, done, used) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], true, i + 1),
            None => (chunk, false, chunk.len()),
        };
        if !too_long {
            if buf.len() + part.len() > MAX_LINE + 1 {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        input.consume(used);
        if done {
            if too_long {
                warn!("stdin line longer than {MAX_LINE} bytes: not sent");
            } else {
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                if buf.len() <= MAX_LINE {
                    line(&buf);
                } else {
                    warn!("stdin line longer than {MAX_LINE} bytes: not sent");
                }
            }
            buf.clear();
            too_long = false;
        }
    }
    if !buf.is_empty() && !too_long && buf.len() <= MAX_LINE {
        line(&buf);
    }
}

/// `longlink lab`: prints what clients send, sends them stdin lines; with
/// `--check` runs the acceptance script. SIGINT/SIGTERM end it with a
/// summary.
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
    let limits = args.limits();
    let framing = args.framing();
    let started = if args.acked {
        Lab::start_acked(args.listen, transport, framing, tls, limits)
    } else {
        Lab::start_with(args.listen, transport, framing, tls, limits)
    };
    let lab = match started {
        Ok(l) => Arc::new(l),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("longlink lab: {e}");
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("longlink lab: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(2);
        }
    };
    {
        let lab = lab.clone();
        if let Err(e) = ctrlc::set_handler(move || lab.interrupt()) {
            warn!("no signal handler ({e}); stop with kill -9");
        }
    }
    let code = if args.check {
        crate::check::main(&lab, args)
    } else {
        serve(&lab, transport, secure)
    };
    lab.halt();
    eprintln!("{}", summary_acked(&lab.stats(), lab.uptime(), lab.acked()));
    code
}

/// Prints events until interrupted; a stdin thread broadcasts lines.
fn serve(lab: &Arc<Lab>, transport: Transport, secure: bool) -> std::process::ExitCode {
    let limits = lab.limits();
    let banner = format!(
        "longlink lab: {:?}{}{} on {} ({:?} framing); type a line to send it to every client\n",
        transport,
        if secure { " + TLS" } else { "" },
        if lab.acked() {
            ", acknowledged delivery"
        } else {
            ""
        },
        lab.local_addr(),
        lab.framing()
    );
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let _ = out.write_all(banner.as_bytes());
    let _ = out.flush();
    info!(
        "at most {} clients{}; lab buffers bounded at {} MiB",
        limits.max_clients,
        limits
            .idle_timeout
            .map(|d| format!(", dropped after {d:?} of silence"))
            .unwrap_or_default(),
        limits.memory_bound(secure).div_ceil(1 << 20)
    );
    let sender = lab.clone();
    // Detached: a read blocked on stdin must not hold up the exit.
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            read_lines(std::io::stdin().lock(), |msg| {
                let n = sender.send_all(msg);
                let line = format!(
                    "{} sent {:?} to {n} client(s)\n",
                    crate::logger::timestamp(std::time::SystemTime::now()),
                    String::from_utf8_lossy(msg)
                );
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            });
        });
    loop {
        let e = match lab.next_event(Duration::ZERO) {
            Some(e) => e,
            None => {
                // Nothing more for now: show what was printed.
                if out.flush().is_err() {
                    break;
                }
                match lab.next_event(Duration::from_secs(3600)) {
                    Some(e) => e,
                    None if lab.interrupted() => break,
                    None => continue,
                }
            }
        };
        let mut line = describe(&e);
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() {
            // Nobody reads what the lab prints any more.
            warn!("stdout is closed: stopping");
            return std::process::ExitCode::FAILURE;
        }
    }
    let _ = out.flush();
    info!("stopping");
    std::process::ExitCode::SUCCESS
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
        LabEvent::Beat { peer, payload, .. } => format!(
            "{now} {peer} heartbeat: {}",
            crate::text::text_and_hex(payload, 64)
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
        c.write_all(b"n\n").unwrap();
        let m = lab.next_event(Duration::from_secs(5));
        assert!(matches!(m, Some(LabEvent::Message { bytes, .. }) if bytes == b"bin"));
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
        let s = lab.stats();
        assert_eq!((s.clients_seen, s.messages_in, s.messages_out), (1, 3, 1));
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
        assert_eq!(lab.stats().dropped_bad_frame, 1);
    }

    #[test]
    fn wait_for_ends_at_its_deadline_while_events_keep_coming() {
        let lab = Lab::start(local(), Transport::Tcp, Framing::Lines).unwrap();
        let addr = lab.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                let chunk = b"a\n".repeat(4096);
                while !stop.load(Ordering::Relaxed) && c.write_all(&chunk).is_ok() {}
            })
        };
        let t0 = Instant::now();
        let got = lab.wait_for(
            t0 + Duration::from_millis(300),
            |e| matches!(e, LabEvent::BadFrame { .. }).then_some(()),
            drop,
        );
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        lab.drop_clients();
        assert_eq!(got, None);
        assert!(lab.stats().messages_in > 0, "the flood was flowing");
        assert!(took < Duration::from_millis(400), "{took:?}");
        flood.join().unwrap();
    }

    #[test]
    fn the_event_queue_stops_reading_instead_of_growing() {
        let lab = Lab::start(local(), Transport::Tcp, Framing::Lines).unwrap();
        let addr = lab.local_addr();
        let sent = Arc::new(AtomicU64::new(0));
        let flood = {
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let chunk = b"a\n".repeat(4096);
                // 64 MiB if nothing pushed back.
                for _ in 0..8192 {
                    if c.write_all(&chunk).is_err() {
                        break;
                    }
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            })
        };
        // Nobody takes events: the lab must stop reading.
        flood.join().unwrap();
        let queued = lab.shared.events.lock().queue.len();
        assert!(queued <= EVENT_MESSAGES + 4, "{queued}");
        let sent = sent.load(Ordering::Relaxed);
        assert!(sent < 32 << 20, "the sender was not slowed: {sent} bytes");
        assert!(lab.stats().bytes_in < 32 << 20);
    }

    #[test]
    fn udp_peers_expire_and_make_room_in_constant_time() {
        let t0 = Instant::now();
        let mut p = UdpPeers::new(3, Duration::from_secs(10));
        let a = |n: u16| SocketAddr::from(([127, 0, 0, 1], n));
        assert_eq!(p.touch(a(1), t0), (true, 0));
        assert_eq!(p.touch(a(2), t0 + Duration::from_secs(1)), (true, 0));
        assert_eq!(p.touch(a(3), t0 + Duration::from_secs(2)), (true, 0));
        // 1 is heard again: 2 is now the least recently heard.
        assert_eq!(p.touch(a(1), t0 + Duration::from_secs(3)), (false, 0));
        assert_eq!(p.touch(a(4), t0 + Duration::from_secs(4)), (true, 1));
        assert_eq!(p.addrs(), vec![a(3), a(1), a(4)]);
        assert_eq!(p.expire(t0 + Duration::from_secs(13)), 2);
        assert_eq!(p.addrs(), vec![a(4)]);
        assert_eq!(p.touch(a(3), t0 + Duration::from_secs(13)), (true, 0));
        assert_eq!(p.nodes.len(), 3, "slots are reused");
    }

    #[test]
    fn stdin_lines_are_bounded() {
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        input.extend(b"\nthree");
        let mut got = Vec::new();
        read_lines(&input[..], |l| got.push(l.to_vec()));
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        let exact = vec![b'y'; MAX_LINE];
        let mut got = Vec::new();
        read_lines(std::io::BufReader::with_capacity(7, &exact[..]), |l| {
            got.push(l.len())
        });
        assert_eq!(got, vec![MAX_LINE]);
    }

    fn d(session: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![acked::DATA];
        f.extend(session.to_be_bytes());
        f.extend(seq.to_be_bytes());
        f.extend(payload);
        f
    }

    fn len16(f: &[u8]) -> Vec<u8> {
        frame(Framing::Len16, f).unwrap()
    }

    fn next_message(lab: &Lab) -> Option<Vec<u8>> {
        lab.wait_for(
            Instant::now() + Duration::from_secs(5),
            |e| match e {
                LabEvent::Message { bytes, .. } => Some(bytes.clone()),
                _ => None,
            },
            drop,
        )
    }

    fn read_frame(c: &mut TcpStream) -> Vec<u8> {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut n = [0u8; 2];
        c.read_exact(&mut n).unwrap();
        let mut f = vec![0u8; usize::from(u16::from_be_bytes(n))];
        c.read_exact(&mut f).unwrap();
        f
    }

    #[test]
    fn acked_lab_delivers_once_per_session_across_connections() {
        let lab = Lab::start_acked(
            local(),
            Transport::Tcp,
            Framing::Len16,
            None,
            Limits::default(),
        )
        .unwrap();
        let s = 0x0A0B_0C0D;
        let mut a = TcpStream::connect(lab.local_addr()).unwrap();
        // Two messages in one write: one read, one cumulative ack.
        let mut both = len16(&d(s, 0, b"a"));
        both.extend(len16(&d(s, 1, b"b")));
        a.write_all(&both).unwrap();
        assert_eq!(next_message(&lab).as_deref(), Some(&b"a"[..]));
        assert_eq!(next_message(&lab).as_deref(), Some(&b"b"[..]));
        assert_eq!(read_frame(&mut a), acked::ack(s, 2));
        assert_eq!(lab.stats().acks_sent, 1, "one ack for the batch");
        drop(a);
        // The device is back from another port, with the same session: "b"
        // was delivered already.
        let mut b = TcpStream::connect(lab.local_addr()).unwrap();
        let mut again = len16(&d(s, 1, b"b"));
        again.extend(len16(&d(s, 2, b"c")));
        b.write_all(&again).unwrap();
        assert_eq!(next_message(&lab).as_deref(), Some(&b"c"[..]));
        assert_eq!(read_frame(&mut b), acked::ack(s, 3));
        assert_eq!(lab.stats().duplicates, 1);
        // Malformed frames are counted; the connection stays up.
        b.write_all(&len16(b"Zjunk")).unwrap();
        b.write_all(&len16(&acked::ack(s, 1))).unwrap();
        b.write_all(&len16(&d(s, 3, b"d"))).unwrap();
        assert_eq!(next_message(&lab).as_deref(), Some(&b"d"[..]));
        assert_eq!(lab.stats().malformed, 2);
        // A heartbeat is a Beat event, acknowledged with the window.
        let mut h = vec![acked::BEAT];
        h.extend(s.to_be_bytes());
        h.extend(3u32.to_be_bytes());
        h.extend(b"heart beat");
        b.write_all(&len16(&h)).unwrap();
        let beat = lab.wait_for(
            Instant::now() + Duration::from_secs(5),
            |e| match e {
                LabEvent::Beat { payload, .. } => Some(payload.clone()),
                _ => None,
            },
            drop,
        );
        assert_eq!(beat.as_deref(), Some(&b"heart beat"[..]));
        // Out of order over TCP: a gap, dropped, the ack says where to resume.
        b.write_all(&len16(&d(s, 9, b"z"))).unwrap();
        let mut acks = Vec::new();
        while acks.len() < 3 {
            acks.push(read_frame(&mut b));
        }
        assert!(acks.iter().all(|a| *a == acked::ack(s, 4)), "{acks:?}");
        assert_eq!(lab.stats().gaps, 1);
        // What the lab sends goes as an M frame.
        let peer = lab.clients()[0];
        lab.send_to(peer, b"bin").unwrap();
        assert_eq!(read_frame(&mut b), b"Mbin");
        let st = lab.stats();
        assert_eq!((st.messages_in, st.beats, st.sessions), (4, 1, 1));
    }

    #[test]
    fn acked_sessions_are_capped_least_recently_heard_first() {
        let limits = Limits {
            max_sessions: 2,
            ..Limits::default()
        };
        let lab = Lab::start_acked(local(), Transport::Udp, Framing::Raw, None, limits).unwrap();
        let c = UdpSocket::bind(local()).unwrap();
        c.connect(lab.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ack = [0u8; 16];
        let send = |f: Vec<u8>| {
            c.send(&f).unwrap();
        };
        send(d(1, 0, b"1a"));
        send(d(2, 0, b"2a"));
        send(d(1, 1, b"1b"));
        // 2 is now the least recently heard: 3 takes its place.
        send(d(3, 0, b"3a"));
        for want in [&b"1a"[..], b"2a", b"1b", b"3a"] {
            assert_eq!(next_message(&lab).as_deref(), Some(want));
        }
        // 2 was forgotten: its next message is of an unknown session.
        send(d(2, 1, b"2b"));
        send(d(1, 2, b"1c"));
        assert_eq!(next_message(&lab).as_deref(), Some(&b"1c"[..]));
        let st = lab.stats();
        assert_eq!(st.sessions_evicted, 1);
        assert_eq!(st.unknown_session, 1);
        assert_eq!(st.sessions, 2);
        // Every acknowledged frame got its datagram back (not the unknown).
        let mut n = 0;
        while n < 5 {
            assert_eq!(c.recv(&mut ack).unwrap(), acked::ACK_LEN);
            n += 1;
        }
        // Counted once `send_to` returned, which may be after the datagram
        // arrived.
        let deadline = Instant::now() + Duration::from_secs(5);
        while lab.stats().acks_sent < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(lab.stats().acks_sent, 5);
    }

    #[test]
    fn acked_acks_to_a_client_that_does_not_read_are_bounded_and_counted() {
        let lab = Lab::start_acked(
            local(),
            Transport::Tcp,
            Framing::Len16,
            None,
            Limits::default(),
        )
        .unwrap();
        // A tiny receive window: the lab's acks back up quickly.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&lab.local_addr().into()).unwrap();
        let mut c: TcpStream = sock.into();
        // Every frame a new session: one ack each, 11 bytes per 13 in.
        const N: u32 = 200_000;
        let writer = std::thread::spawn(move || {
            let mut batch = Vec::new();
            for i in 0..N {
                batch.extend(len16(&d(i, 0, b"")));
                if batch.len() > 60_000 {
                    c.write_all(&batch).unwrap();
                    batch.clear();
                }
            }
            c.write_all(&batch).unwrap();
            c
        });
        let mut got = 0u32;
        let deadline = Instant::now() + Duration::from_secs(60);
        while got < N && Instant::now() < deadline {
            if let Some(LabEvent::Message { .. }) = lab.next_event(Duration::from_millis(100)) {
                got += 1;
            }
            if got.is_multiple_of(4096) {
                let held: usize = lock(&lab.shared.tcp)
                    .values()
                    .map(|o| lock(&o.state).buf.len())
                    .sum();
                assert!(held <= OUTBOX + ACK_SLACK, "{held}");
            }
        }
        let _c = writer.join().unwrap();
        // The last acks are counted just after their messages were queued.
        let deadline = Instant::now() + Duration::from_secs(5);
        let counted = |s: LabStats| s.acks_sent + s.acks_dropped;
        while counted(lab.stats()) < u64::from(N) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = lab.stats();
        assert_eq!(got, N, "every message delivered");
        assert!(st.acks_dropped > 0, "{st:?}");
        assert_eq!(st.acks_sent + st.acks_dropped, u64::from(N));
        assert_eq!(st.sessions, DEFAULT_MAX_SESSIONS as u64);
        assert_eq!(
            st.sessions_evicted,
            u64::from(N) - DEFAULT_MAX_SESSIONS as u64
        );
    }

    #[test]
    fn acked_refuses_framings_without_frame_boundaries() {
        for (t, f) in [
            (Transport::Tcp, Framing::Raw),
            (Transport::Tcp, Framing::Lines),
            (Transport::Udp, Framing::Lines),
        ] {
            let e = Lab::start_acked(local(), t, f, None, Limits::default()).err();
            assert_eq!(e.map(|e| e.kind()), Some(std::io::ErrorKind::InvalidInput));
        }
    }

    #[test]
    fn the_stated_bound_counts_every_buffer() {
        let l = Limits::default();
        let plain = l.memory_bound(false);
        assert!(plain > INBOUND_BUDGET + EVENT_BYTES + l.max_clients * OUTBOX);
        assert!(l.memory_bound(true) > plain);
        // What --help and the README state.
        assert_eq!(plain.div_ceil(1 << 20), 69);
        assert_eq!(l.memory_bound(true).div_ceil(1 << 20), 119);
    }
}
