//! A user's own fuzz target, as the README's "Test your own device logic"
//! shows it: the worked example's sensor handler, driven call by call by
//! arbitrary inputs (driver events, time, writes, server bytes) under an
//! arbitrary valid config, with every invariant of longlink-sim checked
//! after each call, the sensor's model and its own invariant included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longlink_core::Config;
use longlink_example_sensor::sim::SensorServer;
use longlink_example_sensor::Sensor;
use longlink_sim::{Harness, Input};

fuzz_target!(|case: (Config, Vec<Input>)| {
    let (cfg, inputs) = case;
    // A config these sizes cannot hold is refused: not a bug.
    if let Ok(mut h) =
        Harness::<SensorServer<Sensor>, 128, 32>::new(cfg.clone(), SensorServer::default(), false)
    {
        if let Err(v) = h.apply_all(&inputs) {
            panic!("invariant violated {v}\nconfig {cfg:?}");
        }
    }
});
