//! Policy: every number and choice the state machine follows.
//!
//! [`Config::default()`] is the tutorial's client: 5 minutes of waiting for
//! the network before a 20 s flight-mode cycle, 5 s between connect attempts,
//! a link reset after 5 consecutive failures, `heart beat` every 10 s, raw
//! framing over TCP. Everything beyond the tutorial is off by default.

use core::net::SocketAddr;

use crate::framing::Framing;
use crate::time::Duration;

/// TCP or UDP: the only difference the tutorial makes between the two, and
/// the only one the state machine makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Transport {
    /// A TCP stream.
    #[default]
    Tcp,
    /// A connected UDP socket: one message per datagram.
    Udp,
}

/// The server to keep a connection to. The driver owns it (the core only
/// says when to connect, not where): pass it to the driver, which resolves a
/// host name at every connect attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Remote<'a> {
    /// An IP address and port.
    Addr(SocketAddr),
    /// A host name and port. The shim resolves the name at every connect
    /// attempt; a failed lookup is a failed connect.
    Host {
        /// The DNS name.
        name: &'a str,
        /// The port.
        port: u16,
    },
}

impl Remote<'_> {
    /// The port to connect to.
    pub const fn port(&self) -> u16 {
        match self {
            Remote::Addr(a) => a.port(),
            Remote::Host { port, .. } => *port,
        }
    }
}

impl core::fmt::Display for Remote<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Remote::Addr(a) => write!(f, "{a}"),
            Remote::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// How long to wait between connect attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Backoff {
    /// Always [`Config::retry_delay`] (the tutorial's 5 s).
    #[default]
    Fixed,
    /// Capped exponential backoff with full jitter: after `n` consecutive
    /// failures the delay is drawn uniformly from
    /// `[retry_delay, min(max, retry_delay * 2^n)]`, using a generator seeded
    /// from [`Config::seed`]. The floor of `retry_delay` keeps attempts at
    /// least that far apart even with jitter; the spread keeps a fleet of
    /// devices from reconnecting in lockstep after a server outage.
    Exponential {
        /// The cap on the delay.
        max: Duration,
    },
}

/// When a message leaves the queue.
#[cfg(feature = "acked")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Delivery {
    /// Once the socket took its last byte (the tutorial's wire format). What
    /// the socket or the server's receive buffer held when a connection
    /// dies is lost.
    #[default]
    Socket,
    /// Once the server application acknowledged it (`PROTOCOL.md`): every
    /// message exactly once, in order, across reconnects, over TCP
    /// (`Len16` framing) and UDP (`Raw` or `Len16`).
    Acked(Acked),
}

/// The acknowledged mode's settings. The defaults are CoAP's (RFC 7252
/// §4.8) where it has one.
#[cfg(feature = "acked")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Acked {
    /// Names this run of the device: the server drops duplicates per
    /// session, so it must change when the device restarts (a boot counter
    /// in flash, or a hardware RNG draw); sequence numbers start again at 0.
    pub session: u32,
    /// How long the oldest written message may wait for its ack before it
    /// is sent again (UDP) or the connection is given up (TCP). Doubles with
    /// each consecutive timeout, with up to 50 % jitter (CoAP's
    /// `ACK_RANDOM_FACTOR` 1.5). Default: 2 s (`ACK_TIMEOUT`).
    pub ack_timeout: Duration,
    /// Consecutive timeouts before the link is treated as down and the
    /// connection dropped. Default: 4 (`MAX_RETRANSMIT`).
    pub max_retransmissions: u8,
    /// UDP: messages sent and not yet acknowledged at most. Default: 4.
    pub max_in_flight: u8,
}

#[cfg(feature = "acked")]
impl Acked {
    /// CoAP's timings for `session`.
    pub const fn new(session: u32) -> Acked {
        Acked {
            session,
            ack_timeout: Duration::from_secs(2),
            max_retransmissions: 4,
            max_in_flight: 4,
        }
    }
}

