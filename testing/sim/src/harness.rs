//! [`Harness`]: the state machine with a pretend socket around it, the timing
//! oracle and the message ledger. Every method is one call into the core,
//! followed by every check.

use longlink_core::time::Instant;
use longlink_core::{
    Action, Config, Connection, Context, Delivery, Error, Framing, QueueError, Stats, Status,
    Transport, MIN_PLAUSIBLE_UNIX_MS,
};

use crate::ledger::{Class, Ledger, HEADER};
use crate::oracle::Oracle;
use crate::{Scenario, Violation};

/// One line of a transcript: something the state machine asked for or the
/// socket carried, at a virtual time in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An action from `poll_action`.
    Action(Action),
    /// Bytes the socket took from `poll_transmit`.
    Wrote(Vec<u8>),
    /// Bytes handed to the state machine.
    Read(Vec<u8>),
}

/// The driver's view of its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// No socket.
    Closed,
    /// `Action::Connect` was taken; the outcome is not known yet.
    Connecting,
    /// Established.
    Open,
}

/// The core with the scenario's handler, a pretend socket, and the checks
/// (see the [crate docs](crate)): for driving a `Connection` call by call,
/// from a fuzz input or a test, with every invariant checked after every
/// call. [`Sim`](crate::Sim) drives one through a seeded world.
pub struct Harness<S: Scenario, const Q: usize, const R: usize> {
    conn: Connection<S::Handler, Q, R>,
    scenario: S,
    cfg: Config,
    oracle: Oracle,
    ledger: Ledger,
    socket: Socket,
    actions: Vec<Action>,
    stats: Stats,
    transcript: Option<Vec<(u64, Event)>>,
    /// What the socket took in the last [`write`](Self::write).
    last_written: Vec<u8>,
}

/// The acknowledged mode's session, if it is on.
fn session(cfg: &Config) -> Option<u32> {
    match cfg.delivery {
        Delivery::Acked(a) => Some(a.session),
        Delivery::Socket => None,
    }
}

/// Bytes the delivery mode puts before every message.
fn envelope(cfg: &Config) -> usize {
    if session(cfg).is_some() {
        longlink_core::acked::DEVICE_HEADER
    } else {
        0
    }
}

/// Runs `f`; a panic in it (the handler's or the state machine's) becomes
/// a violation, so the transcript up to it is kept.
fn catch<T>(what: &str, now: u64, f: impl FnOnce() -> T) -> Result<T, Violation> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".into());
        Violation::new(now, format!("{what} panicked: {text}"))
    })
}

fn heartbeats_issued(stats: &Stats, pending: usize) -> u64 {
    u64::from(stats.heartbeats_sent) + u64::from(stats.heartbeats_skipped) + pending as u64
}

impl<S: Scenario, const Q: usize, const R: usize> Harness<S, Q, R> {
    /// A state machine with the scenario's handler, created at time 0;
    /// `transcript` records every action and every byte moved.
    pub fn new(cfg: Config, mut scenario: S, transcript: bool) -> Result<Self, Violation> {
        let conn = Connection::new(cfg.clone(), scenario.handler(), Instant::ZERO)
            .map_err(|e| Violation::new(0, format!("config refused: {e}")))?;
        let hb_slot = if cfg.heartbeat_interval.is_some() {
            HEADER + cfg.heartbeat_payload.len() + cfg.framing.overhead() + envelope(&cfg)
        } else {
            0
        };
        let h = Harness {
            last_written: Vec::new(),
            conn,
            oracle: Oracle::new(cfg.clone(), 0),
            ledger: Ledger::new(
                cfg.framing,
                cfg.transport,
                Q,
                R,
                &cfg.heartbeat_payload,
                hb_slot,
                session(&cfg),
            ),
            cfg,
            scenario,
            socket: Socket::Closed,
            actions: Vec::new(),
            stats: Stats::default(),
            transcript: transcript.then(Vec::new),
        };
        if h.deadline() != h.oracle.next_due() {
            return Err(Violation::new(0, "first deadline".into()));
        }
        Ok(h)
    }

    /// The virtual time of the last call (ms).
    pub fn now(&self) -> u64 {
        self.oracle.now
    }

