//! longlink-nal over TCP through `std-embedded-nal` (the hardware code path
//! on real host sockets) against a loopback lab server.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod nal_common;

use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use longlink_core::{Config, Framing, Remote, Status, TestProtocol};
use longlink_nal::{Clock, Driver, NoDns, NoWallClock};
use nal_common::*;
use std_embedded_nal::Stack;

type Tcp<C, const Q: usize, const R: usize> =
    Driver<'static, Stack, C, RecordingModem, TestProtocol, Q, R, NoDns, NoWallClock, Hook>;

fn driver<const Q: usize, const R: usize>(
    server: std::net::SocketAddr,
    config: Config,
) -> Tcp<impl Clock, Q, R> {
    let modem = RecordingModem::default();
    let hook = modem.hook();
    Driver::new(
        Stack,
        wall_clock(),
        modem,
        Remote::Addr(server),
        config,
        TestProtocol::default(),
    )
    .unwrap()
    .on_event(hook)
}

fn run<C: Clock, const Q: usize, const R: usize>(
    d: &mut Tcp<C, Q, R>,
    secs: f64,
    mut done: impl FnMut(&mut Tcp<C, Q, R>) -> bool,
) -> bool {
    poll_until(
        d,
        |d| d.poll(),
        |d| done(d),
        StdDuration::from_secs_f64(secs),
    )
}

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn connects_sends_heartbeats_and_answers_back_bin_time() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(lab.addr, fast_config());
    assert!(run(&mut d, 5.0, |_| contains(
        &lab.received(0),
        b"heart beat"
    )));
    assert_eq!(d.status(), Status::Connected);

    lab.say(b"back hello");
    assert!(run(&mut d, 5.0, |_| contains(
        &lab.received(0),
        b"back hello"
    )));
    lab.say(b"bin");
    assert!(run(&mut d, 5.0, |_| contains(
        &lab.received(0),
        &[0x11, 0x22, 0x33]
    )));

    // Before any wall clock: `time` is counted, not answered with 1970.
    lab.say(b"time");
    assert!(run(&mut d, 5.0, |d| d.connection().handler().time_unsynced == 1));
    let before = lab.received(0);

    let unix = unix_now_ms();
    d.set_wall_clock(unix).unwrap();
    lab.say(b"time");
    let secs = (unix / 1000).to_string();
    let prefix = &secs.as_bytes()[..8];
    assert!(run(&mut d, 5.0, |_| {
        let rx = lab.received(0);
        contains(&rx[before.len()..], prefix)
    }));
    let rx = lab.received(0);
    let tail = String::from_utf8_lossy(&rx[before.len()..]).replace("heart beat", "");
    let answered: u64 = tail.trim().parse().unwrap();
    assert!(answered.abs_diff(unix / 1000) <= 2, "{answered} vs {unix}");

    // The LED hook saw the connection come up.
    assert_eq!(
        d.modem_mut().log().last(),
        Some(&ModemEvent::Status(Status::Connected))
    );
}

#[test]
fn heartbeats_keep_their_interval() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(lab.addr, fast_config());
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
    let t0 = std::time::Instant::now();
    run(&mut d, 1.0, |_| false);
    let elapsed = t0.elapsed().as_millis() as usize;
    let beats = count(&lab.received(0), b"heart beat");
    // One at connect, then one per 150 ms from it: the deadline never
    // drifts, so a late poll costs at most the one in flight (and one more
    // for the connect that happened before t0).
    let expected = elapsed / 150 + 1;
    assert!(
        (expected.saturating_sub(1)..=expected + 1).contains(&beats),
        "{beats} heartbeats in {elapsed} ms, expected {expected}"
    );
    assert_eq!(d.connection().stats().heartbeats_skipped, 0);
}

#[test]
fn a_queued_message_goes_out_in_the_same_poll() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(
        lab.addr,
        Config {
            heartbeat_interval: None,
            ..fast_config()
        },
    );
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
    d.enqueue(b"right now").unwrap();
    let _ = d.poll();
    assert_eq!(d.connection().queued(), 0, "written by that one poll");
    // No further polls: the bytes are already on the wire.
    let t0 = std::time::Instant::now();
    while !contains(&lab.received(0), b"right now") {
        assert!(t0.elapsed() < StdDuration::from_secs(2));
        std::thread::sleep(StdDuration::from_millis(1));
    }
}

#[test]
fn server_drop_reconnects_and_delivers_the_queue_once_in_order() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(
        lab.addr,
        Config {
            framing: Framing::Lines,
            ..fast_config()
        },
    );
    assert!(run(&mut d, 5.0, |_| contains(
        &lab.received(0),
        b"heart beat\n"
    )));
    lab.state().drop_now = true;
    assert!(run(&mut d, 5.0, |d| d.status() != Status::Connected));
    let sent: Vec<String> = (0..20).map(|i| format!("msg-{i:02}")).collect();
    for m in &sent {
        d.enqueue(m.as_bytes()).unwrap();
    }
    assert!(run(&mut d, 5.0, |_| lab.accepted() == 2
        && contains(&lab.received(1), b"msg-19\n")));
    run(&mut d, 0.2, |_| false);
    let rx = String::from_utf8(lab.received(1)).unwrap();
    let got: Vec<&str> = rx.lines().filter(|l| *l != "heart beat").collect();
    assert_eq!(got, sent, "each queued message exactly once, in order");
    let s = d.connection().stats();
    assert_eq!((s.connects, s.disconnects), (2, 1));
    assert!(!contains(&lab.received(0), b"msg-"));
}

