//! The seeded world around a [`Harness`]: network, modem, server, socket
//! faults, application and wall clock, on a virtual clock.

use std::collections::VecDeque;

use longlink_core::acked::{Dedup, Frame, Verdict};
use longlink_core::time::Duration;
use longlink_core::{Acked, Action, Backoff, Config, Delivery, Framing, Stats, Transport};

use crate::harness::{Event, Harness, Socket};
use crate::{Rng, Scenario, Violation};

/// What one run did: its numbers, its verdict, and (when asked for) the end
/// of its transcript.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Calls into the simulator's event loop.
    pub steps: u64,
    /// Virtual time at the end (ms).
    pub virtual_ms: u64,
    /// Connections established.
    pub connects: u32,
    /// App messages and replies delivered whole.
    pub delivered: (u64, u64),
    /// Frames the core rejected.
    pub frames_rejected: u32,
    /// Link resets and radio cycles.
    pub resets_and_cycles: (u32, u32),
    /// One line describing the config and the faults.
    pub summary: String,
    /// The core's counters at the end.
    pub stats: Stats,
    /// Frames cut on the wire by a disconnect (each checked to be a prefix
    /// and then sent whole later).
    pub cut_frames: u64,
    /// The acknowledged mode was on.
    pub acked: bool,
    /// Bytes the server's socket accepted and the server lost unread (a
    /// stall then a reset, a crash, a close with data unread), and how many
    /// times it lost any.
    pub server_lost: (u64, u64),
    /// The first invariant that failed, if one did.
    pub violation: Option<Violation>,
    /// The end of the transcript (only when asked for: [`Sim::trace`](crate::Sim::trace)).
    pub trace: Vec<String>,
}

/// The hardship in a world: each a probability (per attempt, write,
/// connection or request, as named) or a mean interval; 0 is off.
/// [`Faults::default`] is a perfect network; [`Faults::random`] a random
/// mix, as the project's sweep uses.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// A connect attempt is refused.
    pub refuse: f64,
    /// A connect attempt fails to resolve the host.
    pub dns: f64,
    /// A connect attempt hangs (until the connect timeout, or an OS-like
    /// timeout of 20–75 s without one).
    pub hang: f64,
    /// A connection is reset during its handshake.
    pub handshake_reset: f64,
    /// A TCP write takes only part of what was offered.
    pub partial: f64,
    /// A write would block (for 1–500 ms).
    pub would_block: f64,
    /// A connection is reset in the middle of a send.
    pub reset_mid_send: f64,
    /// Mean ms to a peer close per connection (0: never); graceful after
    /// its data or abrupt.
    pub peer_close_ms: u64,
    /// A connection goes half-open: the peer vanishes without a word.
    pub silent: f64,
    /// UDP: a datagram is lost (either way in the acknowledged mode).
    pub udp_loss: f64,
    /// UDP: a datagram arrives twice.
    pub udp_dup: f64,
    /// UDP: a datagram overtakes others.
    pub udp_reorder: f64,
    /// The server sends a burst of 2–7 requests at once.
    pub burst: f64,
    /// A request is replaced by an oversize frame.
    pub oversize: f64,
    /// A request is replaced by garbage (well framed or not).
    pub garbage: f64,
    /// Mean ms between coverage losses (0: never).
    pub net_flap_ms: u64,
    /// A link reset drops the IP address for 0.2–3 s.
    pub link_reset_drops_ip: f64,
    /// The wall clock jumps (and reads implausible values) now and then.
    pub clock_jumps: bool,
    /// Per connection: the server application stops reading for a while,
    /// then the connection is reset: what its socket held is lost.
    pub stall: f64,
    /// Mean ms to a server crash and restart per connection (0: never):
    /// unread bytes lost, the dedup record kept.
    pub crash_ms: u64,
    /// The server application reads this long after bytes arrive (0: at
    /// once): acks come late.
    pub lag_ms: u64,
    /// Acknowledged mode: chance per server tick of a bogus ack (another
    /// session, a stale number, a number beyond anything written).
    pub bogus_ack: f64,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Refused,
    Dns,
    HandshakeReset,
    OsTimeout,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Connect { gen: u64, outcome: Outcome },
    Coverage(bool),
    Attach,
    ServerTick { gen: u64 },
    PeerClose { gen: u64, graceful: bool },
    Silent { gen: u64 },
    SilentDeath { gen: u64 },
    Writable { gen: u64 },
    Stall { gen: u64 },
    StallReset { gen: u64 },
    Crash { gen: u64 },
    ServerRead { gen: u64 },
    App,
    Clock,
    End,
}

