//! The acknowledged mode under arbitrary and malicious server frames: acks
//! for numbers never written, wrapped numbers, duplicates, acks of another
//! session, truncated and garbage frames, `M` frames, interleaved with
//! enqueues, partial writes, timeouts and disconnects. A server built on
//! `acked::Dedup` reads everything the device writes.
//!
//! Asserted after every operation:
//!
//! - the device never panics, and its deadline is never in the past;
//! - the queue holds every message not acknowledged (by an ack the device
//!   must believe: its session, nothing beyond what it wrote), in order;
//!   so `queued()` is never below the number of unacknowledged messages;
//! - a message leaves the queue only once it was written whole and
//!   acknowledged;
//! - the queue never uses more than its size;
//! - `Dedup` never delivers a seq twice, nor out of order;
//!
//! and at the end, once the server's own acks flow: every message queued
//! (app messages and replies) delivered exactly once.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use longlink_core::acked::{self, seq_before, Dedup, Frame, Verdict};
use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Acked, Action, Config, Connection, Delivery, Framing, Status, TestProtocol, Transport,
};

const Q: usize = 160;
const R: usize = 64;
const HEADER: usize = 4;

#[derive(Arbitrary, Debug)]
struct FuzzConfig {
    udp: bool,
    raw: bool,
    session: u32,
    ack_timeout: u16,
    max_retransmissions: u8,
    max_in_flight: u8,
    heartbeat: Option<u16>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Next {
    /// Exactly this number.
    Exact(u32),
    /// Relative to the highest seq written (acks for unsent numbers, for
    /// numbers long acknowledged, wrapped around).
    FromWritten(i32),
    /// Half the sequence space from what was written.
    Wrapped,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Enqueue(u8),
    /// The socket takes at most this many bytes (255: all).
    Write(u8),
    /// The server's own ack (what `Dedup` says now).
    ServerAck,
    /// An ack the server makes up.
    Ack {
        other_session: bool,
        next: Next,
    },
    /// The last frame from the server again.
    Duplicate,
    /// An `M` frame (the test protocol answers `back`, `bin`, `time`).
    Msg(Vec<u8>),
    /// An ack cut short, or too long.
    BadAck(u8),
    /// Arbitrary bytes (TCP: into the stream, unframed; UDP: a datagram).
    Raw(Vec<u8>),
    /// A well framed frame with arbitrary content.
    Framed(Vec<u8>),
    Advance(u16),
    ToDeadline,
    IoError,
    Closed,
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: FuzzConfig,
    ops: Vec<Op>,
}

struct Run {
    c: Connection<TestProtocol, Q, R>,
    now: u64,
    udp: bool,
    framing: Framing,
    session: u32,
    server: Dedup,
    /// Seqs `Dedup` delivered, in order.
    delivered: u32,
    /// Every seq before this was acknowledged by an ack the device must
    /// believe.
    acked: u32,
    /// One past the highest seq written whole.
    written: u32,
    /// One past the highest seq seen queued.
    queued_end: u32,
    /// The D seqs queued after the last operation.
    queued: Vec<u32>,
    /// TCP: the current connection's bytes not yet parsed.
    wire: Vec<u8>,
    last_frame: Option<Vec<u8>>,
    /// Every byte the server sent.
    history: Vec<u8>,
}

impl Run {
    fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn actions(&mut self) {
        while let Some(a) = self.c.poll_action() {
            if let Action::Connect { .. } = a {
                self.c.handle_connected(self.t()).unwrap();
                self.wire.clear();
            }
        }
    }

    /// The frame's bytes in the configured framing.
    fn framed(&self, inner: &[u8]) -> Vec<u8> {
        match self.framing {
            Framing::Len16 => {
                let mut v = (inner.len().min(0xFFFF) as u16).to_be_bytes().to_vec();
                v.extend_from_slice(&inner[..inner.len().min(0xFFFF)]);
                v
            }
            _ => inner.to_vec(),
        }
    }

