//! The state machine: [`Connection`].

use crate::config::{Backoff, Config, ConfigError, Transport};
use crate::event::{ConnectFailure, Disconnect, Event, Events, Status};
use crate::framing::{self, Framing};
use crate::handler::{Context, Handler, Reply, ReplyOutcome};
use crate::queue::Queue;
use crate::time::{Duration, Instant};

/// Something the caller must do, returned by [`Connection::poll_action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Action {
    /// Open a socket to the server (the driver's
    /// [`Remote`](crate::Remote): resolving the host name first if it is
    /// one) over `transport`, then report
    /// [`handle_connected`](Connection::handle_connected) or
    /// [`handle_connect_failed`](Connection::handle_connect_failed).
    Connect {
        /// TCP or UDP, from the config.
        transport: Transport,
    },
    /// Close the socket if one is open. No event is expected back.
    Close,
    /// Reset the data link: tear down and re-establish the PDP context
    /// (`link.shut()` in the tutorial). A no-op on links without one.
    ResetLink,
    /// Turn the radio off (flight mode on).
    RadioOff,
    /// Turn the radio back on (flight mode off).
    RadioOn,
}

/// Pending actions, one bit each; emitted lowest bit first, which is the only
/// order that makes sense (close before reset, radio off before on, connect
/// last).
const CLOSE: u8 = 1 << 0;
const RESET_LINK: u8 = 1 << 1;
const RADIO_OFF: u8 = 1 << 2;
const RADIO_ON: u8 = 1 << 3;
const CONNECT: u8 = 1 << 4;

/// Counters since the state machine was created. They wrap on overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// [`Action::Connect`]s emitted.
    pub connect_attempts: u32,
    /// Connect attempts that failed (refused, DNS failure, timeout).
    pub connect_failures: u32,
    /// Connect attempts that gave up at [`Config::connect_timeout`] (also
    /// counted in `connect_failures`).
    pub connect_timeouts: u32,
    /// Connections established.
    pub connects: u32,
    /// Established connections that ended (peer close, I/O error, protocol
    /// error, idle timeout, network loss).
    pub disconnects: u32,
    /// Connections ended by [`Config::idle_timeout`].
    pub idle_timeouts: u32,
    /// [`Action::ResetLink`]s emitted.
    pub link_resets: u32,
    /// Flight-mode cycles ([`Action::RadioOff`]s emitted).
    pub radio_cycles: u32,
    /// Whole messages received and handled.
    pub messages_in: u32,
    /// Whole messages written (heartbeats and replies included).
    pub messages_out: u32,
    /// Heartbeats written.
    pub heartbeats_sent: u32,
    /// Heartbeats not queued because the previous one was still unsent.
    pub heartbeats_skipped: u32,
    /// Inbound frames rejected: too large for the receive buffer, or cut off
    /// at the end of a datagram. Over TCP each one resets the connection (the
    /// stream is out of step); over UDP the datagram is dropped.
    pub frames_rejected: u32,
    /// [`Connection::enqueue`] calls refused because the queue was full.
    pub queue_full: u32,
    /// Replies dropped because they could never fit in the queue, or could
    /// not be framed.
    pub replies_dropped: u32,
    /// Received bytes discarded unhandled when their connection ended (a
    /// partial frame, or a message waiting for queue room).
    pub rx_discarded: u32,
    /// Acknowledged mode: acks that moved the window (feature `acked`).
    #[cfg(feature = "acked")]
    pub acks: u32,
    /// Acknowledged mode: acks ignored: another session, or beyond what was
    /// sent.
    #[cfg(feature = "acked")]
    pub acks_ignored: u32,
    /// Acknowledged mode: messages the server acknowledged.
    #[cfg(feature = "acked")]
    pub messages_acked: u32,
    /// Acknowledged mode: ack timeouts (each one a UDP retransmission of
    /// the window, or a TCP reconnect).
    #[cfg(feature = "acked")]
    pub ack_timeouts: u32,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A call that does not fit the current state, or bad arguments. The state
/// machine is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The event cannot happen in the current state (for example
    /// `handle_connected` without a pending connect).
    InvalidState,
    /// A length larger than what was offered (`handle_received` beyond
    /// [`Connection::receive_buffer`], `handle_written` beyond
    /// [`Connection::poll_transmit`]).
    InvalidLength,
}

/// Why [`Connection::enqueue`] refused a message. The message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum QueueError {
    /// No room now; try again after some data was written.
    Full,
    /// The message can never fit, even in an empty queue.
    TooLarge,
    /// The framing cannot carry the message (a `\n` with `Lines`, more than
    /// 65535 bytes with `Len16`).
    Unframeable,
    /// An empty message with `Raw` framing, which would put nothing on the wire.
    Empty,
}

/// A wall-clock value before 2020-01-01 is an unset clock (an RTC after a
/// power loss, a modem before its network time), not a time to report.
pub const MIN_PLAUSIBLE_UNIX_MS: u64 = 1_577_836_800_000;

/// [`Connection::handle_wall_clock`] was given an implausible time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ImplausibleTime;

macro_rules! error_impls {
    ($($t:ty => $msg:expr),*) => {$(
        impl core::fmt::Display for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let msg: &str = $msg(self);
                f.write_str(msg)
            }
        }
        #[cfg(feature = "std")]
        impl std::error::Error for $t {}
    )*};
}
error_impls!(
    Error => |e: &Error| match e {
        Error::InvalidState => "event not valid in the current state",
        Error::InvalidLength => "length beyond what was offered",
    },
    QueueError => |e: &QueueError| match e {
        QueueError::Full => "outgoing queue full",
        QueueError::TooLarge => "message larger than the outgoing queue",
        QueueError::Unframeable => "message cannot be framed",
        QueueError::Empty => "empty message with raw framing",
    },
    ImplausibleTime => |_: &ImplausibleTime| "wall-clock time before 2020"
);

/// The timers. The four phase timers are mutually exclusive (each belongs to
/// one state), so they share a slot; the others run while connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// `WaitNetwork`: network not up within `network_wait`: cycle the radio.
    /// `RadioOff`: radio has been off for `radio_off`: turn it on.
    /// `Backoff`: time for the next connect attempt.
    /// `Connecting`: the attempt takes longer than `connect_timeout`.
    Phase,
    /// Time for the next heartbeat.
    Heartbeat,
    /// Nothing received for `idle_timeout`.
    Idle,
    /// Acknowledged mode: the oldest message written is still unacknowledged.
    #[cfg(feature = "acked")]
    Ack,
}

