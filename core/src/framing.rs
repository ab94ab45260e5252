//! Message framing on the wire, apart from any connection state.
//!
//! TCP is a byte stream: a command the server sends as one write may arrive
//! split over two reads or glued to the next one. The tutorial ignores this
//! (each read is one message); we keep that as [`Framing::Raw`] and add two
//! framings that survive any split or coalescing:
//!
//! | framing | on the wire | largest message |
//! |---|---|---|
//! | [`Raw`](Framing::Raw) | the bytes as they are; each read (TCP) or datagram (UDP) is one message | the receive buffer |
//! | [`Lines`](Framing::Lines) | message, then `\n` (a `\r` before the `\n` is dropped on receive, so a message may not end in `\r`) | receive buffer − 1 |
//! | [`Len16`](Framing::Len16) | 2-byte big-endian length, then the message | min(65535, receive buffer − 2) |
//!
//! The decoder is a pure function over the bytes received so far
//! ([`decode`]); the state machine owns the buffer. The encoder is split into
//! a [`prefix`](Framing::prefix) and a [`suffix`](Framing::suffix) so that a
//! message can be framed in place, without a second buffer.

/// How messages are delimited on the wire. Applies in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Framing {
    /// No framing: each received chunk (TCP read) or datagram (UDP) is one
    /// message, and messages are sent as they are. The tutorial's behaviour;
    /// the default.
    #[default]
    Raw,
    /// Each message ends with `\n`. A message must not contain `\n` nor end
    /// with `\r` (received `\r\n` line ends are accepted as `\n`).
    Lines,
    /// Each message is preceded by its length as a 2-byte big-endian integer.
    Len16,
}

/// Why a frame could not be decoded or encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FrameError {
    /// The frame does not fit in the buffer (decode) or in the framing's
    /// length field (encode).
    TooLarge,
    /// The message contains a byte the framing uses as a delimiter
    /// (`\n` in [`Framing::Lines`], or a trailing `\r` that the receiver
    /// would take for part of a `\r\n`).
    Delimiter,
}

/// A complete frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the message starts in the buffer.
    pub start: usize,
    /// Where the message ends (exclusive).
    pub end: usize,
    /// How many bytes of the buffer the frame occupies, delimiters included.
    pub consumed: usize,
}

impl Framing {
    /// Bytes the framing puts before a message of `len` bytes.
    pub const fn prefix_len(self) -> usize {
        match self {
            Framing::Len16 => 2,
            Framing::Raw | Framing::Lines => 0,
        }
    }

    /// Bytes the framing puts after a message.
    pub const fn suffix(self) -> &'static [u8] {
        match self {
            Framing::Lines => b"\n",
            Framing::Raw | Framing::Len16 => b"",
        }
    }

    /// Total bytes on the wire for a message of `len` bytes.
    pub const fn overhead(self) -> usize {
        // Spelled out rather than `prefix_len() + suffix().len()`: one table
        // lookup instead of two matches wherever it is inlined.
        match self {
            Framing::Raw => 0,
            Framing::Lines => 1,
            Framing::Len16 => 2,
        }
    }

    /// The prefix for a message of `len` bytes, written into `out[..prefix_len()]`.
    ///
    /// Checks that the framing can carry the message at all.
    pub fn prefix(self, msg: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        match self {
            Framing::Raw => Ok(0),
            Framing::Lines => {
                // A trailing `\r` would be taken for half of a `\r\n` and
                // stripped on receive: the peer would get another message.
                if find_newline(msg).is_some() || msg.last() == Some(&b'\r') {
                    Err(FrameError::Delimiter)
                } else {
                    Ok(0)
                }
            }
            Framing::Len16 => {
                let len = u16::try_from(msg.len()).map_err(|_| FrameError::TooLarge)?;
                let out = out.get_mut(..2).ok_or(FrameError::TooLarge)?;
                out.copy_from_slice(&len.to_be_bytes());
                Ok(2)
            }
        }
    }

    /// Writes the prefix and the suffix around a message already in place in
    /// `frame[prefix_len()..frame.len() - suffix().len()]`.
    pub(crate) fn wrap(self, frame: &mut [u8]) {
        match (self, frame) {
            // The callers checked that the length fits 16 bits.
            (Framing::Len16, [hi, lo, body @ ..]) => {
                [*hi, *lo] = (body.len() as u16).to_be_bytes();
            }
            (Framing::Lines, [.., last]) => *last = b'\n',
            _ => {}
        }
    }

    /// Frames `msg` into `out`, returning the number of bytes written.
    ///
    /// A convenience over [`prefix`](Self::prefix) and
    /// [`suffix`](Self::suffix) for callers that have a spare buffer (tests,
    /// servers, fuzzers).
    pub fn encode(self, msg: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        let total = msg.len() + self.overhead();
        if out.len() < total {
            return Err(FrameError::TooLarge);
        }
        let p = self.prefix(msg, out)?;
        out[p..p + msg.len()].copy_from_slice(msg);
        let s = self.suffix();
        out[p + msg.len()..total].copy_from_slice(s);
        Ok(total)
    }
}