struct Server {
    /// TCP `Lines`/`Len16`: a byte stream, split and coalesced at will.
    stream: VecDeque<u8>,
    /// TCP `Raw`: one piece per request (a read never spans two).
    pieces: VecDeque<Vec<u8>>,
    /// UDP datagrams in arrival order.
    datagrams: VecDeque<Vec<u8>>,
    silent: bool,
    closing: bool,
    /// What the server's socket accepted from the device and the server
    /// application has not read (TCP bytes; UDP datagrams).
    inbound: VecDeque<u8>,
    inbound_dgrams: VecDeque<Vec<u8>>,
    /// The server application does not read.
    stalled: bool,
    /// A delayed read (`lag_ms`) is scheduled.
    read_scheduled: bool,
}

impl Server {
    fn new() -> Self {
        Server {
            stream: VecDeque::new(),
            pieces: VecDeque::new(),
            datagrams: VecDeque::new(),
            silent: false,
            closing: false,
            inbound: VecDeque::new(),
            inbound_dgrams: VecDeque::new(),
            stalled: false,
            read_scheduled: false,
        }
    }

    fn has_inbound(&self) -> bool {
        !self.inbound.is_empty() || !self.inbound_dgrams.is_empty()
    }

    fn inbound_bytes(&self) -> u64 {
        (self.inbound.len() + self.inbound_dgrams.iter().map(Vec::len).sum::<usize>()) as u64
    }

    fn is_empty(&self) -> bool {
        self.stream.is_empty() && self.pieces.is_empty() && self.datagrams.is_empty()
    }
}

pub(crate) struct World<S: Scenario, const Q: usize, const R: usize> {
    h: Harness<S, Q, R>,
    rng: Rng,
    f: Faults,
    now: u64,
    events: Vec<(u64, u64, Ev)>,
    seq: u64,
    gen: u64,
    coverage: bool,
    attached: bool,
    reported: bool,
    writable: bool,
    server: Server,
    request_id: u64,
    app_id: u64,
    request_mean_ms: u64,
    app_mean_ms: u64,
    draining: bool,
    drain_until: u64,
    steps: u64,
    wall_base: u64,
    /// The server application's dedup record (acknowledged mode); kept
    /// across its crashes, as `PROTOCOL.md` asks of exactly-once servers.
    dedup: Dedup,
    /// Bytes that reached the server's socket, that the server application
    /// read, and that it lost unread (and how many losses).
    srv_in: u64,
    srv_read: u64,
    srv_lost: u64,
    srv_losses: u64,
}

/// A random config as the project's sweep draws them: either transport,
/// any framing, every duration, heartbeat, idle and connect timeouts,
/// fixed or exponential backoff, and (half the time) the acknowledged mode
/// with a framing it allows. Always valid.
pub fn random_config(rng: &mut Rng) -> Config {
    let mut cfg = random_socket_config(rng);
    random_delivery(rng, &mut cfg);
    cfg
}

fn random_socket_config(rng: &mut Rng) -> Config {
    let ms = Duration::from_millis;
    let retry_delay = ms(rng.pick(&[100, 700, 1_000, 5_000]));
    Config {
        transport: rng.pick(&[Transport::Tcp, Transport::Udp]),
        framing: rng.pick(&[Framing::Raw, Framing::Lines, Framing::Len16]),
        network_wait: ms(rng.pick(&[2_000, 10_000, 60_000, 300_000])),
        radio_off: ms(rng.pick(&[1_000, 5_000, 20_000])),
        retry_delay,
        max_failures: rng.range(1, 6) as u16,
        heartbeat_interval: rng
            .chance(0.8)
            .then(|| ms(rng.pick(&[1_000, 3_000, 10_000]))),
        heartbeat_payload: longlink_core::payload(rng.pick(&[&b"heart beat"[..], b"hb", b"h"]))
            .unwrap_or_default(),
        heartbeat_when_idle: rng.chance(0.2),
        idle_timeout: rng.chance(0.5).then(|| ms(rng.range(2_000, 40_000))),
        connect_timeout: rng.chance(0.5).then(|| ms(rng.range(300, 10_000))),
        backoff: if rng.chance(0.3) {
            Backoff::Exponential {
                max: ms(retry_delay.as_millis() * rng.range(1, 20)),
            }
        } else {
            Backoff::Fixed
        },
        seed: rng.next_u64(),
        delivery: Delivery::Socket,
    }
}

