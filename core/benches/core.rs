//! Core throughput: how much work the state machine adds per event, against
//! a baseline that does the least possible work on the same input (a copy of
//! the same bytes). Run with `cargo bench -p longlink-core --bench core`;
//! `scripts/bench.sh` turns the medians into BENCHMARKS.md.

// A setup failure is a bug in the bench itself: panicking is the right report.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use longlink_core::time::{Duration, Instant};
use longlink_core::{Action, Config, Connection, Framing, TestProtocol};

/// Big enough for a 64 KiB message in every framing.
const Q: usize = 140_000;
const R: usize = 70_000;

type Conn = Connection<TestProtocol, Q, R>;

fn connected(framing: Framing) -> Box<Conn> {
    let config = Config {
        framing,
        ..Config::default()
    };
    let mut c = Box::new(Conn::new(config, TestProtocol::default(), Instant::ZERO).unwrap());
    c.handle_network(Instant::ZERO, true);
    while let Some(a) = c.poll_action() {
        if let Action::Connect { .. } = a {
            c.handle_connected(Instant::ZERO).unwrap();
        }
    }
    drain(&mut c, Instant::ZERO, &mut [0; 16]);
    c
}

/// Writes everything queued into `out` (a socket that takes it all).
fn drain(c: &mut Conn, now: Instant, out: &mut [u8]) -> usize {
    let mut total = 0;
    while let Some(bytes) = c.poll_transmit() {
        let n = bytes.len();
        let k = n.min(out.len());
        out[..k].copy_from_slice(&bytes[..k]);
        c.handle_written(now, n).unwrap();
        total += n;
    }
    total
}

/// (a) An idle connected session: one heartbeat per 10 s tick.
fn heartbeat(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("heartbeat");
    g.throughput(Throughput::Elements(1));
    g.bench_function("longlink", |b| {
        let mut c = connected(Framing::Raw);
        let mut now = Instant::ZERO;
        let mut out = [0u8; 64];
        b.iter(|| {
            now += Duration::from_secs(10);
            c.handle_timeout(now);
            black_box(drain(&mut c, now, &mut out));
            black_box(c.poll_timeout());
        });
    });
    g.bench_function("baseline", heartbeat_copy);
    g.finish();
}

/// (b) `back` echo: the server's request in, the same bytes out.
fn echo(cr: &mut Criterion) {
    for size in [16usize, 1024, 65_535] {
        let mut g = cr.benchmark_group(format!("echo/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        let mut msg = vec![b'x'; size];
        msg[..4].copy_from_slice(b"back");
        for framing in [Framing::Raw, Framing::Lines, Framing::Len16] {
            let mut wire = vec![0u8; size + 2];
            let n = framing.encode(&msg, &mut wire).unwrap();
            wire.truncate(n);
            let mut out = vec![0u8; n];
            g.bench_with_input(
                BenchmarkId::new("longlink", format!("{framing:?}")),
                &wire,
                |b, wire| {
                    let mut c = connected(framing);
                    b.iter(|| {
                        let now = Instant::ZERO;
                        let taken = c.handle_received_bytes(now, black_box(wire)).unwrap();
                        debug_assert_eq!(taken, wire.len());
                        black_box(drain(&mut c, now, &mut out));
                    });
                },
            );
        }
        // The least work possible: the bytes copied in and copied out once.
        let mut rx = vec![0u8; size + 2];
        let mut out = vec![0u8; size + 2];
        g.bench_with_input(BenchmarkId::new("baseline", "memcpy"), &msg, |b, msg| {
            b.iter(|| {
                rx[..msg.len()].copy_from_slice(black_box(msg));
                out[..msg.len()].copy_from_slice(&rx[..msg.len()]);
                black_box(&out);
            });
        });
        g.finish();
    }
}

/// (c) A reconnect cycle: connect, heartbeat, peer close, wait, connect.
fn reconnect(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("reconnect");
    g.throughput(Throughput::Elements(1));
    g.bench_function("longlink", |b| {
        let mut c = connected(Framing::Raw);
        let mut now = Instant::ZERO;
        let mut out = [0u8; 64];
        b.iter(|| {
            c.handle_closed(now).unwrap();
            while c.poll_action().is_some() {}
            now += Duration::from_secs(5);
            c.handle_timeout(now);
            while let Some(a) = c.poll_action() {
                if let Action::Connect { .. } = a {
                    c.handle_connected(now).unwrap();
                }
            }
            black_box(drain(&mut c, now, &mut out));
        });
    });
    g.bench_function("baseline", heartbeat_copy);
    g.finish();
}

/// The least work a heartbeat or a reconnect moves: the heartbeat's bytes,
/// copied out once.
fn heartbeat_copy(b: &mut criterion::Bencher<'_>) {
    let mut out = [0u8; 64];
    b.iter(|| {
        let hb = black_box(b"heart beat");
        out[..hb.len()].copy_from_slice(hb);
        black_box(&out);
    });
}

criterion_group!(benches, heartbeat, echo, reconnect);
criterion_main!(benches);
