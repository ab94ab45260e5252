//! Property tests: random valid configs and random call sequences into the
//! state machine, with the tutorial's handler, every invariant of the
//! simulator checked after every call (the timing model: exact actions,
//! status, failure count and deadlines; the ledger: every message and reply
//! whole, in order, exactly once, a cut frame resent whole, the queue
//! holding exactly what is owed; the counters). proptest shrinks a failure
//! to a handful of calls. `PROPTEST_CASES=<n>` scales the run (256 per test
//! by default).
//!
//! The sequences come from the same public strategies a user's own tests
//! use (`strategy::edge_config`, `strategy::inputs_with`,
//! `strategy::framed`). They replace a second, hand-written shadow model
//! (`core/tests/properties.rs`, until this crate was published): one model
//! of the machine, the simulator's, now checks it from both sides, in a
//! world of faults at a million seeds and call by call here.

use longlink_core::Config;
use longlink_sim::{strategy, Harness, Input, Tutorial};
use proptest::prelude::*;

/// The tutorial's requests, and now and then an oversize one.
fn requests() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        (0usize..40).prop_map(|pad| {
            let mut b = b"back".to_vec();
            b.extend((0..pad).map(|i| b'a' + (i % 26) as u8));
            b
        }),
        Just(b"bin".to_vec()),
        Just(b"time".to_vec()),
        Just(vec![b'z'; 300]),
    ]
}

/// A config (durations down to 1 ms), and up to 200 inputs whose server
/// bytes are framed for it.
fn case() -> impl Strategy<Value = (Config, Vec<Input>)> {
    strategy::edge_config().prop_flat_map(|cfg| {
        let server = strategy::framed(&cfg, requests());
        (Just(cfg), strategy::inputs_with(server, 200))
    })
}

fn run<const Q: usize, const R: usize>(cfg: Config, inputs: &[Input]) -> Result<(), TestCaseError> {
    // A config these sizes cannot hold is refused up front: not a failure.
    let Ok(mut h) = Harness::<Tutorial, Q, R>::new(cfg, Tutorial::default(), false) else {
        return Ok(());
    };
    h.apply_all(inputs)
        .map_err(|v| TestCaseError::fail(v.to_string()))
}

proptest! {
    /// Small buffers: a full queue, backpressure and rejected frames are
    /// common.
    #[test]
    fn small_buffers((cfg, inputs) in case()) {
        run::<64, 16>(cfg, &inputs)?;
    }

    #[test]
    fn roomy_buffers((cfg, inputs) in case()) {
        run::<256, 96>(cfg, &inputs)?;
    }
}

/// The strategies reach what the properties are about: across many cases,
/// connections are made, messages written, replies sent and frames
/// rejected (a strategy that degenerated would make the tests above
/// vacuous).
#[test]
fn the_sequences_exercise_the_machine() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut connects, mut out, mut replies, mut rejected, mut refused) = (0, 0, 0, 0, 0);
    for _ in 0..300 {
        let (cfg, inputs) = case()
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        let Ok(mut h) = Harness::<Tutorial, 256, 96>::new(cfg, Tutorial::default(), false) else {
            refused += 1;
            continue;
        };
        h.apply_all(&inputs)
            .map_err(|v| v.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let st = h.connection().stats();
        connects += st.connects;
        out += st.messages_out;
        replies += h.delivered().1;
        rejected += st.frames_rejected;
    }
    println!("refused {refused}, connects {connects}, messages out {out}, replies {replies}, rejected {rejected}");
    assert!(
        refused < 30,
        "{refused} of 300 configs refused (either size)"
    );
    assert!(
        connects > 300 && out > 300 && replies > 30 && rejected > 10,
        "connects {connects}, messages out {out}, replies {replies}, rejected {rejected}"
    );
}
