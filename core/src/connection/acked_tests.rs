//! The acknowledged mode against the server side (`acked::Dedup`): every
//! message delivered exactly once, in order, whatever is lost in between.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a failed unwrap is a failed test"
)]

extern crate std;
use std::vec::Vec;

use super::*;
use crate::acked::{self, Dedup, Frame, Verdict};
use crate::{Acked, Delivery, TestProtocol};

const S: u64 = 1000;
const SESSION: u32 = 0xC0FF_EE00;

/// A device and a server that speaks the acknowledged mode, with a pipe
/// between them that the test can cut.
struct Pair<const Q: usize = 512> {
    c: Connection<TestProtocol, Q, 256>,
    now: Instant,
    server: Dedup,
    /// What the server application received, in order.
    delivered: Vec<Vec<u8>>,
    /// Bytes from the device not parsed yet (TCP).
    partial: Vec<u8>,
}

fn config(transport: Transport) -> Config {
    Config {
        transport,
        framing: Framing::Len16,
        heartbeat_interval: Some(Duration::from_secs(10)),
        delivery: Delivery::Acked(Acked::new(SESSION)),
        ..Config::default()
    }
}

impl<const Q: usize> Pair<Q> {
    fn new(config: Config) -> Self {
        let mut p = Pair {
            c: Connection::new(config, TestProtocol::default(), Instant::ZERO).unwrap(),
            now: Instant::ZERO,
            server: Dedup::default(),
            delivered: Vec::new(),
            partial: Vec::new(),
        };
        p.c.handle_network(p.now, true);
        p.connect();
        p
    }
    fn connect(&mut self) {
        while self.c.poll_action().is_some() {}
        self.c.handle_connected(self.now).unwrap();
        self.partial.clear();
    }
    fn at(&mut self, ms: u64) {
        self.now = Instant::from_millis(ms);
        self.c.handle_timeout(self.now);
    }
    /// The device writes up to `max` bytes; the server reads them. Returns
    /// the acks the server would send.
    fn write(&mut self, max: usize) -> Vec<[u8; acked::ACK_LEN]> {
        let mut acks = Vec::new();
        while let Some(bytes) = self.c.poll_transmit().map(<[u8]>::to_vec) {
            let n = bytes.len().min(max);
            if self.c.config().transport == Transport::Udp && n < bytes.len() {
                break;
            }
            let chunk = bytes[..n].to_vec();
            self.c.handle_written(self.now, n).unwrap();
            self.partial.extend_from_slice(&chunk);
            // Len16 frames.
            while self.partial.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
                if self.partial.len() < 2 + len {
                    break;
                }
                let frame: Vec<u8> = self.partial.drain(..2 + len).skip(2).collect();
                let f = Frame::decode(&frame).unwrap();
                let (verdict, ack) = self.server.on_frame(&f).unwrap();
                if verdict == Verdict::Deliver {
                    if let Frame::Data { payload, .. } = f {
                        self.delivered.push(payload.to_vec());
                    }
                }
                acks.extend(ack);
            }
            if n < bytes.len() || max == 0 {
                break;
            }
        }
        acks
    }
    /// The server's frame reaches the device.
    fn send(&mut self, frame: &[u8]) {
        let mut framed = (frame.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(frame);
        assert_eq!(
            self.c.handle_received_bytes(self.now, &framed),
            Ok(framed.len())
        );
    }
    fn deliver_acks(&mut self, acks: &[[u8; acked::ACK_LEN]]) {
        for a in acks {
            self.send(a);
        }
    }
    fn delivered(&self) -> Vec<&[u8]> {
        self.delivered.iter().map(Vec::as_slice).collect()
    }
}

#[test]
fn a_message_stays_queued_until_acknowledged() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    for m in [&b"one"[..], b"two", b"three"] {
        p.c.enqueue(m).unwrap();
    }
    let acks = p.write(usize::MAX);
    assert_eq!(p.delivered(), [&b"one"[..], b"two", b"three"]);
    // Written, not acknowledged: still queued (the heartbeat is gone).
    assert_eq!(p.c.queued(), 3);
    assert_eq!(p.c.poll_transmit(), None, "nothing more to send");
    p.deliver_acks(&acks[..2]);
    assert_eq!(p.c.queued(), 2, "the first ack covers `one`");
    p.deliver_acks(&acks[2..]);
    assert_eq!(p.c.queued(), 0);
    assert_eq!(p.c.stats().messages_acked, 3);
}