/// The policy of a [`Connection`](crate::Connection).
///
/// Where to connect is not here: the driver owns the [`Remote`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// TCP or UDP. Default: TCP.
    pub transport: Transport,
    /// Message framing in both directions. Default: raw, as the tutorial.
    pub framing: Framing,
    /// How long to wait for the network before cycling the radio.
    /// Tutorial: 5 minutes (`sys.waitUntil("IP_READY_IND", 300000)`).
    pub network_wait: Duration,
    /// How long the radio stays off in a flight-mode cycle.
    /// Tutorial: 20 s (`net.switchFly(true); sys.wait(20000)`).
    pub radio_off: Duration,
    /// The pause after a failed connect or a closed connection before the next
    /// attempt. Tutorial: 5 s (`sys.wait(5000)`).
    pub retry_delay: Duration,
    /// Consecutive failed connects that trigger a link reset.
    /// Tutorial: 5 (`if retryConnectCnt>=5 then link.shut()`).
    pub max_failures: u16,
    /// Time between heartbeats while connected; `None` disables them.
    /// Tutorial: 10 s (`insertMsg("heart beat"); sys.wait(10000)`).
    pub heartbeat_interval: Option<Duration>,
    /// The heartbeat message, at most [`HEARTBEAT_MAX`] bytes, held in the
    /// config itself. Tutorial: `heart beat`.
    pub heartbeat_payload: Payload,
    /// Send a heartbeat only when nothing else was sent for
    /// `heartbeat_interval` (the timer restarts on every write, as MQTT's
    /// keep-alive): fewer bytes and radio wake-ups on a busy link. Default:
    /// off (the tutorial sends one every interval, busy or not). The first
    /// heartbeat after connecting is sent either way.
    pub heartbeat_when_idle: bool,
    /// Dead-peer detection: reconnect when nothing was received for this long
    /// on an established connection. Not in the tutorial; default off.
    pub idle_timeout: Option<Duration>,
    /// Give up on a connect attempt after this long (a failed connect).
    /// Not in the tutorial, which relies on the stack; default off.
    pub connect_timeout: Option<Duration>,
    /// Retry delay policy. Default: fixed, as the tutorial.
    pub backoff: Backoff,
    /// Seed for the backoff jitter. The core has no entropy of its own: pass
    /// something device-specific (a serial number, a hardware RNG draw).
    pub seed: u64,
    /// When a message leaves the queue (feature `acked`). Default: once
    /// written ([`Delivery::Socket`]).
    #[cfg(feature = "acked")]
    pub delivery: Delivery,
}

/// The tutorial's heartbeat payload.
pub const TUTORIAL_HEARTBEAT: &[u8] = b"heart beat";

/// The longest heartbeat payload a [`Config`] holds.
pub const HEARTBEAT_MAX: usize = 24;

/// A heartbeat payload: up to [`HEARTBEAT_MAX`] bytes, stored inline so a
/// config built at run time (from a command line, from flash) needs no
/// `'static` buffer.
pub type Payload = heapless::Vec<u8, HEARTBEAT_MAX, u8>;

/// `bytes` as a [`Payload`], or `None` when longer than [`HEARTBEAT_MAX`].
pub fn payload(bytes: &[u8]) -> Option<Payload> {
    Payload::from_slice(bytes).ok()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            transport: Transport::Tcp,
            framing: Framing::Raw,
            network_wait: Duration::from_mins(5),
            radio_off: Duration::from_secs(20),
            retry_delay: Duration::from_secs(5),
            max_failures: 5,
            heartbeat_interval: Some(Duration::from_secs(10)),
            heartbeat_payload: payload(TUTORIAL_HEARTBEAT).unwrap_or_default(),
            heartbeat_when_idle: false,
            idle_timeout: None,
            connect_timeout: None,
            backoff: Backoff::Fixed,
            seed: 0,
            #[cfg(feature = "acked")]
            delivery: Delivery::Socket,
        }
    }
}