/// How many [`Timer`]s there are.
const TIMERS: usize = if cfg!(feature = "acked") { 4 } else { 3 };

/// Deadlines in milliseconds, indexed by [`Timer`]. `u64::MAX` is "not
/// armed": a deadline at the end of time never fires, so disarming needs no
/// discriminant of its own.
#[derive(Clone, Copy)]
struct Timers([u64; TIMERS]);

impl Timers {
    const OFF: Timers = Timers([u64::MAX; TIMERS]);

    /// The table of a state other than `Connected`: only the phase timer, at
    /// `now + d` (`None`: disarmed).
    fn phase(now: Instant, d: Option<Duration>) -> Timers {
        let mut t = Timers::OFF;
        t.set(Timer::Phase, now, d);
        t
    }

    /// Arms `t` at `now + d` (`None`: disarms it).
    fn set(&mut self, t: Timer, now: Instant, d: Option<Duration>) {
        self.0[t as usize] = deadline(now, d);
    }
    fn stop(&mut self, t: Timer) {
        self.0[t as usize] = u64::MAX;
    }
    /// The earliest deadline and its timer (the first of equals), armed or
    /// not. One search serves both [`next`](Self::next) and
    /// [`expired`](Self::expired): 64-bit compares are not free on a 32-bit MCU.
    #[inline(never)]
    #[allow(
        clippy::needless_range_loop,
        reason = "an index loop on purpose: the iterator version pulled Iterator::nth in (code size)"
    )]
    fn earliest(&self) -> (Timer, u64) {
        const ALL: [Timer; TIMERS] = [
            Timer::Phase,
            Timer::Heartbeat,
            Timer::Idle,
            #[cfg(feature = "acked")]
            Timer::Ack,
        ];
        let mut first = (Timer::Phase, self.0[0]);
        // Two arrays indexed in step: the `zip` form links
        // `Iterator::nth` (76 B on Cortex-M) for nothing.
        #[allow(clippy::needless_range_loop)]
        for i in 1..TIMERS {
            if self.0[i] < first.1 {
                first = (ALL[i], self.0[i]);
            }
        }
        first
    }
    fn next(&self) -> Option<Instant> {
        let (_, at) = self.earliest();
        (at != u64::MAX).then(|| Instant::from_millis(at))
    }
    /// The earliest timer due at `now` (the first of equals): a caller that
    /// comes late still sees the timers fire in the order they were due.
    fn expired(&self, now: Instant) -> Option<Timer> {
        let (t, at) = self.earliest();
        (at <= now.as_millis()).then_some(t)
    }
}

/// `now + d` as a deadline in milliseconds; `None` is disarmed.
///
/// Out of line: the saturating 64-bit add is a dozen instructions on a 32-bit
/// MCU, and every timer goes through here.
#[inline(never)]
fn deadline(now: Instant, d: Option<Duration>) -> u64 {
    d.map_or(u64::MAX, |d| (now + d).as_millis())
}

/// A long connection to one server: the tutorial's client as a sans-IO state
/// machine.
///
/// `H` handles inbound messages ([`TestProtocol`](crate::TestProtocol) for
/// the tutorial's protocol); `Q` is the outgoing queue size and `R` the
/// receive buffer size, in bytes. See the [crate documentation](crate) for
/// the model and the call order.
pub struct Connection<H, const Q: usize, const R: usize> {
    config: Config,
    timers: Timers,
    last_now: Instant,
    /// Unix milliseconds minus monotonic milliseconds; [`NO_WALL_CLOCK`]
    /// until set.
    wall_offset: i64,
    stats: Stats,
    queue: Queue<Q>,
    rx: [u8; R],
    /// Bytes from the head of the queue already written on this connection.
    written: usize,
    /// Frames from the head of the queue written whole on this connection
    /// and still queued (acknowledged mode: waiting for their ack; always 0
    /// otherwise), and their length in bytes.
    sent: usize,
    sent_bytes: usize,
    #[cfg(feature = "acked")]
    ack: AckState,
    rx_len: usize,
    /// Consecutive failed connects, towards `max_failures`.
    failures: u16,
    /// Consecutive failed connects for the backoff exponent (not reset by a
    /// link reset, so backoff keeps growing against a dead server).
    backoff_failures: u16,
    state: Status,
    network_up: bool,
    /// A queued heartbeat is not yet fully written.
    heartbeat_queued: bool,
    /// A complete inbound message waits at the start of `rx` for queue room.
    rx_blocked: bool,
    pending: u8,
    events: Events,
    handler: H,
}

impl<H: Handler, const Q: usize, const R: usize> Connection<H, Q, R> {
    /// A connection that starts waiting for the network at `now`.
    ///
    /// Fails when the config cannot work with these buffer sizes.
    pub fn new(config: Config, handler: H, now: Instant) -> Result<Self, ConfigError> {
        config.validate(Q, R)?;
        let mut c = Connection {
            config,
            state: Status::WaitingForNetwork,
            network_up: false,
            heartbeat_queued: false,
            rx_blocked: false,
            pending: 0,
            events: Events::new(),
            failures: 0,
            backoff_failures: 0,
            written: 0,
            sent: 0,
            sent_bytes: 0,
            #[cfg(feature = "acked")]
            ack: AckState::default(),
            rx_len: 0,
            timers: Timers::OFF,
            last_now: now,
            wall_offset: NO_WALL_CLOCK,
            stats: Stats::default(),
            handler,
            queue: Queue::new(),
            rx: [0; R],
        };
        c.enter_wait_network(now);
        Ok(c)
    }

    // ----------------------------------------------------------------- inputs

    /// The network came up (an IP address was assigned) or went away.
    ///
    /// Going away closes any connection and resets the failure count, as in
    /// the tutorial; the next attempt then waits for both the retry delay and
    /// the network. Reporting the same state twice is harmless.
    pub fn handle_network(&mut self, now: Instant, up: bool) {
        let now = self.advance(now);
        if up == self.network_up {
            return;
        }
        self.network_up = up;
        info!("network {}", if up { "up" } else { "down" });
        if up {
            if self.state == Status::WaitingForNetwork {
                self.start_connect(now);
            }
        } else {
            self.failures = 0;
            self.backoff_failures = 0;
            // Like the tutorial (`close()`, `sys.wait(5000)`, then look at the
            // network again): pause `retry_delay` first, so a flapping network
            // cannot make attempts closer together than that. The retry timer
            // moves on to the network wait if the network is still down.
            match self.state {
                Status::Connected => self.drop_connection(now, Disconnect::NetworkLost),
                Status::Connecting => {
                    // Not a failure of the server: not counted.
                    self.event(Event::ConnectFailed(ConnectFailure::NetworkLost));
                    self.close_socket();
                    self.enter_backoff(now);
                }
                Status::BackingOff | Status::WaitingForNetwork | Status::RadioOff => {}
            }
        }
    }