/// Half the worlds speak the acknowledged mode, with the framings it
/// allows and random timings.
fn random_delivery(rng: &mut Rng, cfg: &mut Config) {
    if !rng.chance(0.5) {
        return;
    }
    cfg.framing = match (cfg.transport, cfg.framing) {
        (Transport::Udp, Framing::Raw) => Framing::Raw,
        _ => Framing::Len16,
    };
    cfg.delivery = Delivery::Acked(Acked {
        session: rng.next_u64() as u32,
        ack_timeout: Duration::from_millis(rng.pick(&[150, 700, 2_000, 5_000])),
        max_retransmissions: rng.range(0, 5) as u8,
        max_in_flight: rng.range(1, 5) as u8,
    });
}

impl Faults {
    /// A random mix: each fault on or off, with a random intensity.
    pub fn random(rng: &mut Rng) -> Faults {
        random_faults(rng)
    }
}

fn random_faults(rng: &mut Rng) -> Faults {
    let p = |rng: &mut Rng| {
        if rng.chance(0.5) {
            rng.pick(&[0.02, 0.1, 0.3])
        } else {
            0.0
        }
    };
    Faults {
        refuse: p(rng),
        dns: p(rng),
        hang: p(rng),
        handshake_reset: p(rng),
        partial: p(rng),
        would_block: p(rng),
        reset_mid_send: p(rng) / 3.0,
        peer_close_ms: if rng.chance(0.5) {
            rng.pick(&[5_000, 30_000, 120_000])
        } else {
            0
        },
        silent: p(rng) / 2.0,
        udp_loss: p(rng),
        udp_dup: p(rng),
        udp_reorder: p(rng),
        burst: p(rng),
        oversize: p(rng) / 3.0,
        garbage: p(rng),
        net_flap_ms: if rng.chance(0.4) {
            rng.pick(&[20_000, 60_000, 300_000])
        } else {
            0
        },
        link_reset_drops_ip: p(rng) * 3.0,
        clock_jumps: rng.chance(0.5),
        stall: p(rng),
        crash_ms: if rng.chance(0.3) {
            rng.pick(&[5_000, 30_000, 120_000])
        } else {
            0
        },
        lag_ms: if rng.chance(0.3) {
            rng.pick(&[20, 300, 3_000])
        } else {
            0
        },
        bogus_ack: p(rng),
    }
}

impl<S: Scenario, const Q: usize, const R: usize> World<S, Q, R> {
    /// Runs one world; `config` and `faults` replace the scenario's.
    pub(crate) fn run(
        seed: u64,
        mut scenario: S,
        config: Option<Config>,
        faults: Option<Faults>,
        trace: usize,
    ) -> Report {
        let mut rng = Rng::new(seed);
        let cfg = config.unwrap_or_else(|| scenario.config(&mut rng));
        let f = faults.unwrap_or_else(|| scenario.faults(&mut rng));
        let summary = format!("Q={Q} R={R} {cfg:?} {f:?}");
        let mut report = Report {
            seed,
            summary,
            ..Report::default()
        };
        let h = match Harness::<S, Q, R>::new(cfg, scenario, trace > 0) {
            Ok(h) => h,
            Err(v) => {
                report.violation = Some(v);
                return report;
            }
        };
        let mut w = World {
            h,
            f,
            now: 0,
            events: Vec::new(),
            seq: 0,
            gen: 0,
            coverage: false,
            attached: true,
            reported: false,
            writable: false,
            server: Server::new(),
            request_id: 0,
            app_id: 0,
            request_mean_ms: rng.pick(&[300, 1_500, 6_000]),
            app_mean_ms: rng.pick(&[200, 2_000, 10_000]),
            draining: false,
            drain_until: u64::MAX,
            steps: 0,
            wall_base: 1_700_000_000_000 + rng.below(100_000_000_000),
            rng,
            dedup: Dedup::default(),
            srv_in: 0,
            srv_read: 0,
            srv_lost: 0,
            srv_losses: 0,
        };
        let result = w.main().and_then(|()| w.server_accounts());
        let st = *w.h.connection().stats();
        report.steps = w.steps;
        report.virtual_ms = w.now;
        report.connects = st.connects;
        report.delivered = w.h.delivered();
        report.frames_rejected = st.frames_rejected;
        report.resets_and_cycles = (st.link_resets, st.radio_cycles);
        report.stats = st;
        report.cut_frames = w.h.cut_frames();
        report.acked = w.h.acked();
        report.server_lost = (w.srv_lost, w.srv_losses);
        report.violation = result.err();
        let t = w.h.transcript();
        report.trace = t[t.len().saturating_sub(trace)..]
            .iter()
            .map(|(at, e)| match e {
                Event::Action(a) => format!("{at:>9} ms  {a:?}"),
                Event::Wrote(b) => format!("{at:>9} ms  wrote \"{}\"", b.escape_ascii()),
                Event::Read(b) => format!("{at:>9} ms  read  \"{}\"", b.escape_ascii()),
            })
            .collect();
        report
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.events.push((self.now + delay, self.seq, ev));
    }

