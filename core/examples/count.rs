//! A small driver for instruction counting under callgrind:
//!
//! ```sh
//! cargo build --release -p longlink-core --example count
//! valgrind --tool=callgrind target/release/examples/count echo 1000
//! ```
//!
//! `echo N` feeds N `back` requests of 16 bytes (raw framing) and writes the
//! replies; `heartbeat N` ticks N heartbeats on an idle connection. Counting
//! two values of N and subtracting removes the start-up cost, which is what
//! `scripts/bench.sh` does.

use std::hint::black_box;

use longlink_core::time::{Duration, Instant};
use longlink_core::{Action, Config, Connection, TestProtocol};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);

    let mut c: Connection<TestProtocol, 1024, 256> =
        match Connection::new(Config::default(), TestProtocol::default(), Instant::ZERO) {
            Ok(c) => c,
            Err(e) => return eprintln!("config: {e}"),
        };
    let mut now = Instant::ZERO;
    c.handle_network(now, true);
    while let Some(a) = c.poll_action() {
        if let Action::Connect { .. } = a {
            let _ = c.handle_connected(now);
        }
    }
    let mut written = 0usize;
    let mut drain = |c: &mut Connection<TestProtocol, 1024, 256>, now| {
        while let Some(b) = c.poll_transmit() {
            let len = black_box(b).len();
            written += len;
            let _ = c.handle_written(now, len);
        }
    };
    drain(&mut c, now);
    match what.as_str() {
        "echo" => {
            let msg = b"back 0123456789a";
            for _ in 0..n {
                let _ = c.handle_received_bytes(now, black_box(msg));
                drain(&mut c, now);
            }
        }
        "heartbeat" => {
            for _ in 0..n {
                now += Duration::from_secs(10);
                c.handle_timeout(now);
                drain(&mut c, now);
            }
        }
        _ => return eprintln!("usage: count echo|heartbeat N"),
    }
    println!("{what} {n}: {} messages out", c.stats().messages_out);
}