    /// The state machine's next deadline (ms).
    pub fn deadline(&self) -> Option<u64> {
        self.conn.poll_timeout().map(Instant::as_millis)
    }

    /// The socket as the driver sees it.
    pub fn socket(&self) -> Socket {
        self.socket
    }

    /// The state machine's status.
    pub fn status(&self) -> Status {
        self.conn.status()
    }

    /// The config in use.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The state machine, for inspection.
    pub fn connection(&self) -> &Connection<S::Handler, Q, R> {
        &self.conn
    }

    /// The scenario.
    pub fn scenario(&mut self) -> &mut S {
        &mut self.scenario
    }

    /// Actions emitted since the last call of this method.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// The transcript so far (empty unless recording).
    pub fn transcript(&self) -> &[(u64, Event)] {
        self.transcript.as_deref().unwrap_or_default()
    }

    /// Whether the state machine offers bytes to write.
    pub fn wants_to_write(&self) -> bool {
        self.conn.poll_transmit().is_some()
    }

    /// Room in the receive buffer (0: do not read now).
    pub fn receive_room(&mut self) -> usize {
        self.conn.receive_buffer().len()
    }

    /// App messages enqueued and not yet written whole (acknowledged mode:
    /// messages, replies included, not yet acknowledged).
    pub fn apps_owed(&self) -> usize {
        self.ledger.apps_owed()
    }

    /// Whether the acknowledged mode is on.
    pub fn acked(&self) -> bool {
        self.ledger.acked.is_some()
    }

    /// What the socket took in the last [`write`](Self::write).
    pub fn last_written(&self) -> &[u8] {
        &self.last_written
    }

    /// Bytes the socket took so far.
    pub fn bytes_out(&self) -> u64 {
        self.ledger.bytes_out
    }

    /// Acknowledged mode: one past the highest seq written whole so far,
    /// and every seq before the second was acknowledged to the device.
    pub fn acked_window(&self) -> (u32, u32) {
        self.ledger
            .acked
            .as_ref()
            .map_or((0, 0), |b| (b.written_max, b.acked))
    }

    /// Acknowledged mode: the server application got `D` frame `seq` (its
    /// `Dedup` said deliver); it must be the next one end to end.
    pub fn server_delivered(&mut self, seq: u32, payload: &[u8]) -> Result<(), Violation> {
        let now = self.now();
        self.ledger
            .server_delivered(seq, payload)
            .map_err(|m| Violation::new(now, m))?;
        self.scenario
            .delivered(payload)
            .map_err(|m| Violation::new(now, format!("Scenario::delivered: {m}")))
    }

    /// Replies owed to handled requests, not yet written whole (socket
    /// mode; in the acknowledged mode they count in
    /// [`apps_owed`](Self::apps_owed)).
    pub fn replies_owed(&self) -> usize {
        self.ledger.owed_of(Class::Reply)
    }

    /// Requests delivered on this connection and not yet handled.
    pub fn requests_unhandled(&self) -> usize {
        self.ledger.inbox.len()
    }

    /// App messages and replies written whole so far.
    pub fn delivered(&self) -> (u64, u64) {
        (self.ledger.apps_delivered, self.ledger.replies_delivered)
    }

    /// Frames cut on the wire by a disconnect so far.
    pub fn cut_frames(&self) -> u64 {
        self.ledger.cut_frames
    }

    fn record(&mut self, e: Event) {
        let now = self.now();
        if let Some(t) = self.transcript.as_mut() {
            t.push((now, e));
        }
    }

    fn pending_heartbeats(&self) -> usize {
        self.conn.queued_frames().filter(|(_, hb)| *hb).count()
    }

    /// What the heartbeats issued in a call are counted from. Socket mode:
    /// sent + skipped + queued. Acknowledged mode, where a heartbeat written
    /// behind an unacknowledged message stays queued (and is counted as
    /// sent again when a retransmission repeats it): skipped + queued, and
    /// a call pushes at most one heartbeat and (timers and events being
    /// separate calls) never also drops one.
    fn hb_mark(&self, st: &Stats) -> u64 {
        if self.ledger.acked.is_some() {
            u64::from(st.heartbeats_skipped) + self.pending_heartbeats() as u64
        } else {
            heartbeats_issued(st, self.pending_heartbeats())
        }
    }

