//! Property tests of the acknowledged mode's bookkeeping in the queue:
//! random enqueues, partial writes, acks (valid, stale, duplicate, beyond
//! what was written, of another session), disconnects and reconnects, and
//! ack timeouts, against a model that is a list of the messages not yet
//! acknowledged.
//!
//! Checked after every operation:
//!
//! - the queue holds exactly the unacknowledged messages, in order, after at
//!   most the acknowledged ones a cut write still holds at its head (TCP: a
//!   frame is never cut short), and `queued()` counts them;
//! - the queue never uses more than its size;
//! - after a reconnect, and over UDP after an ack timeout, `poll_transmit`
//!   starts with the oldest unacknowledged message;
//! - nothing acknowledged is started again on a connection after its ack;
//! - every ack the device cannot believe (another session's, beyond what it
//!   ever wrote) is counted in `acks_ignored` and changes nothing.
//!
//! `PROPTEST_CASES=<n>` scales the run (512 cases per transport by default).
#![cfg(feature = "acked")]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test, with its location"
)]

use longlink_core::acked::{self, seq_before, Frame};
use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Acked, Action, Config, Connection, Delivery, Framing, Status, TestProtocol, Transport,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const Q: usize = 192;
const SESSION: u32 = 0x5E55_1011;
/// Queue header bytes per message (the queue's storage format).
const HEADER: usize = 4;

#[derive(Clone, Debug)]
enum AckKind {
    /// Up to some message written and not yet acknowledged.
    Valid(u8),
    /// The last ack again.
    Duplicate,
    /// Before the acknowledged point (a late ack).
    Stale(u8),
    /// Beyond anything written (maybe still queued).
    BeyondWritten(u8),
    /// Another session's (an earlier run of the device).
    OtherSession(u32),
    /// Half the sequence space away: "before" in serial order.
    Wrapped,
}

#[derive(Clone, Debug)]
enum Op {
    Enqueue(u8),
    /// The socket takes at most this many bytes (TCP) or the datagram
    /// (UDP, when non-zero).
    Write(u8),
    WriteAll,
    Ack(AckKind),
    Disconnect,
    /// Time moves to the next deadline (an ack timeout, a retry).
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::Enqueue),
        3 => any::<u8>().prop_map(Op::Write),
        2 => Just(Op::WriteAll),
        3 => any::<u8>().prop_map(|n| Op::Ack(AckKind::Valid(n))),
        1 => Just(Op::Ack(AckKind::Duplicate)),
        1 => any::<u8>().prop_map(|n| Op::Ack(AckKind::Stale(n))),
        1 => any::<u8>().prop_map(|n| Op::Ack(AckKind::BeyondWritten(n))),
        1 => any::<u32>().prop_map(|s| Op::Ack(AckKind::OtherSession(s))),
        1 => Just(Op::Ack(AckKind::Wrapped)),
        1 => Just(Op::Disconnect),
        1 => Just(Op::Timeout),
    ]
}

/// The device, the model, and what the wire carried.
struct Run {
    c: Connection<TestProtocol, Q, 64>,
    now: u64,
    udp: bool,
    /// Payloads by sequence number.
    by_seq: Vec<Vec<u8>>,
    /// Every seq before this one was acknowledged (to the device's
    /// knowledge: an ack it must believe).
    acked: u32,
    /// One past the highest seq written whole so far.
    written: u32,
    /// The last ack sent.
    last_ack: Option<[u8; acked::ACK_LEN]>,
    /// TCP: bytes of the current connection not yet parsed into frames,
    /// and whether the frame they start began before the last ack.
    wire: Vec<u8>,
    ignored: u32,
}

type R = Result<(), TestCaseError>;

impl Run {
    fn new(udp: bool, max_in_flight: u8) -> Self {
        let config = Config {
            transport: if udp { Transport::Udp } else { Transport::Tcp },
            framing: Framing::Len16,
            heartbeat_interval: None,
            retry_delay: Duration::from_millis(100),
            delivery: Delivery::Acked(Acked {
                ack_timeout: Duration::from_millis(500),
                max_retransmissions: 2,
                max_in_flight,
                ..Acked::new(SESSION)
            }),
            ..Config::default()
        };
        let mut r = Run {
            c: Connection::new(config, TestProtocol::default(), Instant::ZERO).unwrap(),
            now: 0,
            udp,
            by_seq: Vec::new(),
            acked: 0,
            written: 0,
            last_ack: None,
            wire: Vec::new(),
            ignored: 0,
        };
        r.c.handle_network(Instant::ZERO, true);
        r
    }

    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Takes the actions; connects when asked. Returns whether it connected.
    fn actions(&mut self) -> Result<bool, TestCaseError> {
        let mut connected = false;
        while let Some(a) = self.c.poll_action() {
            if let Action::Connect { .. } = a {
                self.c.handle_connected(self.t()).unwrap();
                self.wire.clear();
                connected = true;
            }
        }
        Ok(connected)
    }

