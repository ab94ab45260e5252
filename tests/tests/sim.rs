//! The deterministic fault simulator: a sweep of seeds, and transcripts of
//! the tutorial's scenarios with exact times.
//!
//! - `cargo test -p longlink-tests --test sim`: 2,000 seeds.
//! - `LONGLINK_SIM_SEEDS=100000 cargo test --release -p longlink-tests --test sim -- --nocapture`:
//!   a longer sweep (`LONGLINK_SIM_START` moves the first seed).
//! - `LONGLINK_SIM_SEED=<n> cargo test -p longlink-tests --test sim -- --nocapture`:
//!   exactly that one seed, with its config and faults printed.

use std::time::Instant as WallClock;

use longlink_tests::sim::run_seed;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

#[test]
fn seeded_fault_scenarios() {
    if let Some(seed) = env_u64("LONGLINK_SIM_SEED") {
        let r = run_seed(seed);
        match &r.violation {
            None => println!("seed {seed}: ok, {r:?}"),
            Some(v) => panic!("seed {seed}: {v}\n{}", r.summary),
        }
        return;
    }
    let count = env_u64("LONGLINK_SIM_SEEDS").unwrap_or(2_000);
    let start = env_u64("LONGLINK_SIM_START").unwrap_or(0);
    let t0 = WallClock::now();
    let mut failures = Vec::new();
    let mut total = longlink_core::Stats::default();
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
         {} replies dropped, {} heartbeats skipped, {} rx bytes discarded",
        total.connect_failures,
        total.connect_timeouts,
        total.disconnects,
        total.idle_timeouts,
        total.queue_full,
        total.replies_dropped,
        total.heartbeats_skipped,
        total.rx_discarded
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
    }
}
