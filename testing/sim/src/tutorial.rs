//! The project's own scenario: the tutorial's test protocol
//! ([`TestProtocol`]) against a server sending `back…`, `bin` and `time`,
//! checked against a reference written independently of the core's. The
//! project's sweep ([`run_seed`]) is this scenario in four queue and buffer
//! sizes.

use longlink_core::{Context, TestProtocol, BIN_REPLY};

use crate::scenario::{Scenario, Sim};
use crate::world::Report;
use crate::Rng;

/// The tutorial's test protocol, written independently of the core's:
/// `back…` is echoed, `bin` answered with `11 22 33`, `time` with the Unix
/// time in seconds once a wall clock is known (no answer before), anything
/// else not at all.
pub fn reference_reply(msg: &[u8], unix_ms: Option<u64>) -> Option<Vec<u8>> {
    if msg.starts_with(b"back") {
        Some(msg.to_vec())
    } else if msg == b"bin" {
        Some(BIN_REPLY.to_vec())
    } else if msg == b"time" {
        unix_ms.map(|ms| (ms / 1000).to_string().into_bytes())
    } else {
        None
    }
}

/// The tutorial's server and device ([`TestProtocol`]): requests `back#<id>:`
/// with filler up to the receive buffer's size, `bin` and `time`; replies
/// from [`reference_reply`]; and, as its own invariant, the handler's count
/// of `time` requests it could not answer equals the model's.
#[derive(Clone, Debug, Default)]
pub struct Tutorial {
    /// `time` requests the model saw before any wall clock.
    pub time_unsynced: u32,
}

impl Scenario for Tutorial {
    type Handler = TestProtocol;

    fn handler(&mut self) -> TestProtocol {
        TestProtocol::default()
    }

    fn request(&mut self, id: u64, rng: &mut Rng, room: usize) -> Option<Vec<u8>> {
        Some(match rng.below(4) {
            0 | 1 => {
                let pad = rng.below(room as u64) as usize;
                let mut b = format!("back#{id}:").into_bytes();
                b.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
                b
            }
            2 => b"bin".to_vec(),
            _ => b"time".to_vec(),
        })
    }

    fn reply(&mut self, message: &[u8], cx: &Context) -> Option<Vec<u8>> {
        if message == b"time" && cx.unix_time_ms.is_none() {
            self.time_unsynced += 1;
        }
        reference_reply(message, cx.unix_time_ms)
    }

    fn check(&mut self, handler: &TestProtocol) -> Result<(), String> {
        if handler.time_unsynced == self.time_unsynced {
            Ok(())
        } else {
            Err(format!(
                "handler.time_unsynced = {}, the model counted {}",
                handler.time_unsynced, self.time_unsynced
            ))
        }
    }
}

/// The project's sweep, one seed: [`Tutorial`] with a random config and
/// fault mix, in one of four sizes picked by the seed (one with a receive
/// buffer larger than the queue, so some replies can never fit).
pub fn run_seed(seed: u64) -> Report {
    run(seed, 0)
}

/// [`run_seed`], keeping the last `lines` entries of the transcript.
pub fn run_seed_traced(seed: u64, lines: usize) -> Report {
    run(seed, lines)
}

fn run(seed: u64, trace: usize) -> Report {
    let t = Tutorial::default();
    // Picked from another stream than the world's, so a size does not
    // shift the world's own choices.
    match Rng::new(seed ^ 0x51_2E5).below(4) {
        0 => Sim::<Tutorial, 64, 16>::new(t).trace(trace).run(seed),
        1 => Sim::<Tutorial, 160, 48>::new(t).trace(trace).run(seed),
        2 => Sim::<Tutorial, 48, 64>::new(t).trace(trace).run(seed),
        _ => Sim::<Tutorial, 512, 128>::new(t).trace(trace).run(seed),
    }
}
