//! [`arbitrary::Arbitrary`] for [`Config`] and its parts (feature
//! `arbitrary`), for a cargo-fuzz target of your own.
//!
//! Every [`Config`] it makes is one [`Connection::new`](crate::Connection::new)
//! accepts with a queue of at least 39 bytes and a receive buffer of at least
//! 4 (the largest heartbeat framed with its queue header and, in the
//! acknowledged mode, its envelope; `Len16` over UDP), so a fuzzer spends
//! its time on the state machine rather than on configs it refuses.
//!
//! The numbers are ones a device would use, so that fuzzing explores
//! realistic timing rather than the edges of `u32`:
//!
//! | value | range |
//! |---|---|
//! | every [`Duration`] | 1 ms to 10 min: up to 1 s, 1 s to 1 min, or 1 to 10 min, equally likely |
//! | [`Backoff::Exponential`] cap in a [`Config`] | `retry_delay` to 10 min |
//! | [`Config::max_failures`] | 1 to 16 |
//! | [`Config::heartbeat_payload`] | 0 to [`HEARTBEAT_MAX`] bytes that the framing can carry (`heart beat` when the input has too few) |
//! | `Acked::max_retransmissions` (feature `acked`) | 0 to 8 |
//! | `Acked::max_in_flight` (feature `acked`) | 1 to 8 |
//!
//! A config's heartbeat, idle timeout and connect timeout are each on or
//! off; the framing is one the delivery mode allows over the transport
//! (`Len16` over TCP and `Raw` or `Len16` over UDP in the acknowledged mode).
//! Choices come first and consume a byte or two each, so even a short input
//! picks the transport, framing and delivery; once the input runs out every
//! remaining field takes the low end of its range (`arbitrary`'s rule), which
//! still makes a valid config.
//!
//! To drive a [`Connection`](crate::Connection) from fuzz input (events,
//! times, bytes from the server) with the invariants checked, see
//! longlink-sim.

use ::arbitrary::{Arbitrary, Result, Unstructured};

#[cfg(feature = "acked")]
use crate::config::{Acked, Delivery};
use crate::config::{Backoff, Config, Payload, Transport, HEARTBEAT_MAX, TUTORIAL_HEARTBEAT};
use crate::framing::Framing;
use crate::time::Duration;

/// The longest span generated: 10 minutes.
const MAX_MS: u64 = 600_000;

impl<'a> Arbitrary<'a> for Framing {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        u.choose(&[Framing::Raw, Framing::Lines, Framing::Len16])
            .copied()
    }
}

impl<'a> Arbitrary<'a> for Transport {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        u.choose(&[Transport::Tcp, Transport::Udp]).copied()
    }
}

/// 1 ms to 10 min. The scale is drawn first so that sub-second spans are as
/// common as minutes (a uniform draw would almost never give one).
impl<'a> Arbitrary<'a> for Duration {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let ms = match u.int_in_range(0..=2u8)? {
            0 => u.int_in_range(1..=1_000)?,
            1 => u.int_in_range(1_000..=60_000)?,
            _ => u.int_in_range(60_000..=MAX_MS)?,
        };
        Ok(Duration::from_millis(ms))
    }
}

/// On its own the cap is any [`Duration`]; inside a [`Config`] it is drawn
/// at or above `retry_delay`, which is what the config check requires.
impl<'a> Arbitrary<'a> for Backoff {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Backoff::Exponential {
                max: Duration::arbitrary(u)?,
            }
        } else {
            Backoff::Fixed
        })
    }
}

#[cfg(feature = "acked")]
impl<'a> Arbitrary<'a> for Acked {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Acked {
            session: u32::arbitrary(u)?,
            ack_timeout: Duration::arbitrary(u)?,
            max_retransmissions: u.int_in_range(0..=8)?,
            max_in_flight: u.int_in_range(1..=8)?,
        })
    }
}

/// On its own any delivery; inside a [`Config`] the framing is chosen to
/// suit it.
#[cfg(feature = "acked")]
impl<'a> Arbitrary<'a> for Delivery {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if bool::arbitrary(u)? {
            Delivery::Acked(Acked::arbitrary(u)?)
        } else {
            Delivery::Socket
        })
    }
}

