//! Regression tests for problems found by the fuzzers, the simulator and the
//! property tests.
//!
//! Each documents a problem that was found and the behaviour of the fix
//! (see the report in fuzz/README.md).
#![allow(
    clippy::unwrap_used,
    reason = "test helper: a failed unwrap is a failed test, with its location"
)]

use longlink_core::framing::{decode, Framing};
use longlink_core::time::Instant;
use longlink_core::{
    Action, Config, Connection, Error, ImplausibleTime, Status, TestProtocol, Transport,
};

fn connected<const Q: usize, const R: usize>(config: Config) -> Connection<TestProtocol, Q, R> {
    let mut c = Connection::new(config, TestProtocol::default(), Instant::ZERO).unwrap();
    c.handle_network(Instant::ZERO, true);
    while c.poll_action().is_some() {}
    c.handle_connected(Instant::ZERO).unwrap();
    while let Some(b) = c.poll_transmit() {
        let n = b.len();
        c.handle_written(Instant::ZERO, n).unwrap();
    }
    c
}

/// Found by the `framing` fuzz target's round-trip property: `Lines` accepts
/// a message ending in `\r`, but its own decoder strips a `\r` before the
/// `\n`, so the peer receives a different message.
#[test]
fn lines_message_ending_in_cr_round_trips_or_is_refused() {
    let mut out = [0u8; 8];
    // Refusing the message would be fine too; changing it is not.
    if let Ok(n) = Framing::Lines.encode(b"a\r", &mut out) {
        let f = decode(Framing::Lines, &out[..n], 8).unwrap().unwrap();
        assert_eq!(
            &out[f.start..f.end],
            b"a\r",
            "encode then decode changed the message"
        );
    }
    // The same through the state machine: the app's message arrives changed.
    let mut c = connected::<128, 32>(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    if c.enqueue(b"abc\r").is_ok() {
        let wire = c.poll_transmit().unwrap().to_vec();
        let f = decode(Framing::Lines, &wire, 32).unwrap().unwrap();
        assert_eq!(&wire[f.start..f.end], b"abc\r");
    }
}

/// Found by the property tests (which exempt it): when the network drops and
/// comes back, the next attempt starts at once, however recent the last one.
/// A network that flaps faster than `retry_delay` makes one connect attempt
/// per flap; the tutorial always waits 5 s after any close
/// (`socketClient:close() ... sys.wait(5000)`) before it looks at the
/// network again.
#[test]
fn a_flapping_network_does_not_bypass_the_retry_delay() {
    let mut c = connected::<128, 32>(Config::default());
    let mut attempts = vec![0u64];
    let mut t = 0;
    for _ in 0..10 {
        t += 100;
        c.handle_network(Instant::from_millis(t), false);
        t += 100;
        c.handle_network(Instant::from_millis(t), true);
        while let Some(a) = c.poll_action() {
            if let Action::Connect { .. } = a {
                attempts.push(t);
            }
        }
        if c.status() == Status::Connecting {
            c.handle_connect_failed(Instant::from_millis(t)).unwrap();
        }
    }
    for w in attempts.windows(2) {
        assert!(
            w[1] - w[0] >= 5_000,
            "connect attempts at {attempts:?}: less than retry_delay apart"
        );
    }
}

/// Found while writing the simulator's UDP socket: a datagram larger than the
/// receive buffer can never be taken by `handle_received_bytes` (`Ok(0)`
/// forever, nothing counted), so a caller that follows its doc ("keeps the
/// rest and offers it again later") stops reading for good. The async shim
/// works around it on its own (`Event::DatagramTooLarge`).
#[test]
fn an_oversize_datagram_is_consumed_and_counted_not_left_pending_forever() {
    let mut c = connected::<128, 16>(Config {
        transport: Transport::Udp,
        heartbeat_interval: None,
        ..Config::default()
    });
    let big = [b'x'; 17];
    let r = c.handle_received_bytes(Instant::ZERO, &big);
    assert!(
        r != Ok(0),
        "a datagram that can never fit is offered again forever: {r:?}"
    );
    assert_eq!(c.stats().frames_rejected, 1, "and it is counted");
}

/// Not a bug, a behaviour the docs do not state: a wall clock so far in the
/// future that its offset from the monotonic clock overflows an `i64` of
/// milliseconds (292 million years) is refused like a pre-2020 one.
#[test]
fn a_wall_clock_beyond_the_i64_range_is_refused() {
    let mut c = connected::<128, 32>(Config::default());
    assert_eq!(
        c.handle_wall_clock(Instant::from_millis(1000), u64::MAX),
        Err(ImplausibleTime)
    );
    assert_eq!(c.unix_time_ms(Instant::from_millis(1000)), None);
}

/// Over UDP a datagram is written whole; a partial `handle_written` used to
/// be accepted and would have sent the rest as a second datagram. Now it is
/// refused and the datagram stays whole at the head of the queue.
#[test]
fn a_partial_udp_write_is_refused() {
    let mut c = connected::<128, 32>(Config {
        transport: Transport::Udp,
        heartbeat_interval: None,
        ..Config::default()
    });
    c.enqueue(b"datagram").unwrap();
    assert_eq!(
        c.handle_written(Instant::ZERO, 3),
        Err(Error::InvalidLength)
    );
    assert_eq!(c.poll_transmit(), Some(&b"datagram"[..]));
    assert_eq!(c.handle_written(Instant::ZERO, 8), Ok(()));
    assert_eq!(c.poll_transmit(), None);
}
