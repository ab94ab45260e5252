//! [proptest](https://docs.rs/proptest) strategies: valid configs,
//! framings, fault mixes and input sequences, built from parts so a
//! failing case shrinks towards a simple one (TCP, no heartbeat, no
//! faults, fixed backoff).
//!
//! ```
//! use longlink_core::{Connection, TestProtocol, time::Instant};
//! use proptest::prelude::*;
//!
//! proptest!(|(cfg in longlink_sim::strategy::config())| {
//!     // Every config drawn is one the state machine accepts.
//!     prop_assert!(Connection::<TestProtocol, 256, 64>::new(cfg, TestProtocol::default(), Instant::ZERO).is_ok());
//! });
//! ```

use longlink_core::time::Duration;
use longlink_core::{Acked, Backoff, Config, Delivery, Framing, Transport};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::{Faults, Input};

/// TCP or UDP.
pub fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Tcp), Just(Transport::Udp)]
}

/// `Raw`, `Lines` or `Len16`.
pub fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::Lines),
        Just(Framing::Len16),
        Just(Framing::Raw)
    ]
}

fn ms(lo: u64, hi: u64, edges: bool) -> BoxedStrategy<Duration> {
    if edges {
        prop_oneof![1u64..100, 100u64..20_000, 20_000u64..400_000]
            .prop_map(Duration::from_millis)
            .boxed()
    } else {
        (lo..=hi).prop_map(Duration::from_millis).boxed()
    }
}

/// The acknowledged mode's settings: any session, an ack timeout of
/// 150 ms–5 s, 0–5 retransmissions, a window of 1–4.
pub fn acked() -> impl Strategy<Value = Acked> {
    (any::<u32>(), 150u64..=5_000, 0u8..=5, 1u8..=4).prop_map(|(session, t, r, w)| Acked {
        session,
        ack_timeout: Duration::from_millis(t),
        max_retransmissions: r,
        max_in_flight: w,
    })
}

/// A valid config in the ranges a device uses: network wait 1 s–5 min,
/// radio off 1–20 s, retry delay 100 ms–5 s, 1–6 failures before a link
/// reset, heartbeat (or none) every 1–10 s, idle timeout (or none) 2–40 s,
/// connect timeout (or none) 0.3–10 s, fixed or exponential backoff,
/// heartbeats always or only when idle.
/// `delivery` is `Socket`; see [`config`] for both modes.
pub fn socket_config() -> impl Strategy<Value = Config> {
    configs(false)
}

/// Like [`config`], with every duration anywhere from 1 ms to 400 s (a
/// third of them under 100 ms): the edges, where timers fall due together
/// and a retry comes before the last write is out.
pub fn edge_config() -> impl Strategy<Value = Config> {
    with_delivery(configs(true))
}

fn configs(edges: bool) -> impl Strategy<Value = Config> {
    let timing = (
        ms(1_000, 300_000, edges),
        ms(1_000, 20_000, edges),
        ms(100, 5_000, edges),
        1u16..=6,
        option::of(ms(1_000, 10_000, edges)),
        select(vec![&b"heart beat"[..], b"hb", b"h"]),
    );
    let guards = (
        option::of(ms(2_000, 40_000, edges)),
        option::of(ms(300, 10_000, edges)),
        option::of(1u64..=20),
        any::<u64>(),
        any::<bool>(),
    );
    (transport(), framing(), timing, guards).prop_map(
        |(transport, framing, t, (idle, connect, backoff, seed, when_idle))| {
            let (network_wait, radio_off, retry_delay, max_failures, heartbeat, payload) = t;
            Config {
                transport,
                framing,
                network_wait,
                radio_off,
                retry_delay,
                max_failures,
                heartbeat_interval: heartbeat,
                heartbeat_payload: longlink_core::payload(payload).unwrap_or_default(),
                heartbeat_when_idle: when_idle,
                idle_timeout: idle,
                connect_timeout: connect,
                backoff: match backoff {
                    None => Backoff::Fixed,
                    Some(k) => Backoff::Exponential {
                        max: Duration::from_millis(retry_delay.as_millis() * k),
                    },
                },
                seed,
                delivery: Delivery::Socket,
            }
        },
    )
}

/// [`socket_config`] in either delivery mode: half the time the
/// acknowledged mode ([`acked`]), with the framing it allows (`Len16`, or
/// `Raw` over UDP).
pub fn config() -> impl Strategy<Value = Config> {
    with_delivery(socket_config())
}