    fn exp(&mut self, mean: u64) -> u64 {
        // Geometric-ish spread around the mean, integer only.
        let u = self.rng.range(1, 1000);
        let ln = (1000.0 / u as f64).ln();
        (mean as f64 * ln) as u64 + 1
    }

    fn main(&mut self) -> Result<(), Violation> {
        let nw = self.h.config().network_wait.as_millis();
        let first = if self.rng.chance(0.6) {
            self.rng.below(3_000)
        } else {
            self.rng.below(2 * nw + 1)
        };
        self.at(first, Ev::Coverage(true));
        let app = self.exp(self.app_mean_ms);
        self.at(app, Ev::App);
        if self.rng.chance(0.7) {
            let t = self.rng.below(30_000);
            self.at(t, Ev::Clock);
        }
        let end = self.rng.range(20_000, 240_000);
        self.at(end, Ev::End);
        if self.f.net_flap_ms > 0 {
            let t = self.exp(self.f.net_flap_ms);
            self.at(t, Ev::Coverage(false));
        }
        loop {
            self.steps += 1;
            if self.steps > 1_000_000 {
                return Err(Violation::new(self.now, "runaway: a million steps".into()));
            }
            let next_ev = self
                .events
                .iter()
                .enumerate()
                .min_by_key(|(_, (t, s, _))| (*t, *s))
                .map(|(i, (t, _, _))| (i, *t));
            let deadline = self.h.deadline();
            match (next_ev, deadline) {
                (Some((_, t)), Some(d)) if d <= t => {
                    self.now = d;
                    self.h.advance(d)?;
                }
                (None, Some(d)) => {
                    self.now = d;
                    self.h.advance(d)?;
                }
                (Some((i, t)), _) => {
                    let (_, _, ev) = self.events.swap_remove(i);
                    self.now = t;
                    self.handle(ev)?;
                }
                (None, None) => {
                    if self.draining {
                        break;
                    }
                    return Err(Violation::new(
                        self.now,
                        "nothing left to happen before the end".into(),
                    ));
                }
            }
            self.react()?;
            if self.draining {
                if self.drained() {
                    break;
                }
                if self.now > self.drain_until {
                    return Err(Violation::new(
                        self.now,
                        format!(
                            "did not drain within 2 h (status {:?}, {} apps and {} replies owed)",
                            self.h.status(),
                            self.h.apps_owed(),
                            self.h.replies_owed()
                        ),
                    ));
                }
            }
        }
        self.h.finish()
    }

    fn drained(&mut self) -> bool {
        self.h.socket() == Socket::Open
            && self.h.apps_owed() == 0
            && self.h.replies_owed() == 0
            && self.h.requests_unhandled() == 0
            && self.server.is_empty()
            && !self.server.has_inbound()
    }

    /// What reached the server's socket was read or lost, byte for byte;
    /// in the socket mode, what the client's socket took reached it (no
    /// loss on the way is simulated there).
    fn server_accounts(&self) -> Result<(), Violation> {
        let left = self.server.inbound_bytes();
        if self.srv_in != self.srv_read + self.srv_lost + left {
            return Err(Violation::new(
                self.now,
                format!(
                    "server accounts: {} bytes in, {} read, {} lost, {left} left",
                    self.srv_in, self.srv_read, self.srv_lost
                ),
            ));
        }
        if !self.h.acked() && self.srv_in != self.h.bytes_out() {
            return Err(Violation::new(
                self.now,
                format!(
                    "the client wrote {} bytes, the server got {}",
                    self.h.bytes_out(),
                    self.srv_in
                ),
            ));
        }
        Ok(())
    }

    /// The server loses what its socket accepted and its application did
    /// not read.
    fn lose_inbound(&mut self) {
        let n = self.server.inbound_bytes();
        if n > 0 {
            self.srv_lost += n;
            self.srv_losses += 1;
        }
        self.server.inbound.clear();
        self.server.inbound_dgrams.clear();
    }

    /// The client's socket took the bytes of the last write: they reach
    /// the server's socket (acknowledged mode over UDP: through the same
    /// loss, duplication and reordering as the server's datagrams).
    fn accept_written(&mut self) {
        let bytes = self.h.last_written().to_vec();
        if bytes.is_empty() {
            return;
        }
        if self.h.config().transport == Transport::Tcp {
            self.srv_in += bytes.len() as u64;
            self.server.inbound.extend(bytes);
            return;
        }
        let faults = self.h.acked();
        if faults && self.rng.chance(self.f.udp_loss) {
            return;
        }
        let copies = if faults && self.rng.chance(self.f.udp_dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.srv_in += bytes.len() as u64;
            let q = &mut self.server.inbound_dgrams;
            if faults && self.rng.chance(self.f.udp_reorder) && !q.is_empty() {
                let at = self.rng.below(q.len() as u64) as usize;
                q.insert(at, bytes.clone());
            } else {
                q.push_back(bytes.clone());
            }
        }
    }