#[test]
fn after_a_reconnect_every_unacknowledged_message_goes_again_once() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    for i in 0..5u8 {
        p.c.enqueue(&[b'm', b'0' + i]).unwrap();
    }
    // The server took everything, but its acks were lost with the
    // connection (a stall, then a reset).
    let _lost = p.write(usize::MAX);
    assert_eq!(p.delivered().len(), 5);
    p.c.handle_io_error(p.now).unwrap();
    p.c.enqueue(b"m5").unwrap();
    p.at(5 * S);
    p.connect();
    let acks = p.write(usize::MAX);
    // Resent, in order, before anything newer; the server drops the copies.
    assert_eq!(
        p.delivered(),
        [&b"m0"[..], b"m1", b"m2", b"m3", b"m4", b"m5"]
    );
    p.deliver_acks(&acks);
    assert_eq!(p.c.queued(), 0);
}

#[test]
fn a_message_cut_mid_write_is_resent_whole() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    p.write(usize::MAX); // the heartbeat
    p.c.enqueue(&[b'x'; 100]).unwrap();
    p.write(40);
    assert!(p.delivered().is_empty());
    p.c.handle_closed(p.now).unwrap();
    p.at(5 * S);
    p.connect();
    p.write(usize::MAX);
    assert_eq!(p.delivered(), [&[b'x'; 100][..]]);
}

#[test]
fn acks_of_other_sessions_or_of_unsent_numbers_are_ignored() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    p.c.enqueue(b"a").unwrap();
    p.write(usize::MAX);
    p.send(&acked::ack(SESSION ^ 1, 1));
    p.send(&acked::ack(SESSION, 7));
    // Before 0 in serial order: an ack of the past, nothing new.
    p.send(&acked::ack(SESSION, u32::MAX));
    assert_eq!(p.c.queued(), 1, "still waiting for a real ack");
    assert_eq!(p.c.stats().acks_ignored, 2);
    p.send(&acked::ack(SESSION, 0));
    assert_eq!(p.c.queued(), 1, "an ack of nothing changes nothing");
    p.send(&acked::ack(SESSION, 1));
    p.send(&acked::ack(SESSION, 1));
    assert_eq!(p.c.queued(), 0);
    assert_eq!(p.c.stats().acks, 1);
}

#[test]
fn server_messages_are_answered_and_garbage_is_counted() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    p.write(usize::MAX);
    p.send(b"Mback 1");
    p.send(b"Mbin");
    p.send(b"Z???");
    p.send(b"Dnot from a server");
    p.write(usize::MAX);
    assert_eq!(p.delivered(), [&b"back 1"[..], &[0x11, 0x22, 0x33]]);
    assert_eq!(p.c.stats().frames_rejected, 2);
    assert_eq!(p.c.status(), Status::Connected, "the framing is intact");
}

#[test]
fn the_heartbeat_tells_the_server_where_the_window_starts() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    for _ in 0..3 {
        p.c.enqueue(b"m").unwrap();
    }
    let acks = p.write(usize::MAX);
    p.deliver_acks(&acks);
    // The server loses its state; the next heartbeat says "from 3 on".
    p.server = Dedup::default();
    p.at(10 * S);
    p.c.enqueue(b"after").unwrap();
    p.write(usize::MAX);
    // The message queued behind the heartbeat is seq 3: delivered, once.
    assert_eq!(p.delivered().last(), Some(&&b"after"[..]));
    assert_eq!(p.delivered().len(), 4);
    assert_eq!(
        p.server.state,
        Some((SESSION, 4)),
        "adopted from the heartbeat"
    );
}

#[test]
fn udp_keeps_a_bounded_window_and_retransmits_it_on_timeout() {
    let mut p: Pair = Pair::new(Config {
        delivery: Delivery::Acked(Acked {
            max_in_flight: 2,
            ..Acked::new(SESSION)
        }),
        ..config(Transport::Udp)
    });
    for i in 0..4u8 {
        p.c.enqueue(&[b'u', b'0' + i]).unwrap();
    }
    // Heartbeat, then two datagrams: the window is full.
    let lost = p.write(usize::MAX);
    assert_eq!(p.delivered(), [&b"u0"[..], b"u1"]);
    assert_eq!(p.c.poll_transmit(), None, "window full");
    drop(lost); // the acks never arrive
                // 2 s (plus up to 50 % jitter) later: the window again.
    let deadline = p.c.poll_timeout().unwrap().as_millis();
    assert!((2_000..=3_000).contains(&deadline), "{deadline}");
    p.at(deadline);
    assert_eq!(p.c.stats().ack_timeouts, 1);
    let acks = p.write(usize::MAX);
    assert_eq!(p.delivered(), [&b"u0"[..], b"u1"], "copies dropped");
    p.deliver_acks(&acks);
    p.write(usize::MAX);
    assert_eq!(p.delivered(), [&b"u0"[..], b"u1", b"u2", b"u3"]);
}

