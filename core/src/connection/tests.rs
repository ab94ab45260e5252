//! Unit tests: each of the tutorial's behaviours at exact times against
//! `Config::default()`, and each place where we do better than the tutorial.

extern crate std;
use std::vec::Vec;

use super::*;
use crate::{payload, ConnectFailure, Disconnect, Event, Remote, Status, TestProtocol};

const S: u64 = 1000;

/// A connection with a pretend socket around it.
struct T<H: Handler = TestProtocol, const Q: usize = 256, const R: usize = 64> {
    c: Connection<H, Q, R>,
    now: Instant,
    /// Bytes written to the pretend socket, per connection.
    wire: Vec<u8>,
}

impl<const Q: usize, const R: usize> T<TestProtocol, Q, R> {
    fn new(config: Config) -> Self {
        T {
            c: Connection::new(config, TestProtocol::default(), Instant::ZERO).unwrap(),
            now: Instant::ZERO,
            wire: Vec::new(),
        }
    }
}

impl<H: Handler, const Q: usize, const R: usize> T<H, Q, R> {
    fn at(&mut self, ms: u64) -> &mut Self {
        self.now = Instant::from_millis(ms);
        self.c.handle_timeout(self.now);
        self
    }
    fn actions(&mut self) -> Vec<Action> {
        core::iter::from_fn(|| self.c.poll_action()).collect()
    }
    /// Takes the pending actions, which must end in a Connect, and connects.
    fn connect(&mut self) {
        let actions = self.actions();
        assert_eq!(
            actions.last(),
            Some(&Action::Connect {
                transport: Transport::Tcp
            })
        );
        self.c.handle_connected(self.now).unwrap();
    }
    /// Writes everything queued, as a socket that takes it all would.
    fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = self.c.poll_transmit() {
            out.extend_from_slice(b);
            let n = b.len();
            self.c.handle_written(self.now, n).unwrap();
        }
        self.wire.extend_from_slice(&out);
        out
    }
    fn recv(&mut self, data: &[u8]) {
        let n = self.c.handle_received_bytes(self.now, data).unwrap();
        assert_eq!(n, data.len(), "receive buffer took everything");
    }
    fn deadline(&self) -> u64 {
        self.c.poll_timeout().unwrap().as_millis()
    }
}

fn connected() -> T {
    let mut t = T::new(Config::default());
    t.c.handle_network(t.now, true);
    t.connect();
    t
}

// 1. Network wait and the flight-mode cycle ------------------------------------

#[test]
fn waits_for_network_then_cycles_the_radio_for_20s() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    assert_eq!(t.actions(), []);
    assert_eq!(t.c.status(), Status::WaitingForNetwork);
    assert_eq!(t.deadline(), 300 * S, "5 minutes of network wait");
    t.at(300 * S - 1);
    assert_eq!(t.actions(), []);
    t.at(300 * S);
    assert_eq!(t.actions(), [Action::RadioOff]);
    assert_eq!(t.c.status(), Status::RadioOff);
    assert_eq!(t.deadline(), 320 * S, "20 s of flight mode");
    t.at(320 * S - 1);
    assert_eq!(t.actions(), []);
    t.at(320 * S);
    assert_eq!(t.actions(), [Action::RadioOn]);
    assert_eq!(t.c.status(), Status::WaitingForNetwork);
    assert_eq!(t.deadline(), 620 * S, "and waits 5 minutes again");
    t.at(500 * S);
    t.c.handle_network(t.now, true);
    assert_eq!(
        t.actions(),
        [Action::Connect {
            transport: Transport::Tcp
        }]
    );
    assert_eq!(t.c.stats().radio_cycles, 1);
}

#[test]
fn network_up_during_flight_mode_connects_right_after_radio_on() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.at(300 * S);
    assert_eq!(t.actions(), [Action::RadioOff]);
    t.at(310 * S);
    t.c.handle_network(t.now, true);
    assert_eq!(t.actions(), [], "nothing happens while the radio is off");
    t.at(320 * S);
    assert_eq!(
        t.actions(),
        [
            Action::RadioOn,
            Action::Connect {
                transport: Transport::Tcp
            }
        ]
    );
}

#[test]
fn a_late_clock_still_runs_every_step_in_order() {
    // A caller that oversleeps sees the radio go off, and then on at its next
    // call, never both in one step (RadioOff is re-armed from the late `now`).
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.at(1000 * S);
    assert_eq!(t.actions(), [Action::RadioOff]);
    assert_eq!(t.deadline(), 1020 * S);
}

// 2. TCP or UDP ----------------------------------------------------------------

#[test]
fn transport_is_only_a_config_choice() {
    for transport in [Transport::Tcp, Transport::Udp] {
        let mut t = T::<TestProtocol, 256, 64>::new(Config {
            transport,
            ..Config::default()
        });
        t.c.handle_network(t.now, true);
        assert_eq!(t.actions(), [Action::Connect { transport }]);
        t.c.handle_connected(t.now).unwrap();
        assert_eq!(t.flush(), b"heart beat");
        t.recv(b"bin");
        assert_eq!(t.flush(), [0x11, 0x22, 0x33]);
    }
}

#[test]
fn a_remote_displays_as_host_and_port() {
    let remote = Remote::Host {
        name: "lab.example",
        port: 50798,
    };
    assert_eq!(std::format!("{remote}"), "lab.example:50798");
    assert_eq!(remote.port(), 50798);
}