    /// Runs `f` as one call at `now` with the oracle's predictions around it.
    fn call<T>(
        &mut self,
        what: &str,
        now: u64,
        event: impl FnOnce(&mut Oracle) -> bool,
        f: impl FnOnce(&mut Connection<S::Handler, Q, R>, Instant) -> T,
    ) -> Result<(bool, T), Violation> {
        let before = self.stats;
        let hb_before = self.hb_mark(&before);
        self.oracle.begin(now);
        let expect_ok = event(&mut self.oracle);
        let conn = &mut self.conn;
        let out = catch(what, now, || f(conn, Instant::from_millis(now)))?;
        self.after(what, &before, hb_before)?;
        Ok((expect_ok, out))
    }

    /// Everything checked after every call.
    fn after(&mut self, what: &str, before: &Stats, hb_before: u64) -> Result<(), Violation> {
        let now = self.now();
        let v = |m: String| Violation::new(now, format!("{what}: {m}"));
        let st = *self.conn.stats();
        // Inbound: handled messages and their replies, acks and junk,
        // rejections.
        let scenario = &mut self.scenario;
        let mut model = |m: &[u8], at: u64, unix_time_ms: Option<u64>| {
            let cx = Context {
                now: Instant::from_millis(at),
                unix_time_ms,
            };
            scenario.reply(m, &cx)
        };
        let junk = self
            .ledger
            .handle(st.messages_in - before.messages_in, now, &mut model)
            .map_err(v)?;
        let rejected = (st.frames_rejected - before.frames_rejected)
            .checked_sub(junk)
            .ok_or_else(|| v(format!("{junk} junk frames, but fewer rejected")))?;
        if rejected > 0 {
            if rejected > 1 || !self.ledger.inbox.is_empty() || !self.ledger.bad {
                return Err(v(format!(
                    "frame rejected, but the reference decoder has {} messages before it (bad frame: {})",
                    self.ledger.inbox.len(),
                    self.ledger.bad
                )));
            }
            self.ledger.rejected += 1;
            if self.oracle.rejected() {
                self.ledger.datagram_dropped();
            }
        }
        let actions: Vec<Action> = core::iter::from_fn(|| self.conn.poll_action()).collect();
        let status = self.conn.status();
        self.oracle.end(
            what,
            &actions,
            status,
            self.conn.consecutive_failures(),
            before,
            &st,
            self.hb_mark(&st).saturating_sub(hb_before),
            self.deadline(),
        )?;
        for a in &actions {
            self.record(Event::Action(*a));
            match a {
                Action::Connect { .. } => self.socket = Socket::Connecting,
                Action::Close => {
                    if self.socket == Socket::Open {
                        self.ledger.connection_closed().map_err(v)?;
                    }
                    self.socket = Socket::Closed;
                }
                Action::ResetLink | Action::RadioOff | Action::RadioOn => {}
            }
        }
        self.actions.extend_from_slice(&actions);
        if self.oracle.connected() {
            if self.ledger.inbox.is_empty() && self.ledger.bad {
                return Err(v("a bad frame was left unrejected".into()));
            }
            if !self.ledger.inbox.is_empty() && !self.conn.receive_buffer().is_empty() {
                return Err(v(format!(
                    "{} complete messages unhandled (first {:?}), yet the state machine reads on",
                    self.ledger.inbox.len(),
                    self.ledger
                        .inbox
                        .front()
                        .map(|(m, _, _)| m.escape_ascii().to_string())
                )));
            }
        }
        self.ledger
            .check_queue(self.conn.queued_frames(), Q)
            .map_err(v)?;
        let l = &self.ledger;
        let counters = [
            (
                "messages_in",
                u64::from(st.messages_in),
                u64::from(l.handled),
            ),
            (
                "messages_out",
                u64::from(st.messages_out),
                u64::from(l.frames_out),
            ),
            (
                "heartbeats_sent",
                u64::from(st.heartbeats_sent),
                u64::from(l.heartbeats_out),
            ),
            ("bytes_out", st.bytes_out, l.bytes_out),
            ("bytes_in", st.bytes_in, l.bytes_in),
            (
                "frames_rejected",
                u64::from(st.frames_rejected),
                u64::from(l.rejected),
            ),
            (
                "replies_dropped",
                u64::from(st.replies_dropped),
                u64::from(l.replies_dropped),
            ),
            ("rx_discarded", u64::from(st.rx_discarded), l.rx_discarded),
            (
                "queue_full",
                u64::from(st.queue_full),
                u64::from(l.queue_full),
            ),
        ];
        for (name, got, want) in counters {
            if got != want {
                return Err(v(format!(
                    "stats.{name} = {got}, the simulation counted {want}"
                )));
            }
        }
        if let Some(b) = &self.ledger.acked {
            let acked_counters = [
                (
                    "acks_ignored",
                    u64::from(st.acks_ignored),
                    u64::from(b.acks_ignored),
                ),
                (
                    "messages_acked",
                    u64::from(st.messages_acked),
                    u64::from(b.messages_acked),
                ),
            ];
            for (name, got, want) in acked_counters {
                if got != want {
                    return Err(v(format!(
                        "stats.{name} = {got}, the simulation counted {want}"
                    )));
                }
            }
        }
        if self.socket == Socket::Open && status != Status::Connected {
            return Err(v("socket open but not connected".into()));
        }
        for m in std::mem::take(&mut self.ledger.arrived) {
            self.scenario
                .delivered(&m)
                .map_err(|e| v(format!("Scenario::delivered: {e}")))?;
        }
        self.scenario.check(self.conn.handler()).map_err(v)?;
        self.stats = st;
        Ok(())
    }