    /// While backing off, time moves to the retry and the device connects.
    fn reconnect(&mut self) -> R {
        let mut connected = self.actions()?;
        while self.c.status() != Status::Connected {
            let at = self.c.poll_timeout().unwrap().as_millis();
            prop_assert!(at > self.now, "deadline {at} not after now {}", self.now);
            self.now = at;
            self.c.handle_timeout(self.t());
            connected |= self.actions()?;
        }
        if connected {
            self.check_resume()?;
        }
        Ok(())
    }

    /// After a reconnect: the first bytes offered are the oldest message not
    /// acknowledged.
    fn check_resume(&self) -> R {
        let Some(offer) = self.c.poll_transmit() else {
            prop_assert_eq!(self.acked as usize, self.by_seq.len(), "nothing offered");
            return Ok(());
        };
        if (self.acked as usize) < self.by_seq.len() {
            prop_assert!(offer.len() >= 2 + acked::DEVICE_HEADER);
            let f = Frame::decode(&offer[2..2 + acked::DEVICE_HEADER]);
            let seq = match f {
                Ok(Frame::Data { seq, .. }) => seq,
                other => return Err(TestCaseError::fail(format!("offered {other:?}"))),
            };
            prop_assert_eq!(seq, self.acked, "resumes at the oldest unacknowledged");
        }
        Ok(())
    }

    /// One whole frame went out; `fresh`: its first byte went in this write.
    fn frame_out(&mut self, frame: &[u8], fresh: bool) -> R {
        match Frame::decode(&frame[2..]) {
            Ok(Frame::Data {
                session,
                seq,
                payload,
            }) => {
                prop_assert_eq!(session, SESSION);
                prop_assert_eq!(
                    Some(payload),
                    self.by_seq.get(seq as usize).map(Vec::as_slice)
                );
                prop_assert!(
                    !(fresh && seq_before(seq, self.acked)),
                    "seq {} started again after its ack ({} acknowledged)",
                    seq,
                    self.acked
                );
                if !seq_before(seq, self.written) {
                    self.written = seq + 1;
                }
            }
            other => return Err(TestCaseError::fail(format!("wrote {other:?}"))),
        }
        Ok(())
    }

    fn write(&mut self, max: usize) -> R {
        let Some(offer) = self.c.poll_transmit().map(<[u8]>::to_vec) else {
            return Ok(());
        };
        if self.udp {
            if max == 0 {
                return Ok(());
            }
            self.c.handle_written(self.t(), offer.len()).unwrap();
            return self.frame_out(&offer, true);
        }
        let n = offer.len().min(max);
        self.c.handle_written(self.t(), n).unwrap();
        let mut fresh = self.wire.is_empty();
        self.wire.extend_from_slice(&offer[..n]);
        while self.wire.len() >= 2 {
            let total = 2 + usize::from(u16::from_be_bytes([self.wire[0], self.wire[1]]));
            if self.wire.len() < total {
                break;
            }
            let frame: Vec<u8> = self.wire.drain(..total).collect();
            self.frame_out(&frame, fresh)?;
            fresh = true;
        }
        Ok(())
    }