// 3. Connect failures, retry delay, link reset ---------------------------------

#[test]
fn failed_connects_retry_every_5s_and_reset_the_link_after_5() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.c.handle_network(t.now, true);
    let mut attempts = Vec::new();
    for i in 0..10u64 {
        let actions = t.actions();
        assert_eq!(
            actions.last(),
            Some(&Action::Connect {
                transport: Transport::Tcp
            })
        );
        attempts.push(t.now.as_millis());
        assert_eq!(t.c.status(), Status::Connecting);
        t.c.handle_connect_failed(t.now).unwrap();
        assert_eq!(t.c.status(), Status::BackingOff);
        let expected: &[Action] = if i % 5 == 4 {
            &[Action::Close, Action::ResetLink]
        } else {
            &[Action::Close]
        };
        assert_eq!(t.actions(), expected, "after failure {}", i + 1);
        assert_eq!(t.c.consecutive_failures(), ((i + 1) % 5) as u16);
        assert_eq!(t.deadline(), t.now.as_millis() + 5 * S);
        t.at(t.now.as_millis() + 5 * S);
    }
    assert_eq!(
        attempts,
        [0, 5, 10, 15, 20, 25, 30, 35, 40, 45].map(|s| s * S)
    );
    let st = t.c.stats();
    assert_eq!(
        (st.connect_attempts, st.connect_failures, st.link_resets),
        (11, 10, 2)
    );
}

#[test]
fn failure_count_resets_on_success() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.c.handle_network(t.now, true);
    for _ in 0..4 {
        let _ = t.actions();
        t.c.handle_connect_failed(t.now).unwrap();
        t.at(t.now.as_millis() + 5 * S);
    }
    assert_eq!(t.c.consecutive_failures(), 4);
    t.connect();
    assert_eq!(t.c.consecutive_failures(), 0);
    t.c.handle_closed(t.now).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    // After a close the tutorial also waits 5 s before reconnecting.
    assert_eq!(t.deadline(), t.now.as_millis() + 5 * S);
    for _ in 0..4 {
        t.at(t.now.as_millis() + 5 * S);
        let _ = t.actions();
        t.c.handle_connect_failed(t.now).unwrap();
    }
    assert_eq!(
        t.actions(),
        [Action::Close],
        "4 more failures: no reset yet"
    );
    assert_eq!(t.c.stats().link_resets, 0);
}

#[test]
fn failure_count_resets_when_the_network_goes_away() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.c.handle_network(t.now, true);
    for _ in 0..3 {
        let _ = t.actions();
        t.c.handle_connect_failed(t.now).unwrap();
        t.at(t.now.as_millis() + 5 * S);
    }
    assert_eq!(t.c.consecutive_failures(), 3);
    t.c.handle_network(t.now, false);
    assert_eq!(t.c.consecutive_failures(), 0);
    assert_eq!(
        t.actions(),
        [Action::Close],
        "the attempt in progress is abandoned"
    );
    // The tutorial: close, wait 5 s, then look at the network again.
    assert_eq!(t.c.status(), Status::BackingOff);
    assert_eq!(t.deadline(), t.now.as_millis() + 5 * S);
    t.at(t.now.as_millis() + 5 * S);
    assert_eq!(t.c.status(), Status::WaitingForNetwork);
    assert_eq!(t.deadline(), t.now.as_millis() + 300 * S);
}

#[test]
fn a_flapping_network_cannot_bring_attempts_closer_than_the_retry_delay() {
    let mut t = connected();
    let mut attempts = std::vec![0u64];
    // The network goes down for 300 ms every 1.3 s. The caller wakes at
    // every deadline and every network change, and acts on every action at
    // once (connects succeed).
    let take = |t: &mut T, attempts: &mut Vec<u64>| {
        for a in t.actions() {
            if let Action::Connect { .. } = a {
                attempts.push(t.now.as_millis());
                t.c.handle_connected(t.now).unwrap();
            }
        }
    };
    for i in 0..40u64 {
        for (ms, up) in [(1000, false), (1300, true)] {
            let at = i * 1300 + ms;
            while t.deadline() < at {
                t.at(t.deadline());
                take(&mut t, &mut attempts);
            }
            t.at(at);
            t.c.handle_network(t.now, up);
            take(&mut t, &mut attempts);
        }
    }
    assert!(attempts.len() > 2, "it does reconnect: {attempts:?}");
    for w in attempts.windows(2) {
        assert!(w[1] - w[0] >= 5 * S, "attempts {attempts:?}");
    }
}

#[test]
fn connect_timeout_is_a_failure() {
    let config = Config {
        connect_timeout: Some(Duration::from_secs(3)),
        ..Config::default()
    };
    let mut t = T::<TestProtocol, 256, 64>::new(config);
    t.c.handle_network(t.now, true);
    let _ = t.actions();
    assert_eq!(t.deadline(), 3 * S);
    t.at(3 * S);
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.c.stats().connect_timeouts, 1);
    assert_eq!(t.c.consecutive_failures(), 1);
    assert_eq!(t.deadline(), 8 * S);
}