    fn expect(&self, what: &str, ok: bool, r: Result<(), Error>) -> Result<(), Violation> {
        let want = if ok { Ok(()) } else { Err(Error::InvalidState) };
        if r == want {
            Ok(())
        } else {
            Err(Violation::new(
                self.now(),
                format!("{what} returned {r:?}, expected {want:?}"),
            ))
        }
    }

    /// Time passes to `now`.
    ///
    /// Acknowledged mode: never past the deadline (the oracle reads the
    /// ack timer's firings from the counters, so the timers due in one
    /// call must be those of one instant; see the oracle). A driver that
    /// wants to jump calls at each deadline on the way.
    pub fn advance(&mut self, now: u64) -> Result<(), Violation> {
        if self.acked() && self.deadline().is_some_and(|d| d < now) {
            return Err(Violation::new(
                self.now(),
                format!("advance to {now} past the deadline {:?}", self.deadline()),
            ));
        }
        self.call("handle_timeout", now, |_| true, |c, t| c.handle_timeout(t))?;
        Ok(())
    }

    /// The network went up or down.
    pub fn network(&mut self, now: u64, up: bool) -> Result<(), Violation> {
        self.call(
            "handle_network",
            now,
            |o| {
                o.network(up);
                true
            },
            |c, t| c.handle_network(t, up),
        )?;
        Ok(())
    }

    /// The connect attempt succeeded.
    pub fn connect_ok(&mut self, now: u64) -> Result<(), Violation> {
        let (ok, r) = self.call("handle_connected", now, Oracle::connect_ok, |c, t| {
            c.handle_connected(t)
        })?;
        self.expect("handle_connected", ok, r)?;
        if ok {
            self.socket = Socket::Open;
        }
        Ok(())
    }

    /// The connect attempt failed (refused, DNS, unreachable).
    pub fn connect_failed(&mut self, now: u64) -> Result<(), Violation> {
        let (ok, r) = self.call(
            "handle_connect_failed",
            now,
            Oracle::connect_failed,
            |c, t| c.handle_connect_failed(t),
        )?;
        self.expect("handle_connect_failed", ok, r)
    }

    /// The peer closed the connection (or an attempt in progress).
    pub fn peer_closed(&mut self, now: u64) -> Result<(), Violation> {
        let (ok, r) = self.call("handle_closed", now, Oracle::lost, |c, t| {
            c.handle_closed(t)
        })?;
        self.expect("handle_closed", ok, r)
    }

    /// A socket error.
    pub fn io_error(&mut self, now: u64) -> Result<(), Violation> {
        let (ok, r) = self.call("handle_io_error", now, Oracle::lost, |c, t| {
            c.handle_io_error(t)
        })?;
        self.expect("handle_io_error", ok, r)
    }

