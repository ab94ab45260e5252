//! The deterministic fault simulator: a sweep of seeds, and transcripts of
//! the tutorial's scenarios with exact times.
//!
//! - `cargo test -p longlink-tests --test sim`: 2,000 seeds.
//! - `LONGLINK_SIM_SEEDS=100000 cargo test --release -p longlink-tests --test sim -- --nocapture`:
//!   a longer sweep (`LONGLINK_SIM_START` moves the first seed).
//! - `LONGLINK_SIM_SEED=<n> cargo test -p longlink-tests --test sim -- --nocapture`:
//!   exactly that one seed, with its config and faults printed.

use std::time::Instant as WallClock;

use longlink_tests::sim::{run_seed, run_seed_traced};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

#[test]
fn seeded_fault_scenarios() {
    if let Some(seed) = env_u64("LONGLINK_SIM_SEED") {
        // The end of the transcript, then the verdict.
        let r = run_seed_traced(seed, 80);
        for line in &r.trace {
            println!("{line}");
        }
        println!("{}", r.summary);
        if let Some(v) = &r.violation {
            panic!("seed {seed}: {v}");
        }
        println!(
            "seed {seed}: ok, {} steps, {} ms virtual",
            r.steps, r.virtual_ms
        );
        return;
    }
    let count = env_u64("LONGLINK_SIM_SEEDS").unwrap_or(2_000);
    let start = env_u64("LONGLINK_SIM_START").unwrap_or(0);
    let t0 = WallClock::now();
    let mut failures = Vec::new();
    let mut total = longlink_core::Stats::default();
    let mut cut = 0u64;
    // The acknowledged mode's worlds, and what the servers lost unread in
    // each mode (socket mode: lost for good, and counted; acked mode:
    // resent, and delivered exactly once all the same).
    let (mut acked_seeds, mut acks, mut acks_ignored, mut acked_msgs, mut ack_timeouts) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut lost_socket, mut lost_acked, mut losses_acked) = (0u64, 0u64, 0u64);
    let (mut steps, mut connects, mut apps, mut replies, mut rejected, mut resets, mut cycles) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in start..start + count {
        let r = run_seed(seed);
        match &r.violation {
            None => {
                steps += r.steps;
                connects += u64::from(r.connects);
                apps += r.delivered.0;
                replies += r.delivered.1;
                rejected += u64::from(r.frames_rejected);
                resets += u64::from(r.resets_and_cycles.0);
                cycles += u64::from(r.resets_and_cycles.1);
                cut += r.cut_frames;
                if r.acked {
                    acked_seeds += 1;
                    acks += u64::from(r.stats.acks);
                    acks_ignored += u64::from(r.stats.acks_ignored);
                    acked_msgs += u64::from(r.stats.messages_acked);
                    ack_timeouts += u64::from(r.stats.ack_timeouts);
                    lost_acked += r.server_lost.0;
                    losses_acked += r.server_lost.1;
                } else {
                    lost_socket += r.server_lost.0;
                }
                let s = r.stats;
                total.connect_timeouts += s.connect_timeouts;
                total.idle_timeouts += s.idle_timeouts;
                total.disconnects += s.disconnects;
                total.queue_full += s.queue_full;
                total.replies_dropped += s.replies_dropped;
                total.heartbeats_skipped += s.heartbeats_skipped;
                total.rx_discarded += s.rx_discarded;
                total.connect_failures += s.connect_failures;
            }
            Some(v) => {
                if failures.len() < 10 {
                    eprintln!(
                        "FAILED seed {seed}: {v}\n  {}\n  rerun: LONGLINK_SIM_SEED={seed} cargo test -p longlink-tests --test sim -- --nocapture",
                        r.summary
                    );
                }
                failures.push(seed);
            }
        }
    }
    println!(
        "sim: {count} seeds from {start} in {:.1?}: {} failed; {steps} steps, {connects} connections, \
         {apps} app messages and {replies} replies delivered, {rejected} frames rejected, \
         {resets} link resets, {cycles} radio cycles",
        t0.elapsed(),
        failures.len()
    );
    println!(
        "     {} connect failures ({} timeouts), {} disconnects ({} idle timeouts), {} full-queue refusals, \
         {} replies dropped, {} heartbeats skipped, {} rx bytes discarded, {cut} frames cut by a disconnect",
        total.connect_failures,
        total.connect_timeouts,
        total.disconnects,
        total.idle_timeouts,
        total.queue_full,
        total.replies_dropped,
        total.heartbeats_skipped,
        total.rx_discarded
    );
    println!(
        "     acknowledged mode: {acked_seeds} seeds, {acks} acks ({acks_ignored} ignored), {acked_msgs} messages acknowledged, \
         {ack_timeouts} ack timeouts; {losses_acked} server losses ({lost_acked} bytes its socket had accepted) recovered; \
         socket mode: {lost_socket} bytes lost by servers, counted"
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    // The sweep must exercise what it claims to.
    if count >= 500 {
        assert!(
            connects > count
                && apps > count
                && replies > count
                && rejected > 0
                && resets > 0
                && cycles > 0
        );
        assert!(total.connect_timeouts > 0 && total.idle_timeouts > 0 && total.queue_full > 0);
        assert!(
            total.heartbeats_skipped > 0 && total.rx_discarded > 0 && total.replies_dropped > 0
        );
        assert!(
            acked_seeds > count / 4
                && acks > 0
                && acks_ignored > 0
                && ack_timeouts > 0
                && losses_acked > 0
                && lost_socket > 0
        );
    }
}

// Transcripts: the tutorial's scenarios, every action and every byte with its
// virtual time (ms), under `Config::default()` (the tutorial's values).

use longlink_core::{Action, Config, Transport};
use longlink_tests::sim::{Event, Harness, Socket, Tutorial, Violation};

