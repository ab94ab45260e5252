//! The user-facing pieces of `Scenario` and `Sim` each do what they say:
//! a model that disagrees, an invariant that fails, a server that objects
//! to what it got, and a handler that panics all fail the run, with the
//! seed's transcript.

use longlink_core::{Config, Context, Delivery, Handler, Reply, ReplyFull, Transport};
use longlink_sim::{Faults, Rng, Scenario, Sim};

/// Echoes every message.
#[derive(Clone, Default)]
struct Echo {
    panic_on: Option<Vec<u8>>,
}

impl Handler for Echo {
    fn on_message(&mut self, m: &[u8], _: &Context, r: &mut Reply<'_>) -> Result<(), ReplyFull> {
        if self.panic_on.as_deref() == Some(m) {
            panic!("the handler gave up on {m:?}");
        }
        r.write(m)
    }
}

#[derive(Clone, Default)]
struct EchoServer {
    /// The model answers wrongly from this request on.
    wrong_from: Option<u64>,
    handled: u64,
    /// The handler panics on this request.
    panic_on: Option<Vec<u8>>,
    /// `delivered` objects to this message.
    object_to: Option<Vec<u8>>,
    /// `check` fails once this many were handled.
    check_fails_at: Option<u64>,
    /// Messages the server got.
    got: u64,
}

impl Scenario for EchoServer {
    type Handler = Echo;
    fn handler(&mut self) -> Echo {
        Echo {
            panic_on: self.panic_on.clone(),
        }
    }
    fn request(&mut self, id: u64, _: &mut Rng, _: usize) -> Option<Vec<u8>> {
        Some(format!("m{id}").into_bytes())
    }
    fn reply(&mut self, m: &[u8], _: &Context) -> Option<Vec<u8>> {
        self.handled += 1;
        if self.wrong_from.is_some_and(|w| self.handled > w) {
            Some(b"wrong".to_vec())
        } else {
            Some(m.to_vec())
        }
    }
    fn delivered(&mut self, m: &[u8]) -> Result<(), String> {
        self.got += 1;
        match &self.object_to {
            Some(o) if o == m => Err(format!(
                "the server refused {:?}",
                String::from_utf8_lossy(m)
            )),
            _ => Ok(()),
        }
    }
    fn check(&mut self, _: &Echo) -> Result<(), String> {
        match self.check_fails_at {
            Some(n) if self.handled >= n => Err(format!("{n} handled")),
            _ => Ok(()),
        }
    }
}

/// TCP, the default mode, a perfect network: the run is about the scenario.
fn calm() -> Config {
    Config {
        transport: Transport::Tcp,
        delivery: Delivery::Socket,
        ..Config::default()
    }
}

fn failure(s: EchoServer) -> String {
    match Sim::<EchoServer, 256, 64>::new(s)
        .config(calm())
        .faults(Faults::default())
        .check(3)
    {
        Ok(r) => panic!("the run passed: {:?}", r.stats),
        Err(f) => {
            assert!(
                !f.report.trace.is_empty(),
                "a failure comes with its transcript"
            );
            f.to_string()
        }
    }
}

#[test]
fn a_faithful_model_passes() {
    let r = Sim::<EchoServer, 256, 64>::new(EchoServer::default())
        .config(calm())
        .faults(Faults::default())
        .check(3)
        .unwrap_or_else(|f| panic!("{f}"));
    assert!(r.delivered.1 > 10, "replies delivered: {:?}", r.delivered);
}

#[test]
fn a_model_that_disagrees_fails_the_run() {
    let text = failure(EchoServer {
        wrong_from: Some(3),
        ..EchoServer::default()
    });
    assert!(text.contains("\"wrong\""), "{text}");
}

#[test]
fn a_server_that_objects_fails_the_run() {
    let text = failure(EchoServer {
        object_to: Some(b"m2".to_vec()),
        ..EchoServer::default()
    });
    assert!(
        text.contains("Scenario::delivered: the server refused \"m2\""),
        "{text}"
    );
}

#[test]
fn a_failing_invariant_fails_the_run() {
    let text = failure(EchoServer {
        check_fails_at: Some(4),
        ..EchoServer::default()
    });
    assert!(text.contains("4 handled"), "{text}");
}