#[test]
fn udp_gives_the_link_up_after_max_retransmissions() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Udp)
    });
    p.c.enqueue(b"lost").unwrap();
    p.write(usize::MAX);
    let mut timeouts = Vec::new();
    for _ in 0..5 {
        let at = p.c.poll_timeout().unwrap();
        p.at(at.as_millis());
        timeouts.push(at.as_millis());
        p.write(usize::MAX);
    }
    // 2, 4, 8, 16 s (each with up to 50 % more), then the link is down.
    let gaps: Vec<u64> = timeouts.windows(2).map(|w| w[1] - w[0]).collect();
    for (g, base) in gaps.iter().zip([4_000u64, 8_000, 16_000, 32_000]) {
        assert!((base..=base * 3 / 2).contains(g), "{gaps:?}");
    }
    assert_eq!(p.c.status(), Status::BackingOff);
    assert_eq!(
        p.c.poll_event(),
        Some(Event::Disconnected(Disconnect::AckTimeout))
    );
    assert_eq!(p.c.queued(), 1, "kept for the next connection");
}

#[test]
fn tcp_gives_the_connection_up_when_no_ack_comes() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Tcp)
    });
    p.c.enqueue(b"m").unwrap();
    p.write(usize::MAX);
    let at = p.c.poll_timeout().unwrap();
    p.at(at.as_millis());
    assert_eq!(p.c.status(), Status::BackingOff);
    assert_eq!(p.c.stats().ack_timeouts, 1);
}

#[test]
fn acknowledged_mode_needs_a_binary_framing() {
    for (transport, framing, ok) in [
        (Transport::Tcp, Framing::Len16, true),
        (Transport::Tcp, Framing::Raw, false),
        (Transport::Tcp, Framing::Lines, false),
        (Transport::Udp, Framing::Raw, true),
        (Transport::Udp, Framing::Lines, false),
    ] {
        let c = Config {
            framing,
            ..config(transport)
        };
        assert_eq!(
            c.validate(512, 256).is_ok(),
            ok,
            "{transport:?} {framing:?}"
        );
    }
}

/// Found by the simulator: a heartbeat written behind an unacknowledged
/// message stays queued (it cannot leave from the middle), but it counted
/// as sent, so every reconnect queued another one: heartbeats piled up in
/// the queue and burst onto the next connection, as in the tutorial.
#[test]
fn heartbeats_do_not_pile_up_behind_unacknowledged_messages() {
    let mut p: Pair = Pair::new(config(Transport::Tcp));
    p.write(usize::MAX); // the first heartbeat, alone: it leaves
    p.c.enqueue(b"m").unwrap();
    for round in 1..=4u64 {
        // `m`, then a heartbeat behind it; the acks never come.
        p.at(round * 20 * S - 10 * S);
        let _lost = p.write(usize::MAX);
        p.c.handle_io_error(p.now).unwrap();
        p.at(round * 20 * S);
        p.connect();
        let heartbeats = p.c.queued_frames().filter(|(_, hb)| *hb).count();
        assert!(
            heartbeats <= 1,
            "round {round}: {heartbeats} heartbeats queued"
        );
    }
    let acks = p.write(usize::MAX);
    p.deliver_acks(&acks);
    assert_eq!(p.c.queued(), 0);
    assert_eq!(p.delivered(), [&b"m"[..]]);
}

/// Found by the simulator's bogus acks: an ack covering a message that
/// was queued but never written was believed, and the message left the
/// queue unsent (lost, though "acknowledged").
#[test]
fn an_ack_for_a_message_never_written_is_ignored() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Tcp)
    });
    p.c.enqueue(b"sent").unwrap();
    p.write(usize::MAX);
    p.c.enqueue(b"queued").unwrap();
    // `queued` (seq 1) was never written: an ack for it is not believed.
    p.send(&acked::ack(SESSION, 2));
    assert_eq!(p.c.stats().acks_ignored, 1);
    assert_eq!(p.c.queued(), 2);
    let acks = p.write(usize::MAX);
    p.deliver_acks(&acks);
    assert_eq!(p.delivered(), [&b"sent"[..], b"queued"]);
    assert_eq!(p.c.queued(), 0);
}

