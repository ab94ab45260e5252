//! The sensor under the simulator (its scenario is `src/sim.rs`, shared
//! with the fuzz target): property tests over configs, fault mixes and
//! seeds, and one over raw input sequences; the broken version is caught.

use longlink_core::Handler;
use longlink_example_sensor::broken::BrokenSensor;
use longlink_example_sensor::sim::SensorServer;
use longlink_example_sensor::Sensor;
use longlink_sim::{strategy, Harness, Sim};
use proptest::prelude::*;

/// The device's sizes: a 128-byte queue (small, so it fills), a 32-byte
/// receive buffer.
type World<D> = Sim<SensorServer<D>, 128, 32>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any valid config, any fault mix, any seed: every invariant holds.
    #[test]
    fn sensor_keeps_every_invariant(
        cfg in strategy::config(),
        faults in strategy::faults(),
        seed: u64,
    ) {
        World::<Sensor>::new(SensorServer::default())
            .config(cfg)
            .faults(faults)
            .check(seed)
            .map_err(|f| TestCaseError::fail(f.to_string()))?;
    }

    /// Call by call, fuzz-style: arbitrary driver events, time and bytes,
    /// half of them the sensor's own requests.
    #[test]
    fn sensor_under_arbitrary_inputs(
        cfg in strategy::config(),
        inputs in strategy::inputs_with(
            prop_oneof![Just(b"READ".to_vec()), Just(b"READ\n".to_vec()), Just(b"SET interval=5\n".to_vec())],
            200,
        ),
    ) {
        let mut h = Harness::<SensorServer<Sensor>, 128, 32>::new(cfg, SensorServer::default(), false)
            .map_err(|v| TestCaseError::fail(v.to_string()))?;
        h.apply_all(&inputs).map_err(|v| TestCaseError::fail(v.to_string()))?;
    }
}

/// The sweep the project runs on its own handler, on this one: 300 seeds,
/// random configs and faults.
#[test]
fn sensor_sweep() {
    for seed in 0..300 {
        if let Err(f) = World::<Sensor>::new(SensorServer::default()).check(seed) {
            panic!("{f}");
        }
    }
}

/// The broken version: the simulator finds a seed where a retried `READ`
/// skips a reading number, and says where.
#[test]
fn the_simulator_catches_the_broken_sensor() {
    let failure = (0..300)
        .find_map(|seed| {
            World::<BrokenSensor>::new(SensorServer::default())
                .check(seed)
                .err()
        })
        .expect("a seed in 300 exposes the double count");
    let text = failure.to_string();
    println!("{text}");
    // The reply on the queue is not the model's: a reading number skipped.
    assert!(
        text.contains("\"R "),
        "the failure should be about a reading reply: {text}"
    );
    assert!(!failure.report.trace.is_empty(), "with its transcript");
}

/// What a unit test with room to spare sees: the two handlers give the
/// same bytes. Only a full queue (a retried call) tells them apart.
#[test]
fn with_room_to_spare_the_two_agree() {
    fn answers<H: Handler>(handler: H) -> Vec<u8> {
        use longlink_core::{time::Instant, Config, Connection, Framing};
        let cfg = Config {
            framing: Framing::Lines,
            heartbeat_interval: None,
            ..Config::default()
        };
        let t = Instant::ZERO;
        let mut c = Connection::<H, 512, 64>::new(cfg, handler, t).expect("a valid config");
        c.handle_network(t, true);
        while c.poll_action().is_some() {}
        c.handle_connected(t).expect("connecting");
        c.handle_received_bytes(t, b"READ\nREAD\nSET interval=5\nGET\nREAD\n")
            .expect("connected");
        let out = c.poll_transmit().unwrap_or_default().to_vec();
        c.handle_written(t, out.len()).expect("connected");
        out
    }
    let good = answers(Sensor::default());
    assert_eq!(
        String::from_utf8_lossy(&good),
        "R 1 2037\nR 2 2074\nOK 5\ninterval=5\nR 3 2111\n"
    );
    assert_eq!(good, answers(BrokenSensor::default()));
}