    fn send_ack(&mut self, session: u32, next: u32) -> R {
        let a = acked::ack(session, next);
        let believable = session == SESSION && !seq_before(self.written, next);
        if !believable {
            self.ignored += 1;
        } else if seq_before(self.acked, next) {
            self.acked = next;
        }
        self.last_ack = Some(a);
        let mut framed = (a.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&a);
        prop_assert_eq!(
            self.c.handle_received_bytes(self.t(), &framed),
            Ok(framed.len())
        );
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> R {
        match op {
            Op::Enqueue(pad) => {
                let mut m = format!("m{}:", self.by_seq.len()).into_bytes();
                m.extend((0..*pad % 40).map(|i| b'a' + i % 26));
                if self.c.enqueue(&m).is_ok() {
                    self.by_seq.push(m);
                }
            }
            Op::Write(max) => self.write(usize::from(*max))?,
            Op::WriteAll => {
                for _ in 0..16 {
                    self.write(usize::MAX)?;
                }
            }
            Op::Ack(kind) => {
                let (session, next) = match *kind {
                    AckKind::Valid(n) => {
                        let span = self.written.wrapping_sub(self.acked);
                        if span == 0 {
                            return Ok(());
                        }
                        (SESSION, self.acked + 1 + u32::from(n) % span)
                    }
                    AckKind::Duplicate => match self.last_ack {
                        Some(a) => match Frame::decode(&a) {
                            Ok(Frame::Ack { session, next }) => (session, next),
                            _ => return Ok(()),
                        },
                        None => return Ok(()),
                    },
                    AckKind::Stale(n) => (SESSION, self.acked.wrapping_sub(u32::from(n % 4))),
                    AckKind::BeyondWritten(n) => {
                        (SESSION, self.written.wrapping_add(1 + u32::from(n % 8)))
                    }
                    AckKind::OtherSession(s) => {
                        (if s == SESSION { s ^ 1 } else { s }, self.written)
                    }
                    AckKind::Wrapped => (SESSION, self.written.wrapping_add(1 << 31)),
                };
                self.send_ack(session, next)?;
            }
            Op::Disconnect => {
                self.c.handle_io_error(self.t()).unwrap();
                self.wire.clear();
            }
            Op::Timeout => {
                if let Some(at) = self.c.poll_timeout() {
                    prop_assert!(at.as_millis() > self.now, "deadline in the past");
                    self.now = at.as_millis();
                    let timeouts = self.c.stats().ack_timeouts;
                    self.c.handle_timeout(self.t());
                    if self.c.status() != Status::Connected {
                        self.wire.clear();
                    } else if self.c.stats().ack_timeouts != timeouts {
                        // UDP goes back to the oldest unacknowledged.
                        self.check_resume()?;
                    }
                }
            }
        }
        self.reconnect()
    }

    /// The queue against the model.
    fn check(&self) -> R {
        let mut used = 0;
        let mut seqs = Vec::new();
        for (frame, heartbeat) in self.c.queued_frames() {
            prop_assert!(!heartbeat);
            used += frame.len() + HEADER;
            match Frame::decode(&frame[2..]) {
                Ok(Frame::Data { seq, payload, .. }) => {
                    prop_assert_eq!(
                        Some(payload),
                        self.by_seq.get(seq as usize).map(Vec::as_slice)
                    );
                    seqs.push(seq);
                }
                other => return Err(TestCaseError::fail(format!("queued {other:?}"))),
            }
        }
        prop_assert!(used <= Q, "the queue uses {} of {} bytes", used, Q);
        prop_assert_eq!(self.c.queued(), seqs.len());
        let first = seqs.first().copied().unwrap_or(self.acked);
        let want: Vec<u32> = (first..self.by_seq.len() as u32).collect();
        prop_assert_eq!(&seqs, &want, "queued seqs, {} acknowledged", self.acked);
        prop_assert!(
            !seq_before(self.acked, first),
            "unacknowledged {}..{} left the queue",
            self.acked,
            first
        );
        if seq_before(first, self.acked) {
            // Acknowledged ones still queued: only behind a TCP frame cut
            // mid-write, whose rest is what is offered.
            prop_assert!(!self.udp, "UDP holds acknowledged datagram {}", first);
            prop_assert!(
                !self.wire.is_empty(),
                "acknowledged {} held, nothing cut",
                first
            );
        }
        prop_assert!(self.c.queued() >= self.by_seq.len() - self.acked as usize);
        prop_assert_eq!(self.c.stats().acks_ignored, self.ignored);
        Ok(())
    }
}

fn run(udp: bool, max_in_flight: u8, ops: &[Op]) -> R {
    let mut r = Run::new(udp, max_in_flight);
    r.reconnect()?;
    for op in ops {
        r.apply(op)?;
        r.check()?;
    }
    // Faults over: everything is delivered and acknowledged in the end.
    for _ in 0..64 {
        r.apply(&Op::WriteAll)?;
        r.apply(&Op::Ack(AckKind::Valid(u8::MAX)))?;
        if r.c.queued() == 0 {
            break;
        }
        let span = r.written.wrapping_sub(r.acked);
        if span > 0 {
            r.send_ack(SESSION, r.written)?;
        }
        r.check()?;
    }
    prop_assert_eq!(r.c.queued(), 0, "not drained");
    prop_assert_eq!(r.acked as usize, r.by_seq.len());
    prop_assert_eq!(
        r.c.stats().messages_acked as usize,
        r.by_seq.len(),
        "messages_acked"
    );
    Ok(())
}

/// `PROPTEST_CASES`, or 512.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn tcp_queue_holds_exactly_the_unacknowledged(ops in prop::collection::vec(op(), 0..80)) {
        run(false, 1, &ops)?;
    }

    #[test]
    fn udp_queue_holds_exactly_the_unacknowledged(
        max_in_flight in 1u8..5,
        ops in prop::collection::vec(op(), 0..80),
    ) {
        run(true, max_in_flight, &ops)?;
    }
}
