//! What happens to an inbound message: the [`Handler`] trait, and the
//! tutorial's test protocol as a ready-made one ([`TestProtocol`]).

use crate::time::Instant;

/// What a handler knows besides the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Context {
    /// The caller's monotonic time of this call.
    pub now: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch, or `None` when the
    /// caller never supplied one (see
    /// [`Connection::handle_wall_clock`](crate::Connection::handle_wall_clock)).
    pub unix_time_ms: Option<u64>,
}

/// The reply did not fit where the state machine put it.
///
/// Returned by [`Reply::write`]; a handler passes it on with `?`. The state
/// machine then waits for queue space and calls the handler again with the
/// same message (see [`Handler`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReplyFull;

/// Where a handler writes its reply: straight into free space of the outgoing
/// queue, framed by the state machine once the handler returns.
///
/// Everything written during one call is one outgoing message. Writing
/// nothing (not even an empty slice) means "no reply". An empty reply (only
/// empty slices written) is a message of no bytes: with `Raw` framing it
/// cannot be sent, and is dropped and counted like any reply the framing
/// cannot carry (`Stats::replies_dropped`, `Event::ReplyDropped`).
pub struct Reply<'a> {
    /// Empty, with `overflow` set from the start, when not even an empty
    /// reply fits (one slice rather than an `Option` to test at every write).
    buf: &'a mut [u8],
    len: usize,
    started: bool,
    overflow: bool,
    /// `Lines` framing: a `\n` would split the reply into two messages, a
    /// trailing `\r` would be lost.
    forbid_newline: bool,
    bad_byte: bool,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(buf: Option<&'a mut [u8]>, forbid_newline: bool) -> Self {
        Reply {
            overflow: buf.is_none(),
            buf: buf.unwrap_or_default(),
            len: 0,
            started: false,
            forbid_newline,
            bad_byte: false,
        }
    }

    /// Appends `bytes` to the reply.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ReplyFull> {
        self.started = true;
        if self.forbid_newline && crate::framing::find_newline(bytes).is_some() {
            self.bad_byte = true;
        }
        let end = self.len + bytes.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                Ok(())
            }
            _ => {
                self.overflow = true;
                Err(ReplyFull)
            }
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written so far.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be written.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.len
    }

    pub(crate) fn outcome(&self) -> ReplyOutcome {
        // `started` first: `overflow` may be set before any write.
        if !self.started {
            ReplyOutcome::None
        } else if self.overflow {
            ReplyOutcome::Overflow
        } else if self.bad_byte
            || (self.forbid_newline && self.len > 0 && self.buf.get(self.len - 1) == Some(&b'\r'))
        {
            // A trailing `\r` would be stripped as half of a `\r\n`.
            ReplyOutcome::Unframeable
        } else {
            ReplyOutcome::Message(self.len)
        }
    }
}

impl core::fmt::Write for Reply<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}

pub(crate) enum ReplyOutcome {
    None,
    Message(usize),
    Overflow,
    Unframeable,
}

/// Processes each inbound message, optionally replying.
///
/// # Retries
///
/// The reply is written into the outgoing queue. When the queue has no room,
/// the state machine does not drop the reply: it stops reading from the socket
/// (backpressure, see
/// [`Connection::receive_buffer`](crate::Connection::receive_buffer)), and
/// calls `on_message` again with the same message once queued data has been
/// written. A handler therefore must be prepared to see a message more than
/// once when a call ended in [`ReplyFull`]; only a call that returned `Ok`
/// counts. Handlers that only compute a reply from the message (like
/// [`TestProtocol`]) need not care.
pub trait Handler {
    /// Handles one whole message (as delimited by the configured framing).
    fn on_message(
        &mut self,
        message: &[u8],
        cx: &Context,
        reply: &mut Reply<'_>,
    ) -> Result<(), ReplyFull>;
}

