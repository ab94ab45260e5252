//! What the state machine tells its driver besides actions: [`Event`]s, read
//! with [`Connection::poll_event`](crate::Connection::poll_event).
//!
//! Drivers forward them to the application (a log, a network LED) instead of
//! working out what changed themselves: the core took the decision, so the
//! core says what it was and why.

/// Where the connection is, for a status LED or a log (the tutorial's
/// `netLed`). Also the state machine's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// Waiting for the network to come up (no IP yet).
    WaitingForNetwork,
    /// The radio is off for a flight-mode cycle.
    RadioOff,
    /// A connect attempt is in progress.
    Connecting,
    /// Waiting before the next connect attempt.
    BackingOff,
    /// Connected to the server.
    Connected,
}

/// Why a connect attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectFailure {
    /// The driver reported it ([`handle_connect_failed`](crate::Connection::handle_connect_failed):
    /// refused, unreachable, name lookup or TLS handshake failed).
    Failed,
    /// [`Config::connect_timeout`](crate::Config::connect_timeout) passed.
    TimedOut,
    /// The network went away during the attempt.
    NetworkLost,
}

/// Why an established connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Disconnect {
    /// The peer closed it (TCP end of stream).
    PeerClosed,
    /// A send or receive failed.
    IoError,
    /// Nothing was received for [`Config::idle_timeout`](crate::Config::idle_timeout).
    IdleTimeout,
    /// The network went away.
    NetworkLost,
    /// The server sent a TCP frame that cannot be decoded (too large for the
    /// receive buffer): the stream is out of step.
    BadFrame,
    /// Acknowledged mode: the server did not acknowledge in time (TCP), or
    /// after `max_retransmissions` retransmissions (UDP).
    AckTimeout,
}

/// Something the state machine did or decided.
///
/// Between two calls of [`poll_event`](crate::Connection::poll_event) each
/// kind is reported at most once (with the latest reason), in the order
/// below, which is the order they can happen in; [`Stats`](crate::Stats)
/// counts every occurrence. [`Event::Status`] comes last and is
/// level-triggered: it reports the status *now*, whenever it differs from
/// the last one reported (a change and its reversal between two polls show
/// as nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// The connection ended; the next attempt follows the retry delay.
    Disconnected(Disconnect),
    /// A connect attempt failed; the next one follows the retry delay.
    ConnectFailed(ConnectFailure),
    /// [`Config::max_failures`](crate::Config::max_failures) consecutive
    /// connect failures: the data link is being reset
    /// ([`Action::ResetLink`](crate::Action::ResetLink)).
    LinkReset,
    /// No network within [`Config::network_wait`](crate::Config::network_wait):
    /// a flight-mode cycle starts ([`Action::RadioOff`](crate::Action::RadioOff)).
    RadioCycle,
    /// A connect attempt succeeded.
    Connected,
    /// An inbound frame was rejected: larger than the receive buffer, or cut
    /// off at the end of a datagram. Over TCP the connection also ends
    /// ([`Disconnect::BadFrame`]); over UDP only the datagram is dropped.
    FrameRejected,
    /// A reply was dropped: it can never fit in the queue, or cannot be
    /// framed.
    ReplyDropped,
    /// The status is now this (also reported once at start).
    Status(Status),
}

/// Pending events, one bit per kind (in report order) and the latest
/// reasons: the same mechanism as the pending actions, so nothing can
/// overflow and a driver that polls late still sees every kind.
pub(crate) struct Events {
    pending: u8,
    disconnect: Disconnect,
    connect_failure: ConnectFailure,
    /// The status the caller last saw; `None` before the first report.
    reported: Option<Status>,
}

const DISCONNECTED: u8 = 1 << 0;
const CONNECT_FAILED: u8 = 1 << 1;
const LINK_RESET: u8 = 1 << 2;
const RADIO_CYCLE: u8 = 1 << 3;
const CONNECTED: u8 = 1 << 4;
const FRAME_REJECTED: u8 = 1 << 5;
const REPLY_DROPPED: u8 = 1 << 6;

impl Events {
    pub(crate) const fn new() -> Self {
        Events {
            pending: 0,
            disconnect: Disconnect::PeerClosed,
            connect_failure: ConnectFailure::Failed,
            reported: None,
        }
    }

    pub(crate) fn push(&mut self, event: Event) {
        self.pending |= match event {
            Event::Disconnected(why) => {
                self.disconnect = why;
                DISCONNECTED
            }
            Event::ConnectFailed(why) => {
                self.connect_failure = why;
                CONNECT_FAILED
            }
            Event::LinkReset => LINK_RESET,
            Event::RadioCycle => RADIO_CYCLE,
            Event::Connected => CONNECTED,
            Event::FrameRejected => FRAME_REJECTED,
            Event::ReplyDropped => REPLY_DROPPED,
            // Level-triggered: derived from the state when polled.
            Event::Status(_) => 0,
        };
    }

    /// The first pending event, else the status if it changed since it was
    /// last reported.
    pub(crate) fn pop(&mut self, status: Status) -> Option<Event> {
        let bit = self.pending & self.pending.wrapping_neg();
        self.pending &= !bit;
        Some(match bit {
            DISCONNECTED => Event::Disconnected(self.disconnect),
            CONNECT_FAILED => Event::ConnectFailed(self.connect_failure),
            LINK_RESET => Event::LinkReset,
            RADIO_CYCLE => Event::RadioCycle,
            CONNECTED => Event::Connected,
            FRAME_REJECTED => Event::FrameRejected,
            REPLY_DROPPED => Event::ReplyDropped,
            _ if self.reported == Some(status) => return None,
            _ => {
                self.reported = Some(status);
                Event::Status(status)
            }
        })
    }
}