type H = Harness<Tutorial, 256, 64>;
const TCP: Action = Action::Connect {
    transport: Transport::Tcp,
};

fn act(t: u64, a: Action) -> (u64, Event) {
    (t, Event::Action(a))
}
fn wrote(t: u64, b: &[u8]) -> (u64, Event) {
    (t, Event::Wrote(b.to_vec()))
}
fn read(t: u64, b: &[u8]) -> (u64, Event) {
    (t, Event::Read(b.to_vec()))
}

/// Runs the state machine's timers up to `until`, connecting when asked if
/// `connect` says so (otherwise failing the attempt), writing everything.
fn run_until(h: &mut H, until: u64, connect: bool) -> Result<(), Violation> {
    loop {
        h.take_actions();
        if h.socket() == Socket::Connecting {
            if connect {
                h.connect_ok(h.now())?;
            } else {
                h.connect_failed(h.now())?;
            }
            continue;
        }
        while h.socket() == Socket::Open && h.wants_to_write() {
            h.write(h.now(), usize::MAX)?;
        }
        match h.deadline() {
            Some(d) if d <= until => h.advance(d)?,
            _ => return h.advance(until),
        }
    }
}

#[test]
fn transcript_boot_without_network_cycles_the_radio() -> Result<(), Violation> {
    let mut h = H::new(Config::default(), Tutorial::default(), true)?;
    run_until(&mut h, 700_000, true)?;
    h.network(700_000, true)?;
    run_until(&mut h, 700_000, true)?;
    assert_eq!(
        h.transcript(),
        [
            act(300_000, Action::RadioOff),
            act(320_000, Action::RadioOn),
            act(620_000, Action::RadioOff),
            act(640_000, Action::RadioOn),
            act(700_000, TCP),
            wrote(700_000, b"heart beat"),
        ]
    );
    Ok(())
}

#[test]
fn transcript_five_failed_connects_reset_the_link() -> Result<(), Violation> {
    let mut h = H::new(Config::default(), Tutorial::default(), true)?;
    h.network(0, true)?;
    run_until(&mut h, 25_000, false)?;
    let mut expected = Vec::new();
    for i in 0..5 {
        expected.push(act(i * 5_000, TCP));
        expected.push(act(i * 5_000, Action::Close));
    }
    expected.push(act(20_000, Action::ResetLink));
    expected.push(act(25_000, TCP));
    expected.push(act(25_000, Action::Close));
    assert_eq!(h.transcript(), expected);
    assert_eq!(h.connection().stats().link_resets, 1);
    Ok(())
}

#[test]
fn transcript_connect_heartbeats_and_the_test_protocol() -> Result<(), Violation> {
    let mut h = H::new(Config::default(), Tutorial::default(), true)?;
    h.network(0, true)?;
    run_until(&mut h, 0, true)?;
    h.wall_clock(0, 1_732_550_400_000)?;
    for (t, msg) in [
        (1_500, &b"back 1"[..]),
        (2_000, b"bin"),
        (3_000, b"time"),
        (4_000, b"hello"),
    ] {
        run_until(&mut h, t, true)?;
        h.read_stream(t, msg)?;
        run_until(&mut h, t, true)?;
    }
    run_until(&mut h, 25_000, true)?;
    assert_eq!(
        h.transcript(),
        [
            act(0, TCP),
            wrote(0, b"heart beat"),
            read(1_500, b"back 1"),
            wrote(1_500, b"back 1"),
            read(2_000, b"bin"),
            wrote(2_000, &[0x11, 0x22, 0x33]),
            read(3_000, b"time"),
            wrote(3_000, b"1732550403"),
            read(4_000, b"hello"),
            wrote(10_000, b"heart beat"),
            wrote(20_000, b"heart beat"),
        ]
    );
    Ok(())
}

#[test]
fn transcript_disconnect_and_reconnect_with_a_queued_message() -> Result<(), Violation> {
    let mut h = H::new(Config::default(), Tutorial::default(), true)?;
    h.network(0, true)?;
    run_until(&mut h, 4_000, true)?;
    // The socket takes 3 bytes of the message, then the connection breaks.
    h.enqueue(4_000, b"APP0:abcd".to_vec())?
        .map_err(|e| Violation::new(4_000, format!("{e:?}")))?;
    h.write(4_000, 3)?;
    h.io_error(4_000)?;
    run_until(&mut h, 9_000, true)?;
    assert_eq!(
        h.transcript(),
        [
            act(0, TCP),
            wrote(0, b"heart beat"),
            wrote(4_000, b"APP"),
            act(4_000, Action::Close),
            act(9_000, TCP),
            // The whole message again, and the heartbeat queued behind it,
            // in one write: the transmit view spans messages.
            wrote(9_000, b"APP0:abcdheart beat"),
        ]
    );
    assert_eq!(h.delivered(), (1, 0));
    Ok(())
}

#[test]
fn lines_reply_ending_in_cr_is_dropped_and_counted() -> Result<(), Violation> {
    // `back x\r\r\n` is the message `back x\r`; its echo cannot be framed
    // by `Lines` (the peer would strip the `\r`), so it is dropped and
    // counted, and the next request is still answered.
    let config = Config {
        framing: longlink_core::Framing::Lines,
        ..Config::default()
    };
    let mut h = H::new(config, Tutorial::default(), true)?;
    h.network(0, true)?;
    run_until(&mut h, 0, true)?;
    h.read_stream(1_000, b"back x\r\r\nback y\r\n")?;
    run_until(&mut h, 1_000, true)?;
    assert_eq!(h.connection().stats().replies_dropped, 1);
    assert_eq!(h.transcript().last(), Some(&wrote(1_000, b"back y\n")));
    Ok(())
}