    /// The connect attempt from [`Action::Connect`] succeeded.
    pub fn handle_connected(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.advance(now);
        self.expect_connecting()?;
        info!("connected");
        self.event(Event::Connected);
        self.state = Status::Connected;
        self.failures = 0;
        self.backoff_failures = 0;
        self.stats.connects = self.stats.connects.wrapping_add(1);
        #[cfg(feature = "acked")]
        if self.config.transport == Transport::Udp {
            // A new socket gets the whole retransmission schedule again
            // (TCP keeps doubling across reconnects: a server that is slow
            // to acknowledge is not reconnected to every `ack_timeout`).
            self.ack.retries = 0;
        }
        let heartbeat = self.config.heartbeat_interval;
        self.timers = Timers::OFF;
        self.timers.set(Timer::Heartbeat, now, heartbeat);
        self.timers.set(Timer::Idle, now, self.config.idle_timeout);
        if heartbeat.is_some() {
            // The tutorial's heartbeat task queues one as soon as the network is
            // up, so the first heartbeat goes out right after connecting. Over
            // UDP it is also what tells the server where the client is.
            self.queue_heartbeat();
        }
        Ok(())
    }

    /// The connect attempt from [`Action::Connect`] failed (refused,
    /// unreachable, DNS lookup failed, TLS handshake failed...).
    pub fn handle_connect_failed(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.advance(now);
        self.expect_connecting()?;
        self.connect_failed(now, ConnectFailure::Failed);
        Ok(())
    }

    /// `len` bytes were read into the start of
    /// [`receive_buffer`](Self::receive_buffer).
    ///
    /// With UDP, each call is one datagram, read into the whole `R`-byte
    /// buffer: one that fills it (`len == R`) may have been cut short by the
    /// stack, so it is rejected and counted in [`Stats::frames_rejected`],
    /// never handled. The largest datagram handled is therefore `R - 1`
    /// bytes, on every stack. With TCP, `len == 0` is not end of stream
    /// (report that with [`handle_closed`](Self::handle_closed)) and does
    /// nothing.
    pub fn handle_received(&mut self, now: Instant, len: usize) -> Result<(), Error> {
        let now = self.advance(now);
        if self.state != Status::Connected {
            return Err(Error::InvalidState);
        }
        if len > self.receive_capacity() {
            return Err(Error::InvalidLength);
        }
        let udp = self.config.transport == Transport::Udp;
        if len == 0 && !udp {
            return Ok(());
        }
        self.note_received(now, len);
        if udp && len == R {
            // A datagram that fills the buffer may have been cut by the
            // stack: never handled as a message, whole or not.
            self.reject_frame(now);
            return Ok(());
        }
        // What was in the buffer before this read held no complete frame.
        let scanned = self.rx_len;
        self.rx_len += len;
        if udp && len == 0 {
            // An empty datagram is an empty message in raw framing; in the
            // other framings it holds no frame and is ignored.
            if self.config.framing == Framing::Raw {
                self.dispatch_empty(now);
            }
            return Ok(());
        }
        self.process_rx(now, scanned);
        Ok(())
    }

    /// Copies as much of `data` as the receive buffer takes and handles it:
    /// [`receive_buffer`](Self::receive_buffer) plus
    /// [`handle_received`](Self::handle_received) in one call, for callers
    /// whose bytes are already in a buffer of their own.
    ///
    /// Returns how many bytes were taken; the caller keeps the rest and offers
    /// it again later. Over UDP `data` is one datagram, taken whole or not at
    /// all (not while a reply waits for queue room); one of `R` bytes or more
    /// can never be taken (see [`handle_received`](Self::handle_received)),
    /// so it is consumed, dropped and counted in [`Stats::frames_rejected`].
    pub fn handle_received_bytes(&mut self, now: Instant, data: &[u8]) -> Result<usize, Error> {
        let now = self.advance(now);
        if self.state != Status::Connected {
            return Err(Error::InvalidState);
        }
        let udp = self.config.transport == Transport::Udp;
        if udp && data.len() >= R {
            // Still a sign of life from the server.
            self.note_received(now, data.len());
            self.reject_frame(now);
            return Ok(data.len());
        }
        let buf = self.receive_buffer();
        let n = data.len().min(buf.len());
        if udp && n < data.len() {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&data[..n]);
        self.handle_received(now, n)?;
        Ok(n)
    }

    /// `len` bytes of [`poll_transmit`](Self::poll_transmit) were written.
    ///
    /// A partial write is normal: the rest is offered again by the next
    /// `poll_transmit`. Over TCP the write may span several queued messages;
    /// each one leaves the queue once its last byte is written. Over UDP a
    /// datagram is written whole or not at all: any length other than 0 or
    /// the datagram's is [`Error::InvalidLength`].
    pub fn handle_written(&mut self, now: Instant, len: usize) -> Result<(), Error> {
        let now = self.advance(now);
        if self.state != Status::Connected {
            return Err(Error::InvalidState);
        }
        let offered = self.poll_transmit().map_or(0, <[u8]>::len);
        // A datagram goes out whole: its rest would be a second datagram.
        let udp_partial = self.config.transport == Transport::Udp && len != 0 && len != offered;
        if len > offered || udp_partial {
            return Err(Error::InvalidLength);
        }
        self.stats.bytes_out = self.stats.bytes_out.wrapping_add(len as u64);
        self.written += len;
        if len > 0 && self.config.heartbeat_when_idle {
            // The link is not idle: the next heartbeat is an interval away.
            self.timers
                .set(Timer::Heartbeat, now, self.config.heartbeat_interval);
        }
        // The frames this write completed.
        while let Some((frame_len, heartbeat)) = self.queue.entry(self.sent) {
            if self.written < self.sent_bytes + frame_len {
                break;
            }
            self.sent += 1;
            self.sent_bytes += frame_len;
            self.stats.messages_out = self.stats.messages_out.wrapping_add(1);
            if heartbeat {
                // `heartbeat_queued` stays set until the heartbeat leaves
                // the queue (`settle`): in the acknowledged mode one
                // written behind an unacknowledged message stays, and is
                // sent again after a reconnect; another one would pile up.
                self.stats.heartbeats_sent = self.stats.heartbeats_sent.wrapping_add(1);
            } else {
                self.data_sent(now, self.sent_bytes - frame_len);
            }
        }
        if self.settle() && self.rx_blocked {
            // Queue room freed: the waiting message may fit now. Only an
            // empty datagram (raw framing) waits with nothing in `rx`.
            if self.rx_len == 0 {
                self.dispatch_empty(now);
            } else {
                self.process_rx(now, 0);
            }
        }
        Ok(())
    }