/// Found by the simulator: over TCP, when an ack covered a message cut
/// mid-write and the ones behind it, the transmit view ran on past the
/// cut one, so acknowledged messages not yet started on this connection
/// were sent again (harmless at the server, which drops them, but bytes on
/// the air and against "nothing acknowledged is sent again").
#[test]
fn an_acknowledged_message_is_not_started_after_its_ack() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Tcp)
    });
    for m in [&b"m0"[..], b"m1", b"m2"] {
        p.c.enqueue(m).unwrap();
    }
    let _lost = p.write(usize::MAX);
    p.c.handle_io_error(p.now).unwrap();
    p.at(5 * S);
    p.connect();
    // `m0` again, whole, and 3 bytes of `m1`; the server acks all three.
    let frame = 2 + acked::DEVICE_HEADER + 2;
    let acks = p.write(frame + 3);
    assert_eq!(acks, [acked::ack(SESSION, 3)]);
    p.deliver_acks(&acks);
    // Only the rest of `m1` (a TCP frame cannot be cut short); not `m2`.
    assert_eq!(p.c.poll_transmit().map(<[u8]>::len), Some(frame - 3));
    p.write(usize::MAX);
    assert_eq!(p.c.poll_transmit(), None);
    assert_eq!(p.c.queued(), 0);
}

/// The same behind a heartbeat: the ack covers the message behind a
/// heartbeat not yet written on this connection; the heartbeat goes, the
/// acknowledged message does not.
#[test]
fn an_acknowledged_message_behind_a_heartbeat_is_not_sent_again() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Tcp)
    });
    p.c.enqueue(b"m0").unwrap();
    p.c.queue_heartbeat();
    p.c.enqueue(b"m1").unwrap();
    let _lost = p.write(usize::MAX);
    p.c.handle_io_error(p.now).unwrap();
    p.at(5 * S);
    p.connect();
    let frame = 2 + acked::DEVICE_HEADER + 2;
    let acks = p.write(frame);
    assert_eq!(acks, [acked::ack(SESSION, 2)]);
    p.deliver_acks(&acks);
    let hb = 2 + acked::DEVICE_HEADER + p.c.config().heartbeat_payload.len();
    assert_eq!(
        p.c.poll_transmit().map(<[u8]>::len),
        Some(hb),
        "the heartbeat only"
    );
    p.write(usize::MAX);
    assert_eq!(p.c.poll_transmit(), None);
    assert_eq!(p.c.queued(), 0);
}

/// A connection that ends while an acknowledged message is cut mid-write:
/// it leaves the queue, instead of blocking it with nothing to send.
#[test]
fn an_acknowledged_message_cut_by_a_disconnect_leaves_the_queue() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Tcp)
    });
    p.c.enqueue(b"m0").unwrap();
    p.c.enqueue(b"m1").unwrap();
    let _lost = p.write(usize::MAX);
    p.c.handle_io_error(p.now).unwrap();
    p.at(5 * S);
    p.connect();
    let frame = 2 + acked::DEVICE_HEADER + 2;
    let acks = p.write(frame + 3);
    p.deliver_acks(&acks);
    p.c.handle_io_error(p.now).unwrap();
    assert_eq!(p.c.queued(), 0);
}

#[test]
fn udp_a_new_connection_gets_the_whole_retransmission_schedule_again() {
    let mut p: Pair = Pair::new(Config {
        heartbeat_interval: None,
        ..config(Transport::Udp)
    });
    p.c.enqueue(b"lost").unwrap();
    p.write(usize::MAX);
    // Five timeouts: the link is given up.
    for _ in 0..5 {
        let at = p.c.poll_timeout().unwrap();
        p.at(at.as_millis());
        p.write(usize::MAX);
    }
    assert_eq!(p.c.status(), Status::BackingOff);
    let at = p.c.poll_timeout().unwrap();
    p.at(at.as_millis());
    p.connect();
    p.write(usize::MAX);
    // The first timeout of the new socket is 2 s again (plus jitter), not
    // 64 s, and it does not give up at once.
    let first = p.c.poll_timeout().unwrap().as_millis() - p.now.as_millis();
    assert!((2_000..=3_000).contains(&first), "{first}");
    p.at(p.now.as_millis() + first);
    assert_eq!(p.c.status(), Status::Connected);
}