#[test]
fn events_that_cannot_happen_now_are_refused() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    assert_eq!(t.c.handle_connected(t.now), Err(Error::InvalidState));
    assert_eq!(t.c.handle_received(t.now, 1), Err(Error::InvalidState));
    assert_eq!(t.c.handle_closed(t.now), Err(Error::InvalidState));
    t.c.handle_network(t.now, true);
    // The caller has not taken the Connect action yet.
    assert_eq!(t.c.handle_connected(t.now), Err(Error::InvalidState));
    t.connect();
    assert_eq!(t.c.handle_written(t.now, 11), Err(Error::InvalidLength));
    assert_eq!(t.c.handle_received(t.now, 65), Err(Error::InvalidLength));
    assert_eq!(t.c.receive_room(), 64);
    assert_eq!(t.c.status(), Status::Connected);
}

// 4. Heartbeat -----------------------------------------------------------------

#[test]
fn heartbeat_on_connect_then_every_10s() {
    let mut t = connected();
    assert_eq!(t.flush(), b"heart beat");
    assert_eq!(t.deadline(), 10 * S);
    t.at(10 * S - 1);
    assert_eq!(t.flush(), b"");
    for i in 1..=5 {
        t.at(i * 10 * S);
        assert_eq!(t.flush(), b"heart beat", "at {i}0 s");
    }
    assert_eq!(t.c.stats().heartbeats_sent, 6);
}

#[test]
fn at_most_one_heartbeat_pending_never_a_burst() {
    let mut t = connected();
    // The socket takes nothing for a minute.
    for i in 1..=6 {
        t.at(i * 10 * S);
    }
    assert_eq!(t.c.queued(), 1);
    assert_eq!(t.c.stats().heartbeats_skipped, 6);
    assert_eq!(t.flush(), b"heart beat");
    // Disconnected for a minute: nothing piles up either.
    t.c.handle_closed(t.now).unwrap();
    for i in 7..=12 {
        t.at(i * 10 * S);
        let _ = t.actions();
        if t.c.status() == Status::Connecting {
            t.c.handle_connect_failed(t.now).unwrap();
            assert_eq!(t.actions()[0], Action::Close);
        }
    }
    assert_eq!(t.c.queued(), 0);
    t.at(125 * S);
    t.connect();
    assert_eq!(t.flush(), b"heart beat");
}

#[test]
fn heartbeat_can_be_turned_off() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        heartbeat_interval: None,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"");
    assert_eq!(t.c.poll_timeout(), None, "no timers while connected");
}

#[test]
fn heartbeat_room_is_reserved_in_the_queue() {
    // 64 bytes: the application can use 64 - 14 (heartbeat slot) = 50.
    let mut t = T::<TestProtocol, 64, 64>::new(Config::default());
    t.c.enqueue(&[b'a'; 46]).unwrap(); // 4 + 46 = 50
    assert_eq!(t.c.enqueue(b"x"), Err(QueueError::Full));
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.c.queued(), 2, "the heartbeat still fits");
}

// 5. Answering the server ------------------------------------------------------

#[test]
fn answers_back_bin_time() {
    let mut t = connected();
    t.flush();
    t.c.handle_wall_clock(t.now, 1_732_550_400_000).unwrap();
    t.at(1500);
    t.recv(b"back 123");
    assert_eq!(t.flush(), b"back 123");
    t.recv(b"bin");
    assert_eq!(t.flush(), [0x11, 0x22, 0x33]);
    t.recv(b"time");
    assert_eq!(t.flush(), b"1732550401");
    t.recv(b"hello");
    assert_eq!(t.flush(), b"");
    assert_eq!(t.c.stats().messages_in, 4);
}

#[test]
fn time_is_never_answered_before_the_clock_is_set() {
    let mut t = connected();
    t.flush();
    t.recv(b"time");
    assert_eq!(t.flush(), b"", "no 1970 timestamp, no answer");
    assert_eq!(t.c.handler().time_unsynced, 1);
    // An RTC that lost power reads 1970: refused.
    assert_eq!(t.c.handle_wall_clock(t.now, 5_000), Err(ImplausibleTime));
    t.recv(b"time");
    assert_eq!(t.flush(), b"");
    t.c.handle_wall_clock(t.now, 1_800_000_000_000).unwrap();
    t.recv(b"time");
    assert_eq!(t.flush(), b"1800000000");
    // A later jump (NTP correction) is followed.
    t.c.handle_wall_clock(t.now, 1_800_000_100_000).unwrap();
    t.recv(b"time");
    assert_eq!(t.flush(), b"1800000100");
}

#[test]
fn wall_clock_offset_matches_wide_arithmetic_at_the_extremes() {
    let half = 1u64 << 63;
    let values = [
        0,
        1,
        MIN_PLAUSIBLE_UNIX_MS,
        half - 1,
        half,
        half + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for now in values {
        for unix in values {
            let mut c: Connection<(), 64, 64> =
                Connection::new(Config::default(), (), Instant::ZERO).unwrap();
            let at = Instant::from_millis(now);
            let result = c.handle_wall_clock(at, unix);
            // The reference: 128-bit arithmetic, as the offset is defined
            // (at the core's clamped `now`: the last millisecond is reserved).
            let at = at.as_millis().min(u64::MAX - 1);
            let offset = i128::from(unix) - i128::from(at);
            let fits =
                unix >= MIN_PLAUSIBLE_UNIX_MS && i64::try_from(offset).is_ok_and(|o| o != i64::MIN);
            assert_eq!(result.is_ok(), fits, "now {now} unix {unix}");
            for later in values {
                let later = Instant::from_millis(later);
                let expected = if fits {
                    u64::try_from(i128::from(later.as_millis()) + offset).ok()
                } else {
                    None
                };
                assert_eq!(c.unix_time_ms(later), expected, "now {now} unix {unix}");
            }
        }
    }
}

// 6. The outgoing queue --------------------------------------------------------

#[test]
fn queued_data_is_offered_at_once_not_after_a_receive_timeout() {
    let mut t = connected();
    t.flush();
    t.at(1234);
    t.c.enqueue(b"now").unwrap();
    // Same instant, no timer involved: the tutorial waited up to 2 s here.
    assert_eq!(t.c.poll_transmit(), Some(&b"now"[..]));
}

#[test]
fn messages_queued_while_offline_go_out_after_connecting_in_order() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    t.c.enqueue(b"one").unwrap();
    t.c.enqueue(b"two").unwrap();
    assert_eq!(t.c.poll_transmit(), None);
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"onetwoheart beat");
}