    /// Whether the server application has something to read: a whole
    /// frame (acknowledged mode over TCP), any byte (socket mode).
    fn server_has_work(&self) -> bool {
        let s = &self.server.inbound;
        if self.h.acked() && self.h.config().transport == Transport::Tcp {
            s.len() >= 2 && s.len() >= 2 + usize::from(u16::from_be_bytes([s[0], s[1]]))
        } else {
            self.server.has_inbound()
        }
    }

    /// The server application reads everything its socket holds.
    fn server_read(&mut self) -> Result<(), Violation> {
        if !self.h.acked() {
            self.srv_read += self.server.inbound_bytes();
            self.server.inbound.clear();
            self.server.inbound_dgrams.clear();
            return Ok(());
        }
        let framing = self.h.config().framing;
        let mut frames = Vec::new();
        if self.h.config().transport == Transport::Tcp {
            let s = &mut self.server.inbound;
            while s.len() >= 2 {
                let total = 2 + usize::from(u16::from_be_bytes([s[0], s[1]]));
                if s.len() < total {
                    break;
                }
                let f: Vec<u8> = s.drain(..total).skip(2).collect();
                self.srv_read += total as u64;
                frames.push(f);
            }
        } else {
            while let Some(d) = self.server.inbound_dgrams.pop_front() {
                self.srv_read += d.len() as u64;
                frames.push(match framing {
                    Framing::Len16 => d.get(2..).unwrap_or_default().to_vec(),
                    _ => d,
                });
            }
        }
        for f in frames {
            let frame = Frame::decode(&f).map_err(|_| {
                Violation::new(self.now, format!("the server got a malformed frame {f:?}"))
            })?;
            let Some((verdict, ack)) = self.dedup.on_frame(&frame) else {
                return Err(Violation::new(
                    self.now,
                    format!("the server got a server's frame {f:?}"),
                ));
            };
            if let (Verdict::Deliver, Frame::Data { seq, payload, .. }) = (verdict, frame) {
                self.h.server_delivered(seq, payload)?;
            }
            if let Some(a) = ack {
                self.server_send(&a);
            }
        }
        Ok(())
    }

    /// The server sends a frame (an ack, a bogus one) in the configured
    /// framing.
    fn server_send(&mut self, inner: &[u8]) {
        let framing = self.h.config().framing;
        let mut out = vec![0; inner.len() + framing.overhead()];
        let msg = match framing.encode(inner, &mut out) {
            Ok(n) => out[..n].to_vec(),
            Err(_) => return,
        };
        self.send_to_client(msg);
    }

    /// A bogus ack: another session's, a stale one, one beyond anything
    /// the client wrote.
    fn bogus_ack(&mut self) {
        let Delivery::Acked(a) = self.h.config().delivery else {
            return;
        };
        let (written, acked) = self.h.acked_window();
        let next = match self.rng.below(4) {
            0 => return self.server_send(&longlink_core::acked::ack(a.session ^ 1, written)),
            1 => acked.wrapping_sub(self.rng.below(3) as u32),
            // Far beyond anything the client will have written by the time
            // it arrives (an ack just beyond what was written may be true
            // by then: the client cannot tell it from a real one).
            2 => written.wrapping_add((1 << 30) + self.rng.below(3) as u32),
            _ => written.wrapping_add((1 << 31) + self.rng.below(3) as u32),
        };
        self.server_send(&longlink_core::acked::ack(a.session, next));
    }