/// A [`Config`] the state machine cannot follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// A delay, interval or timeout is zero; it would make the caller spin.
    ZeroDuration,
    /// `max_failures` is zero.
    ZeroMaxFailures,
    /// The heartbeat payload cannot be framed (a `\n` in `Lines` framing, or
    /// empty in `Raw` framing).
    BadHeartbeat,
    /// The queue cannot hold one heartbeat.
    QueueTooSmall,
    /// The receive buffer is too small for the framing (at least 1 byte, 2
    /// for `Lines`, 3 for `Len16`; one more over UDP).
    ReceiveBufferTooSmall,
    /// The exponential backoff cap is below `retry_delay`.
    BackoffCapTooSmall,
    /// The acknowledged mode needs a framing that carries binary frames
    /// whole: `Len16` over TCP, `Raw` or `Len16` over UDP; and a non-zero
    /// `max_in_flight`.
    AckedFraming,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::ZeroDuration => "a delay, interval or timeout is zero",
            ConfigError::ZeroMaxFailures => "max_failures is zero",
            ConfigError::BadHeartbeat => "the heartbeat payload cannot be framed",
            ConfigError::QueueTooSmall => "the queue cannot hold one heartbeat",
            ConfigError::ReceiveBufferTooSmall => "the receive buffer is too small for the framing",
            ConfigError::BackoffCapTooSmall => "the backoff cap is below retry_delay",
            ConfigError::AckedFraming => {
                "acknowledged mode needs len16 framing (raw also works over UDP)"
            }
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

impl Config {
    /// Checks the config against queue and receive-buffer sizes.
    pub fn validate(&self, queue_capacity: usize, rx_capacity: usize) -> Result<(), ConfigError> {
        // Field by field rather than over an array of them: no array built
        // on the stack, and a constant config folds away entirely.
        let zero = |d: Option<Duration>| d == Some(Duration::ZERO);
        if zero(Some(self.network_wait))
            || zero(Some(self.radio_off))
            || zero(Some(self.retry_delay))
            || zero(self.heartbeat_interval)
            || zero(self.idle_timeout)
            || zero(self.connect_timeout)
        {
            return Err(ConfigError::ZeroDuration);
        }
        if self.max_failures == 0 {
            return Err(ConfigError::ZeroMaxFailures);
        }
        #[cfg(feature = "acked")]
        if let Delivery::Acked(a) = self.delivery {
            if a.ack_timeout == Duration::ZERO {
                return Err(ConfigError::ZeroDuration);
            }
            let framing_ok = matches!(
                (self.transport, self.framing),
                (_, Framing::Len16) | (Transport::Udp, Framing::Raw)
            );
            if !framing_ok || a.max_in_flight == 0 {
                return Err(ConfigError::AckedFraming);
            }
        }
        if let Backoff::Exponential { max } = self.backoff {
            if max < self.retry_delay {
                return Err(ConfigError::BackoffCapTooSmall);
            }
        }
        // Over UDP a datagram that fills the receive buffer may have been
        // cut by the stack: one byte more tells it apart.
        let udp = usize::from(self.transport == Transport::Udp);
        let min_rx = udp
            + match self.framing {
                Framing::Raw => 1,
                Framing::Lines => 2,
                Framing::Len16 => 3,
            };
        if rx_capacity < min_rx {
            return Err(ConfigError::ReceiveBufferTooSmall);
        }
        if self.heartbeat_interval.is_some() {
            let hb = &self.heartbeat_payload;
            let bad = match self.framing {
                Framing::Raw => hb.is_empty(),
                // The framing's own rule: a trailing `\r` would be stripped
                // as half of a `\r\n`, so every heartbeat would be refused.
                Framing::Lines => hb.contains(&b'\n') || hb.last() == Some(&b'\r'),
                Framing::Len16 => hb.len() > usize::from(u16::MAX),
            };
            if bad {
                return Err(ConfigError::BadHeartbeat);
            }
            if self.heartbeat_slot() > queue_capacity {
                return Err(ConfigError::QueueTooSmall);
            }
        }
        Ok(())
    }