#[test]
fn bad_input_is_survived() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(lab.addr, fast_config());
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
    // 1 MiB of random bytes in raw framing: every read is a message.
    for chunk in junk(7, 1 << 20).chunks(64 * 1024) {
        lab.say(chunk);
    }
    assert!(run(&mut d, 20.0, |d| d.connection().stats().bytes_in >= 1 << 20));
    run(&mut d, 0.1, |_| false);
    // Invalid UTF-8 and NUL bytes are echoed byte for byte.
    let weird = b"back\xff\xfe\x00\x00\xc3\x28end";
    let before = lab.received(lab.accepted() as usize - 1).len();
    lab.say(weird);
    assert!(run(&mut d, 5.0, |_| {
        let rx = lab.received(lab.accepted() as usize - 1);
        contains(&rx[before.min(rx.len())..], weird)
    }));
    lab.say(b"bin");
    assert!(run(&mut d, 5.0, |_| {
        let rx = lab.received(lab.accepted() as usize - 1);
        contains(&rx[before.min(rx.len())..], &[0x11, 0x22, 0x33])
    }));
    assert_eq!(d.status(), Status::Connected);
}

#[test]
fn oversize_frames_reset_the_connection_then_it_recovers() {
    for (framing, bad) in [
        (Framing::Lines, vec![b'x'; 300]),
        (Framing::Len16, vec![0xFF, 0xFF, 1, 2, 3]),
    ] {
        let lab = Lab::tcp();
        let mut d = driver::<512, 128>(
            lab.addr,
            Config {
                framing,
                ..fast_config()
            },
        );
        assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
        lab.say(&bad);
        assert!(
            run(&mut d, 5.0, |d| d.connection().stats().frames_rejected == 1),
            "{framing:?}"
        );
        assert!(run(&mut d, 5.0, |_| lab.accepted() == 2));
        let mut bin = [0u8; 8];
        let n = framing.encode(b"bin", &mut bin).unwrap();
        lab.say(&bin[..n]);
        let mut want = [0u8; 8];
        let m = framing.encode(&[0x11, 0x22, 0x33], &mut want).unwrap();
        assert!(
            run(&mut d, 5.0, |_| contains(&lab.received(1), &want[..m])),
            "{framing:?}"
        );
    }
}

#[test]
fn a_flood_of_back_requests_is_answered_completely_in_order() {
    let lab = Lab::tcp();
    // A small queue forces backpressure: the client stops reading while its
    // replies wait, instead of dropping them.
    let mut d = driver::<128, 128>(
        lab.addr,
        Config {
            framing: Framing::Lines,
            ..fast_config()
        },
    );
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
    let mut flood = Vec::new();
    for i in 0..5000 {
        flood.extend_from_slice(format!("back {i:05}\n").as_bytes());
    }
    lab.say(&flood);
    assert!(run(&mut d, 30.0, |_| contains(
        &lab.received(0),
        b"back 04999\n"
    )));
    let rx = String::from_utf8(lab.received(0)).unwrap();
    let echoes: Vec<&str> = rx.lines().filter(|l| *l != "heart beat").collect();
    let want: Vec<String> = (0..5000).map(|i| format!("back {i:05}")).collect();
    assert_eq!(echoes, want);
    let s = d.connection().stats();
    assert_eq!((s.replies_dropped, s.disconnects), (0, 0));
}

#[test]
fn refused_connects_count_to_a_link_reset() {
    let mut d = driver::<1024, 512>(closed_port(), fast_config());
    assert!(run(&mut d, 5.0, |d| d.connection().stats().link_resets == 1));
    let s = *d.connection().stats();
    assert_eq!(
        s.connect_failures, 5,
        "the tutorial resets after 5 failures"
    );
    assert_eq!(s.connects, 0);
    assert!(run(&mut d, 5.0, |d| d.connection().stats().link_resets == 2));
    assert_eq!(d.connection().stats().connect_failures, 10);
    let resets = d
        .modem_mut()
        .log()
        .iter()
        .filter(|e| **e == ModemEvent::ResetLink)
        .count();
    assert_eq!(resets, 2);
    assert!(d
        .modem_mut()
        .log()
        .contains(&ModemEvent::Status(Status::BackingOff)));
}

#[test]
fn no_network_cycles_the_radio_then_connects_when_it_comes() {
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(lab.addr, fast_config());
    d.modem_mut().down = true;
    assert!(run(&mut d, 5.0, |d| d
        .modem_mut()
        .log()
        .contains(&ModemEvent::Radio(true))));
    assert_eq!(d.connection().stats().connect_attempts, 0);
    let ev = d.modem_mut().log();
    let off = ev
        .iter()
        .position(|e| *e == ModemEvent::Radio(false))
        .unwrap();
    let on = ev
        .iter()
        .position(|e| *e == ModemEvent::Radio(true))
        .unwrap();
    assert!(off < on);
    assert_eq!(ev[0], ModemEvent::Status(Status::WaitingForNetwork));
    assert!(ev.contains(&ModemEvent::Status(Status::RadioOff)));
    d.modem_mut().down = false;
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected
        && lab.accepted() == 1));
}

#[test]
fn an_idle_poll_returns_the_next_timer_not_now() {
    // The driver never asks to be polled in a loop when nothing is ready.
    let lab = Lab::tcp();
    let mut d = driver::<1024, 512>(lab.addr, fast_config());
    assert!(run(&mut d, 5.0, |d| d.status() == Status::Connected));
    run(&mut d, 0.05, |_| false);
    let next = d.poll();
    assert!(next.is_some());
    assert_eq!(next, d.connection().poll_timeout(), "the heartbeat timer");
    assert_eq!(d.poll(), next, "an idle poll changes nothing");
}
