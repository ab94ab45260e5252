//! Arbitrary sequences of operations and events into the state machine, with
//! every invariant of the simulator checked after every call (the timing
//! oracle, the message ledger and the stats; see `longlink_sim`), driving
//! the tutorial's handler the way a user's own target drives theirs.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use longlink_core::time::Duration;
use longlink_core::{Acked, Backoff, Config, Delivery, Framing, Transport};
use longlink_sim::{Harness, Input, Tutorial, Violation};

#[derive(Arbitrary, Debug)]
struct FuzzConfig {
    sizes: u8,
    udp: bool,
    framing: u8,
    network_wait: u16,
    radio_off: u16,
    retry_delay: u16,
    max_failures: u8,
    heartbeat: Option<u16>,
    payload: u8,
    idle: Option<u16>,
    connect_timeout: Option<u16>,
    backoff_cap: Option<u16>,
    seed: u64,
    /// The acknowledged mode: session, ack timeout, retransmissions, window.
    acked: Option<(u32, u16, u8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Case {
    config: FuzzConfig,
    ops: Vec<Input>,
}

fn ms(v: u16) -> Duration {
    Duration::from_millis(u64::from(v) + 1)
}

fn config(f: &FuzzConfig) -> Config {
    let retry_delay = ms(f.retry_delay);
    Config {
        transport: if f.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        },
        framing: [Framing::Raw, Framing::Lines, Framing::Len16][usize::from(f.framing % 3)],
        network_wait: ms(f.network_wait),
        radio_off: ms(f.radio_off),
        retry_delay,
        max_failures: u16::from(f.max_failures % 8) + 1,
        heartbeat_interval: f.heartbeat.map(ms),
        heartbeat_payload: longlink_core::payload([&b"heart beat"[..], b"hb", b"h"][usize::from(f.payload % 3)])
            .unwrap_or_default(),
        heartbeat_when_idle: false,
        idle_timeout: f.idle.map(ms),
        connect_timeout: f.connect_timeout.map(ms),
        backoff: match f.backoff_cap {
            None => Backoff::Fixed,
            Some(extra) => Backoff::Exponential {
                max: Duration::from_millis(retry_delay.as_millis() + u64::from(extra)),
            },
        },
        seed: f.seed,
        delivery: match f.acked {
            None => Delivery::Socket,
            Some((session, timeout, retransmissions, window)) => Delivery::Acked(Acked {
                session,
                ack_timeout: ms(timeout),
                max_retransmissions: retransmissions % 6,
                max_in_flight: window % 5 + 1,
            }),
        },
        ..Config::default()
    }
}

fn run<const Q: usize, const R: usize>(cfg: Config, ops: &[Input]) -> Result<(), Violation> {
    // A config these sizes cannot hold is refused up front: not a bug.
    let Ok(mut h) = Harness::<Tutorial, Q, R>::new(cfg, Tutorial::default(), false) else {
        return Ok(());
    };
    h.apply_all(ops)
}

fuzz_target!(|input: Case| {
    let cfg = config(&input.config);
    let r = match input.config.sizes % 3 {
        0 => run::<64, 16>(cfg.clone(), &input.ops),
        1 => run::<48, 64>(cfg.clone(), &input.ops),
        _ => run::<256, 96>(cfg.clone(), &input.ops),
    };
    if let Err(v) = r {
        panic!("invariant violated {v}\nconfig {cfg:?}");
    }
});
