//! What a user plugs in ([`Scenario`]) and how a world is run ([`Sim`]).

use longlink_core::{Config, Context, Delivery, Handler};

use crate::world::{Faults, Report, World};
use crate::Rng;

/// Your device and your server, for the simulator.
///
/// Only [`handler`](Self::handler) and [`reply`](Self::reply) are
/// required; the rest have the defaults the project's own sweep uses.
///
/// The simulator calls the model ([`reply`](Self::reply)) once per message
/// the state machine handled, in order, with the time and wall clock the
/// simulator itself knows, and checks that what the handler really queued
/// reaches the wire whole, in order, exactly once. The handler may be called
/// more than once for a message (see `longlink_core::Handler`, "Retries");
/// the model never is: a handler whose state counts the retries shows up as
/// a reply that differs from the model's.
pub trait Scenario {
    /// The handler under test.
    type Handler: Handler;

    /// A fresh device: the handler the state machine is created with.
    fn handler(&mut self) -> Self::Handler;

    /// The model: the reply `message` must get (`None`: no reply). `cx`
    /// holds the simulator's virtual time and its wall clock, if one was
    /// set. A model with state (a configuration command that changes later
    /// replies) keeps it here.
    fn reply(&mut self, message: &[u8], cx: &Context) -> Option<Vec<u8>>;

    /// The next request your server sends (its payload: the simulator
    /// frames it, and wraps it in the acknowledged mode's envelope when that
    /// mode is on), or `None` to send nothing this time. `id` counts the
    /// requests; `room` is the device's receive buffer (`R`), for requests
    /// sized around it. Default: none.
    fn request(&mut self, id: u64, rng: &mut Rng, room: usize) -> Option<Vec<u8>> {
        let _ = (id, rng, room);
        None
    }

    /// The next message your application queues with `enqueue` (numbered
    /// `n`; `queue` is the queue size, `Q`). Default:
    /// [`default_app_message`].
    fn app_message(&mut self, n: u64, rng: &mut Rng, queue: usize) -> Vec<u8> {
        default_app_message(n, rng, queue)
    }

    /// The config of a world, unless [`Sim::config`] gives one. Default:
    /// [`random_config`](crate::random_config).
    fn config(&mut self, rng: &mut Rng) -> Config {
        crate::random_config(rng)
    }

    /// The faults of a world, unless [`Sim::faults`] gives them. Default:
    /// [`Faults::random`].
    fn faults(&mut self, rng: &mut Rng) -> Faults {
        Faults::random(rng)
    }

    /// A message from the device (one your application queued, or a reply)
    /// reached your server, in order: in the socket mode once the device's
    /// socket took it whole (the world's later losses on the server's side,
    /// a stall or a crash, are not reported back); in the acknowledged mode
    /// once the server application's `Dedup` delivered it, exactly once. For
    /// a server that reacts (its next [`request`](Self::request) can depend
    /// on it) and for invariants over what the server got. An `Err` fails
    /// the run with its text. Default: nothing.
    fn delivered(&mut self, message: &[u8]) -> Result<(), String> {
        let _ = message;
        Ok(())
    }

    /// Your own invariant, checked after every call into the state machine
    /// (after the simulator's own checks and the model's replies). An
    /// `Err` fails the run with its text.
    fn check(&mut self, handler: &Self::Handler) -> Result<(), String> {
        let _ = handler;
        Ok(())
    }
}

/// `APP<n>:` and filler letters: mostly small, now and then larger than the
/// queue (refused as too large), now and then with a `\n` (refused by
/// `Lines`).
pub fn default_app_message(n: u64, rng: &mut Rng, queue: usize) -> Vec<u8> {
    let pad = if rng.chance(0.1) {
        rng.below(2 * queue as u64)
    } else {
        rng.below(queue as u64 / 3)
    };
    let mut msg = format!("APP{n}:").into_bytes();
    msg.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
    if rng.chance(0.03) {
        msg.push(b'\n');
    }
    msg
}