#[test]
fn a_full_queue_is_an_explicit_error() {
    let mut t = T::<TestProtocol, 32, 64>::new(Config::default()); // 18 bytes for the app
    assert_eq!(t.c.queue_room(), 14);
    t.c.enqueue(&[1; 10]).unwrap();
    assert_eq!(t.c.enqueue(&[2; 1]), Err(QueueError::Full));
    assert_eq!(t.c.enqueue(&[2; 15]), Err(QueueError::TooLarge));
    assert_eq!(t.c.enqueue(b""), Err(QueueError::Empty));
    assert_eq!(t.c.stats().queue_full, 1);
    assert_eq!(t.c.queued(), 1);
}

// 7. Errors: close, retry, lose nothing ----------------------------------------

#[test]
fn a_partial_write_resumes_where_it_stopped() {
    let mut t = connected();
    t.flush();
    t.c.enqueue(b"0123456789").unwrap();
    assert_eq!(t.c.poll_transmit(), Some(&b"0123456789"[..]));
    t.c.handle_written(t.now, 4).unwrap();
    assert_eq!(t.c.poll_transmit(), Some(&b"456789"[..]));
    t.c.handle_written(t.now, 0).unwrap();
    assert_eq!(
        t.c.poll_transmit(),
        Some(&b"456789"[..]),
        "would-block changes nothing"
    );
    t.c.handle_written(t.now, 6).unwrap();
    assert_eq!(t.c.poll_transmit(), None);
    assert_eq!(t.c.stats().messages_out, 2);
}

#[test]
fn a_message_cut_by_a_disconnect_is_sent_again_whole() {
    let mut t = connected();
    t.flush();
    t.c.enqueue(b"0123456789").unwrap();
    t.c.handle_written(t.now, 4).unwrap();
    t.c.handle_io_error(t.now).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(
        t.c.poll_transmit(),
        None,
        "nothing to send while disconnected"
    );
    assert_eq!(t.deadline(), 5 * S);
    t.at(5 * S);
    t.connect();
    assert_eq!(
        t.flush(),
        b"0123456789heart beat",
        "whole, and before the new heartbeat"
    );
    assert_eq!(t.c.stats().disconnects, 1);
}

#[test]
fn the_tutorial_would_lose_a_message_on_a_failed_send_we_do_not() {
    // The tutorial removes the message from the queue before `send`; when the
    // send fails, it is gone. Here it stays until fully written.
    let mut t = connected();
    t.flush();
    t.c.enqueue(b"precious").unwrap();
    t.c.handle_io_error(t.now).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.c.queued(), 1);
    t.at(5 * S);
    t.connect();
    assert_eq!(t.flush(), b"preciousheart beat");
}

#[test]
fn peer_close_and_receive_error_reconnect_after_the_retry_delay() {
    let mut t = connected();
    t.at(2 * S);
    t.c.handle_closed(t.now).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.c.status(), Status::BackingOff);
    t.at(7 * S - 1);
    assert_eq!(t.actions(), []);
    t.at(7 * S);
    t.connect();
    t.at(8 * S);
    t.c.handle_io_error(t.now).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.deadline(), 13 * S);
}

#[test]
fn network_loss_while_connected_closes_and_waits_for_the_network() {
    let mut t = connected();
    t.c.handle_network(t.now, false);
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.c.stats().disconnects, 1);
    t.at(S);
    t.c.handle_network(t.now, true);
    assert_eq!(
        t.actions(),
        [],
        "back after 1 s: the retry delay still runs"
    );
    t.at(5 * S);
    assert_eq!(
        t.actions(),
        [Action::Connect {
            transport: Transport::Tcp
        }]
    );
}

#[test]
fn network_still_down_after_the_retry_delay_starts_the_network_wait() {
    let mut t = connected();
    t.c.handle_network(t.now, false);
    let _ = t.actions();
    t.at(5 * S);
    assert_eq!(t.c.status(), Status::WaitingForNetwork);
    t.at(305 * S);
    assert_eq!(t.actions(), [Action::RadioOff]);
}

// Beyond the tutorial ----------------------------------------------------------

#[test]
fn lines_framing_survives_split_and_coalesced_reads() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"heart beat\n");
    t.recv(b"ba");
    t.recv(b"ck 1\nbin\r\nba");
    assert_eq!(t.flush(), b"back 1\n\x11\x22\x33\n");
    t.recv(b"ck 2\n");
    assert_eq!(t.flush(), b"back 2\n");
    t.c.enqueue(b"app").unwrap();
    assert_eq!(t.flush(), b"app\n");
    assert_eq!(t.c.enqueue(b"a\nb"), Err(QueueError::Unframeable));
}