    /// The server sends `bytes` (already framed).
    fn to_device(&mut self, bytes: &[u8]) {
        if self.c.status() != Status::Connected {
            return;
        }
        self.history.extend_from_slice(bytes);
        let mut rest = bytes;
        // TCP takes what fits; UDP a datagram whole or not at all.
        for _ in 0..4 {
            match self.c.handle_received_bytes(self.t(), rest) {
                Ok(n) if n < rest.len() && !self.udp && n > 0 => rest = &rest[n..],
                _ => break,
            }
            if self.c.status() != Status::Connected {
                break;
            }
        }
        self.last_frame = Some(bytes.to_vec());
        // The device's acknowledged point (every seq before it): it moves
        // only to the number of an ack of its session that the server
        // sent, and never beyond what the device wrote.
        let floor = self.c.stats().messages_acked;
        if floor != self.acked {
            let a = acked::ack(self.session, floor);
            assert!(
                self.history.windows(a.len()).any(|w| w == a),
                "acknowledged up to {floor}, but no such ack of the session was sent"
            );
            assert!(
                seq_before(self.acked, floor),
                "the acknowledged point went back from {} to {floor}",
                self.acked
            );
            assert!(
                !seq_before(self.written, floor),
                "acknowledged up to {floor}, beyond what was written ({})",
                self.written
            );
            self.acked = floor;
        }
    }

    /// The server reads one whole frame the device wrote.
    fn server_reads(&mut self, inner: &[u8], fresh: bool) {
        let frame = Frame::decode(inner).expect("the device wrote a malformed frame");
        match frame {
            Frame::Data { session, seq, .. } => {
                assert_eq!(session, self.session);
                assert!(
                    !(fresh && seq_before(seq, self.acked)),
                    "seq {seq} started again after its ack ({} acknowledged)",
                    self.acked
                );
                if !seq_before(seq, self.written) {
                    self.written = seq.wrapping_add(1);
                }
            }
            Frame::Beat { session, .. } => assert_eq!(session, self.session),
            _ => panic!("the device wrote a server's frame {frame:?}"),
        }
        if let Some((verdict, _)) = self.server.on_frame(&frame) {
            if verdict == Verdict::Deliver {
                let Frame::Data { seq, .. } = frame else {
                    panic!("delivered a heartbeat")
                };
                assert_eq!(seq, self.delivered, "Dedup delivered out of order or twice");
                self.delivered += 1;
            }
        }
    }

    fn write(&mut self, max: usize) {
        let Some(offer) = self.c.poll_transmit().map(<[u8]>::to_vec) else {
            return;
        };
        if self.udp {
            if max == 0 {
                let _ = self.c.handle_written(self.t(), 0);
                return;
            }
            self.c.handle_written(self.t(), offer.len()).unwrap();
            let inner = match self.framing {
                Framing::Len16 => offer[2..].to_vec(),
                _ => offer,
            };
            self.server_reads(&inner, true);
            return;
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
            self.server_reads(&frame[2..], fresh);
            fresh = true;
        }
    }

    fn lost(&mut self) {
        if self.c.status() != Status::Connected {
            self.wire.clear();
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Enqueue(pad) => {
                let mut m = b"app:".to_vec();
                m.extend((0..*pad % 48).map(|i| b'a' + i % 26));
                let _ = self.c.enqueue(&m);
            }
            Op::Write(max) => {
                let max = if *max == 255 {
                    usize::MAX
                } else {
                    usize::from(*max)
                };
                self.write(max);
            }
            Op::ServerAck => {
                if let Some((s, next)) = self.server.state {
                    let f = self.framed(&acked::ack(s, next));
                    self.to_device(&f);
                }
            }
            Op::Ack {
                other_session,
                next,
            } => {
                let next = match *next {
                    Next::Exact(n) => n,
                    Next::FromWritten(d) => self.written.wrapping_add(d as u32),
                    Next::Wrapped => self.written.wrapping_add(1 << 31),
                };
                let s = if *other_session {
                    self.session ^ 0x8000_0001
                } else {
                    self.session
                };
                let f = self.framed(&acked::ack(s, next));
                self.to_device(&f);
            }
            Op::Duplicate => {
                if let Some(f) = self.last_frame.clone() {
                    self.to_device(&f);
                }
            }
            Op::Msg(body) => {
                let mut m = vec![acked::MSG];
                m.extend_from_slice(&body[..body.len().min(R)]);
                let f = self.framed(&m);
                self.to_device(&f);
            }
            Op::BadAck(n) => {
                let a = acked::ack(self.session, self.written);
                let mut v = a[..usize::from(*n) % acked::ACK_LEN].to_vec();
                if *n >= 128 {
                    v = a.to_vec();
                    v.push(*n);
                }
                let f = self.framed(&v);
                self.to_device(&f);
            }
            Op::Raw(bytes) => self.to_device(bytes),
            Op::Framed(inner) => {
                let f = self.framed(inner);
                self.to_device(&f);
            }
            Op::Advance(d) => {
                self.now += u64::from(*d);
                self.c.handle_timeout(self.t());
            }
            Op::ToDeadline => {
                if let Some(d) = self.c.poll_timeout() {
                    self.now = self.now.max(d.as_millis());
                    self.c.handle_timeout(self.t());
                }
            }
            Op::IoError => {
                let _ = self.c.handle_io_error(self.t());
            }
            Op::Closed => {
                let _ = self.c.handle_closed(self.t());
            }
        }
        self.lost();
        self.actions();
        self.lost();
    }

