//! longlink-nal over UDP through `std-embedded-nal` against a loopback lab
//! server: one message per datagram.
// Test harness helpers outside #[test] fns unwrap too.
#![allow(clippy::unwrap_used)]

mod nal_common;

use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use longlink_core::{Config, Remote, Status, TestProtocol, Transport};
use longlink_nal::{Clock, Driver};
use nal_common::*;
use std_embedded_nal::Stack;

type Udp<C> = Driver<'static, Stack, C, RecordingModem, TestProtocol, 1024, 512>;

fn driver(lab: std::net::SocketAddr) -> Udp<impl Clock> {
    Driver::new(
        Stack,
        wall_clock(),
        RecordingModem::default(),
        Remote::Addr(lab),
        Config {
            transport: Transport::Udp,
            ..fast_config()
        },
        TestProtocol::default(),
    )
    .unwrap()
}

fn run<C: Clock>(d: &mut Udp<C>, secs: f64, mut done: impl FnMut(&mut Udp<C>) -> bool) -> bool {
    poll_until(
        d,
        |d| d.poll(),
        |d| done(d),
        StdDuration::from_secs_f64(secs),
    )
}

fn datagrams(lab: &Lab) -> Vec<Vec<u8>> {
    lab.state().datagrams.clone()
}

fn got(lab: &Lab, d: &[u8]) -> bool {
    datagrams(lab).iter().any(|x| x == d)
}

#[test]
fn heartbeats_and_answers_over_udp() {
    let lab = Lab::udp();
    let mut d = driver(lab.addr);
    assert!(run(&mut d, 5.0, |_| got(&lab, b"heart beat")));
    assert_eq!(d.status(), Status::Connected);
    lab.say(b"back \x00\xff udp");
    assert!(run(&mut d, 5.0, |_| got(&lab, b"back \x00\xff udp")));
    lab.say(b"bin");
    assert!(run(&mut d, 5.0, |_| got(&lab, &[0x11, 0x22, 0x33])));
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    d.set_wall_clock(unix).unwrap();
    lab.say(b"time");
    assert!(run(&mut d, 5.0, |_| datagrams(&lab)
        .iter()
        .any(|x| x.len() == 10 && x.iter().all(u8::is_ascii_digit))));
    let answer: u64 = datagrams(&lab)
        .iter()
        .find(|x| x.len() == 10 && x.iter().all(u8::is_ascii_digit))
        .map(|x| String::from_utf8(x.clone()).unwrap().parse().unwrap())
        .unwrap();
    assert!(answer.abs_diff(unix / 1000) <= 2);
    // Every datagram is one whole message: heartbeats never glue together.
    let beats = datagrams(&lab)
        .iter()
        .filter(|x| x.as_slice() == b"heart beat")
        .count();
    assert!(beats >= 1);
    assert!(datagrams(&lab).iter().all(|x| count(x, b"heart beat") <= 1));
}

#[test]
fn server_restart_is_survived_and_the_queue_arrives_in_order() {
    let lab = Lab::udp();
    let addr = lab.addr;
    let mut d = driver(addr);
    assert!(run(&mut d, 5.0, |_| got(&lab, b"heart beat")));
    drop(lab);
    // The next heartbeat hits a closed port: ICMP unreachable surfaces as
    // ECONNREFUSED on a send or receive, an I/O error, a reconnect.
    assert!(run(&mut d, 5.0, |d| d.connection().stats().disconnects >= 1));
    let lab = Lab::udp_at(addr);
    let sent: Vec<String> = (0..10).map(|i| format!("msg-{i:02}")).collect();
    assert!(run(&mut d, 5.0, |_| got(&lab, b"heart beat")));
    for m in &sent {
        d.enqueue(m.as_bytes()).unwrap();
    }
    assert!(run(&mut d, 5.0, |_| got(&lab, b"msg-09")));
    let msgs: Vec<String> = datagrams(&lab)
        .into_iter()
        .filter(|x| x.starts_with(b"msg-"))
        .map(|x| String::from_utf8(x).unwrap())
        .collect();
    assert_eq!(msgs, sent, "once each, in order");
}

#[test]
fn bad_datagrams_are_survived_and_oversized_ones_rejected_never_truncated() {
    let lab = Lab::udp();
    let mut d = driver(lab.addr);
    assert!(run(&mut d, 5.0, |_| got(&lab, b"heart beat")));
    let (mut total, mut small, mut big) = (0u64, 0u32, 0u32);
    // Random sizes from empty to twice the 512-byte receive buffer, in
    // batches a host socket buffer holds (UDP itself may drop a burst). One
    // that fills the buffer may have been cut by the stack: rejected whole.
    for batch in 0..10u64 {
        for i in batch * 20..(batch + 1) * 20 {
            let len = (i * 37 % 1100) as usize;
            let j = junk(i + 1, len);
            total += j.len().min(512) as u64;
            if len < 512 {
                small += 1;
            } else {
                big += 1;
            }
            lab.say(&j);
        }
        let want = (batch + 1) as u32 * 20;
        let ok = run(&mut d, 10.0, |d| {
            let s = d.connection().stats();
            s.messages_in + s.frames_rejected >= want
        });
        assert!(ok, "{:?}", d.connection().stats());
    }
    let s = *d.connection().stats();
    assert!(big > 50 && small > 50, "both kinds sent: {big} {small}");
    assert_eq!((s.messages_in, s.frames_rejected), (small, big));
    assert_eq!(s.bytes_in, total);
    assert_eq!(s.disconnects, 0, "a bad datagram does not end the link");
    lab.say(b"bin");
    assert!(run(&mut d, 5.0, |_| got(&lab, &[0x11, 0x22, 0x33])));
}

#[test]
fn a_flood_of_back_datagrams_gets_echoes_in_order_without_duplicates() {
    let lab = Lab::udp();
    let mut d = driver(lab.addr);
    assert!(run(&mut d, 5.0, |_| got(&lab, b"heart beat")));
    for i in 0..200 {
        lab.say(format!("back {i:03}").as_bytes());
    }
    assert!(run(&mut d, 10.0, |_| got(&lab, b"back 199")));
    let echoes: Vec<u32> = datagrams(&lab)
        .into_iter()
        .filter(|x| x.starts_with(b"back "))
        .map(|x| String::from_utf8(x[5..].to_vec()).unwrap().parse().unwrap())
        .collect();
    assert!(
        echoes.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    // Loopback with a reader that keeps up loses nothing.
    assert_eq!(echoes.len(), 200);
    assert_eq!(d.connection().stats().replies_dropped, 0);
}