#[test]
fn len16_framing_both_ways() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        framing: Framing::Len16,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"\x00\x0aheart beat");
    t.recv(b"\x00\x03b");
    t.recv(b"in\x00\x06back\n1");
    assert_eq!(t.flush(), b"\x00\x03\x11\x22\x33\x00\x06back\n1");
}

#[test]
fn an_oversize_frame_is_counted_and_resets_the_connection() {
    for (framing, data) in [
        (Framing::Lines, &[b'x'; 64][..]),
        (Framing::Len16, &b"\x00\x3f"[..]), // 2 + 63 > 64
    ] {
        let mut t = T::<TestProtocol, 256, 64>::new(Config {
            framing,
            ..Config::default()
        });
        t.c.handle_network(t.now, true);
        t.connect();
        t.flush();
        t.recv(data);
        assert_eq!(t.actions(), [Action::Close], "{framing:?}");
        assert_eq!(t.c.stats().frames_rejected, 1);
        assert_eq!(t.c.status(), Status::BackingOff);
    }
}

#[test]
fn the_largest_frames_that_fit_are_accepted() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    t.flush();
    let mut line = [b'k'; 64];
    line[..4].copy_from_slice(b"back");
    line[63] = b'\n';
    t.recv(&line);
    assert_eq!(t.flush(), &line[..]);
}

#[test]
fn udp_datagram_is_one_message_and_a_bad_one_is_dropped_not_fatal() {
    let config = Config {
        transport: Transport::Udp,
        framing: Framing::Lines,
        ..Config::default()
    };
    let mut t = T::<TestProtocol, 256, 64>::new(config);
    t.c.handle_network(t.now, true);
    assert_eq!(
        t.actions(),
        [Action::Connect {
            transport: Transport::Udp
        }]
    );
    t.c.handle_connected(t.now).unwrap();
    t.flush();
    t.recv(b"bin\nbin\n");
    assert_eq!(t.flush(), b"\x11\x22\x33\n\x11\x22\x33\n");
    // A frame cut by the end of the datagram: its whole frames are answered,
    // the rest dropped and counted; the next datagram starts clean.
    t.recv(b"bin\nbi");
    assert_eq!(t.flush(), b"\x11\x22\x33\n");
    assert_eq!(t.c.stats().frames_rejected, 1);
    t.recv(b"n\n");
    assert_eq!(t.flush(), b"", "`n` is not the end of the previous `bi`");
    // Larger than the receive buffer: consumed and counted, never truncated.
    assert_eq!(t.c.handle_received_bytes(t.now, &[b'b'; 65]), Ok(65));
    assert_eq!(t.c.stats().frames_rejected, 2);
    assert_eq!(t.actions(), [], "a datagram stands alone: no reconnect");
    t.recv(b"bin\n");
    assert_eq!(t.flush(), b"\x11\x22\x33\n");
}

#[test]
fn a_udp_datagram_is_written_whole_or_not_at_all() {
    let config = Config {
        transport: Transport::Udp,
        ..Config::default()
    };
    let mut t = T::<TestProtocol, 256, 64>::new(config);
    t.c.handle_network(t.now, true);
    let _ = t.actions();
    t.c.handle_connected(t.now).unwrap();
    assert_eq!(t.c.handle_written(t.now, 3), Err(Error::InvalidLength));
    assert_eq!(t.c.handle_written(t.now, 0), Ok(()));
    assert_eq!(t.c.handle_written(t.now, 10), Ok(()));
    assert_eq!(t.c.poll_transmit(), None);
}

#[test]
fn lines_refuses_what_it_could_not_deliver_unchanged() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    assert_eq!(t.c.enqueue(b"abc\r"), Err(QueueError::Unframeable));
    assert_eq!(t.c.enqueue(b"a\rb"), Ok(()), "a \\r inside a line is fine");
    t.c.handle_network(t.now, true);
    t.connect();
    t.flush();
    // `back\r\r\n` arrives as `back\r`; echoing it would lose the `\r`.
    t.recv(b"back\r\r\n");
    assert_eq!(t.flush(), b"");
    assert_eq!(t.c.stats().replies_dropped, 1);
}

#[test]
fn an_empty_raw_reply_is_dropped_and_counted_not_queued() {
    // Raw framing has no bytes for an empty message (`enqueue` refuses it
    // as `Empty`); an empty reply left in the queue would never go out over
    // TCP and would stall everything behind it.
    struct Empty;
    impl Handler for Empty {
        fn on_message(
            &mut self,
            _: &[u8],
            _: &Context,
            r: &mut Reply<'_>,
        ) -> Result<(), crate::ReplyFull> {
            r.write(&[])
        }
    }
    let mut t = T::<Empty, 256, 64> {
        c: Connection::new(Config::default(), Empty, Instant::ZERO).unwrap(),
        now: Instant::ZERO,
        wire: Vec::new(),
    };
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"heart beat");
    t.recv(b"anything");
    assert_eq!(t.c.stats().replies_dropped, 1);
    assert_eq!(t.c.queued(), 0);
    assert!(core::iter::from_fn(|| t.c.poll_event()).any(|e| e == Event::ReplyDropped));
}