    /// Queue bytes one framed heartbeat occupies (zero with heartbeats off).
    pub(crate) fn heartbeat_slot(&self) -> usize {
        match self.heartbeat_interval {
            Some(_) => {
                crate::queue::HEADER
                    + self.heartbeat_payload.len()
                    + self.framing.overhead()
                    + self.envelope()
            }
            None => 0,
        }
    }

    /// Bytes the delivery mode puts before every outgoing message: the
    /// acknowledged mode's tag, session and sequence number.
    pub(crate) fn envelope(&self) -> usize {
        #[cfg(feature = "acked")]
        if let Delivery::Acked(_) = self.delivery {
            return crate::acked::DEVICE_HEADER;
        }
        0
    }

    /// The acknowledged mode's settings, when it is on.
    #[cfg(feature = "acked")]
    pub(crate) fn acked(&self) -> Option<Acked> {
        match self.delivery {
            Delivery::Acked(a) => Some(a),
            Delivery::Socket => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_tutorial() {
        let c = Config::default();
        assert_eq!(c.network_wait.as_millis(), 300_000);
        assert_eq!(c.radio_off.as_millis(), 20_000);
        assert_eq!(c.retry_delay.as_millis(), 5_000);
        assert_eq!(c.max_failures, 5);
        assert_eq!(c.heartbeat_interval, Some(Duration::from_millis(10_000)));
        assert_eq!(c.heartbeat_payload, b"heart beat");
        assert_eq!(payload(&[0; HEARTBEAT_MAX + 1]), None);
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.framing, Framing::Raw);
        assert_eq!((c.idle_timeout, c.connect_timeout), (None, None));
        assert_eq!(c.backoff, Backoff::Fixed);
        assert_eq!(c.validate(64, 64), Ok(()));
    }

    #[test]
    fn validation_rejects_what_would_spin_or_never_fit() {
        let ok = Config::default();
        let v = |c: Config| c.validate(64, 64);
        assert_eq!(
            v(Config {
                retry_delay: Duration::ZERO,
                ..ok.clone()
            }),
            Err(ConfigError::ZeroDuration)
        );
        assert_eq!(
            v(Config {
                idle_timeout: Some(Duration::ZERO),
                ..ok.clone()
            }),
            Err(ConfigError::ZeroDuration)
        );
        assert_eq!(
            v(Config {
                max_failures: 0,
                ..ok.clone()
            }),
            Err(ConfigError::ZeroMaxFailures)
        );
        assert_eq!(
            v(Config {
                framing: Framing::Lines,
                heartbeat_payload: payload(b"a\nb").unwrap(),
                ..ok.clone()
            }),
            Err(ConfigError::BadHeartbeat)
        );
        assert_eq!(
            v(Config {
                framing: Framing::Lines,
                heartbeat_payload: payload(b"beat\r").unwrap(),
                ..ok.clone()
            }),
            Err(ConfigError::BadHeartbeat)
        );
        assert_eq!(
            v(Config {
                backoff: Backoff::Exponential {
                    max: Duration::from_secs(1)
                },
                ..ok.clone()
            }),
            Err(ConfigError::BackoffCapTooSmall)
        );
        // "heart beat" is 10 bytes plus a 4-byte queue header.
        assert_eq!(ok.validate(13, 64), Err(ConfigError::QueueTooSmall));
        assert_eq!(ok.validate(14, 64), Ok(()));
        assert_eq!(
            Config {
                heartbeat_interval: None,
                ..ok.clone()
            }
            .validate(0, 64),
            Ok(())
        );
        assert_eq!(
            Config {
                framing: Framing::Len16,
                ..ok.clone()
            }
            .validate(64, 2),
            Err(ConfigError::ReceiveBufferTooSmall)
        );
        let udp = Config {
            transport: Transport::Udp,
            ..ok.clone()
        };
        assert_eq!(udp.validate(64, 1), Err(ConfigError::ReceiveBufferTooSmall));
        assert_eq!(udp.validate(64, 2), Ok(()));
    }
}