/// Looks for one complete frame at the start of `buf`.
///
/// `capacity` is the size of the buffer the bytes accumulate in; a frame that
/// could never fit in it is [`FrameError::TooLarge`], reported as soon as it
/// is certain (for `Len16` as soon as the header is in; for `Lines` when the
/// buffer is full without a newline).
///
/// Returns `Ok(None)` when more bytes are needed. `Raw` takes the whole buffer
/// as one frame (an empty buffer holds no frame).
pub fn decode(framing: Framing, buf: &[u8], capacity: usize) -> Result<Option<Frame>, FrameError> {
    decode_after(framing, buf, capacity, 0)
}

/// [`decode`], told that the first `scanned` bytes of `buf` were already
/// searched and hold no delimiter. A long line arriving in many small reads
/// is then searched once, not once per read.
pub fn decode_after(
    framing: Framing,
    buf: &[u8],
    capacity: usize,
    scanned: usize,
) -> Result<Option<Frame>, FrameError> {
    match framing {
        Framing::Raw => Ok((!buf.is_empty()).then_some(Frame {
            start: 0,
            end: buf.len(),
            consumed: buf.len(),
        })),
        Framing::Lines => match find_newline(buf.get(scanned..).unwrap_or_default()) {
            Some(at) => {
                let nl = scanned + at;
                let end = if let Some([.., b'\r']) = buf.get(..nl) {
                    nl - 1
                } else {
                    nl
                };
                Ok(Some(Frame {
                    start: 0,
                    end,
                    consumed: nl + 1,
                }))
            }
            None if buf.len() >= capacity => Err(FrameError::TooLarge),
            None => Ok(None),
        },
        Framing::Len16 => {
            let Some(header) = buf.get(..2) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
            let total = 2 + len;
            if total > capacity {
                Err(FrameError::TooLarge)
            } else if buf.len() < total {
                Ok(None)
            } else {
                Ok(Some(Frame {
                    start: 2,
                    end: total,
                    consumed: total,
                }))
            }
        }
    }
}

