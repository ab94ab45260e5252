//! The acknowledged mode's wire format and its server side.
//!
//! In [`Delivery::Acked`](crate::Delivery::Acked) every frame (inside the
//! configured [`Framing`](crate::Framing)) starts with a one-byte tag. The
//! byte-level description, with test vectors, is `PROTOCOL.md` at the top
//! of the repository; this module's tests check its vectors against this
//! code.
//!
//! | tag | direction | body | meaning |
//! |---|---|---|---|
//! | `D` (0x44) | device → server | session u32, seq u32, payload | an application message |
//! | `H` (0x48) | device → server | session u32, base u32, payload | a heartbeat; `base` is the oldest seq the device still holds |
//! | `A` (0x41) | server → device | session u32, next u32 | every `D` of `session` with seq before `next` was delivered |
//! | `M` (0x4D) | server → device | payload | an application message to the device (not acknowledged) |
//!
//! Integers are big-endian. Sequence numbers count `D` frames of a session
//! from 0 and wrap modulo 2^32; "before" is serial-number order
//! ([`seq_before`]).
//!
//! [`Dedup`] is the server's side as a sans-IO piece: feed it what a device
//! sent, it says whether to deliver and what to acknowledge.

/// Tag of an application message from the device.
pub const DATA: u8 = b'D';
/// Tag of a heartbeat from the device.
pub const BEAT: u8 = b'H';
/// Tag of an acknowledgement from the server.
pub const ACK: u8 = b'A';
/// Tag of an application message from the server.
pub const MSG: u8 = b'M';

/// Bytes a `D` or `H` frame adds before its payload.
pub const DEVICE_HEADER: usize = 9;
/// Length of an `A` frame.
pub const ACK_LEN: usize = 9;

/// Whether `a` comes before `b` in serial-number order (RFC 1982): less than
/// half the sequence space behind it.
#[must_use]
pub const fn seq_before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// A frame as one side reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `D`: an application message from the device.
    Data {
        /// The device's session.
        session: u32,
        /// Its sequence number.
        seq: u32,
        /// The message.
        payload: &'a [u8],
    },
    /// `H`: a heartbeat from the device.
    Beat {
        /// The device's session.
        session: u32,
        /// The oldest sequence number the device still holds (everything
        /// before it was acknowledged).
        base: u32,
        /// The heartbeat payload.
        payload: &'a [u8],
    },
    /// `A`: the server acknowledges every `D` before `next`.
    Ack {
        /// The session acknowledged.
        session: u32,
        /// The next sequence number the server expects.
        next: u32,
    },
    /// `M`: an application message from the server.
    Msg(&'a [u8]),
}

/// A frame that is none of the four, or too short for its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Malformed;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

impl<'a> Frame<'a> {
    /// Reads one frame (the bytes inside the framing).
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, Malformed> {
        let (&tag, _) = bytes.split_first().ok_or(Malformed)?;
        let word = |at| u32_at(bytes, at).ok_or(Malformed);
        match tag {
            DATA => Ok(Frame::Data {
                session: word(1)?,
                seq: word(5)?,
                payload: &bytes[DEVICE_HEADER..],
            }),
            BEAT => Ok(Frame::Beat {
                session: word(1)?,
                base: word(5)?,
                payload: &bytes[DEVICE_HEADER..],
            }),
            ACK if bytes.len() == ACK_LEN => Ok(Frame::Ack {
                session: word(1)?,
                next: word(5)?,
            }),
            MSG => Ok(Frame::Msg(&bytes[1..])),
            _ => Err(Malformed),
        }
    }
}

/// Writes the 9-byte header of a `D` or `H` frame.
pub(crate) fn device_header(tag: u8, session: u32, n: u32) -> [u8; DEVICE_HEADER] {
    let mut h = [tag, 0, 0, 0, 0, 0, 0, 0, 0];
    h[1..5].copy_from_slice(&session.to_be_bytes());
    h[5..9].copy_from_slice(&n.to_be_bytes());
    h
}