fn with_delivery(configs: impl Strategy<Value = Config>) -> impl Strategy<Value = Config> {
    (configs, option::of(acked())).prop_map(|(mut cfg, acked)| {
        if let Some(a) = acked {
            cfg.framing = match (cfg.transport, cfg.framing) {
                (Transport::Udp, Framing::Raw) => Framing::Raw,
                _ => Framing::Len16,
            };
            cfg.delivery = Delivery::Acked(a);
        }
        cfg
    })
}

fn chance() -> impl Strategy<Value = f64> {
    select(vec![0.0, 0.02, 0.1, 0.3])
}

fn mean(options: &'static [u64]) -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), select(options)]
}

/// A fault mix like [`Faults::random`]'s: each fault off or at 2 %, 10 %
/// or 30 % (means of 5 s–5 min for the timed ones). Shrinks towards
/// [`Faults::default`], a perfect network.
pub fn faults() -> impl Strategy<Value = Faults> {
    let connect = (chance(), chance(), chance(), chance());
    let socket = (
        chance(),
        chance(),
        chance(),
        chance(),
        mean(&[5_000, 30_000, 120_000]),
    );
    let udp = (chance(), chance(), chance());
    let server = (chance(), chance(), chance(), chance(), chance());
    let world = (
        mean(&[20_000, 60_000, 300_000]),
        chance(),
        any::<bool>(),
        mean(&[5_000, 30_000, 120_000]),
        select(vec![0u64, 20, 300, 3_000]),
    );
    (connect, socket, udp, server, world).prop_map(|(c, s, u, sv, w)| Faults {
        refuse: c.0,
        dns: c.1,
        hang: c.2,
        handshake_reset: c.3,
        partial: s.0,
        would_block: s.1,
        reset_mid_send: s.2 / 3.0,
        silent: s.3 / 2.0,
        peer_close_ms: s.4,
        udp_loss: u.0,
        udp_dup: u.1,
        udp_reorder: u.2,
        burst: sv.0,
        oversize: sv.1 / 3.0,
        garbage: sv.2,
        stall: sv.3,
        bogus_ack: sv.4,
        net_flap_ms: w.0,
        link_reset_drops_ip: w.1,
        clock_jumps: w.2,
        crash_ms: w.3,
        lag_ms: w.4,
    })
}

/// One [`Input`]; server bytes are drawn from `server` (for example your
/// protocol's requests, [`framed`] for the config), so a fuzz-like sequence
/// speaks your protocol as well as garbage. Weighted towards what makes
/// progress: writes, reads, time, connects.
pub fn input_with(
    server: impl Strategy<Value = Vec<u8>> + Clone + 'static,
) -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => any::<bool>().prop_map(Input::Network),
        3 => prop_oneof![0u16..50, any::<u16>()].prop_map(Input::Advance),
        1 => (0u32..600_000).prop_map(Input::AdvanceFar),
        3 => Just(Input::ToDeadline),
        1 => (0u16..2_000).prop_map(Input::ClockBack),
        3 => Just(Input::ConnectOk),
        2 => Just(Input::ConnectFail),
        1 => Just(Input::Closed),
        1 => Just(Input::IoError),
        4 => vec(any::<u8>(), 0..48).prop_map(Input::Enqueue),
        6 => any::<u8>().prop_map(Input::Write),
        5 => server.prop_map(Input::Read),
        1 => vec(any::<u8>(), 0..48).prop_map(Input::Read),
        1 => prop_oneof![
            Just(1_700_000_000_000u64),
            0..longlink_core::MIN_PLAUSIBLE_UNIX_MS,
            1_600_000_000_000u64..1_900_000_000_000
        ]
        .prop_map(Input::WallClock),
    ]
}

/// `payloads` as your server puts them on the wire to a device with `cfg`
/// ([`server_frame`](crate::server_frame): framed, and in the acknowledged
/// mode wrapped as `M` frames), for [`input_with`].
pub fn framed(
    cfg: &Config,
    payloads: impl Strategy<Value = Vec<u8>> + Clone,
) -> impl Strategy<Value = Vec<u8>> + Clone {
    let cfg = cfg.clone();
    payloads.prop_map(move |p| crate::server_frame(&cfg, &p))
}

/// A sequence of up to `len` inputs ([`input_with`]).
pub fn inputs_with(
    server: impl Strategy<Value = Vec<u8>> + Clone + 'static,
    len: usize,
) -> impl Strategy<Value = Vec<Input>> {
    vec(input_with(server), 0..=len)
}

/// [`inputs_with`] with random server bytes.
pub fn inputs(len: usize) -> impl Strategy<Value = Vec<Input>> {
    inputs_with(vec(any::<u8>(), 0..48), len)
}
