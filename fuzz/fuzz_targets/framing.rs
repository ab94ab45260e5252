//! Each framing decoder on arbitrary bytes: never panics, and every answer
//! agrees with an independent reference; plus the encode/decode round trip.
//!
//! Input: one selector byte (framing, buffer capacity, split point), then the
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longlink_core::framing::{decode, FrameError, Framing};

const FRAMINGS: [Framing; 3] = [Framing::Raw, Framing::Lines, Framing::Len16];

/// What `decode` must answer, from the framing's definition.
fn reference(
    framing: Framing,
    buf: &[u8],
    capacity: usize,
) -> Result<Option<(usize, usize, usize)>, FrameError> {
    match framing {
        Framing::Raw => Ok((!buf.is_empty()).then_some((0, buf.len(), buf.len()))),
        Framing::Lines => match buf.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                let end = if nl > 0 && buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                Ok(Some((0, end, nl + 1)))
            }
            None if buf.len() >= capacity => Err(FrameError::TooLarge),
            None => Ok(None),
        },
        Framing::Len16 => {
            if buf.len() < 2 {
                return Ok(None);
            }
            let total = 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if total > capacity {
                Err(FrameError::TooLarge)
            } else if buf.len() < total {
                Ok(None)
            } else {
                Ok(Some((2, total, total)))
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let framing = FRAMINGS[usize::from(sel % 3)];

    // 1. Decoding a stream the way the state machine does: the buffer never
    //    holds more than `capacity` bytes; complete frames are consumed.
    // The smallest receive buffers the config accepts: 1, 2 and 3 bytes.
    let min = [1, 2, 3][usize::from(sel % 3)];
    let capacity = min + usize::from(sel / 3) % 64;
    let mut pending: Vec<u8> = Vec::new();
    let mut input = bytes;
    loop {
        let take = (capacity - pending.len()).min(input.len());
        pending.extend_from_slice(&input[..take]);
        input = &input[take..];
        let got = decode(framing, &pending, capacity);
        let want = reference(framing, &pending, capacity);
        assert_eq!(
            got.map(|o| o.map(|f| (f.start, f.end, f.consumed))),
            want,
            "{framing:?} cap {capacity} {pending:?}"
        );
        match got {
            Ok(Some(f)) => {
                assert!(f.start <= f.end && f.end <= f.consumed && f.consumed <= pending.len());
                assert!(f.consumed > 0 && f.consumed <= capacity);
                pending.drain(..f.consumed);
            }
            Ok(None) if input.is_empty() => break,
            Ok(None) => {}
            Err(_) => break,
        }
        if framing == Framing::Raw && input.is_empty() && pending.is_empty() {
            break;
        }
    }

    // 2. Round trip: encode then decode gives the message back, alone and
    //    followed by a second message.
    let split = usize::from(sel) % (bytes.len() + 1);
    let (a, b) = bytes.split_at(split);
    let mut out = vec![0u8; bytes.len() + 2 * framing.overhead()];
    let encodable = |m: &[u8]| match framing {
        Framing::Raw => true,
        // A trailing `\r` would be read back as half of a `\r\n`.
        Framing::Lines => !m.contains(&b'\n') && m.last() != Some(&b'\r'),
        Framing::Len16 => m.len() <= usize::from(u16::MAX),
    };
    let na = match framing.encode(a, &mut out) {
        Ok(n) => {
            assert!(encodable(a));
            assert_eq!(n, a.len() + framing.overhead());
            n
        }
        Err(e) => {
            assert!(!encodable(a), "{framing:?} refused {a:?}: {e:?}");
            return;
        }
    };
    // Too small an output buffer is an error, never a panic or a truncation.
    if na > 0 {
        assert_eq!(
            framing.encode(a, &mut out[..na - 1].to_vec()),
            Err(FrameError::TooLarge)
        );
    }
    if framing == Framing::Raw && a.is_empty() {
        return; // an empty raw message is nothing on the wire (enqueue refuses it)
    }
    let f = decode(framing, &out[..na], na).unwrap().unwrap();
    assert_eq!(&out[f.start..f.end], a);
    assert_eq!(f.consumed, na);
    if framing != Framing::Raw && encodable(b) {
        let nb = framing.encode(b, &mut out[na..]).unwrap();
        let all = &out[..na + nb];
        let f1 = decode(framing, all, all.len()).unwrap().unwrap();
        assert_eq!(&all[f1.start..f1.end], a);
        let rest = &all[f1.consumed..];
        let f2 = decode(framing, rest, rest.len().max(1)).unwrap().unwrap();
        assert_eq!(&rest[f2.start..f2.end], b);
        assert_eq!(f2.consumed, rest.len());
    }
});
