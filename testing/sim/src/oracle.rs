//! The timing oracle: an independent model of the tutorial's connection
//! logic (network wait, flight mode, retries, link reset, heartbeat, idle
//! timeout). Before each call it predicts which timers fire at the call's
//! `now`; the event then moves it like the state machine should; after the
//! call it compares the actions, the status, the failure count, the counters
//! and the next deadline with what the state machine did.

use longlink_core::{Action, Backoff, Config, Delivery, Stats, Status, Transport};

use super::Violation;

/// Where the model thinks the state machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    WaitNet {
        since: u64,
    },
    RadioOff {
        since: u64,
    },
    /// `due` is drawn by the state machine (jitter); `None` until the model
    /// has read and range-checked it after the call that entered backoff.
    Backoff {
        due: Option<u64>,
    },
    /// The `Connect` action was emitted at `since`.
    Connecting {
        since: u64,
    },
    Connected {
        hb_due: Option<u64>,
        idle_due: Option<u64>,
    },
}

impl Phase {
    fn status(self) -> Status {
        match self {
            Phase::WaitNet { .. } => Status::WaitingForNetwork,
            Phase::RadioOff { .. } => Status::RadioOff,
            Phase::Backoff { .. } => Status::BackingOff,
            Phase::Connecting { .. } => Status::Connecting,
            Phase::Connected { .. } => Status::Connected,
        }
    }
}

/// What one call is expected to do.
#[derive(Default, Debug)]
struct Call {
    close: bool,
    reset: bool,
    radio_off: bool,
    radio_on: bool,
    connect: bool,
    heartbeats: u64,
    idle_timeouts: u32,
    connect_timeouts: u32,
    connect_failures: u32,
    connects: u32,
    disconnects: u32,
}

pub(crate) struct Oracle {
    cfg: Config,
    pub(crate) phase: Phase,
    pub(crate) network: bool,
    failures: u16,
    pub(crate) now: u64,
    /// When the last `Connect` was emitted, and whether the network went away
    /// since (which restarts the logic at once, as the tutorial's loop does).
    last_connect: Option<u64>,
    /// When the connection was dropped or the attempt failed (the retry
    /// delay counts from here).
    backoff_from: u64,
    call: Call,
    /// Acknowledged mode: consecutive ack timeouts (the state machine keeps
    /// counting across connections; a window-moving ack resets it).
    ack_retries: u32,
}

impl Oracle {
    pub(crate) fn new(cfg: Config, now: u64) -> Self {
        Oracle {
            cfg,
            phase: Phase::WaitNet { since: now },
            network: false,
            failures: 0,
            now,
            last_connect: None,
            backoff_from: now,
            call: Call::default(),
            ack_retries: 0,
        }
    }

    pub(crate) fn connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    pub(crate) fn connecting(&self) -> bool {
        matches!(self.phase, Phase::Connecting { .. })
    }

