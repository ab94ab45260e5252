//! One call into the state machine as data: what a fuzz target or a
//! proptest sequence feeds a [`Harness`].

use crate::harness::Harness;
use crate::{Scenario, Violation};

/// Something that happens to the device: a driver event, time passing, the
/// application queueing, the socket writing or the server's bytes arriving.
/// [`Harness::apply`] makes it one call into the state machine (or none,
/// when it makes no sense now) and checks every invariant after it.
///
/// With the `arbitrary` feature it implements `arbitrary::Arbitrary`, for a
/// cargo-fuzz target over your handler; [`strategy::inputs`](crate::strategy::inputs)
/// draws sequences for proptest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Input {
    /// The network went up (`true`) or down.
    Network(bool),
    /// Time passes by this many milliseconds (in the acknowledged mode, up
    /// to the next deadline at most).
    Advance(u16),
    /// Time passes by up to this many milliseconds (as above).
    AdvanceFar(u32),
    /// Time passes to the next deadline.
    ToDeadline,
    /// The monotonic clock reads this many milliseconds in the past.
    ClockBack(u16),
    /// The connect attempt succeeded.
    ConnectOk,
    /// The connect attempt failed.
    ConnectFail,
    /// The peer closed the connection.
    Closed,
    /// A socket error.
    IoError,
    /// The application queues these bytes.
    Enqueue(Vec<u8>),
    /// The socket takes at most this many bytes (255: all of it).
    Write(u8),
    /// The server's bytes arrive (TCP: offered to the stream; UDP: one
    /// datagram).
    Read(Vec<u8>),
    /// A wall-clock reading (Unix milliseconds).
    WallClock(u64),
}

impl<S: Scenario, const Q: usize, const R: usize> Harness<S, Q, R> {
    /// `to`, or the deadline if it comes first (acknowledged mode: the
    /// oracle needs the timers to fire at their deadlines).
    fn clamp(&self, to: u64) -> u64 {
        match self.deadline() {
            Some(d) if self.acked() => d.min(to),
            _ => to,
        }
    }

    /// Makes `input` one call into the state machine at the harness's
    /// current time, with every invariant checked after it.
    pub fn apply(&mut self, input: &Input) -> Result<(), Violation> {
        let now = self.now();
        match input {
            Input::Network(up) => self.network(now, *up),
            Input::Advance(d) => self.advance(self.clamp(now + u64::from(*d))),
            Input::AdvanceFar(d) => self.advance(self.clamp(now + u64::from(*d))),
            Input::ToDeadline => match self.deadline() {
                Some(d) => self.advance(d),
                None => Ok(()),
            },
            Input::ClockBack(d) => self.clock_back(u64::from(*d)),
            Input::ConnectOk => self.connect_ok(now),
            Input::ConnectFail => self.connect_failed(now),
            Input::Closed => self.peer_closed(now),
            Input::IoError => self.io_error(now),
            Input::Enqueue(msg) => self.enqueue(now, msg.clone()).map(drop),
            Input::Write(max) => {
                let max = if *max == 255 {
                    usize::MAX
                } else {
                    usize::from(*max)
                };
                self.write(now, max).map(drop)
            }
            Input::Read(bytes) => {
                if self.config().transport == longlink_core::Transport::Udp {
                    self.read_datagram(now, bytes).map(drop)
                } else {
                    self.read_stream(now, bytes).map(drop)
                }
            }
            Input::WallClock(unix) => self.wall_clock(now, *unix),
        }
    }

    /// Applies every input in turn; the first invariant that fails ends it.
    pub fn apply_all<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a Input>,
    ) -> Result<(), Violation> {
        inputs.into_iter().try_for_each(|i| self.apply(i))
    }
}