    fn sync_network(&mut self) -> Result<(), Violation> {
        let want = self.coverage && self.attached;
        if want != self.reported {
            self.reported = want;
            self.h.network(self.now, want)?;
        }
        Ok(())
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        let now = self.now;
        let open = |w: &Self, gen: u64| gen == w.gen && w.h.socket() == Socket::Open;
        match ev {
            Ev::Connect { gen, outcome } => {
                if gen != self.gen || self.h.socket() != Socket::Connecting {
                    return Ok(());
                }
                match outcome {
                    Outcome::Ok => {
                        self.h.connect_ok(now)?;
                        self.lose_inbound();
                        self.server = Server::new();
                        self.writable = true;
                        let t = self.exp(self.request_mean_ms);
                        self.at(t, Ev::ServerTick { gen });
                        if self.f.peer_close_ms > 0 {
                            let t = self.exp(self.f.peer_close_ms);
                            let graceful =
                                self.rng.chance(0.5) && self.h.config().transport == Transport::Tcp;
                            self.at(t, Ev::PeerClose { gen, graceful });
                        }
                        if self.rng.chance(self.f.silent) {
                            let t = self.rng.below(60_000);
                            self.at(t, Ev::Silent { gen });
                        }
                        if self.rng.chance(self.f.stall) {
                            let t = self.rng.below(20_000);
                            self.at(t, Ev::Stall { gen });
                        }
                        if self.f.crash_ms > 0 {
                            let t = self.exp(self.f.crash_ms);
                            self.at(t, Ev::Crash { gen });
                        }
                    }
                    Outcome::Refused | Outcome::Dns | Outcome::OsTimeout => {
                        self.h.connect_failed(now)?
                    }
                    Outcome::HandshakeReset => self.h.io_error(now)?,
                }
            }
            Ev::Coverage(up) => {
                self.coverage = up;
                if !self.draining && self.f.net_flap_ms > 0 {
                    let nw = self.h.config().network_wait.as_millis();
                    let t = if up {
                        self.exp(self.f.net_flap_ms)
                    } else if self.rng.chance(0.3) {
                        nw + self.rng.below(nw)
                    } else {
                        self.rng.range(1, 5_000)
                    };
                    self.at(t, Ev::Coverage(!up));
                }
                self.sync_network()?;
            }
            Ev::Attach => {
                self.attached = true;
                self.sync_network()?;
            }
            Ev::ServerTick { gen } => {
                if open(self, gen) && !self.server.silent && !self.draining {
                    let n = if self.rng.chance(self.f.burst) {
                        self.rng.range(2, 8)
                    } else {
                        1
                    };
                    for _ in 0..n {
                        self.send_request();
                    }
                    if self.h.acked() && self.rng.chance(self.f.bogus_ack) {
                        self.bogus_ack();
                    }
                    let t = self.exp(self.request_mean_ms);
                    self.at(t, Ev::ServerTick { gen });
                }
            }
            Ev::PeerClose { gen, graceful } => {
                if open(self, gen) && !self.draining {
                    if graceful {
                        self.server.closing = true;
                    } else {
                        self.h.io_error(now)?;
                    }
                }
            }
            Ev::Silent { gen } => {
                if open(self, gen) && !self.draining {
                    self.lose_inbound();
                    self.server = Server::new();
                    self.server.silent = true;
                    if self.h.config().idle_timeout.is_none() {
                        // No dead-peer detection: only a late socket error
                        // (keepalive, retransmission timeout) ends it.
                        let t = self.rng.range(30_000, 120_000);
                        self.at(t, Ev::SilentDeath { gen });
                    }
                }
            }
            Ev::SilentDeath { gen } => {
                if open(self, gen) {
                    self.h.io_error(now)?;
                }
            }
            Ev::Writable { gen } => {
                if gen == self.gen {
                    self.writable = true;
                }
            }
            Ev::Stall { gen } => {
                if open(self, gen) && !self.draining {
                    self.server.stalled = true;
                    let t = self.rng.range(100, 5_000);
                    self.at(t, Ev::StallReset { gen });
                }
            }
            Ev::StallReset { gen } => {
                if open(self, gen) {
                    self.server.stalled = false;
                    self.lose_inbound();
                    if self.h.config().transport == Transport::Tcp {
                        self.h.io_error(now)?;
                    }
                }
            }
            Ev::Crash { gen } => {
                if open(self, gen) && !self.draining {
                    // Restarted at once: the dedup record survives, the
                    // connection (TCP) does not.
                    self.lose_inbound();
                    if self.h.config().transport == Transport::Tcp {
                        self.h.io_error(now)?;
                    }
                }
            }
            Ev::ServerRead { gen } => {
                if gen == self.gen {
                    self.server.read_scheduled = false;
                    if self.h.socket() == Socket::Open
                        && !self.server.stalled
                        && !self.server.silent
                    {
                        self.server_read()?;
                    }
                }
            }
            Ev::App => {
                let burst = if self.rng.chance(0.2) {
                    self.rng.range(2, 6)
                } else {
                    1
                };
                for _ in 0..burst {
                    let n = self.app_id;
                    self.app_id += 1;
                    let msg = self.h.scenario().app_message(n, &mut self.rng, Q);
                    let _ = self.h.enqueue(now, msg)?;
                }
                if !self.draining {
                    let t = self.exp(self.app_mean_ms);
                    self.at(t, Ev::App);
                }
            }
            Ev::Clock => {
                let unix = if self.rng.chance(0.1) {
                    self.rng.below(1_000_000) // an RTC that lost power
                } else {
                    let jump = self.rng.below(172_800_000);
                    (self.wall_base + now + jump).saturating_sub(86_400_000)
                };
                self.h.wall_clock(now, unix)?;
                if self.f.clock_jumps && !self.draining {
                    let t = self.rng.range(5_000, 120_000);
                    self.at(t, Ev::Clock);
                }
            }
            Ev::End => self.start_drain()?,
        }
        Ok(())
    }