    /// The next deadline the state machine must report.
    pub(crate) fn next_due(&self) -> Option<u64> {
        let c = &self.cfg;
        match self.phase {
            Phase::WaitNet { since } => Some(since + c.network_wait.as_millis()),
            Phase::RadioOff { since } => Some(since + c.radio_off.as_millis()),
            Phase::Backoff { due } => due,
            Phase::Connecting { since } => c.connect_timeout.map(|t| since + t.as_millis()),
            Phase::Connected { hb_due, idle_due } => match (hb_due, idle_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn start_connect(&mut self) {
        self.call.connect = true;
        self.phase = Phase::Connecting { since: self.now };
    }

    fn enter_backoff(&mut self) {
        self.backoff_from = self.now;
        self.phase = Phase::Backoff { due: None };
    }

    fn fail(&mut self) {
        self.call.connect_failures += 1;
        self.failures += 1;
        self.call.close = true;
        if self.failures >= self.cfg.max_failures {
            self.call.reset = true;
            self.failures = 0;
        }
        self.enter_backoff();
    }

    fn drop_connection(&mut self) {
        self.call.close = true;
        self.call.disconnects += 1;
        self.enter_backoff();
    }

    /// A call at `now` begins: time moves and due timers fire.
    pub(crate) fn begin(&mut self, now: u64) {
        self.call = Call::default();
        self.now = self.now.max(now);
        let now = self.now;
        let cfg = self.cfg.clone();
        match self.phase {
            Phase::WaitNet { since } if now >= since + cfg.network_wait.as_millis() => {
                self.call.radio_off = true;
                self.phase = Phase::RadioOff { since: now };
            }
            Phase::RadioOff { since } if now >= since + cfg.radio_off.as_millis() => {
                self.call.radio_on = true;
                if self.network {
                    self.start_connect();
                } else {
                    self.phase = Phase::WaitNet { since: now };
                }
            }
            // The retry delay also follows a network loss; if the network is
            // still down when it ends, wait for it.
            Phase::Backoff { due: Some(due) } if now >= due => {
                if self.network {
                    self.start_connect();
                } else {
                    self.phase = Phase::WaitNet { since: now };
                }
            }
            Phase::Connecting { since } => {
                if let Some(ct) = cfg.connect_timeout {
                    if now >= since + ct.as_millis() {
                        self.call.connect_timeouts += 1;
                        self.fail();
                    }
                }
            }
            Phase::Connected { hb_due, idle_due } => {
                let hb_fires = hb_due.is_some_and(|d| now >= d);
                let idle_fires = idle_due.is_some_and(|d| now >= d);
                // Earlier deadline first; on a tie the heartbeat goes first.
                let hb_first = match (hb_due, idle_due) {
                    (Some(h), Some(i)) => h <= i,
                    _ => true,
                };
                let mut next_hb = hb_due;
                if hb_fires && (hb_first || !idle_fires) {
                    self.call.heartbeats += 1;
                    next_hb = cfg.heartbeat_interval.map(|i| now + i.as_millis());
                }
                if idle_fires {
                    self.call.idle_timeouts += 1;
                    self.drop_connection();
                } else {
                    self.phase = Phase::Connected {
                        hb_due: next_hb,
                        idle_due,
                    };
                }
            }
            _ => {}
        }
    }

    pub(crate) fn network(&mut self, up: bool) {
        if up == self.network {
            return;
        }
        self.network = up;
        if up {
            if let Phase::WaitNet { .. } = self.phase {
                self.start_connect();
            }
            return;
        }
        self.failures = 0;
        // As the tutorial: close, pause the retry delay, then look at the
        // network again.
        match self.phase {
            Phase::Connected { .. } => self.drop_connection(),
            Phase::Connecting { .. } => {
                self.call.close = true;
                self.enter_backoff();
            }
            Phase::Backoff { .. } | Phase::WaitNet { .. } | Phase::RadioOff { .. } => {}
        }
    }

    /// `handle_connected`; returns whether it must succeed.
    pub(crate) fn connect_ok(&mut self) -> bool {
        if !self.connecting() {
            return false;
        }
        self.call.connects += 1;
        self.failures = 0;
        if self.cfg.transport == Transport::Udp {
            // A new UDP socket gets the whole retransmission schedule.
            self.ack_retries = 0;
        }
        let now = self.now;
        let hb_due = self.cfg.heartbeat_interval.map(|i| {
            self.call.heartbeats += 1;
            now + i.as_millis()
        });
        let idle_due = self.cfg.idle_timeout.map(|i| now + i.as_millis());
        self.phase = Phase::Connected { hb_due, idle_due };
        true
    }

    /// `handle_connect_failed`; returns whether it must succeed.
    pub(crate) fn connect_failed(&mut self) -> bool {
        if !self.connecting() {
            return false;
        }
        self.fail();
        true
    }

    /// `handle_closed` / `handle_io_error`; returns whether it must succeed.
    pub(crate) fn lost(&mut self) -> bool {
        if self.connecting() {
            self.fail();
            true
        } else if self.connected() {
            self.drop_connection();
            true
        } else {
            false
        }
    }

    /// The state machine rejected an inbound frame: over TCP it drops the
    /// connection (the stream is out of step); over UDP only the datagram is
    /// dropped. It was a sign of life when it arrived (`activity`, then),
    /// not when it is rejected: a datagram whose first frames waited for
    /// queue room is rejected later.
    /// Returns whether only the datagram was dropped.
    pub(crate) fn rejected(&mut self) -> bool {
        if self.cfg.transport == Transport::Tcp {
            self.drop_connection();
            false
        } else {
            true
        }
    }

    /// The socket took `n` bytes: with `heartbeat_when_idle`, the link is
    /// not idle, so the next heartbeat is an interval away.
    pub(crate) fn written(&mut self, n: usize) {
        if n == 0 || !self.cfg.heartbeat_when_idle {
            return;
        }
        if let Phase::Connected { idle_due, .. } = self.phase {
            let hb_due = self
                .cfg
                .heartbeat_interval
                .map(|i| self.now + i.as_millis());
            self.phase = Phase::Connected { hb_due, idle_due };
        }
    }

    /// Inbound data reset the idle timer.
    pub(crate) fn activity(&mut self) {
        if let Phase::Connected { hb_due, .. } = self.phase {
            let idle_due = self.cfg.idle_timeout.map(|i| self.now + i.as_millis());
            self.phase = Phase::Connected { hb_due, idle_due };
        }
    }

    fn expected_actions(&self) -> Vec<Action> {
        let c = &self.call;
        let transport: Transport = self.cfg.transport;
        [
            (c.close, Action::Close),
            (c.reset, Action::ResetLink),
            (c.radio_off, Action::RadioOff),
            (c.radio_on, Action::RadioOn),
            (c.connect, Action::Connect { transport }),
        ]
        .into_iter()
        .filter_map(|(on, a)| on.then_some(a))
        .collect()
    }

    /// After the call: compare everything observable with the model.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn end(
        &mut self,
        what: &str,
        actions: &[Action],
        status: Status,
        failures: u16,
        before: &Stats,
        after: &Stats,
        heartbeats_issued: u64,
        deadline: Option<u64>,
    ) -> Result<(), Violation> {
        let now = self.now;
        // Acknowledged mode: the ack timer is not modelled to the
        // millisecond (its jitter hashes the sequence number), so its
        // firings are read from the counters: timers fire only in
        // `handle_timeout` calls in the simulation, after every other timer
        // due at the same time, so their effect comes last. TCP gives the
        // connection up at once; UDP after `max_retransmissions`.
        let acked = match self.cfg.delivery {
            Delivery::Acked(a) => Some(a),
            Delivery::Socket => None,
        };
        if let Some(a) = acked {
            for _ in 0..after.ack_timeouts - before.ack_timeouts {
                if !self.connected() {
                    return Err(Violation::new(
                        now,
                        format!("{what}: an ack timeout while not connected"),
                    ));
                }
                self.ack_retries += 1;
                if self.cfg.transport == Transport::Tcp
                    || self.ack_retries > u32::from(a.max_retransmissions)
                {
                    self.drop_connection();
                }
            }
            if after.acks != before.acks {
                self.ack_retries = 0;
            }
        }
        let expected = self.expected_actions();
        if actions != expected.as_slice() {
            return Err(Violation::new(
                now,
                format!(
                    "{what}: actions {actions:?}, expected {expected:?} (model {:?})",
                    self.phase
                ),
            ));
        }
        if self.call.connect {
            // Attempts at least retry_delay apart, a flapping network
            // included.
            if let Some(prev) = self.last_connect {
                if now - prev < self.cfg.retry_delay.as_millis() {
                    return Err(Violation::new(
                        now,
                        format!(
                            "connect attempts at {prev} and {now}: closer than {:?}",
                            self.cfg.retry_delay
                        ),
                    ));
                }
            }
            self.last_connect = Some(now);
        }
        if let Phase::Backoff { due: None } = self.phase {
            let base = self.cfg.retry_delay.as_millis();
            let cap = match self.cfg.backoff {
                Backoff::Fixed => base,
                Backoff::Exponential { max } => max.as_millis(),
            };
            let delay = deadline.map(|d| d.saturating_sub(self.backoff_from));
            if !delay.is_some_and(|d| (base..=cap).contains(&d)) {
                return Err(Violation::new(
                    now,
                    format!("retry delay {delay:?} outside [{base}, {cap}] ms"),
                ));
            }
            self.phase = Phase::Backoff { due: deadline };
        }
        if status != self.phase.status() {
            return Err(Violation::new(
                now,
                format!("{what}: status {status:?}, model {:?}", self.phase),
            ));
        }
        if failures != self.failures {
            return Err(Violation::new(
                now,
                format!("{failures} consecutive failures, model {}", self.failures),
            ));
        }
        if self.network && matches!(self.phase, Phase::WaitNet { .. }) {
            return Err(Violation::new(now, "network up but waiting for it".into()));
        }
        let c = &self.call;
        let counters = [
            (
                "connect_attempts",
                after.connect_attempts - before.connect_attempts,
                u32::from(c.connect),
            ),
            ("connects", after.connects - before.connects, c.connects),
            (
                "connect_failures",
                after.connect_failures - before.connect_failures,
                c.connect_failures,
            ),
            (
                "connect_timeouts",
                after.connect_timeouts - before.connect_timeouts,
                c.connect_timeouts,
            ),
            (
                "disconnects",
                after.disconnects - before.disconnects,
                c.disconnects,
            ),
            (
                "idle_timeouts",
                after.idle_timeouts - before.idle_timeouts,
                c.idle_timeouts,
            ),
            (
                "link_resets",
                after.link_resets - before.link_resets,
                u32::from(c.reset),
            ),
            (
                "radio_cycles",
                after.radio_cycles - before.radio_cycles,
                u32::from(c.radio_off),
            ),
        ];
        for (name, got, want) in counters {
            if got != want {
                return Err(Violation::new(
                    now,
                    format!("{what}: stats.{name} moved by {got}, model expects {want}"),
                ));
            }
        }
        if heartbeats_issued != c.heartbeats {
            return Err(Violation::new(
                now,
                format!(
                    "{what}: {heartbeats_issued} heartbeats issued, model expects {} (model {:?})",
                    c.heartbeats, self.phase
                ),
            ));
        }
        // The deadline: exactly the model's (so every cadence is exact), and
        // never at or before now. Acknowledged mode, connected: an ack timer
        // may come first, never after the model's deadline.
        let ack_timer_first = acked.is_some()
            && self.connected()
            && deadline.is_some()
            && self
                .next_due()
                .is_none_or(|m| deadline.is_some_and(|d| d < m));
        if deadline != self.next_due() && !ack_timer_first {
            return Err(Violation::new(
                now,
                format!(
                    "{what}: deadline {deadline:?}, model {:?} ({:?})",
                    self.next_due(),
                    self.phase
                ),
            ));
        }
        if deadline.is_some_and(|d| d <= now) {
            return Err(Violation::new(
                now,
                format!("deadline {deadline:?} in the past"),
            ));
        }
        Ok(())
    }
}