    /// A wall-clock reading.
    pub fn wall_clock(&mut self, now: u64, unix_ms: u64) -> Result<(), Violation> {
        let (_, r) = self.call(
            "handle_wall_clock",
            now,
            |_| true,
            |c, t| c.handle_wall_clock(t, unix_ms),
        )?;
        let t = self.now();
        let offset = i128::from(unix_ms) - i128::from(t);
        let plausible =
            unix_ms >= MIN_PLAUSIBLE_UNIX_MS && i64::try_from(offset).is_ok_and(|o| o != i64::MIN);
        if r.is_ok() != plausible {
            return Err(Violation::new(t, format!("wall clock {unix_ms}: {r:?}")));
        }
        if plausible {
            self.ledger.wall_offset = Some(offset);
        }
        Ok(())
    }

    /// The application enqueues `msg`. Returns the state machine's answer
    /// after checking it against the framing's rules and the queue's
    /// arithmetic.
    pub fn enqueue(&mut self, now: u64, msg: Vec<u8>) -> Result<Result<(), QueueError>, Violation> {
        // enqueue runs no timers; a timer call first keeps `now` current.
        self.advance(now)?;
        // The queue's arithmetic, from its documented layout.
        let framing = self.cfg.framing;
        let env = envelope(&self.cfg);
        let hb_slot = if self.cfg.heartbeat_interval.is_some() {
            HEADER + self.cfg.heartbeat_payload.len() + framing.overhead() + env
        } else {
            0
        };
        let frame_len = msg.len() + framing.overhead() + env;
        let used: usize = self
            .conn
            .queued_frames()
            .map(|(f, _)| f.len() + HEADER)
            .sum();
        let reserve = if self.pending_heartbeats() > 0 {
            0
        } else {
            hb_slot
        };
        let unframeable = match framing {
            Framing::Lines => msg.contains(&b'\n') || msg.last() == Some(&b'\r'),
            Framing::Len16 => msg.len() + env > usize::from(u16::MAX),
            Framing::Raw => false,
        };
        let expected = if framing == Framing::Raw && msg.is_empty() {
            // Nothing on the wire would say a message was there.
            Err(QueueError::Empty)
        } else if unframeable {
            Err(QueueError::Unframeable)
        } else if frame_len > Q.saturating_sub(hb_slot + HEADER) {
            Err(QueueError::TooLarge)
        } else if used + HEADER + frame_len + reserve > Q {
            Err(QueueError::Full)
        } else {
            Ok(())
        };
        if expected == Err(QueueError::Full) {
            self.ledger.queue_full += 1;
        }
        if expected.is_ok() {
            self.ledger.app_enqueued(msg.clone());
        }
        let conn = &mut self.conn;
        let r = catch("enqueue", now, || conn.enqueue(&msg))?;
        if r != expected {
            return Err(Violation::new(
                now,
                format!(
                    "enqueue of {} bytes: {r:?}, expected {expected:?}",
                    msg.len()
                ),
            ));
        }
        let before = self.stats;
        let hb = self.hb_mark(&before);
        self.oracle.begin(now);
        self.after("enqueue", &before, hb)?;
        Ok(r)
    }

    /// The socket takes up to `max` bytes of what `poll_transmit` offers
    /// (UDP: the whole datagram, or nothing when `max` is smaller). Returns
    /// the bytes written.
    pub fn write(&mut self, now: u64, max: usize) -> Result<usize, Violation> {
        self.advance(now)?;
        self.last_written.clear();
        let Some(offer) = self.conn.poll_transmit().map(<[u8]>::to_vec) else {
            // Acknowledged mode: legal while a message written waits for
            // its ack (the ack timer then runs), never otherwise.
            let waiting = self
                .ledger
                .acked
                .as_ref()
                .is_some_and(|b| b.acked != b.written_max);
            if self.oracle.connected() && self.conn.queued() > 0 && !waiting {
                return Err(Violation::new(
                    now,
                    "queued data but nothing to transmit".into(),
                ));
            }
            return Ok(0);
        };
        if !self.oracle.connected() {
            return Err(Violation::new(
                now,
                "transmit offered while not connected".into(),
            ));
        }
        let n = if self.cfg.transport == Transport::Udp {
            if max >= offer.len() {
                offer.len()
            } else {
                0
            }
        } else {
            max.min(offer.len())
        };
        let heads: Vec<bool> = self.conn.queued_frames().map(|(_, hb)| hb).collect();
        if let Err(m) = self.ledger.written(&offer[..n], &heads) {
            return Err(Violation::new(now, m));
        }
        if n > 0 {
            self.record(Event::Wrote(offer[..n].to_vec()));
        }
        self.last_written.extend_from_slice(&offer[..n]);
        let (_, r) = self.call(
            "handle_written",
            now,
            |o| {
                o.written(n);
                true
            },
            |c, t| c.handle_written(t, n),
        )?;
        if r.is_err() {
            return Err(Violation::new(
                now,
                format!("handle_written({n}) of {}: {r:?}", offer.len()),
            ));
        }
        Ok(n)
    }