    fn start_drain(&mut self) -> Result<(), Violation> {
        self.draining = true;
        self.drain_until = self.now + 7_200_000;
        self.f = Faults::default();
        self.events.retain(|(_, _, e)| {
            !matches!(
                e,
                Ev::Coverage(false)
                    | Ev::PeerClose { .. }
                    | Ev::Silent { .. }
                    | Ev::Stall { .. }
                    | Ev::Crash { .. }
                    | Ev::App
                    | Ev::Clock
            )
        });
        if self.server.stalled {
            // Drains only once the server reads again; its reset follows.
            self.server.stalled = false;
        }
        if !self.coverage {
            self.at(0, Ev::Coverage(true));
        }
        if !self.attached {
            self.at(0, Ev::Attach);
        }
        self.server.closing = false;
        if self.server.silent && self.h.socket() == Socket::Open {
            // The half-open connection never carries replies again.
            self.h.io_error(self.now)?;
        }
        Ok(())
    }

    fn send_request(&mut self) {
        let framing = self.h.config().framing;
        let id = self.request_id;
        self.request_id += 1;
        let r = &mut self.rng;
        let roll = r.below(100) as f64 / 100.0;
        let msg: Vec<u8> = if roll < self.f.oversize {
            match framing {
                Framing::Raw => vec![b'z'; 2 * R + 1],
                Framing::Lines => {
                    let mut v = vec![b'z'; R + r.below(8) as usize];
                    v.push(b'\n');
                    v
                }
                Framing::Len16 => {
                    let mut v = ((R - 1) as u16 + r.range(0, 100) as u16)
                        .to_be_bytes()
                        .to_vec();
                    v.resize(2 + R / 2, b'z');
                    v
                }
            }
        } else if roll < self.f.oversize + self.f.garbage {
            let len = r.below(R as u64 + 1) as usize;
            let g: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
            if r.chance(0.5) && framing != Framing::Raw {
                // Well framed, random inside.
                let mut out = vec![0; g.len() + framing.overhead()];
                let g: Vec<u8> = g.into_iter().filter(|&b| b != b'\n').collect();
                match framing.encode(&g, &mut out) {
                    Ok(n) => out[..n].to_vec(),
                    Err(_) => g,
                }
            } else {
                g
            }
        } else {
            let Some(body) = self.h.scenario().request(id, &mut self.rng, R) else {
                return;
            };
            let mut frame = crate::server_frame(self.h.config(), &body);
            if framing == Framing::Lines && self.rng.chance(0.2) {
                // CRLF line ending.
                frame.insert(frame.len() - 1, b'\r');
            }
            frame
        };
        self.send_to_client(msg);
    }