#[test]
fn a_panicking_handler_is_a_violation_with_its_transcript() {
    let text = failure(EchoServer {
        panic_on: Some(b"m5".to_vec()),
        ..EchoServer::default()
    });
    assert!(text.contains("panicked: the handler gave up on"), "{text}");
    // The transcript ends where the request arrived.
    assert!(text.contains("read  \"m5"), "{text}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let r = Sim::<EchoServer, 128, 32>::new(EchoServer::default())
            .trace(1_000)
            .run(seed);
        (r.summary, r.trace, r.steps)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

/// How many seeds a sweep runs: `default`, or the environment's `var`.
fn seeds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// An echo of everything the server sends, garbage and empty datagrams
/// included, in random worlds: replies of any bytes test the framing edges
/// the tutorial's protocol never reaches (this found the empty `Raw` reply
/// the core used to queue). `LONGLINK_ECHO_SEEDS` for a longer sweep.
#[test]
fn an_echo_of_anything_keeps_every_invariant() {
    let seeds = seeds("LONGLINK_ECHO_SEEDS", 300);
    for seed in 0..seeds {
        let s = EchoServer::default();
        let r = match seed % 3 {
            0 => Sim::<EchoServer, 64, 16>::new(s).check(seed),
            1 => Sim::<EchoServer, 256, 64>::new(s).check(seed),
            _ => Sim::<EchoServer, 48, 64>::new(s).check(seed),
        };
        if let Err(f) = r {
            panic!("{f}");
        }
    }
}

/// Replies three times the size of the request, written in pieces: the
/// reply overflows the queue far more often than it fits, so the waiting,
/// retry and drop paths carry most of the traffic.
#[derive(Clone, Default)]
struct Amplify;

impl Handler for Amplify {
    fn on_message(&mut self, m: &[u8], _: &Context, r: &mut Reply<'_>) -> Result<(), ReplyFull> {
        for _ in 0..3 {
            r.write(m)?;
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct AmplifyServer;

impl Scenario for AmplifyServer {
    type Handler = Amplify;
    fn handler(&mut self) -> Amplify {
        Amplify
    }
    fn request(&mut self, id: u64, rng: &mut Rng, room: usize) -> Option<Vec<u8>> {
        let pad = rng.below(room as u64 / 2) as usize;
        let mut m = format!("a{id}:").into_bytes();
        m.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
        Some(m)
    }
    fn reply(&mut self, m: &[u8], _: &Context) -> Option<Vec<u8>> {
        Some(m.repeat(3))
    }
}

/// `LONGLINK_AMPLIFY_SEEDS` for a longer sweep.
#[test]
fn an_amplifying_handler_keeps_every_invariant() {
    let seeds = seeds("LONGLINK_AMPLIFY_SEEDS", 200);
    for seed in 0..seeds {
        let r = match seed % 2 {
            0 => Sim::<AmplifyServer, 96, 32>::new(AmplifyServer).check(seed),
            _ => Sim::<AmplifyServer, 512, 128>::new(AmplifyServer).check(seed),
        };
        if let Err(f) = r {
            panic!("{f}");
        }
    }
}

/// Answers every message with the time it was handled at and the wall
/// clock, as the state machine's `Context` says: checked against the
/// simulator's own clock and wall clock (jumps and implausible readings
/// included), so the context a handler sees is the one the world had.
#[derive(Clone, Default)]
struct Clock;

impl Handler for Clock {
    fn on_message(&mut self, _: &[u8], cx: &Context, r: &mut Reply<'_>) -> Result<(), ReplyFull> {
        r.write(format!("{} {:?}", cx.now.as_millis(), cx.unix_time_ms).as_bytes())
    }
}

#[derive(Clone, Default)]
struct ClockServer;

impl Scenario for ClockServer {
    type Handler = Clock;
    fn handler(&mut self) -> Clock {
        Clock
    }
    fn request(&mut self, id: u64, _: &mut Rng, _: usize) -> Option<Vec<u8>> {
        Some(format!("t{id}").into_bytes())
    }
    fn reply(&mut self, _: &[u8], cx: &Context) -> Option<Vec<u8>> {
        Some(format!("{} {:?}", cx.now.as_millis(), cx.unix_time_ms).into_bytes())
    }
}

/// `LONGLINK_CLOCK_SEEDS` for a longer sweep.
#[test]
fn the_handler_sees_the_worlds_time_and_wall_clock() {
    let seeds = seeds("LONGLINK_CLOCK_SEEDS", 200);
    let mut replies = 0;
    for seed in 0..seeds {
        match Sim::<ClockServer, 512, 128>::new(ClockServer).check(seed) {
            Ok(r) => replies += r.delivered.1,
            Err(f) => panic!("{f}"),
        }
    }
    assert!(replies > seeds, "{replies} replies in {seeds} seeds");
}