#[test]
fn an_empty_datagram_whose_reply_waits_is_handled_once_there_is_room() {
    // Raw UDP: an empty datagram is an empty message. Its reply used to be
    // lost when it had to wait for queue room: nothing was left in the
    // receive buffer to retry, so the message was never handled.
    struct Pong;
    impl Handler for Pong {
        fn on_message(
            &mut self,
            _: &[u8],
            _: &Context,
            r: &mut Reply<'_>,
        ) -> Result<(), crate::ReplyFull> {
            r.write(b"pong")
        }
    }
    let config = Config {
        transport: Transport::Udp,
        heartbeat_interval: None,
        ..Config::default()
    };
    let mut t = T::<Pong, 64, 16> {
        c: Connection::new(config, Pong, Instant::ZERO).unwrap(),
        now: Instant::ZERO,
        wire: Vec::new(),
    };
    t.c.handle_network(t.now, true);
    let _ = t.actions();
    t.c.handle_connected(t.now).unwrap();
    while t.c.enqueue(b"0123456789").is_ok() {}
    while t.c.enqueue(b"x").is_ok() {}
    t.c.handle_received(t.now, 0).unwrap();
    assert_eq!(t.c.stats().messages_in, 0, "the reply waits for room");
    assert!(
        t.c.receive_buffer().is_empty(),
        "and nothing is read meanwhile"
    );
    let mut datagrams = Vec::new();
    while let Some(d) = t.c.poll_transmit() {
        datagrams.push(d.to_vec());
        let n = d.len();
        t.c.handle_written(t.now, n).unwrap();
    }
    assert_eq!(t.c.stats().messages_in, 1);
    assert_eq!(datagrams.last().map(Vec::as_slice), Some(&b"pong"[..]));
    assert!(!t.c.receive_buffer().is_empty());
}

#[test]
fn idle_timeout_detects_a_dead_peer() {
    let config = Config {
        idle_timeout: Some(Duration::from_secs(30)),
        ..Config::default()
    };
    let mut t = T::<TestProtocol, 256, 64>::new(config);
    t.c.handle_network(t.now, true);
    t.connect();
    t.at(20 * S);
    t.recv(b"x");
    t.at(50 * S - 1);
    assert_eq!(t.actions(), []);
    t.at(50 * S);
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(t.c.stats().idle_timeouts, 1);
    assert_eq!(t.deadline(), 55 * S);
}