    /// The peer closed the connection (TCP end of stream).
    pub fn handle_closed(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.advance(now);
        debug!("closed by peer");
        self.connection_lost(now, Disconnect::PeerClosed)
    }

    /// A send or receive on the socket failed.
    pub fn handle_io_error(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.advance(now);
        debug!("socket error");
        self.connection_lost(now, Disconnect::IoError)
    }

    /// Time passed: runs every timer due at `now`.
    ///
    /// Safe to call early, late or repeatedly; every other `handle_*` call
    /// does the same first.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// The wall clock reads `unix_ms` (milliseconds since the Unix epoch) at
    /// monotonic time `now`: from NTP/SNTP, an RTC, the modem's network time,
    /// or the host's system clock. Call it again whenever a fresher reading
    /// arrives; a jump in either direction is accepted.
    ///
    /// Readings before 2020 are refused as an unset clock; until a reading is
    /// accepted, [`Context::unix_time_ms`] is `None` (and
    /// [`TestProtocol`](crate::TestProtocol) does not answer `time`).
    pub fn handle_wall_clock(&mut self, now: Instant, unix_ms: u64) -> Result<(), ImplausibleTime> {
        let now = self.advance(now);
        if unix_ms < MIN_PLAUSIBLE_UNIX_MS {
            return Err(ImplausibleTime);
        }
        // `unix_ms - now` as an `i64`, without `i128` arithmetic (bulky on a
        // 32-bit MCU): the wrapped difference is exact when its sign matches
        // the borrow.
        let (diff, borrow) = unix_ms.overflowing_sub(now.as_millis());
        let offset = diff as i64;
        if (offset < 0) != borrow || offset == NO_WALL_CLOCK {
            return Err(ImplausibleTime);
        }
        self.wall_offset = offset;
        Ok(())
    }

    /// Queues a message for the server. It goes out as soon as the connection
    /// takes it (check [`poll_transmit`](Self::poll_transmit) after this), and
    /// stays queued across disconnects until fully written once.
    ///
    /// The framing is applied here. A full queue is an error; nothing is
    /// dropped to make room.
    pub fn enqueue(&mut self, message: &[u8]) -> Result<(), QueueError> {
        if self.config.framing == Framing::Raw && message.is_empty() {
            return Err(QueueError::Empty);
        }
        // `heartbeat_reserve`, from the one `heartbeat_slot` computed here.
        let slot = self.config.heartbeat_slot();
        let reserve = if self.heartbeat_queued { 0 } else { slot };
        let max = Q.saturating_sub(slot + crate::queue::HEADER);
        let envelope = self.data_envelope();
        let framing = self.config.framing;
        let pushed = push(
            &mut self.queue,
            framing,
            &envelope,
            message,
            max,
            reserve,
            false,
        );
        match pushed {
            Ok(()) => self.data_queued(),
            Err(QueueError::Full) => self.stats.queue_full = self.stats.queue_full.wrapping_add(1),
            Err(_) => {}
        }
        pushed
    }

    // ---------------------------------------------------------------- outputs

    /// The next action for the caller, if any. Call until `None` after every
    /// `handle_*` call.
    pub fn poll_action(&mut self) -> Option<Action> {
        let bit = self.pending & self.pending.wrapping_neg();
        self.pending &= !bit;
        let action = match bit {
            CLOSE => Action::Close,
            RESET_LINK => Action::ResetLink,
            RADIO_OFF => Action::RadioOff,
            RADIO_ON => Action::RadioOn,
            CONNECT => Action::Connect {
                transport: self.config.transport,
            },
            _ => return None,
        };
        debug!("action {:?}", action);
        Some(action)
    }

