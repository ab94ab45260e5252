//! The same handler with the count moved before the reply: a call that
//! ends in `ReplyFull` (the outgoing queue had no room) is made again with
//! the same message, and this version counts the reading twice, so the
//! server sees reading numbers skip. Unit tests that call `on_message`
//! with room to spare never see it; the simulator fills the queue.

use core::fmt::Write;

use longlink_core::{Context, Handler, Reply, ReplyFull};

use crate::{parse_interval, temperature, Sensor};

/// [`Sensor`](crate::Sensor) with the bug.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokenSensor(pub Sensor);

impl Handler for BrokenSensor {
    fn on_message(
        &mut self,
        message: &[u8],
        _: &Context,
        reply: &mut Reply<'_>,
    ) -> Result<(), ReplyFull> {
        let s = &mut self.0;
        match message {
            b"READ" => {
                // The bug: counted before the reply is known to fit.
                s.readings += 1;
                write!(reply, "R {} {}", s.readings, temperature(s.readings))
                    .map_err(|_| ReplyFull)?;
            }
            b"GET" => write!(reply, "interval={}", s.interval_s).map_err(|_| ReplyFull)?,
            [b'S', b'E', b'T', b' ', arg @ ..] => match parse_interval(arg) {
                Some(v) => {
                    write!(reply, "OK {v}").map_err(|_| ReplyFull)?;
                    s.interval_s = v;
                }
                None => reply.write(b"ERR bad interval")?,
            },
            _ => reply.write(b"ERR unknown")?,
        }
        Ok(())
    }
}