#[test]
fn backoff_grows_with_jitter_and_is_reproducible_from_the_seed() {
    let run = |seed| {
        let config = Config {
            backoff: Backoff::Exponential {
                max: Duration::from_secs(60),
            },
            seed,
            max_failures: 100,
            ..Config::default()
        };
        let mut t = T::<TestProtocol, 256, 64>::new(config);
        t.c.handle_network(t.now, true);
        let mut delays = Vec::new();
        for _ in 0..8 {
            let _ = t.actions();
            t.c.handle_connect_failed(t.now).unwrap();
            let d = t.deadline() - t.now.as_millis();
            delays.push(d);
            t.at(t.deadline());
        }
        delays
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same delays");
    assert_ne!(a, run(8), "another seed, other delays");
    for (n, d) in a.iter().enumerate() {
        let ceiling = ((5 * S) << (n + 1)).min(60 * S);
        assert!(
            (5 * S..=ceiling).contains(d),
            "delay {n} = {d} outside [5 s, {ceiling}]"
        );
    }
    assert!(a[5..].iter().any(|&d| d > 10 * S), "it does grow: {a:?}");
}

#[test]
fn a_flood_is_met_with_backpressure_not_loss() {
    // Queue room for replies: 64 - 15 (the heartbeat's reserve: 11 bytes and
    // a 4-byte index entry) = 49 bytes, i.e. 2 replies of `back 0000000\n`
    // (13 + 4 bytes each).
    let mut t = T::<TestProtocol, 64, 64>::new(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    t.flush();
    // The server floods 20 requests; the socket is not writable meanwhile.
    let sent: Vec<_> = (0..20).map(|i| std::format!("back {i:07}\n")).collect();
    let mut wire = sent.concat().into_bytes();
    let mut out = Vec::new();
    let mut stalls = 0;
    while !wire.is_empty() || t.c.queued() > 0 {
        // Read as much as the state machine takes (several lines at once)
        // while the socket is not writable...
        loop {
            let n = t.c.receive_buffer().len().min(wire.len());
            if n == 0 {
                break;
            }
            let chunk: Vec<u8> = wire.drain(..n).collect();
            t.c.receive_buffer()[..n].copy_from_slice(&chunk);
            t.c.handle_received(t.now, n).unwrap();
        }
        if !wire.is_empty() {
            // ...until reading stops: replies wait for queue room.
            assert!(t.c.receive_buffer().is_empty());
            assert_eq!(t.c.queued(), 2, "the queue is full of replies");
            stalls += 1;
        }
        // Then the socket drains.
        out.extend(t.flush());
    }
    assert!(
        stalls >= 3,
        "reading stopped while replies waited: {stalls}"
    );
    assert_eq!(out, sent.concat().into_bytes(), "every reply, in order");
    assert_eq!(t.c.stats().replies_dropped, 0);
    assert_eq!(t.c.stats().messages_in, 20);
}

#[test]
fn a_reply_that_can_never_fit_is_dropped_and_counted() {
    let mut t = T::<TestProtocol, 32, 64>::new(Config::default());
    t.c.handle_network(t.now, true);
    t.connect();
    t.flush();
    t.recv(b"back!!!!!!!!!!!!!!!!");
    assert_eq!(t.c.stats().replies_dropped, 1);
    assert!(
        !t.c.receive_buffer().is_empty(),
        "the connection does not stall"
    );
    t.recv(b"bin");
    assert_eq!(t.flush(), [0x11, 0x22, 0x33]);
}

#[test]
fn deadline_is_never_in_the_past() {
    let mut t = connected();
    t.at(35 * S); // heartbeats at 10, 20, 30 were due
    assert!(t.deadline() > 35 * S);
    // A clock that goes backwards is clamped.
    t.c.handle_timeout(Instant::from_secs(1));
    assert!(t.deadline() > 35 * S);
}

#[test]
fn the_end_of_time_does_not_hang_the_timers() {
    let mut t = connected();
    t.c.handle_timeout(Instant::from_millis(u64::MAX));
    t.c.handle_timeout(Instant::from_millis(u64::MAX - 1));
    t.flush();
    t.c.handle_closed(Instant::from_millis(u64::MAX)).unwrap();
    assert_eq!(t.actions(), [Action::Close]);
    assert_eq!(
        t.c.poll_timeout(),
        None,
        "a retry beyond the end of time never fires"
    );
}

// Events ------------------------------------------------------------------------

impl<H: Handler, const Q: usize, const R: usize> T<H, Q, R> {
    fn events(&mut self) -> Vec<Event> {
        core::iter::from_fn(|| self.c.poll_event()).collect()
    }
}

#[test]
fn events_say_what_happened_and_why_in_order() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config::default());
    assert_eq!(t.events(), [Event::Status(Status::WaitingForNetwork)]);
    assert_eq!(t.events(), [], "each event is reported once");
    t.c.handle_network(t.now, true);
    assert_eq!(t.events(), [Event::Status(Status::Connecting)]);
    t.actions();
    for i in 1..=5u64 {
        t.c.handle_connect_failed(t.now).unwrap();
        let mut expected = std::vec![Event::ConnectFailed(ConnectFailure::Failed)];
        if i == 5 {
            expected.push(Event::LinkReset);
        }
        expected.push(Event::Status(Status::BackingOff));
        assert_eq!(t.events(), expected, "failure {i}");
        t.at(i * 5 * S);
        assert_eq!(t.events(), [Event::Status(Status::Connecting)]);
        t.actions();
    }
    t.c.handle_connected(t.now).unwrap();
    assert_eq!(
        t.events(),
        [Event::Connected, Event::Status(Status::Connected)]
    );
    t.c.handle_closed(t.now).unwrap();
    assert_eq!(
        t.events(),
        [
            Event::Disconnected(Disconnect::PeerClosed),
            Event::Status(Status::BackingOff)
        ]
    );
    // Network loss while connecting: reported, not counted as a failure.
    t.at(30 * S);
    t.actions();
    t.c.handle_network(t.now, false);
    // Connecting was never polled and the status is back to the last one
    // reported: no status event (level-triggered).
    assert_eq!(
        t.events(),
        [Event::ConnectFailed(ConnectFailure::NetworkLost)]
    );
    assert_eq!(t.c.status(), Status::BackingOff);
    assert_eq!(t.c.consecutive_failures(), 0);
}

#[test]
fn idle_timeout_and_radio_cycle_are_events() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        idle_timeout: Some(Duration::from_secs(30)),
        ..Config::default()
    });
    t.at(300 * S);
    assert_eq!(
        t.events(),
        [Event::RadioCycle, Event::Status(Status::RadioOff)]
    );
    t.c.handle_network(t.now, true);
    t.at(320 * S);
    t.connect();
    t.events();
    t.at(350 * S);
    assert_eq!(
        t.events(),
        [
            Event::Disconnected(Disconnect::IdleTimeout),
            Event::Status(Status::BackingOff)
        ]
    );
}

#[test]
fn events_of_one_kind_between_polls_are_reported_once_and_counted() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        transport: Transport::Udp,
        ..Config::default()
    });
    t.events();
    t.c.handle_network(t.now, true);
    t.actions();
    t.c.handle_connected(t.now).unwrap();
    // Twelve oversized datagrams, never polled in between.
    for _ in 0..12 {
        t.c.handle_received_bytes(t.now, &[b'x'; 100]).unwrap();
    }
    assert_eq!(
        t.events(),
        [
            Event::Connected,
            Event::FrameRejected,
            Event::Status(Status::Connected)
        ]
    );
    assert_eq!(t.c.stats().frames_rejected, 12);
}

#[test]
fn a_late_call_reports_the_due_timer_and_rearms_from_now() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        idle_timeout: Some(Duration::from_secs(30)),
        connect_timeout: Some(Duration::from_secs(2)),
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    t.events();
    // The idle timeout was due at 30 s; the retry delay runs from the late
    // call, not from when the timer was due.
    t.at(43 * S);
    assert_eq!(
        t.events(),
        [
            Event::Disconnected(Disconnect::IdleTimeout),
            Event::Status(Status::BackingOff)
        ]
    );
    assert_eq!(t.deadline(), 48 * S);
    t.at(48 * S);
    t.actions();
    assert_eq!(t.events(), [Event::Status(Status::Connecting)]);
    t.at(50 * S);
    assert_eq!(
        t.events(),
        [
            Event::ConnectFailed(ConnectFailure::TimedOut),
            Event::Status(Status::BackingOff)
        ]
    );
}