/// Ignores every message.
impl Handler for () {
    fn on_message(&mut self, _: &[u8], _: &Context, _: &mut Reply<'_>) -> Result<(), ReplyFull> {
        Ok(())
    }
}

impl<H: Handler + ?Sized> Handler for &mut H {
    fn on_message(
        &mut self,
        message: &[u8],
        cx: &Context,
        reply: &mut Reply<'_>,
    ) -> Result<(), ReplyFull> {
        (**self).on_message(message, cx, reply)
    }
}

/// The tutorial's test protocol:
///
/// | the server sends | the client answers |
/// |---|---|
/// | anything starting with `back` | the same bytes |
/// | exactly `bin` | the three bytes `11 22 33` |
/// | exactly `time` | the Unix time in seconds, as decimal ASCII (`1732550400`) |
/// | anything else | nothing |
///
/// # `time` before the clock is set
///
/// The tutorial answers `os.time()`, which before its NTP sync is the module's
/// unsynced clock: a timestamp in 1970. We never answer a time we do not
/// know: until a wall clock was supplied with
/// [`Connection::handle_wall_clock`](crate::Connection::handle_wall_clock),
/// `time` gets **no answer**, and [`TestProtocol::time_unsynced`] counts the
/// requests that went unanswered for that reason. A server asking too early
/// sees a timeout, which it can tell apart from a wrong answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TestProtocol {
    /// `time` requests left unanswered because no wall clock was set.
    pub time_unsynced: u32,
}

/// The tutorial's answer to `bin`.
pub const BIN_REPLY: [u8; 3] = [0x11, 0x22, 0x33];

impl Handler for TestProtocol {
    fn on_message(
        &mut self,
        message: &[u8],
        cx: &Context,
        reply: &mut Reply<'_>,
    ) -> Result<(), ReplyFull> {
        match message {
            [b'b', b'a', b'c', b'k', ..] => reply.write(message),
            b"bin" => reply.write(&BIN_REPLY),
            b"time" => match cx.unix_time_ms {
                Some(ms) => write_decimal(ms, 1000, reply),
                None => {
                    // Counted on the call that returns Ok only: a retried
                    // message is still one unanswered request.
                    self.time_unsynced = self.time_unsynced.wrapping_add(1);
                    Ok(())
                }
            },
            _ => Ok(()),
        }
    }
}

