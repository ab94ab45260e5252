//! The tutorial's test protocol on arbitrary messages, through a connected
//! state machine (UDP, raw framing: one datagram is exactly one message):
//! `back...` -> the same bytes, `bin` -> 11 22 33, `time` -> the Unix seconds
//! in decimal, or nothing before the wall clock is set; anything else
//! nothing. `Reply::new` is crate-private, so the handler cannot be called
//! with a reply buffer from outside the crate.
//!
//! Input: flags (1 byte), wall clock ms (8), delay ms (4), then the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longlink_core::time::{Duration, Instant};
use longlink_core::{
    Action, Config, Connection, Framing, TestProtocol, Transport, BIN_REPLY, MIN_PLAUSIBLE_UNIX_MS,
};

const R: usize = 2048;

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let flags = data[0];
    let wall = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let delay = u64::from(u32::from_le_bytes(data[9..13].try_into().unwrap()));
    let msg = &data[13..];
    if msg.len() > R {
        return;
    }
    let config = Config {
        transport: Transport::Udp,
        framing: Framing::Raw,
        heartbeat_interval: None,
        idle_timeout: None,
        ..Config::default()
    };
    let mut c: Connection<TestProtocol, { R + 64 }, R> =
        Connection::new(config, TestProtocol::default(), Instant::ZERO).unwrap();
    let t0 = Instant::from_millis(1000);
    c.handle_network(t0, true);
    assert_eq!(
        c.poll_action(),
        Some(Action::Connect {
            transport: Transport::Udp
        })
    );
    c.handle_connected(t0).unwrap();
    let clock_set = flags & 1 == 1;
    let clock_ok = clock_set && c.handle_wall_clock(t0, wall).is_ok();
    // Readings before 2020 are an unset clock; readings whose offset from the
    // monotonic clock does not fit an i64 (292 million years) are refused too.
    let plausible = wall >= MIN_PLAUSIBLE_UNIX_MS && i64::try_from(wall - 1000).is_ok();
    assert_eq!(clock_ok, clock_set && plausible);
    let t1 = t0 + Duration::from_millis(delay);
    assert_eq!(c.handle_received_bytes(t1, msg), Ok(msg.len()));

    let expected: Option<Vec<u8>> = if msg.starts_with(b"back") {
        Some(msg.to_vec())
    } else if msg == b"bin" {
        Some(BIN_REPLY.to_vec())
    } else if msg == b"time" {
        clock_ok.then(|| ((wall + delay) / 1000).to_string().into_bytes())
    } else {
        None
    };
    assert_eq!(
        c.poll_transmit().map(<[u8]>::to_vec),
        expected,
        "message {msg:?}"
    );
    if let Some(reply) = c.poll_transmit() {
        if msg == b"time" {
            assert!(reply.iter().all(u8::is_ascii_digit));
        }
        let n = reply.len();
        c.handle_written(t1, n).unwrap();
    }
    assert_eq!(c.queued(), 0, "one message, at most one reply");
    let unsynced = u32::from(msg == b"time" && !clock_ok);
    assert_eq!(c.handler().time_unsynced, unsynced);
    assert_eq!(c.stats().messages_in, 1);
    assert_eq!(c.stats().replies_dropped, 0);
});