    /// Bytes to write to the socket now. Over TCP: everything queued that
    /// is not written yet, messages back to back, so one write can carry a
    /// burst. Over UDP: the head message, one whole datagram.
    ///
    /// Report what the socket took with
    /// [`handle_written`](Self::handle_written); if it took nothing (would
    /// block), just try again when it is writable.
    #[must_use]
    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        if self.state != Status::Connected {
            return None;
        }
        let bytes = self.queue.bytes();
        if self.config.transport == Transport::Udp {
            // The next datagram not sent yet (acknowledged mode: within the
            // window of datagrams in flight).
            if !self.may_send_another() {
                return None;
            }
            let (len, _) = self.queue.entry(self.sent)?;
            return bytes.get(self.sent_bytes..self.sent_bytes + len);
        }
        let end = self.transmit_end(bytes.len());
        bytes.get(self.written..end).filter(|rest| !rest.is_empty())
    }

    /// The next [`Event`] (see its docs for the order); `None` when there is
    /// nothing new.
    /// Call until `None` after every `handle_*` call (with
    /// [`poll_action`](Self::poll_action)), and forward them to the
    /// application instead of working out what changed.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop(self.state)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if ever.
    /// Never earlier than the `now` of the last call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Where to read socket data into. Empty means "do not read now": either
    /// not connected, or the previous message's reply is waiting for queue
    /// room (backpressure, which lets the peer's flow control slow a flood
    /// down instead of this side dropping anything). Over UDP it is always the
    /// whole receive buffer or nothing.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        self.receive_buffer_mut()
    }

    /// The length of [`receive_buffer`](Self::receive_buffer), without
    /// borrowing it: how much a driver may read now (0: do not read).
    #[must_use]
    pub fn receive_room(&self) -> usize {
        self.receive_capacity()
    }

    fn receive_buffer_mut(&mut self) -> &mut [u8] {
        let cap = self.receive_capacity();
        // In bounds by `receive_capacity`; `get_mut` leaves no panic path.
        self.rx
            .get_mut(self.rx_len..self.rx_len + cap)
            .unwrap_or_default()
    }

    /// The connection's status, for a network LED.
    #[must_use]
    pub fn status(&self) -> Status {
        self.state
    }

    /// Counters since creation.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The policy this connection follows.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The message handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The message handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Wall-clock time at `now`, in Unix milliseconds, if a wall clock was set.
    #[must_use]
    pub fn unix_time_ms(&self, now: Instant) -> Option<u64> {
        if self.wall_offset == NO_WALL_CLOCK {
            return None;
        }
        now.as_millis().checked_add_signed(self.wall_offset)
    }

    /// Messages in the outgoing queue (including a pending heartbeat and
    /// replies).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The largest message [`enqueue`](Self::enqueue) accepts right now.
    #[must_use]
    pub fn queue_room(&self) -> usize {
        self.queue.room(self.heartbeat_reserve()).map_or(0, |room| {
            room.saturating_sub(self.config.framing.overhead() + self.config.envelope())
        })
    }

    /// The queued frames (framing applied), head first, and whether each is
    /// a heartbeat. For inspection and tests: a driver sends
    /// [`poll_transmit`](Self::poll_transmit).
    pub fn queued_frames(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        self.queue.iter()
    }

    /// Consecutive failed connect attempts so far (towards
    /// [`Config::max_failures`]).
    #[must_use]
    pub fn consecutive_failures(&self) -> u16 {
        self.failures
    }

    // -------------------------------------------------------------- internals

    /// Clamps `now` to be monotonic and runs every timer due.
    fn advance(&mut self, now: Instant) -> Instant {
        // The last millisecond of time is kept free so that "disarmed"
        // (`u64::MAX`) is never due.
        let now = now
            .max(self.last_now)
            .min(Instant::from_millis(u64::MAX - 1));
        self.last_now = now;
        // Every handler re-arms at `now + d` with `d > 0` or disarms (a
        // deadline saturated at the end of time never fires), so this ends.
        while let Some(timer) = self.timers.expired(now) {
            self.timers.stop(timer);
            self.on_timer(now, timer);
        }
        now
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match (timer, self.state) {
            (Timer::Phase, Status::WaitingForNetwork) => {
                warn!("no network after {}: radio off", self.config.network_wait);
                self.stats.radio_cycles = self.stats.radio_cycles.wrapping_add(1);
                self.event(Event::RadioCycle);
                self.pending |= RADIO_OFF;
                self.enter(now, Status::RadioOff, Some(self.config.radio_off));
            }
            (Timer::Phase, Status::RadioOff) => {
                self.pending |= RADIO_ON;
                if self.network_up {
                    self.start_connect(now);
                } else {
                    self.enter_wait_network(now);
                }
            }
            (Timer::Phase, Status::BackingOff) => {
                if self.network_up {
                    self.start_connect(now);
                } else {
                    self.enter_wait_network(now);
                }
            }
            (Timer::Phase, Status::Connecting) => {
                warn!("connect timed out");
                self.stats.connect_timeouts = self.stats.connect_timeouts.wrapping_add(1);
                self.connect_failed(now, ConnectFailure::TimedOut);
            }
            // Only ever armed with a heartbeat interval.
            (Timer::Heartbeat, Status::Connected) => {
                self.queue_heartbeat();
                self.timers
                    .set(Timer::Heartbeat, now, self.config.heartbeat_interval);
            }
            #[cfg(feature = "acked")]
            (Timer::Ack, Status::Connected) => self.ack_timed_out(now),
            (Timer::Idle, Status::Connected) => {
                warn!(
                    "nothing received for {:?}: reconnecting",
                    self.config.idle_timeout
                );
                self.stats.idle_timeouts = self.stats.idle_timeouts.wrapping_add(1);
                self.drop_connection(now, Disconnect::IdleTimeout);
            }
            // Timers are disarmed on every state change; a stray one is
            // harmless.
            _ => {}
        }
    }

    fn expect_connecting(&self) -> Result<(), Error> {
        if self.state == Status::Connecting && self.pending & CONNECT == 0 {
            Ok(())
        } else {
            Err(Error::InvalidState)
        }
    }

    fn connection_lost(&mut self, now: Instant, why: Disconnect) -> Result<(), Error> {
        match self.state {
            Status::Connected => {
                self.drop_connection(now, why);
                Ok(())
            }
            Status::Connecting if self.pending & CONNECT == 0 => {
                self.connect_failed(now, ConnectFailure::Failed);
                Ok(())
            }
            _ => Err(Error::InvalidState),
        }
    }

    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    fn start_connect(&mut self, now: Instant) {
        debug!("connecting");
        self.pending |= CONNECT;
        self.stats.connect_attempts = self.stats.connect_attempts.wrapping_add(1);
        self.enter(now, Status::Connecting, self.config.connect_timeout);
    }

    fn connect_failed(&mut self, now: Instant, why: ConnectFailure) {
        self.stats.connect_failures = self.stats.connect_failures.wrapping_add(1);
        self.event(Event::ConnectFailed(why));
        self.failures += 1;
        self.backoff_failures = self.backoff_failures.saturating_add(1);
        info!(
            "connect failed ({}/{})",
            self.failures, self.config.max_failures
        );
        self.close_socket();
        if self.failures >= self.config.max_failures {
            warn!("{} connect failures: resetting the link", self.failures);
            self.pending |= RESET_LINK;
            self.stats.link_resets = self.stats.link_resets.wrapping_add(1);
            self.event(Event::LinkReset);
            self.failures = 0;
        }
        self.enter_backoff(now);
    }

    /// Ends an established connection: close, then retry after the delay
    /// (the tutorial waits 5 s after every close, not only after failures).
    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    fn drop_connection(&mut self, now: Instant, why: Disconnect) {
        self.stats.disconnects = self.stats.disconnects.wrapping_add(1);
        self.event(Event::Disconnected(why));
        self.close_socket();
        self.enter_backoff(now);
    }

    /// Asks the caller to close the socket and forgets per-connection state.
    /// A connect the caller has not taken yet is simply withdrawn.
    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    fn close_socket(&mut self) {
        self.pending &= !CONNECT;
        self.pending |= CLOSE;
        // A message cut by the disconnect goes again, whole, next time (and,
        // acknowledged, every one still unacknowledged).
        self.written = 0;
        self.sent = 0;
        self.sent_bytes = 0;
        self.stats.rx_discarded = self.stats.rx_discarded.wrapping_add(self.rx_len as u32);
        self.rx_len = 0;
        self.rx_blocked = false;
        // Acknowledged messages no longer held back by a cut one leave.
        self.settle();
    }

    fn enter_backoff(&mut self, now: Instant) {
        let delay = self.retry_delay();
        debug!("next attempt in {}", delay);
        self.enter(now, Status::BackingOff, Some(delay));
    }

    fn enter_wait_network(&mut self, now: Instant) {
        self.enter(
            now,
            Status::WaitingForNetwork,
            Some(self.config.network_wait),
        );
    }

    /// Moves to `state`, a state other than `Connected`, with its phase timer
    /// due `after` from now; heartbeat and idle stop.
    fn enter(&mut self, now: Instant, state: Status, after: Option<Duration>) {
        self.state = state;
        self.timers = Timers::phase(now, after);
    }

    fn retry_delay(&mut self) -> Duration {
        let base = self.config.retry_delay;
        match self.config.backoff {
            Backoff::Fixed => base,
            Backoff::Exponential { max } => {
                let exp = u32::from(self.backoff_failures);
                let ceiling = base.saturating_shl(exp).min(max);
                let span = ceiling.as_millis() - base.as_millis();
                // Stateless jitter: a hash of the seed and the attempt number
                // is as good as a generator's next draw, and needs no state.
                let draw = crate::rng::splitmix64(
                    self.config.seed ^ u64::from(self.stats.connect_attempts).rotate_left(32),
                );
                // Scale the draw's top 32 bits onto [0, span]: uniform enough,
                // and a multiply instead of a 64-bit division (span < 2^32).
                // `d * (span + 1)` as `d * span + d`: one 32x32-bit multiply.
                let d = draw >> 32;
                let jitter = (d * span + d) >> 32;
                Duration::from_millis(base.as_millis() + jitter)
            }
        }
    }

    /// Queue bytes held back so a heartbeat always fits.
    fn heartbeat_reserve(&self) -> usize {
        if self.heartbeat_queued {
            0
        } else {
            self.config.heartbeat_slot()
        }
    }

    fn queue_heartbeat(&mut self) {
        if self.heartbeat_queued {
            // The last one is still unsent: never let heartbeats pile up.
            self.stats.heartbeats_skipped = self.stats.heartbeats_skipped.wrapping_add(1);
            return;
        }
        // The reserve guarantees room; the config check guarantees it frames.
        if self.push_heartbeat().is_err() {
            self.stats.heartbeats_skipped = self.stats.heartbeats_skipped.wrapping_add(1);
            return;
        }
        self.heartbeat_queued = true;
    }

    /// Frames the configured heartbeat into the queue; the reserve kept for
    /// it guarantees room, the config check that it frames.
    fn push_heartbeat(&mut self) -> Result<(), QueueError> {
        let envelope = self.beat_envelope();
        let payload = &self.config.heartbeat_payload;
        let framing = self.config.framing;
        push(
            &mut self.queue,
            framing,
            &envelope,
            payload,
            usize::MAX,
            0,
            true,
        )
    }

    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    fn receive_capacity(&self) -> usize {
        if self.state != Status::Connected || self.rx_blocked {
            0
        } else if self.config.transport == Transport::Udp {
            // A datagram is read whole into an empty buffer.
            if self.rx_len == 0 {
                R
            } else {
                0
            }
        } else {
            R - self.rx_len
        }
    }

    /// Hands every complete frame in `rx` to the handler, until one's reply
    /// does not fit (backpressure) or a framing error ends the connection.
    /// The first `scanned` bytes are known to hold no line delimiter.
    fn process_rx(&mut self, now: Instant, mut scanned: usize) {
        let framing = self.config.framing;
        let mut start = 0;
        let mut error = false;
        self.rx_blocked = false;
        loop {
            // In bounds by the bookkeeping; an empty `buf` would hold no frame.
            let buf = self.rx.get(start..self.rx_len).unwrap_or_default();
            match framing::decode_after(framing, buf, R, scanned) {
                Ok(Some(f)) => {
                    let (a, b) = (start + f.start, start + f.end);
                    if !self.deliver(now, a, b) {
                        self.rx_blocked = true;
                        break;
                    }
                    start += f.consumed;
                    scanned = 0;
                }
                Ok(None) => break,
                Err(_) => {
                    error = true;
                    break;
                }
            }
        }
        crate::queue::slide_down(&mut self.rx, start, self.rx_len);
        self.rx_len -= start;
        let udp = self.config.transport == Transport::Udp;
        // Over UDP, what is left of a datagram once its whole frames are
        // handled is a cut frame.
        if error || (udp && !self.rx_blocked && self.rx_len > 0) {
            self.reject_frame(now);
        }
    }

    /// A frame that cannot be decoded. A byte stream out of step cannot be
    /// trusted again: reconnect. A datagram stands alone: drop it, and the
    /// next one starts clean.
    #[cold]
    fn reject_frame(&mut self, now: Instant) {
        warn!("bad frame from the server");
        self.stats.frames_rejected = self.stats.frames_rejected.wrapping_add(1);
        self.event(Event::FrameRejected);
        if self.config.transport == Transport::Udp {
            self.rx_len = 0;
        } else {
            self.drop_connection(now, Disconnect::BadFrame);
        }
    }

    /// Counts received bytes and re-arms the idle timer (a no-op without one).
    fn note_received(&mut self, now: Instant, len: usize) {
        self.stats.bytes_in = self.stats.bytes_in.wrapping_add(len as u64);
        trace!("received {} bytes", len);
        self.timers.set(Timer::Idle, now, self.config.idle_timeout);
    }

    fn dispatch_empty(&mut self, now: Instant) {
        // rx_len is 0: the empty range at the start is the message; until
        // its reply fits, it waits like any other (`handle_written` calls
        // again).
        self.rx_blocked = !self.deliver(now, 0, 0);
    }

    /// Runs the handler on `rx[a..b]` and queues its reply. Returns `false`
    /// when the reply must wait for queue room.
    fn dispatch(&mut self, now: Instant, a: usize, b: usize) -> bool {
        let framing = self.config.framing;
        let reserve = self.heartbeat_reserve();
        let cx = Context {
            now,
            unix_time_ms: self.unix_time_ms(now),
        };
        // The reply's envelope (acknowledged mode) goes between the framing's
        // prefix and the body the handler writes.
        let envelope = self.config.envelope();
        let (pre, overhead) = (
            framing.prefix_len() + envelope,
            framing.overhead() + envelope,
        );
        // At most two tries: the second after compacting the queue.
        for _ in 0..2 {
            // Without room for the framing (or even the queue header) any
            // reply, an empty one included, overflows.
            let body = self
                .queue
                .spare(reserve)
                .and_then(|spare| spare.get_mut(pre..(spare.len() + pre).checked_sub(overhead)?));
            let mut reply = Reply::new(body, framing == Framing::Lines);
            // The handler's own error is the reply's overflow, seen below.
            // (`a..b` is a frame the decoder found in `rx`: the `get` cannot
            // miss, and leaves no panic path.)
            let message = self.rx.get(a..b).unwrap_or_default();
            let _ = self.handler.on_message(message, &cx, &mut reply);
            match reply.outcome() {
                ReplyOutcome::None => {}
                // Raw framing cannot carry an empty message (`enqueue` says
                // `Empty`): over TCP it would be no bytes at all, so dropped
                // and counted like any reply the framing cannot carry.
                ReplyOutcome::Message(0) if framing == Framing::Raw => self.drop_reply(),
                ReplyOutcome::Message(n) if framing == Framing::Len16 && n + envelope > 0xFFFF => {
                    self.drop_reply();
                }
                ReplyOutcome::Message(n) => {
                    // The reply was written inside `spare`, so it is there.
                    let len = n + overhead;
                    let head = self.data_envelope();
                    let Some(frame) = self.queue.spare(reserve).and_then(|s| s.get_mut(..len))
                    else {
                        return false;
                    };
                    let p = framing.prefix_len();
                    frame[p..p + envelope].copy_from_slice(&head);
                    framing.wrap(frame);
                    self.queue.commit(len, false);
                    self.data_queued();
                }
                ReplyOutcome::Unframeable => self.drop_reply(),
                ReplyOutcome::Overflow => {
                    if self.queue.compaction_helps(reserve) {
                        self.queue.compact();
                        continue;
                    }
                    if !self.queue.is_empty() {
                        return false;
                    }
                    // Even an empty queue cannot hold it: waiting would stall
                    // the connection forever.
                    self.drop_reply();
                }
            }
            self.stats.messages_in = self.stats.messages_in.wrapping_add(1);
            return true;
        }
        false
    }

    fn drop_reply(&mut self) {
        warn!("reply dropped: it cannot fit the queue or the framing");
        self.stats.replies_dropped = self.stats.replies_dropped.wrapping_add(1);
        self.event(Event::ReplyDropped);
    }

    /// Marks `event` for [`poll_event`](Self::poll_event).
    fn event(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// The delivery mode's side of the state machine: what frames carry, when
/// they may leave the queue, what the server's frames mean. Without the
/// `acked` feature (or with [`Delivery::Socket`](crate::Delivery)) every
/// frame leaves the queue once written and carries nothing extra.
impl<H: Handler, const Q: usize, const R: usize> Connection<H, Q, R> {
    /// Drops from the head of the queue what may leave it: frames written
    /// whole on this connection (acknowledged mode: heartbeats, and messages
    /// the server acknowledged), and acknowledged messages not started on
    /// this connection. Returns whether anything left.
    fn settle(&mut self) -> bool {
        let mut freed = false;
        while let Some((len, heartbeat)) = self.queue.header() {
            let leaves = if self.sent > 0 {
                heartbeat || self.head_acknowledged()
            } else {
                // Not (whole) on the wire: only an acknowledged message at
                // a frame boundary may go unsent.
                self.written == 0 && !heartbeat && self.head_acknowledged() && self.acked()
            };
            if !leaves {
                break;
            }
            self.queue.drop_front();
            if heartbeat {
                self.heartbeat_queued = false;
            }
            if self.sent > 0 {
                self.sent -= 1;
                self.sent_bytes -= len;
                self.written -= len;
            }
            freed = true;
        }
        freed
    }

    /// Handles one frame from the server, `rx[a..b]`: in the acknowledged
    /// mode an ack, an application message or garbage; otherwise an
    /// application message. `false` when a reply must wait for queue room.
    fn deliver(&mut self, now: Instant, a: usize, b: usize) -> bool {
        #[cfg(feature = "acked")]
        if self.acked() {
            let frame = self.rx.get(a..b).unwrap_or_default();
            return match crate::acked::Frame::decode(frame) {
                Ok(crate::acked::Frame::Ack { session, next }) => {
                    self.on_ack(now, session, next);
                    true
                }
                Ok(crate::acked::Frame::Msg(_)) => self.dispatch(now, a + 1, b),
                // A device's own frames, or none at all: counted and
                // dropped. The framing is intact, so the link stays up.
                _ => {
                    self.stats.frames_rejected = self.stats.frames_rejected.wrapping_add(1);
                    self.event(Event::FrameRejected);
                    true
                }
            };
        }
        self.dispatch(now, a, b)
    }

    /// Whether the acknowledged mode is on.
    fn acked(&self) -> bool {
        #[cfg(feature = "acked")]
        return self.config.acked().is_some();
        #[cfg(not(feature = "acked"))]
        false
    }

    /// Whether the message at the head of the queue was acknowledged
    /// (always, without the acknowledged mode: written is done).
    fn head_acknowledged(&self) -> bool {
        #[cfg(feature = "acked")]
        if self.acked() {
            return self
                .queue
                .front()
                .is_some_and(|(f, _)| self.frame_acknowledged(f));
        }
        true
    }

    /// Whether the queued `D` frame `frame` (framing included) was
    /// acknowledged.
    #[cfg(feature = "acked")]
    fn frame_acknowledged(&self, frame: &[u8]) -> bool {
        let p = self.config.framing.prefix_len();
        let seq = frame.get(p + 5..p + 9).and_then(|s| s.first_chunk::<4>());
        seq.is_some_and(|s| crate::acked::seq_before(u32::from_be_bytes(*s), self.ack.acked))
    }

    /// TCP: where the transmit view ends: everything queued, except
    /// (acknowledged mode) an acknowledged message not started on this
    /// connection: the view ends before it, so that it leaves the queue
    /// unsent once what is ahead of it was written.
    fn transmit_end(&self, all: usize) -> usize {
        #[cfg(feature = "acked")]
        if self.acked() {
            let mut at = 0;
            for (frame, heartbeat) in self.queue.iter() {
                if at >= self.written && !heartbeat && self.frame_acknowledged(frame) {
                    return at;
                }
                at += frame.len();
            }
        }
        all
    }

    /// UDP: whether another datagram may go out now (acknowledged mode:
    /// fewer than `max_in_flight` are waiting for their ack).
    fn may_send_another(&self) -> bool {
        #[cfg(feature = "acked")]
        if let Some(a) = self.config.acked() {
            return self.sent < usize::from(a.max_in_flight);
        }
        self.sent == 0
    }

    /// The envelope of the next application message.
    fn data_envelope(&self) -> Envelope {
        #[cfg(feature = "acked")]
        if let Some(a) = self.config.acked() {
            let h = crate::acked::device_header(crate::acked::DATA, a.session, self.ack.next_seq);
            return Envelope(h, h.len());
        }
        Envelope::default()
    }

    /// The envelope of a heartbeat: it tells the server where the device's
    /// window starts (the oldest message not acknowledged).
    fn beat_envelope(&self) -> Envelope {
        #[cfg(feature = "acked")]
        if let Some(a) = self.config.acked() {
            let h = crate::acked::device_header(crate::acked::BEAT, a.session, self.ack.acked);
            return Envelope(h, h.len());
        }
        Envelope::default()
    }

    /// An application message (or reply) was queued with
    /// [`data_envelope`](Self::data_envelope).
    fn data_queued(&mut self) {
        #[cfg(feature = "acked")]
        if self.acked() {
            self.ack.next_seq = self.ack.next_seq.wrapping_add(1);
        }
    }

    /// An application message, at `at` in the queue's bytes, was written
    /// whole: its ack is now awaited.
    fn data_sent(&mut self, now: Instant, at: usize) {
        #[cfg(feature = "acked")]
        if self.acked() {
            // The highest sequence number ever written bounds what an ack
            // may cover.
            let p = at + self.config.framing.prefix_len();
            let seq = self.queue.bytes().get(p + 5..p + 9);
            if let Some(s) = seq.and_then(|s| s.first_chunk::<4>()) {
                let next = u32::from_be_bytes(*s).wrapping_add(1);
                if crate::acked::seq_before(self.ack.written, next) {
                    self.ack.written = next;
                }
            }
            if self.timers.0[Timer::Ack as usize] == u64::MAX {
                let delay = self.ack_delay();
                self.timers.set(Timer::Ack, now, Some(delay));
            }
        }
        let _ = (now, at);
    }
}

#[cfg(feature = "acked")]
impl<H: Handler, const Q: usize, const R: usize> Connection<H, Q, R> {
    /// An ack from the server: every message of `session` before `next`
    /// was delivered.
    fn on_ack(&mut self, now: Instant, session: u32, next: u32) {
        use crate::acked::seq_before;
        let Some(a) = self.config.acked() else {
            return;
        };
        if session != a.session || seq_before(self.ack.written, next) {
            // Another session's (an earlier run of this device), or for
            // messages never written: not ours to believe.
            self.stats.acks_ignored = self.stats.acks_ignored.wrapping_add(1);
            return;
        }
        if !seq_before(self.ack.acked, next) {
            // Nothing new: a duplicate or a late ack.
            return;
        }
        let newly = next.wrapping_sub(self.ack.acked);
        self.stats.messages_acked = self.stats.messages_acked.wrapping_add(newly);
        self.stats.acks = self.stats.acks.wrapping_add(1);
        self.ack.acked = next;
        self.ack.retries = 0;
        self.settle();
        if self.sent > 0 {
            // The next one in flight gets a full timeout from now.
            let delay = self.ack_delay();
            self.timers.set(Timer::Ack, now, Some(delay));
        } else {
            self.timers.stop(Timer::Ack);
        }
    }

    /// The oldest message written is still unacknowledged after its
    /// timeout. UDP sends the window again (up to `max_retransmissions`
    /// times in a row); TCP, whose stream either delivers or breaks, gives
    /// the connection up: the reconnect sends everything unacknowledged.
    fn ack_timed_out(&mut self, now: Instant) {
        let Some(a) = self.config.acked() else {
            return;
        };
        self.stats.ack_timeouts = self.stats.ack_timeouts.wrapping_add(1);
        self.ack.retries = self.ack.retries.saturating_add(1);
        warn!("no ack in time ({})", self.ack.retries);
        if self.config.transport == Transport::Tcp || self.ack.retries > a.max_retransmissions {
            self.drop_connection(now, Disconnect::AckTimeout);
        } else {
            // Go back to the oldest unacknowledged datagram; the timer is
            // armed again, doubled, when it is written.
            self.written = 0;
            self.sent = 0;
            self.sent_bytes = 0;
        }
    }

    /// `ack_timeout`, doubled for each consecutive timeout, plus up to 50 %
    /// jitter drawn from the seed (CoAP's `ACK_RANDOM_FACTOR` 1.5).
    fn ack_delay(&self) -> Duration {
        let Some(a) = self.config.acked() else {
            return Duration::ZERO;
        };
        let base = a.ack_timeout.as_millis() << self.ack.retries.min(8);
        let draw = crate::rng::splitmix64(
            self.config.seed ^ u64::from(self.ack.next_seq) ^ (u64::from(self.ack.retries) << 40),
        );
        let jitter = ((draw >> 32) * (base / 2)) >> 32;
        Duration::from_millis((base + jitter).min(u64::from(u32::MAX)))
    }
}

/// The acknowledged mode's counters.
#[cfg(feature = "acked")]
#[derive(Clone, Copy, Debug, Default)]
struct AckState {
    /// The sequence number of the next message queued.
    next_seq: u32,
    /// Every message before this one was acknowledged.
    acked: u32,
    /// One past the highest sequence number ever written whole: an ack
    /// beyond it is not believed.
    written: u32,
    /// Consecutive ack timeouts.
    retries: u8,
}

/// The bytes a delivery mode puts before a message, and how many.
#[derive(Clone, Copy, Default)]
struct Envelope([u8; ENVELOPE_MAX], usize);

const ENVELOPE_MAX: usize = if cfg!(feature = "acked") { 9 } else { 0 };

impl core::ops::Deref for Envelope {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// Frames `envelope` and `message` into `queue` as one frame of at most
/// `max` bytes, leaving `reserve` bytes free. The one framing writer for
/// messages and heartbeats alike.
fn push<const Q: usize>(
    queue: &mut Queue<Q>,
    framing: Framing,
    envelope: &[u8],
    message: &[u8],
    max: usize,
    reserve: usize,
    heartbeat: bool,
) -> Result<(), QueueError> {
    let body = envelope.len() + message.len();
    // Only checks the message here (an envelope exists only with `Len16` or
    // `Raw`, which have no delimiter): `wrap` writes the prefix.
    framing
        .prefix(message, &mut [0; 2])
        .map_err(|_| QueueError::Unframeable)?;
    if framing == Framing::Len16 && body > usize::from(u16::MAX) {
        return Err(QueueError::Unframeable);
    }
    let len = body + framing.overhead();
    if len > max {
        return Err(QueueError::TooLarge);
    }
    let p = framing.prefix_len();
    let slot = queue
        .reserve_exact(len, reserve)
        .map_err(|_| QueueError::Full)?;
    slot[p..p + envelope.len()].copy_from_slice(envelope);
    slot[p + envelope.len()..p + body].copy_from_slice(message);
    framing.wrap(slot);
    queue.commit(len, heartbeat);
    Ok(())
}

/// `wall_offset` before any wall clock was supplied.
const NO_WALL_CLOCK: i64 = i64::MIN;

#[cfg(all(test, feature = "acked"))]
mod acked_tests;
#[cfg(test)]
mod tests;