    /// Bytes from the server on their way to the client: over UDP, lost,
    /// duplicated and reordered as the faults say.
    fn send_to_client(&mut self, msg: Vec<u8>) {
        let framing = self.h.config().framing;
        match self.h.config().transport {
            Transport::Tcp => match framing {
                Framing::Raw => {
                    if !msg.is_empty() {
                        self.server.pieces.push_back(msg);
                    }
                }
                _ => self.server.stream.extend(msg),
            },
            Transport::Udp => {
                if self.rng.chance(self.f.udp_loss) {
                    return;
                }
                let copies = if self.rng.chance(self.f.udp_dup) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    if self.rng.chance(self.f.udp_reorder) && !self.server.datagrams.is_empty() {
                        let at = self.rng.below(self.server.datagrams.len() as u64) as usize;
                        self.server.datagrams.insert(at, msg.clone());
                    } else {
                        self.server.datagrams.push_back(msg.clone());
                    }
                }
            }
        }
    }

    /// Acts on actions, then moves bytes until nothing moves.
    fn react(&mut self) -> Result<(), Violation> {
        for _ in 0..100_000 {
            let mut progress = false;
            for a in self.h.take_actions() {
                progress = true;
                self.on_action(a)?;
            }
            if self.h.socket() == Socket::Open && self.writable && self.h.wants_to_write() {
                progress = true;
                self.write()?;
            }
            if self.h.socket() == Socket::Open
                && !self.server.silent
                && self.h.receive_room() > 0
                && !self.server.is_empty()
            {
                progress = true;
                self.read()?;
            }
            if self.h.socket() == Socket::Open
                && self.server_has_work()
                && !self.server.stalled
                && !self.server.silent
            {
                if self.f.lag_ms == 0 {
                    progress = true;
                    self.server_read()?;
                } else if !self.server.read_scheduled {
                    self.server.read_scheduled = true;
                    let (t, gen) = (self.f.lag_ms, self.gen);
                    self.at(t, Ev::ServerRead { gen });
                }
            }
            if self.server.closing && self.server.is_empty() && self.h.socket() == Socket::Open {
                self.server.closing = false;
                progress = true;
                self.h.peer_closed(self.now)?;
            }
            if !progress {
                return Ok(());
            }
        }
        Err(Violation::new(self.now, "I/O never settles".into()))
    }

    fn on_action(&mut self, a: Action) -> Result<(), Violation> {
        match a {
            Action::Connect { .. } => {
                self.gen += 1;
                let gen = self.gen;
                let f = self.f;
                let r = &mut self.rng;
                let outcome = if r.chance(f.refuse) {
                    Some(Outcome::Refused)
                } else if r.chance(f.dns) {
                    Some(Outcome::Dns)
                } else if r.chance(f.handshake_reset) {
                    Some(Outcome::HandshakeReset)
                } else if r.chance(f.hang) {
                    None
                } else {
                    Some(Outcome::Ok)
                };
                let latency = if self.rng.chance(0.3) {
                    0
                } else {
                    self.rng.below(800)
                };
                match outcome {
                    Some(outcome) => self.at(latency, Ev::Connect { gen, outcome }),
                    None if self.h.config().connect_timeout.is_none() => {
                        let t = self.rng.range(20_000, 75_000);
                        self.at(
                            t,
                            Ev::Connect {
                                gen,
                                outcome: Outcome::OsTimeout,
                            },
                        );
                    }
                    // The connect timeout ends it.
                    None => {}
                }
            }
            Action::Close => {
                // What the server's socket held unread dies with the
                // connection.
                self.lose_inbound();
                self.server = Server::new();
                self.writable = false;
            }
            Action::ResetLink => {
                if self.rng.chance(self.f.link_reset_drops_ip) {
                    self.attached = false;
                    self.sync_network()?;
                    let t = self.rng.range(200, 3_000);
                    self.at(t, Ev::Attach);
                }
            }
            Action::RadioOff => {
                self.attached = false;
                self.sync_network()?;
            }
            Action::RadioOn => {
                let t = self.rng.below(3_000);
                self.at(t, Ev::Attach);
            }
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), Violation> {
        let now = self.now;
        let tcp = self.h.config().transport == Transport::Tcp;
        let f = self.f;
        let roll = self.rng.below(1000) as f64 / 1000.0;
        if roll < f.would_block {
            self.h.write(now, 0)?;
            self.accept_written();
            self.writable = false;
            let t = self.rng.range(1, 500);
            let gen = self.gen;
            self.at(t, Ev::Writable { gen });
        } else if roll < f.would_block + f.reset_mid_send {
            let k = self.rng.below(16) as usize;
            self.h.write(now, k)?;
            self.accept_written();
            if self.h.socket() == Socket::Open {
                self.h.io_error(now)?;
            }
        } else if tcp && roll < f.would_block + f.reset_mid_send + f.partial {
            let k = self.rng.range(1, 24) as usize;
            self.h.write(now, k)?;
            self.accept_written();
        } else {
            self.h.write(now, usize::MAX)?;
            self.accept_written();
        }
        Ok(())
    }

    fn read(&mut self) -> Result<(), Violation> {
        let now = self.now;
        let room = self.h.receive_room();
        match (self.h.config().transport, self.h.config().framing) {
            (Transport::Udp, _) => {
                if let Some(d) = self.server.datagrams.front().cloned() {
                    if self.h.read_datagram(now, &d)? {
                        self.server.datagrams.pop_front();
                    }
                }
            }
            (Transport::Tcp, Framing::Raw) => {
                if let Some(p) = self.server.pieces.front().cloned() {
                    let n = self.h.read_stream(now, &p)?;
                    if n >= p.len() {
                        self.server.pieces.pop_front();
                    } else if let Some(front) = self.server.pieces.front_mut() {
                        front.drain(..n);
                    }
                }
            }
            (Transport::Tcp, _) => {
                let avail = self.server.stream.len().min(room);
                let n = if self.rng.chance(0.5) {
                    avail
                } else {
                    self.rng.range(1, avail as u64) as usize
                };
                let chunk: Vec<u8> = self.server.stream.iter().take(n).copied().collect();
                let took = self.h.read_stream(now, &chunk)?;
                self.server.stream.drain(..took);
            }
        }
        Ok(())
    }
}