/// A server's message as it goes on the wire to a device with `cfg`:
/// framed, and in the acknowledged mode wrapped as an `M` frame. A payload
/// the framing cannot carry (`Lines` with a `\n`) goes out as it is, as a
/// careless server would send it.
pub fn server_frame(cfg: &Config, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 1);
    if matches!(cfg.delivery, Delivery::Acked(_)) {
        body.push(longlink_core::acked::MSG);
    }
    body.extend_from_slice(payload);
    let mut out = vec![0; body.len() + cfg.framing.overhead()];
    match cfg.framing.encode(&body, &mut out) {
        Ok(n) => {
            out.truncate(n);
            out
        }
        Err(_) => body,
    }
}

/// One run of a [`Scenario`] in a seeded world: a queue of `Q` bytes and a
/// receive buffer of `R`, as the device's `Connection<H, Q, R>` has.
///
/// ```
/// # use longlink_sim::{Sim, Tutorial, Faults};
/// // The tutorial's protocol, on a perfect network, with the transcript.
/// let report = Sim::<Tutorial, 256, 64>::new(Tutorial::default())
///     .faults(Faults::default())
///     .trace(20)
///     .run(7);
/// assert!(report.violation.is_none());
/// assert!(!report.trace.is_empty());
/// ```
#[must_use]
pub struct Sim<S: Scenario, const Q: usize, const R: usize> {
    scenario: S,
    config: Option<Config>,
    faults: Option<Faults>,
    trace: usize,
}

impl<S: Scenario, const Q: usize, const R: usize> Sim<S, Q, R> {
    /// A run of `scenario`, with the scenario's config and faults.
    pub fn new(scenario: S) -> Self {
        Sim {
            scenario,
            config: None,
            faults: None,
            trace: 0,
        }
    }

    /// Runs with this config (the world's other choices still come from
    /// the seed). A config the sizes `Q` and `R` cannot hold fails the run
    /// at once, with the reason (`config refused: ...`), as
    /// `Connection::new` would refuse it on the device.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Runs with these faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Keeps the last `lines` entries of the transcript (every action and
    /// every byte moved, with its virtual time) in the report.
    pub fn trace(mut self, lines: usize) -> Self {
        self.trace = lines;
        self
    }

    /// Runs the world for `seed`. The report says what the run did and the
    /// first invariant that failed, if one did (a panic in the handler or
    /// the state machine is one).
    pub fn run(self, seed: u64) -> Report {
        World::<S, Q, R>::run(seed, self.scenario, self.config, self.faults, self.trace)
    }

    /// Runs the world for `seed`; when an invariant fails, runs the same
    /// seed again with a transcript and returns it in the [`Failure`],
    /// whose `Display` (and `Debug`, so `unwrap` shows it) tells what failed,
    /// the config and faults, the last 60 lines of the transcript, and how to
    /// rerun.
    pub fn check(self, seed: u64) -> Result<Report, Failure>
    where
        S: Clone,
    {
        let again = Sim::<S, Q, R> {
            scenario: self.scenario.clone(),
            config: self.config.clone(),
            faults: self.faults,
            trace: self.trace.max(60),
        };
        let report = self.run(seed);
        if report.violation.is_none() {
            return Ok(report);
        }
        let traced = again.run(seed);
        Err(Failure {
            report: Box::new(if traced.violation.is_some() {
                traced
            } else {
                report
            }),
        })
    }
}

/// A run whose invariant failed, with its transcript: see [`Sim::check`].
#[derive(Clone)]
pub struct Failure {
    /// The run, with [`Report::violation`] set.
    pub report: Box<Report>,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = &self.report;
        if let Some(v) = &r.violation {
            writeln!(f, "seed {}: {v}", r.seed)?;
        }
        writeln!(f, "world: {}", r.summary)?;
        writeln!(f, "transcript (the last {} lines):", r.trace.len())?;
        for line in &r.trace {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "the same seed gives the same run: Sim::new(..).trace(N).run({}) to see more",
            r.seed
        )
    }
}

impl core::fmt::Debug for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}
