//! A sensor on a long connection: the server asks, the device answers.
//!
//! | the server sends | the device answers |
//! |---|---|
//! | `READ` | `R <n> <centi-degrees>`: the `n`th reading (from 1) |
//! | `SET interval=<s>` (1–3600) | `OK <s>`, and reports every `s` seconds from now on |
//! | `SET` with anything else | `ERR bad interval` |
//! | `GET` | `interval=<s>` |
//! | anything else | `ERR unknown` |
//!
//! The worked example of the README's "Test your own device logic":
//! `tests/sim.rs` runs it through `longlink-sim`, and [`broken`] holds the
//! same handler with one line moved, which the simulator catches.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt::Write;

use longlink_core::{Context, Handler, Reply, ReplyFull};

pub mod broken;
#[cfg(feature = "sim")]
extern crate std;
#[cfg(feature = "sim")]
pub mod sim;

/// The reading the (pretend) sensor gives for reading `n`, in hundredths of
/// a degree: deterministic, so a test can know it.
pub fn temperature(n: u32) -> u32 {
    2_000 + n.wrapping_mul(37) % 500
}

/// The device's handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sensor {
    /// Readings reported so far.
    pub readings: u32,
    /// Seconds between reports.
    pub interval_s: u16,
}

impl Default for Sensor {
    fn default() -> Self {
        Sensor {
            readings: 0,
            interval_s: 60,
        }
    }
}

/// `interval=<s>` with `s` in 1–3600.
pub fn parse_interval(arg: &[u8]) -> Option<u16> {
    let digits = arg.strip_prefix(b"interval=")?;
    let s: u16 = core::str::from_utf8(digits).ok()?.parse().ok()?;
    (1..=3600).contains(&s).then_some(s)
}

impl Handler for Sensor {
    fn on_message(
        &mut self,
        message: &[u8],
        _: &Context,
        reply: &mut Reply<'_>,
    ) -> Result<(), ReplyFull> {
        match message {
            b"READ" => {
                let n = self.readings + 1;
                write!(reply, "R {n} {}", temperature(n)).map_err(|_| ReplyFull)?;
                // Counted once the reply is written: a call that ended in
                // `ReplyFull` is made again with the same message.
                self.readings = n;
            }
            b"GET" => write!(reply, "interval={}", self.interval_s).map_err(|_| ReplyFull)?,
            [b'S', b'E', b'T', b' ', arg @ ..] => match parse_interval(arg) {
                Some(s) => {
                    write!(reply, "OK {s}").map_err(|_| ReplyFull)?;
                    self.interval_s = s;
                }
                None => reply.write(b"ERR bad interval")?,
            },
            _ => reply.write(b"ERR unknown")?,
        }
        Ok(())
    }
}