/// A config [`Config::validate`] accepts (see the module docs for the
/// ranges and the buffer sizes it assumes).
impl<'a> Arbitrary<'a> for Config {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let transport = Transport::arbitrary(u)?;
        #[cfg(feature = "acked")]
        let delivery = Delivery::arbitrary(u)?;
        #[cfg(feature = "acked")]
        let framing = match (delivery, transport) {
            (Delivery::Socket, _) => Framing::arbitrary(u)?,
            (Delivery::Acked(_), Transport::Tcp) => Framing::Len16,
            (Delivery::Acked(_), Transport::Udp) => *u.choose(&[Framing::Raw, Framing::Len16])?,
        };
        #[cfg(not(feature = "acked"))]
        let framing = Framing::arbitrary(u)?;

        // Most devices send heartbeats: on three times in four.
        let heartbeat = u.ratio(3u8, 4)?;
        let (heartbeat_interval, heartbeat_payload) = if heartbeat {
            (
                Some(Duration::arbitrary(u)?),
                heartbeat_payload(u, framing)?,
            )
        } else {
            (None, tutorial_heartbeat())
        };
        let heartbeat_when_idle = bool::arbitrary(u)?;

        let network_wait = Duration::arbitrary(u)?;
        let radio_off = Duration::arbitrary(u)?;
        let retry_delay = Duration::arbitrary(u)?;
        let max_failures = u.int_in_range(1..=16)?;
        let idle_timeout = optional_duration(u)?;
        let connect_timeout = optional_duration(u)?;
        let backoff = if bool::arbitrary(u)? {
            Backoff::Exponential {
                max: Duration::from_millis(u.int_in_range(retry_delay.as_millis()..=MAX_MS)?),
            }
        } else {
            Backoff::Fixed
        };
        let seed = u64::arbitrary(u)?;

        Ok(Config {
            transport,
            framing,
            network_wait,
            radio_off,
            retry_delay,
            max_failures,
            heartbeat_interval,
            heartbeat_payload,
            heartbeat_when_idle,
            idle_timeout,
            connect_timeout,
            backoff,
            seed,
            #[cfg(feature = "acked")]
            delivery,
        })
    }
}

fn optional_duration(u: &mut Unstructured<'_>) -> Result<Option<Duration>> {
    Ok(if bool::arbitrary(u)? {
        Some(Duration::arbitrary(u)?)
    } else {
        None
    })
}

fn tutorial_heartbeat() -> Payload {
    crate::config::payload(TUTORIAL_HEARTBEAT).unwrap_or_default()
}