/// Writes `n / unit` in decimal to `reply`, most significant digit first;
/// `unit` is a power of ten (1000: milliseconds to seconds).
///
/// No digit buffer (zeroing one first is a `memclr` call on Cortex-M, the
/// only one outside `Connection::new`) and no division: each digit is
/// counted by subtracting its power of ten, at most nine times.
pub(crate) fn write_decimal(mut n: u64, unit: u64, reply: &mut Reply<'_>) -> Result<(), ReplyFull> {
    // The leading digit's power of ten: `unit * 10^top`, the largest not
    // above `n` (`unit` itself when `n < unit`: a single `0`).
    let mut top = 0;
    let mut p = unit;
    while let Some(next) = p.checked_mul(10).filter(|&next| next <= n) {
        p = next;
        top += 1;
    }
    loop {
        let mut digit = b'0';
        while n >= p {
            n -= p;
            digit += 1;
        }
        reply.write(&[digit])?;
        if top == 0 {
            // What is left of `n` is below `unit`: the discarded fraction.
            return Ok(());
        }
        top -= 1;
        // `p / 10`, rebuilt by multiplying rather than dividing.
        p = unit;
        for _ in 0..top {
            p *= 10;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(h: &mut TestProtocol, msg: &[u8], unix_ms: Option<u64>) -> ([u8; 64], usize, bool) {
        let mut buf = [0u8; 64];
        let cx = Context {
            now: Instant::from_secs(1),
            unix_time_ms: unix_ms,
        };
        let mut r = Reply::new(Some(&mut buf[..]), false);
        h.on_message(msg, &cx, &mut r).unwrap();
        let (len, started) = (r.len(), r.started);
        (buf, len, started)
    }

    #[test]
    fn answers_the_tutorial_commands() {
        let mut h = TestProtocol::default();
        let (b, n, _) = answer(&mut h, b"back hello", None);
        assert_eq!(&b[..n], b"back hello");
        let (b, n, _) = answer(&mut h, b"back", None);
        assert_eq!(&b[..n], b"back");
        let (b, n, _) = answer(&mut h, b"bin", None);
        assert_eq!(&b[..n], &[0x11, 0x22, 0x33]);
        let (b, n, _) = answer(&mut h, b"time", Some(1_732_550_400_999));
        assert_eq!(&b[..n], b"1732550400");
    }

    #[test]
    fn ignores_everything_else() {
        let mut h = TestProtocol::default();
        for msg in [
            &b"bin "[..],
            b"bi",
            b"time\n",
            b"Time",
            b"bac",
            b"xback",
            b"",
            b"\xff\xfe",
        ] {
            let (_, n, started) = answer(&mut h, msg, Some(1_732_550_400_000));
            assert!(!started && n == 0, "{msg:?} must get no reply");
        }
    }

    #[test]
    fn time_before_the_clock_is_set_is_not_answered_but_counted() {
        let mut h = TestProtocol::default();
        let (_, n, started) = answer(&mut h, b"time", None);
        assert!(!started);
        assert_eq!(n, 0);
        assert_eq!(h.time_unsynced, 1);
    }

    #[test]
    fn a_reply_that_does_not_fit_is_an_error_not_a_truncation() {
        let mut buf = [0u8; 4];
        let cx = Context {
            now: Instant::ZERO,
            unix_time_ms: None,
        };
        let mut r = Reply::new(Some(&mut buf[..]), false);
        assert_eq!(
            TestProtocol::default().on_message(b"back 123", &cx, &mut r),
            Err(ReplyFull)
        );
        assert!(matches!(r.outcome(), ReplyOutcome::Overflow));
        // Later writes that would fit do not resurrect a truncated reply.
        assert_eq!(r.write(b"x"), Err(ReplyFull));
    }

    #[test]
    fn without_room_nothing_written_is_no_reply_and_anything_overflows() {
        let r = Reply::new(None, false);
        assert!(matches!(r.outcome(), ReplyOutcome::None));
        assert_eq!((r.len(), r.remaining()), (0, 0));
        let mut r = Reply::new(None, false);
        assert_eq!(r.write(b""), Err(ReplyFull));
        assert!(matches!(r.outcome(), ReplyOutcome::Overflow));
        // An empty buffer, by contrast, holds an empty reply.
        let mut r = Reply::new(Some(&mut []), false);
        assert_eq!(r.write(b""), Ok(()));
        assert!(matches!(r.outcome(), ReplyOutcome::Message(0)));
    }

    #[test]
    fn decimal_formats_extremes() {
        extern crate std;
        use std::string::ToString;
        let mut buf = [0u8; 32];
        for n in [
            0,
            7,
            9,
            10,
            99,
            100,
            999,
            1000,
            1001,
            1_732_550_400,
            1_732_550_400_999,
            9_999_999_999_999_999_999,
            10_000_000_000_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            for unit in [1, 10, 1000, 10_000_000_000_000_000_000] {
                let mut r = Reply::new(Some(&mut buf[..]), false);
                write_decimal(n, unit, &mut r).unwrap();
                let len = r.len();
                assert_eq!(
                    &buf[..len],
                    (n / unit).to_string().as_bytes(),
                    "{n} / {unit}"
                );
            }
        }
        // Too small a buffer is an overflow, as for any reply.
        let mut r = Reply::new(Some(&mut buf[..3]), false);
        assert_eq!(write_decimal(1234, 1, &mut r), Err(ReplyFull));
    }
}