    /// TCP: offers `data` to the state machine; returns how much it took.
    pub fn read_stream(&mut self, now: u64, data: &[u8]) -> Result<usize, Violation> {
        self.advance(now)?;
        let room = self.conn.receive_buffer().len();
        let connected = self.oracle.connected();
        let n = data.len().min(room);
        if connected {
            self.ledger.delivered_stream(&data[..n]);
            if n > 0 {
                self.record(Event::Read(data[..n].to_vec()));
            }
        }
        let (_, r) = self.call(
            "handle_received_bytes",
            now,
            |o| {
                if n > 0 {
                    o.activity();
                }
                true
            },
            |c, t| c.handle_received_bytes(t, data),
        )?;
        let want = if connected {
            Ok(n)
        } else {
            Err(Error::InvalidState)
        };
        if r != want {
            return Err(Violation::new(
                now,
                format!(
                    "read of {} into {room}: {r:?}, expected {want:?}",
                    data.len()
                ),
            ));
        }
        Ok(n)
    }

    /// UDP: one datagram arrives; a socket truncates it to the buffer.
    /// Returns false (and takes nothing) while the state machine does not
    /// read.
    pub fn read_datagram(&mut self, now: u64, d: &[u8]) -> Result<bool, Violation> {
        self.advance(now)?;
        if self.conn.receive_buffer().is_empty() {
            return Ok(false);
        }
        let k = d.len().min(R);
        self.ledger.delivered_datagram(&d[..k]);
        self.record(Event::Read(d[..k].to_vec()));
        let (_, r) = self.call(
            "handle_received",
            now,
            |o| {
                o.activity();
                true
            },
            |c, t| {
                c.receive_buffer()[..k].copy_from_slice(&d[..k]);
                c.handle_received(t, k)
            },
        )?;
        if r.is_err() {
            return Err(Violation::new(now, format!("datagram of {k}: {r:?}")));
        }
        Ok(true)
    }

    /// A monotonic clock that went backwards: the state machine must clamp.
    pub fn clock_back(&mut self, by: u64) -> Result<(), Violation> {
        let t = self.now().saturating_sub(by);
        let before = self.stats;
        let hb = self.hb_mark(&before);
        self.conn.handle_timeout(Instant::from_millis(t));
        let now = self.now();
        self.oracle.begin(now);
        self.after("handle_timeout(backwards)", &before, hb)
    }

    /// Final checks once the run has drained: nothing owed, nothing unhandled.
    pub fn finish(&self) -> Result<(), Violation> {
        let now = self.now();
        if let Some(b) = &self.ledger.acked {
            if b.server_delivered as usize != b.by_seq.len() {
                return Err(Violation::new(
                    now,
                    format!(
                        "the server application got {} of {} messages",
                        b.server_delivered,
                        b.by_seq.len()
                    ),
                ));
            }
        }
        if let Some((class, m)) = self.ledger.owed.front() {
            return Err(Violation::new(
                now,
                format!(
                    "{} messages never delivered, first {class:?} {:?}",
                    self.ledger.owed.len(),
                    String::from_utf8_lossy(m)
                ),
            ));
        }
        if !self.ledger.inbox.is_empty() {
            return Err(Violation::new(
                now,
                format!("{} requests never handled", self.ledger.inbox.len()),
            ));
        }
        Ok(())
    }
}