// Transmit view and datagram intake --------------------------------------------

#[test]
fn tcp_transmit_offers_every_queued_message_in_one_slice() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        framing: Framing::Lines,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    t.c.enqueue(b"one").unwrap();
    t.c.enqueue(b"two").unwrap();
    assert_eq!(t.c.poll_transmit(), Some(&b"heart beat\none\ntwo\n"[..]));
    // A write that ends inside the second message: the heartbeat leaves the
    // queue, `one` is half written.
    t.c.handle_written(t.now, 13).unwrap();
    assert_eq!(t.c.queued(), 2);
    assert_eq!(t.c.stats().heartbeats_sent, 1);
    assert_eq!(t.c.stats().messages_out, 1);
    assert_eq!(t.c.poll_transmit(), Some(&b"e\ntwo\n"[..]));
    assert_eq!(t.c.handle_written(t.now, 7), Err(Error::InvalidLength));
    t.c.handle_written(t.now, 6).unwrap();
    assert_eq!((t.c.queued(), t.c.stats().messages_out), (0, 3));
    assert_eq!(t.c.poll_transmit(), None);
    assert_eq!(t.c.stats().bytes_out, 19);
}

#[test]
fn a_message_cut_by_a_disconnect_goes_again_whole() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        heartbeat_interval: None,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    t.c.enqueue(b"abc").unwrap();
    t.c.enqueue(b"def").unwrap();
    t.c.handle_written(t.now, 4).unwrap(); // "abc" and "d"
    t.c.handle_io_error(t.now).unwrap();
    t.at(5 * S);
    t.connect();
    assert_eq!(t.c.poll_transmit(), Some(&b"def"[..]));
}

#[test]
fn udp_transmit_is_one_datagram_at_a_time() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        transport: Transport::Udp,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.actions();
    t.c.handle_connected(t.now).unwrap();
    t.c.enqueue(b"one").unwrap();
    assert_eq!(t.c.poll_transmit(), Some(&b"heart beat"[..]));
    assert_eq!(t.c.handle_written(t.now, 4), Err(Error::InvalidLength));
    assert_eq!(t.c.handle_written(t.now, 13), Err(Error::InvalidLength));
    t.c.handle_written(t.now, 10).unwrap();
    assert_eq!(t.c.poll_transmit(), Some(&b"one"[..]));
}

#[test]
fn a_udp_datagram_that_fills_the_buffer_is_rejected_never_truncated() {
    let mut t = T::<TestProtocol, 256, 16>::new(Config {
        transport: Transport::Udp,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.actions();
    t.c.handle_connected(t.now).unwrap();
    t.flush();
    t.events();
    // 15 bytes fit: answered.
    let echo = b"back 0123456789";
    t.c.receive_buffer()[..15].copy_from_slice(echo);
    t.c.handle_received(t.now, 15).unwrap();
    assert_eq!(t.flush(), echo);
    // 16 bytes fill the buffer: the stack may have cut a longer one.
    t.c.receive_buffer()[..16].copy_from_slice(b"back 0123456789A");
    t.c.handle_received(t.now, 16).unwrap();
    assert_eq!(t.flush(), b"");
    assert_eq!(t.c.stats().frames_rejected, 1);
    assert_eq!(t.events(), [Event::FrameRejected]);
    // The same from a driver's own buffer, at and beyond the size.
    assert_eq!(t.c.handle_received_bytes(t.now, &[b'b'; 16]), Ok(16));
    assert_eq!(t.c.handle_received_bytes(t.now, &[b'b'; 99]), Ok(99));
    assert_eq!(t.c.handle_received_bytes(t.now, b"back 1"), Ok(6));
    assert_eq!(t.flush(), b"back 1");
    assert_eq!(t.c.stats().frames_rejected, 3);
    assert_eq!(t.c.status(), Status::Connected, "UDP stays up");
}

#[test]
fn a_heartbeat_payload_is_held_by_value() {
    let text = std::string::String::from("ping");
    let config = Config {
        heartbeat_payload: payload(text.as_bytes()).unwrap(),
        ..Config::default()
    };
    drop(text);
    let mut t = T::<TestProtocol, 256, 64>::new(config);
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"ping");
}

#[test]
fn a_heartbeat_when_idle_waits_for_a_quiet_interval() {
    let mut t = T::<TestProtocol, 256, 64>::new(Config {
        heartbeat_when_idle: true,
        ..Config::default()
    });
    t.c.handle_network(t.now, true);
    t.connect();
    assert_eq!(t.flush(), b"heart beat", "the first one goes anyway");
    // A message every 6 s keeps the link busy: no heartbeat at 10 s or 20 s.
    for at in [6, 12, 18, 24] {
        t.at(at * S);
        t.c.enqueue(b"data").unwrap();
        assert_eq!(t.flush(), b"data", "at {at} s");
    }
    // Quiet from 24 s: the next heartbeat at 34 s, not before.
    t.at(33 * S);
    assert_eq!(t.flush(), b"");
    t.at(34 * S);
    assert_eq!(t.flush(), b"heart beat");
    assert_eq!(t.c.stats().heartbeats_sent, 2);
}