    /// The invariants, after every operation.
    fn check(&mut self) {
        if let Some(d) = self.c.poll_timeout() {
            assert!(
                d.as_millis() > self.now,
                "deadline {d:?} not after {}",
                self.now
            );
        }
        let mut used = 0;
        let mut seqs = Vec::new();
        for (frame, heartbeat) in self.c.queued_frames() {
            used += frame.len() + HEADER;
            let inner = match self.framing {
                Framing::Len16 => &frame[2..],
                _ => frame,
            };
            match Frame::decode(inner) {
                Ok(Frame::Data { seq, .. }) if !heartbeat => seqs.push(seq),
                Ok(Frame::Beat { .. }) if heartbeat => {}
                other => panic!("queued {other:?} (heartbeat={heartbeat})"),
            }
        }
        assert!(used <= Q, "the queue uses {used} of {Q} bytes");
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "queued seqs {seqs:?}");
        }
        if let Some(&last) = seqs.last() {
            self.queued_end = last.wrapping_add(1);
        }
        // What left the queue since the last check: written whole and
        // acknowledged, every one.
        for &s in &self.queued {
            if !seqs.contains(&s) {
                assert!(
                    seq_before(s, self.written),
                    "seq {s} left the queue unwritten"
                );
                assert!(
                    seq_before(s, self.acked),
                    "seq {s} left the queue unacknowledged"
                );
            }
        }
        // Nothing unacknowledged is missing: the queue runs from at most
        // `acked` to the end.
        let first = seqs.first().copied().unwrap_or(self.queued_end);
        assert!(
            !seq_before(self.acked, first),
            "unacknowledged {}..{first} left the queue",
            self.acked
        );
        let unacked = self.queued_end.wrapping_sub(self.acked) as usize;
        assert!(
            seqs.len() >= unacked,
            "{} queued, {unacked} unacknowledged",
            seqs.len()
        );
        self.queued = seqs;
    }
}

fuzz_target!(|input: Input| {
    let f = &input.config;
    let udp = f.udp;
    let framing = if udp && f.raw {
        Framing::Raw
    } else {
        Framing::Len16
    };
    let config = Config {
        transport: if udp { Transport::Udp } else { Transport::Tcp },
        framing,
        heartbeat_interval: f.heartbeat.map(|h| Duration::from_millis(u64::from(h) + 1)),
        retry_delay: Duration::from_millis(50),
        delivery: Delivery::Acked(Acked {
            session: f.session,
            ack_timeout: Duration::from_millis(u64::from(f.ack_timeout) + 1),
            max_retransmissions: f.max_retransmissions % 6,
            max_in_flight: f.max_in_flight % 5 + 1,
        }),
        ..Config::default()
    };
    let Ok(c) =
        Connection::<TestProtocol, Q, R>::new(config, TestProtocol::default(), Instant::ZERO)
    else {
        return;
    };
    let mut r = Run {
        c,
        now: 0,
        udp,
        framing,
        session: f.session,
        server: Dedup::default(),
        delivered: 0,
        acked: 0,
        written: 0,
        queued_end: 0,
        queued: Vec::new(),
        wire: Vec::new(),
        last_frame: None,
        history: Vec::new(),
    };
    r.c.handle_network(Instant::ZERO, true);
    r.actions();
    for op in input.ops.iter().take(512) {
        r.apply(op);
        r.check();
    }
    // The server's own acks from here on, nothing made up: everything
    // queued is delivered exactly once.
    for _ in 0..256 {
        r.apply(&Op::Write(255));
        r.apply(&Op::ServerAck);
        r.check();
        if r.c.queued() == 0 {
            break;
        }
        if r.c.poll_transmit().is_none() {
            // Past any ack timeout (doubled up to 2^8 times) and retry.
            r.now += 30_000_000;
            r.c.handle_timeout(r.t());
            r.lost();
            r.actions();
            r.check();
        }
    }
    assert_eq!(r.c.queued(), 0, "not drained");
    assert_eq!(
        r.delivered, r.queued_end,
        "delivered exactly once, end to end"
    );
});