/// Up to [`HEARTBEAT_MAX`] bytes of input, made framable: `Lines` cannot
/// carry a `\n`, nor a trailing `\r` (the receiver takes it for half of a
/// `\r\n`; the config check lets it through but every heartbeat would then
/// be refused by the framing), and `Raw` cannot carry an empty message.
fn heartbeat_payload(u: &mut Unstructured<'_>, framing: Framing) -> Result<Payload> {
    let len = u.int_in_range(0..=HEARTBEAT_MAX)?;
    // Short input gives a short payload rather than an error.
    let bytes = u.bytes(len.min(u.len()))?;
    let Some(mut p) = crate::config::payload(bytes) else {
        return Ok(tutorial_heartbeat());
    };
    match framing {
        Framing::Lines => {
            for b in p.iter_mut().filter(|b| **b == b'\n') {
                *b = b' ';
            }
            if let Some(last) = p.last_mut().filter(|b| **b == b'\r') {
                *last = b' ';
            }
        }
        Framing::Raw if p.is_empty() => p = tutorial_heartbeat(),
        Framing::Raw | Framing::Len16 => {}
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::time::Instant;
    use crate::Connection;
    use std::vec::Vec;

    fn durations(c: &Config) -> Vec<Duration> {
        let mut d = std::vec![c.network_wait, c.radio_off, c.retry_delay];
        d.extend(c.heartbeat_interval);
        d.extend(c.idle_timeout);
        d.extend(c.connect_timeout);
        if let Backoff::Exponential { max } = c.backoff {
            d.push(max);
        }
        #[cfg(feature = "acked")]
        if let Delivery::Acked(a) = c.delivery {
            d.push(a.ack_timeout);
        }
        d
    }

    /// Which variants the generator reached, so that a generator stuck on
    /// one branch fails the test.
    #[derive(Default)]
    struct Seen {
        tcp: bool,
        udp: bool,
        framings: [bool; 3],
        heartbeat: [bool; 2],
        backoff: [bool; 2],
        #[cfg(feature = "acked")]
        delivery: [bool; 2],
    }

    #[test]
    fn every_generated_config_is_accepted_and_all_variants_occur() {
        let mut rng = SplitMix64(0x5eed);
        let mut seen = Seen::default();
        let mut buf = Vec::new();
        for run in 0..10_000 {
            let len = (rng.next_u64() % 256) as usize;
            buf.clear();
            while buf.len() < len {
                buf.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            buf.truncate(len);

            // Running out of input gives defaults, never an error: an error
            // here is a generator bug.
            let cfg = Config::arbitrary(&mut Unstructured::new(&buf))
                .unwrap_or_else(|e| panic!("run {run}: {e}"));
            assert!(
                Connection::<(), 256, 128>::new(cfg.clone(), (), Instant::ZERO).is_ok(),
                "run {run}: refused {cfg:?}: {:?}",
                cfg.validate(256, 128)
            );
            // The smallest buffers the module docs promise.
            assert_eq!(cfg.validate(39, 4), Ok(()), "run {run}: {cfg:?}");
            for d in durations(&cfg) {
                assert!(
                    (1..=MAX_MS).contains(&d.as_millis()),
                    "run {run}: {d:?} out of range in {cfg:?}"
                );
            }
            assert!((1..=16).contains(&cfg.max_failures));

            match cfg.transport {
                Transport::Tcp => seen.tcp = true,
                Transport::Udp => seen.udp = true,
            }
            seen.framings[cfg.framing as usize] = true;
            seen.heartbeat[usize::from(cfg.heartbeat_interval.is_some())] = true;
            seen.backoff[usize::from(cfg.backoff != Backoff::Fixed)] = true;
            #[cfg(feature = "acked")]
            {
                seen.delivery[usize::from(cfg.delivery != Delivery::Socket)] = true;
            }
        }
        assert!(seen.tcp && seen.udp, "both transports");
        assert_eq!(seen.framings, [true; 3], "all three framings");
        assert_eq!(seen.heartbeat, [true; 2], "heartbeat on and off");
        assert_eq!(seen.backoff, [true; 2], "fixed and exponential backoff");
        #[cfg(feature = "acked")]
        assert_eq!(seen.delivery, [true; 2], "both deliveries");
    }

    #[test]
    fn empty_input_is_a_valid_config() {
        let cfg = Config::arbitrary(&mut Unstructured::new(&[])).unwrap();
        assert_eq!(cfg.validate(39, 4), Ok(()));
        assert_eq!(cfg.heartbeat_payload, TUTORIAL_HEARTBEAT);
    }

    #[test]
    fn heartbeats_are_made_framable() {
        // A full-length payload of nothing but the two bytes `Lines` cannot
        // carry (the first byte is the length).
        let mut input = [b'\r'; HEARTBEAT_MAX + 1];
        input[0] = HEARTBEAT_MAX as u8;
        input[1] = b'\n';
        let hb = heartbeat_payload(&mut Unstructured::new(&input), Framing::Lines).unwrap();
        assert_eq!(hb.len(), HEARTBEAT_MAX);
        assert!(!hb.contains(&b'\n') && hb.last() != Some(&b'\r'), "{hb:?}");
        // The same bytes are fine as they are in `Len16`.
        let hb = heartbeat_payload(&mut Unstructured::new(&input), Framing::Len16).unwrap();
        assert_eq!(hb, &input[1..]);
        // An empty `Raw` message cannot be sent.
        let hb = heartbeat_payload(&mut Unstructured::new(&[0]), Framing::Raw).unwrap();
        assert_eq!(hb, TUTORIAL_HEARTBEAT);
        let hb = heartbeat_payload(&mut Unstructured::new(&[0]), Framing::Len16).unwrap();
        assert!(hb.is_empty());
    }
}