/// An `A` frame: every `D` of `session` before `next` was delivered.
#[must_use]
pub fn ack(session: u32, next: u32) -> [u8; ACK_LEN] {
    device_header(ACK, session, next)
}

/// What the server does with a frame from a device ([`Dedup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new message: hand it to the application, then send the ack.
    Deliver,
    /// Already delivered: drop it, send the ack again (the device missed it).
    Duplicate,
    /// A later message than the one expected (a datagram lost or reordered):
    /// drop it; the ack tells the device where to resume.
    Gap,
    /// A session the server has no state for and a message that is not its
    /// first: drop it and send nothing; the device's next heartbeat says
    /// where its window starts.
    Unknown,
    /// A heartbeat: nothing to deliver; the ack keeps the device informed.
    Beat,
}

/// The server's record of one device: its session and the next sequence
/// number expected. The server application keeps one per device and, for
/// exactly-once across its own crashes, stores it together with what it
/// delivered (see `PROTOCOL.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dedup {
    /// The current session and the next sequence number expected; `None`
    /// before the first frame.
    pub state: Option<(u32, u32)>,
}

impl Dedup {
    /// Handles a `D` or `H` frame from the device. Returns what to do with
    /// it and the ack to send, if any. Other frames are `None`.
    pub fn on_frame(&mut self, frame: &Frame<'_>) -> Option<(Verdict, Option<[u8; ACK_LEN]>)> {
        let (verdict, state) = match (*frame, self.state) {
            (Frame::Beat { session, base, .. }, Some((s, next))) if s == session => {
                // The device dropped what it had acknowledged; never go back.
                let next = if seq_before(next, base) { base } else { next };
                (Verdict::Beat, (session, next))
            }
            // A new session (a device restart) or lost state: the device's
            // window starts at `base`.
            (Frame::Beat { session, base, .. }, _) => (Verdict::Beat, (session, base)),
            (Frame::Data { session, seq, .. }, Some((s, next))) if s == session => {
                if seq == next {
                    (Verdict::Deliver, (session, next.wrapping_add(1)))
                } else if seq_before(seq, next) {
                    (Verdict::Duplicate, (session, next))
                } else {
                    (Verdict::Gap, (session, next))
                }
            }
            (
                Frame::Data {
                    session, seq: 0, ..
                },
                _,
            ) => (Verdict::Deliver, (session, 1)),
            (Frame::Data { .. }, _) => return Some((Verdict::Unknown, None)),
            (Frame::Ack { .. } | Frame::Msg(_), _) => return None,
        };
        self.state = Some(state);
        Some((verdict, Some(ack(state.0, state.1))))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;

    /// `PROTOCOL.md`'s test vectors (hex), checked in both directions.
    pub(crate) const VECTORS: &[(&str, &str)] = &[
        // D, session 0x0A0B0C0D, seq 0, payload "hi"
        ("data", "44 0a0b0c0d 00000000 6869"),
        // H, session 0x0A0B0C0D, base 7, payload "heart beat"
        ("beat", "48 0a0b0c0d 00000007 68656172742062656174"),
        // A, session 0x0A0B0C0D, next 8
        ("ack", "41 0a0b0c0d 00000008"),
        // M, payload "back 1"
        ("msg", "4d 6261636b2031"),
    ];

    pub(crate) fn hex(s: &str) -> std::vec::Vec<u8> {
        let s: std::string::String = s.split_whitespace().collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn vectors_decode_as_documented() {
        let session = 0x0A0B_0C0D;
        let v: std::vec::Vec<_> = VECTORS.iter().map(|(_, h)| hex(h)).collect();
        assert_eq!(
            Frame::decode(&v[0]),
            Ok(Frame::Data {
                session,
                seq: 0,
                payload: b"hi"
            })
        );
        assert_eq!(
            Frame::decode(&v[1]),
            Ok(Frame::Beat {
                session,
                base: 7,
                payload: b"heart beat"
            })
        );
        assert_eq!(Frame::decode(&v[2]), Ok(Frame::Ack { session, next: 8 }));
        assert_eq!(ack(session, 8).as_slice(), &v[2][..]);
        assert_eq!(Frame::decode(&v[3]), Ok(Frame::Msg(b"back 1")));
        assert_eq!(
            device_header(DATA, session, 0).as_slice(),
            &v[0][..DEVICE_HEADER]
        );
    }

    #[test]
    fn vectors_in_protocol_md_match_the_code() {
        let doc = include_str!("../../PROTOCOL.md");
        for (name, hex_frame) in VECTORS {
            let row = std::format!("| {name} | `{hex_frame}` |");
            assert!(doc.contains(&row), "PROTOCOL.md lacks {row}");
        }
        // And over TCP, behind the Len16 prefix.
        let mut framed = std::vec![0u8; 2 + 11];
        let n = crate::Framing::Len16
            .encode(&hex(VECTORS[0].1), &mut framed)
            .unwrap();
        assert_eq!(framed[..n], hex("000b 44 0a0b0c0d 00000000 6869"));
        assert!(doc.contains("`000b 44 0a0b0c0d 00000000 6869`"));
    }

    #[test]
    fn malformed_frames_are_refused() {
        for bad in [
            &b""[..],
            b"D\0\0\0\0\0\0\0",
            b"A\0\0\0\0\0\0\0\0\0",
            b"Z",
            b"H123",
        ] {
            assert_eq!(Frame::decode(bad), Err(Malformed), "{bad:?}");
        }
        assert_eq!(Frame::decode(b"M"), Ok(Frame::Msg(b"")));
    }

    #[test]
    fn serial_order_wraps() {
        assert!(seq_before(0, 1));
        assert!(!seq_before(1, 1));
        assert!(seq_before(u32::MAX, 0), "0 follows u32::MAX");
        assert!(!seq_before(0, u32::MAX));
        assert!(seq_before(5, 5 + (1 << 31) - 1));
    }

    fn data(session: u32, seq: u32) -> Frame<'static> {
        Frame::Data {
            session,
            seq,
            payload: b"x",
        }
    }

    #[test]
    fn dedup_delivers_each_message_once_in_order() {
        let mut d = Dedup::default();
        let v = |d: &mut Dedup, f| d.on_frame(&f).map(|(v, _)| v);
        assert_eq!(v(&mut d, data(9, 3)), Some(Verdict::Unknown));
        assert_eq!(v(&mut d, data(9, 0)), Some(Verdict::Deliver));
        assert_eq!(v(&mut d, data(9, 0)), Some(Verdict::Duplicate));
        assert_eq!(v(&mut d, data(9, 2)), Some(Verdict::Gap));
        assert_eq!(v(&mut d, data(9, 1)), Some(Verdict::Deliver));
        assert_eq!(d.state, Some((9, 2)));
        let (_, a) = d.on_frame(&data(9, 1)).unwrap();
        assert_eq!(a, Some(ack(9, 2)), "a duplicate is acknowledged again");
        // The device restarted: a new session starts at 0.
        assert_eq!(v(&mut d, data(10, 0)), Some(Verdict::Deliver));
        assert_eq!(d.state, Some((10, 1)));
        // A heartbeat of a session the server lost: adopt its base.
        let beat = Frame::Beat {
            session: 11,
            base: 40,
            payload: b"",
        };
        assert_eq!(v(&mut d, beat), Some(Verdict::Beat));
        assert_eq!(v(&mut d, data(11, 40)), Some(Verdict::Deliver));
        // A heartbeat never moves the server back.
        let old = Frame::Beat {
            session: 11,
            base: 3,
            payload: b"",
        };
        assert_eq!(d.on_frame(&old).map(|(_, a)| a), Some(Some(ack(11, 41))));
        // Across the wrap.
        d.state = Some((12, u32::MAX));
        assert_eq!(v(&mut d, data(12, u32::MAX)), Some(Verdict::Deliver));
        assert_eq!(v(&mut d, data(12, 0)), Some(Verdict::Deliver));
        assert_eq!(d.state, Some((12, 1)));
        assert_eq!(d.on_frame(&Frame::Msg(b"x")), None);
    }
}