/// The position of the first `\n`.
pub(crate) fn find_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, mut buf: &[u8], cap: usize) -> ([&[u8]; 4], usize, usize) {
        let mut out: [&[u8]; 4] = [b""; 4];
        let mut n = 0;
        while let Ok(Some(f)) = decode(framing, buf, cap) {
            out[n] = &buf[f.start..f.end];
            n += 1;
            buf = &buf[f.consumed..];
            if n == 4 || framing == Framing::Raw {
                break;
            }
        }
        (out, n, buf.len())
    }

    #[test]
    fn lines_split_and_coalesced() {
        let (f, n, rest) = frames(Framing::Lines, b"back 1\nbin\r\ntim", 64);
        assert_eq!(n, 2);
        assert_eq!(f[0], b"back 1");
        assert_eq!(f[1], b"bin");
        assert_eq!(rest, 3, "the partial `tim` waits for more bytes");
    }

    #[test]
    fn newline_search_finds_the_first_at_every_offset() {
        for len in 0..40 {
            for nl in 0..len {
                let mut buf = [b'a'; 40];
                buf[nl] = b'\n';
                if nl + 3 < len {
                    buf[nl + 3] = b'\n';
                }
                assert_eq!(find_newline(&buf[..len]), Some(nl), "len {len} nl {nl}");
            }
            // Bytes that differ from `\n` in one bit must not match.
            let near = [b'\n' ^ 0x80, b'\n' ^ 1, b'\n' + 1, 0, 0xff];
            let buf: [u8; 40] = core::array::from_fn(|i| near[i % near.len()]);
            assert_eq!(find_newline(&buf[..len]), None);
        }
    }

    #[test]
    fn decode_after_skips_what_was_searched() {
        let buf = b"abc\ndef\n";
        assert_eq!(
            decode_after(Framing::Lines, buf, 64, 4),
            Ok(Some(Frame {
                start: 0,
                end: 7,
                consumed: 8
            }))
        );
        assert_eq!(decode_after(Framing::Lines, buf, 64, 99), Ok(None));
    }

    #[test]
    fn lines_without_newline_in_full_buffer_is_too_large() {
        assert_eq!(
            decode(Framing::Lines, b"abcd", 4),
            Err(FrameError::TooLarge)
        );
        assert_eq!(decode(Framing::Lines, b"abc", 4), Ok(None));
        // The largest line that fits: capacity - 1 bytes plus the newline.
        assert_eq!(
            decode(Framing::Lines, b"abc\n", 4),
            Ok(Some(Frame {
                start: 0,
                end: 3,
                consumed: 4
            }))
        );
    }

    #[test]
    fn len16_waits_for_header_and_body() {
        assert_eq!(decode(Framing::Len16, b"", 16), Ok(None));
        assert_eq!(decode(Framing::Len16, b"\x00", 16), Ok(None));
        assert_eq!(decode(Framing::Len16, b"\x00\x03bi", 16), Ok(None));
        let (f, n, rest) = frames(Framing::Len16, b"\x00\x03bin\x00\x00\x00\x04time", 16);
        assert_eq!(n, 3);
        assert_eq!((f[0], f[1], f[2]), (&b"bin"[..], &b""[..], &b"time"[..]));
        assert_eq!(rest, 0);
    }

    #[test]
    fn len16_oversize_is_reported_from_the_header_alone() {
        // 2 + 15 = 17 > 16: known to be too large before the body arrives.
        assert_eq!(
            decode(Framing::Len16, b"\x00\x0f", 16),
            Err(FrameError::TooLarge)
        );
        assert_eq!(
            decode(Framing::Len16, b"\xff\xff", 16),
            Err(FrameError::TooLarge)
        );
        assert_eq!(decode(Framing::Len16, b"\x00\x0e", 16), Ok(None));
    }

    #[test]
    fn overhead_is_prefix_plus_suffix() {
        for framing in [Framing::Raw, Framing::Lines, Framing::Len16] {
            assert_eq!(
                framing.overhead(),
                framing.prefix_len() + framing.suffix().len()
            );
        }
    }

    #[test]
    fn raw_takes_everything() {
        assert_eq!(decode(Framing::Raw, b"", 8), Ok(None));
        let (f, n, rest) = frames(Framing::Raw, b"back\nbin", 8);
        assert_eq!((n, f[0], rest), (1, &b"back\nbin"[..], 0));
    }

    #[test]
    fn encode_round_trips_and_rejects_what_cannot_be_framed() {
        let mut out = [0u8; 16];
        for framing in [Framing::Raw, Framing::Lines, Framing::Len16] {
            let n = framing.encode(b"hello", &mut out).unwrap();
            assert_eq!(n, 5 + framing.overhead());
            let f = decode(framing, &out[..n], 16).unwrap().unwrap();
            assert_eq!(&out[f.start..f.end], b"hello");
            assert_eq!(f.consumed, n);
        }
        assert_eq!(
            Framing::Lines.encode(b"a\nb", &mut out),
            Err(FrameError::Delimiter)
        );
        assert_eq!(
            Framing::Len16.encode(&[0; 15], &mut out),
            Err(FrameError::TooLarge)
        );
        let big = [0u8; 70_000];
        let mut big_out = [0u8; 70_010];
        assert_eq!(
            Framing::Len16.encode(&big, &mut big_out),
            Err(FrameError::TooLarge)
        );
        assert_eq!(Framing::Len16.prefix(b"abc", &mut out), Ok(2));
        assert_eq!(&out[..2], &[0, 3]);
    }
}
