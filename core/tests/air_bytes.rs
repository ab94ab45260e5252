//! Bytes on the air per hour: the state machine run for an hour of virtual
//! time against a server that takes everything (and, in the acknowledged
//! mode, acknowledges every message), for an idle link and for one message
//! a minute, tutorial mode against `heartbeat_when_idle` and the
//! acknowledged mode. Payload bytes are counted exactly; TCP/IP headers are
//! estimated (IPv4 + TCP without options: 40 B per segment, each write one
//! segment, each server segment acknowledged by one pure ACK of 40 B; UDP:
//! 28 B per datagram).
//!
//! `cargo test -p longlink-core --features acked --test air_bytes -- --nocapture`
//! prints the table that BENCHMARKS.md quotes.
#![cfg(feature = "acked")]
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use longlink_core::acked::{self, Dedup, Frame};
use longlink_core::time::{Duration, Instant};
use longlink_core::{Acked, Config, Connection, Delivery, Framing, Transport};

const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Air {
    /// Application and heartbeat bytes the device wrote (framing included).
    up_payload: u64,
    /// Bytes the server sent (acks).
    down_payload: u64,
    /// Segments or datagrams each way.
    up_packets: u64,
    down_packets: u64,
}

impl Air {
    fn on_air(&self, transport: Transport) -> u64 {
        let payload = self.up_payload + self.down_payload;
        match transport {
            // Every segment carries 40 B of headers and is answered by a
            // 40-byte ACK from the other side.
            Transport::Tcp => payload + 80 * (self.up_packets + self.down_packets),
            Transport::Udp => payload + 28 * (self.up_packets + self.down_packets),
        }
    }
}

fn hour(config: Config, message_every: Option<u64>) -> Air {
    let transport = config.transport;
    let acked = matches!(config.delivery, Delivery::Acked(_));
    let mut c: Connection<(), 1024, 256> = Connection::new(config, (), Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    c.handle_network(now, true);
    while c.poll_action().is_some() {}
    c.handle_connected(now).unwrap();
    let mut air = Air::default();
    let mut server = Dedup::default();
    // Messages off the heartbeat's beat (5 s, then every `message_every`).
    let mut next_message = message_every.map(|_| 5_000);
    loop {
        while let Some(bytes) = c.poll_transmit() {
            let bytes = bytes.to_vec();
            c.handle_written(now, bytes.len()).unwrap();
            air.up_payload += bytes.len() as u64;
            air.up_packets += 1;
            if acked {
                // The frames of this write (TCP: len16, possibly several;
                // UDP: the datagram); the server acknowledges the data.
                let mut frames = Vec::new();
                if transport == Transport::Tcp {
                    let mut rest = &bytes[..];
                    while let [hi, lo, tail @ ..] = rest {
                        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                        frames.push(tail[..len].to_vec());
                        rest = &tail[len..];
                    }
                } else {
                    frames.push(bytes.clone());
                }
                let mut last_ack = None;
                for frame in &frames {
                    let f = Frame::decode(frame).unwrap();
                    if let Some((_, Some(ack))) = server.on_frame(&f) {
                        if matches!(f, Frame::Data { .. }) {
                            last_ack = Some(ack);
                        }
                    }
                }
                // One cumulative ack per write received.
                if let Some(ack) = last_ack {
                    let mut framed = Vec::new();
                    if transport == Transport::Tcp {
                        framed.extend_from_slice(&(acked::ACK_LEN as u16).to_be_bytes());
                    }
                    framed.extend_from_slice(&ack);
                    air.down_payload += framed.len() as u64;
                    air.down_packets += 1;
                    c.handle_received_bytes(now, &framed).unwrap();
                }
            }
        }
        let timer = c.poll_timeout().map_or(u64::MAX, Instant::as_millis);
        let message = next_message.unwrap_or(u64::MAX);
        let at = timer.min(message);
        if at >= HOUR_MS {
            return air;
        }
        now = Instant::from_millis(at);
        c.handle_timeout(now);
        if at == message {
            c.enqueue(&[b'm'; 20]).unwrap();
            next_message = message_every.map(|every| message + every);
        }
    }
}

fn config(transport: Transport, when_idle: bool, acked: bool) -> Config {
    Config {
        transport,
        framing: if transport == Transport::Tcp {
            Framing::Len16
        } else {
            Framing::Raw
        },
        heartbeat_when_idle: when_idle,
        delivery: if acked {
            Delivery::Acked(Acked {
                ack_timeout: Duration::from_secs(2),
                ..Acked::new(7)
            })
        } else {
            Delivery::Socket
        },
        ..Config::default()
    }
}

#[test]
fn bytes_on_the_air_per_hour() {
    println!(
        "| transport | load | mode | payload up | payload down | packets | on the air (est.) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for transport in [Transport::Tcp, Transport::Udp] {
        for (load, every) in [
            ("idle", None),
            ("1 msg/min (20 B)", Some(60_000)),
            ("1 msg/5 s (20 B)", Some(5_000)),
        ] {
            let mut row = Vec::new();
            for (mode, when_idle, acked) in [
                ("tutorial (heartbeat every 10 s)", false, false),
                ("heartbeat when idle", true, false),
                ("acknowledged", false, true),
                ("acknowledged + when idle", true, true),
            ] {
                let air = hour(config(transport, when_idle, acked), every);
                println!(
                    "| {transport:?} | {load} | {mode} | {} | {} | {} | {} |",
                    air.up_payload,
                    air.down_payload,
                    air.up_packets + air.down_packets,
                    air.on_air(transport)
                );
                row.push(air);
            }
            let [tutorial, idle, acked, acked_idle] = row[..] else {
                unreachable!()
            };
            // The tutorial: 360 heartbeats an hour, 10 bytes each (+ 2 of
            // len16 over TCP), busy or not.
            let framing = if transport == Transport::Tcp { 2 } else { 0 };
            let messages = every.map_or(0, |e| (HOUR_MS - 5_000).div_ceil(e));
            assert_eq!(
                tutorial.up_payload,
                360 * (10 + framing) + messages * (20 + framing)
            );
            let heartbeat = 10 + framing;
            match every {
                // Idle: nothing to save.
                None => assert_eq!(idle, tutorial),
                // Messages rarer than the interval: the same heartbeats,
                // some of them in the same write as a message (TCP).
                Some(60_000) => {
                    assert_eq!(idle.up_payload, tutorial.up_payload);
                    assert!(idle.up_packets <= tutorial.up_packets);
                }
                // Messages more often than the interval: only the first
                // heartbeat, at connect.
                Some(_) => assert_eq!(idle.up_payload, tutorial.up_payload - 359 * heartbeat),
            }
            // Acked: 9 bytes more per message and per heartbeat, one ack
            // (9 + framing) per message.
            assert_eq!(acked.up_payload, tutorial.up_payload + 9 * (360 + messages));
            assert_eq!(acked.down_payload, messages * (9 + framing));
            assert!(acked_idle.up_payload <= acked.up_payload);
        }
    }
}
