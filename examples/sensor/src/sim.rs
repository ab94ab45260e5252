//! The sensor's scenario for longlink-sim (feature `sim`): the server's
//! requests, the model of what the device must answer, and an invariant
//! over its state. Shared by `tests/sim.rs` and the fuzz target
//! `fuzz/fuzz_targets/sensor.rs`.

use std::format;
use std::marker::PhantomData;
use std::string::String;
use std::vec::Vec;

use longlink_core::{Context, Handler};
use longlink_sim::{Rng, Scenario};

use crate::broken::BrokenSensor;
use crate::{parse_interval, temperature, Sensor};

/// Both handlers, so one scenario tests either.
pub trait Device: Handler + Default {
    /// The sensor state inside.
    fn sensor(&self) -> &Sensor;
}

impl Device for Sensor {
    fn sensor(&self) -> &Sensor {
        self
    }
}

impl Device for BrokenSensor {
    fn sensor(&self) -> &Sensor {
        &self.0
    }
}

/// The server's side and the model of the device.
#[derive(Clone, Debug)]
pub struct SensorServer<D> {
    /// Readings the device must have reported.
    readings: u32,
    /// The interval the device must have.
    interval_s: u16,
    /// The last reading number the server got.
    seen: u32,
    device: PhantomData<D>,
}

impl<D> Default for SensorServer<D> {
    fn default() -> Self {
        SensorServer {
            readings: 0,
            interval_s: 60,
            seen: 0,
            device: PhantomData,
        }
    }
}

impl<D: Device + Clone> Scenario for SensorServer<D> {
    type Handler = D;

    fn handler(&mut self) -> D {
        D::default()
    }

    /// What the server sends: mostly `READ`, some configuration, some
    /// nonsense.
    fn request(&mut self, _id: u64, rng: &mut Rng, _room: usize) -> Option<Vec<u8>> {
        Some(match rng.below(10) {
            0..=4 => b"READ".to_vec(),
            5 => b"GET".to_vec(),
            6 | 7 => format!("SET interval={}", rng.range(1, 3600)).into_bytes(),
            8 => rng
                .pick(&[&b"SET interval=0"[..], b"SET interval=99999", b"SET x"])
                .to_vec(),
            _ => b"HELLO".to_vec(),
        })
    }

    /// The model: the reply each message deserves, in order.
    fn reply(&mut self, message: &[u8], _: &Context) -> Option<Vec<u8>> {
        let text = match message {
            b"READ" => {
                self.readings += 1;
                format!("R {} {}", self.readings, temperature(self.readings))
            }
            b"GET" => format!("interval={}", self.interval_s),
            [b'S', b'E', b'T', b' ', arg @ ..] => match parse_interval(arg) {
                Some(s) => {
                    self.interval_s = s;
                    format!("OK {s}")
                }
                None => "ERR bad interval".into(),
            },
            _ => "ERR unknown".into(),
        };
        Some(text.into_bytes())
    }

    /// The server's own view: readings arrive numbered 1, 2, 3, ….
    fn delivered(&mut self, message: &[u8]) -> Result<(), String> {
        let Some(rest) = message.strip_prefix(b"R ") else {
            return Ok(());
        };
        let n: Option<u32> = rest
            .split(|&b| b == b' ')
            .next()
            .and_then(|d| core::str::from_utf8(d).ok())
            .and_then(|d| d.parse().ok());
        if n != Some(self.seen + 1) {
            return Err(format!("reading {n:?} after reading {}", self.seen));
        }
        self.seen += 1;
        Ok(())
    }

    /// The device's configuration is always one it accepted.
    fn check(&mut self, device: &D) -> Result<(), String> {
        let s = device.sensor().interval_s;
        if (1..=3600).contains(&s) {
            Ok(())
        } else {
            Err(format!("interval {s} s"))
        }
    }
}
