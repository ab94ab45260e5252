//! The outgoing queue: whole framed messages in one caller-sized byte buffer.
//!
//! Messages are stored back to back, each behind a 4-byte header (length and
//! a heartbeat tag), so the frame at the head is always one contiguous slice
//! that can be handed to a socket as it is. Space freed at the front is
//! reclaimed by sliding the live bytes down ("compaction"), only when a new
//! message would not fit otherwise; no ring wrap-around, no second copy.
//!
//! A message leaves the queue only when the socket took its last byte
//! ([`Queue::drop_front`]): the state machine tracks how much of the head was
//! written, and starts again from zero on a new connection.
//!
//! Slices are taken with `get`/`get_mut` and `first_chunk` rather than
//! indexing: the bookkeeping keeps every range in bounds, and the checked
//! forms fold into the `None`/`Full` paths that exist anyway instead of
//! leaving a panic call behind each one (code size on microcontrollers).

/// Per-message header: little-endian `u32`, low 31 bits the frame length,
/// top bit set for a heartbeat.
pub(crate) const HEADER: usize = 4;
const HEARTBEAT_BIT: u32 = 1 << 31;

/// The queue has no room for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Full;

pub(crate) struct Queue<const N: usize> {
    buf: [u8; N],
    head: usize,
    tail: usize,
    count: usize,
}

impl<const N: usize> Queue<N> {
    pub(crate) const fn new() -> Self {
        Queue {
            buf: [0; N],
            head: 0,
            tail: 0,
            count: 0,
        }
    }

    /// Bytes in use, headers included.
    pub(crate) fn used(&self) -> usize {
        self.tail - self.head
    }

    /// Number of queued messages.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The largest frame that could be added now while leaving `reserve`
    /// bytes free, compaction allowed; `None` when not even a header fits.
    pub(crate) fn room(&self, reserve: usize) -> Option<usize> {
        N.checked_sub(reserve)?
            .checked_sub(self.used())?
            .checked_sub(HEADER)
    }

    /// Slides live bytes to the front of the buffer.
    pub(crate) fn compact(&mut self) {
        if self.head > 0 {
            slide_down(&mut self.buf, self.head, self.tail);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Whether [`compact`](Self::compact) would make [`spare`](Self::spare) larger.
    pub(crate) fn compaction_helps(&self, reserve: usize) -> bool {
        // The spare end (`N - tail - HEADER`) is shorter than the room
        // (`N - reserve - (tail - head) - HEADER`) exactly when
        // `head > reserve`.
        self.head > reserve && self.room(reserve).is_some()
    }

    /// The bytes a new frame can be written into, without compacting; `None`
    /// when there is no room for even an empty frame. Follow with
    /// [`commit`](Self::commit).
    pub(crate) fn spare(&mut self, reserve: usize) -> Option<&mut [u8]> {
        let room = self.room(reserve)?;
        // The free end of the buffer, limited to the room; `None` when not
        // even a header fits there.
        let start = self.tail + HEADER;
        self.buf.get_mut(start..N.min(start + room))
    }

    /// Makes the first `len` bytes of [`spare`](Self::spare) a queued frame.
    // Out of line: LTO would copy it into each caller (code size, see SIZES.md).
    #[inline(never)]
    pub(crate) fn commit(&mut self, len: usize, heartbeat: bool) {
        debug_assert!(self.tail + HEADER + len <= N);
        let tag = if heartbeat { HEARTBEAT_BIT } else { 0 };
        // Frames are bounded by N; the length field holds 31 bits.
        let header = (len as u32 & !HEARTBEAT_BIT) | tag;
        if let Some(at) = self.buf.get_mut(self.tail..) {
            if let Some(h) = at.first_chunk_mut::<HEADER>() {
                *h = header.to_le_bytes();
            }
        }
        self.tail += HEADER + len;
        self.count += 1;
    }

    /// Reserves room for a frame of exactly `len` bytes (compacting if that
    /// helps) and returns it to be filled, or `Full`.
    pub(crate) fn reserve_exact(&mut self, len: usize, reserve: usize) -> Result<&mut [u8], Full> {
        if self.room(reserve).is_none_or(|room| len > room) {
            return Err(Full);
        }
        // It fits: at the free end of the buffer, or after compaction.
        if self.tail + HEADER + len > N {
            self.compact();
        }
        let start = self.tail + HEADER;
        self.buf.get_mut(start..start + len).ok_or(Full)
    }

    /// The head frame's length and whether it is a heartbeat.
    pub(crate) fn header(&self) -> Option<(usize, bool)> {
        if self.count == 0 {
            return None;
        }
        let h = u32::from_le_bytes(*self.buf.get(self.head..)?.first_chunk::<HEADER>()?);
        Some(((h & !HEARTBEAT_BIT) as usize, h & HEARTBEAT_BIT != 0))
    }

    /// The frame at the head and whether it is a heartbeat.
    pub(crate) fn front(&self) -> Option<(&[u8], bool)> {
        let (len, hb) = self.header()?;
        let start = self.head + HEADER;
        Some((self.buf.get(start..start + len)?, hb))
    }

    /// Removes the head frame; returns whether it was a heartbeat.
    #[cfg(test)]
    pub(crate) fn pop_front(&mut self) -> Option<bool> {
        let (len, hb) = self.header()?;
        self.drop_front(len);
        Some(hb)
    }

    /// Removes the head frame, `len` bytes long (from [`header`](Self::header),
    /// which the caller has already read).
    pub(crate) fn drop_front(&mut self, len: usize) {
        self.head += HEADER + len;
        self.count -= 1;
        if self.count == 0 {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Iterates over the queued frames, head first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            if at >= self.tail {
                return None;
            }
            let h = u32::from_le_bytes(*self.buf.get(at..)?.first_chunk::<HEADER>()?);
            let len = (h & !HEARTBEAT_BIT) as usize;
            let frame = self.buf.get(at + HEADER..at + HEADER + len)?;
            at += HEADER + len;
            Some((frame, h & HEARTBEAT_BIT != 0))
        })
    }
}

/// Moves `buf[from..to]` to the start of `buf`.
///
/// Same result as `copy_within(from..to, 0)`, but in pieces of at most
/// `from` bytes that never overlap their destination: each is a `memcpy`,
/// and the firmware does not link `memmove` (1.5 KiB on Cortex-M) for this
/// one use. Compactions move little: the queue and receive buffer are
/// mostly drained when they happen.
pub(crate) fn slide_down(buf: &mut [u8], from: usize, to: usize) {
    if from == 0 || to <= from {
        return;
    }
    let mut done = 0;
    while done < to - from {
        let n = from.min(to - from - done);
        let Some((dst, src)) = buf.split_at_mut_checked(from + done) else {
            return;
        };
        match (dst.get_mut(done..done + n), src.get(..n)) {
            (Some(dst), Some(src)) => dst.copy_from_slice(src),
            _ => return,
        }
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push<const N: usize>(q: &mut Queue<N>, msg: &[u8], reserve: usize) -> Result<(), Full> {
        q.reserve_exact(msg.len(), reserve)?.copy_from_slice(msg);
        q.commit(msg.len(), false);
        Ok(())
    }

    #[test]
    fn fifo_order_and_tags() {
        let mut q = Queue::<64>::new();
        push(&mut q, b"one", 0).unwrap();
        q.reserve_exact(2, 0).unwrap().copy_from_slice(b"hb");
        q.commit(2, true);
        push(&mut q, b"three", 0).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.front(), Some((&b"one"[..], false)));
        assert_eq!(q.pop_front(), Some(false));
        assert_eq!(q.front(), Some((&b"hb"[..], true)));
        assert_eq!(q.pop_front(), Some(true));
        assert_eq!(q.pop_front(), Some(false));
        assert_eq!(q.pop_front(), None);
        assert!(q.is_empty());
        assert_eq!(q.used(), 0);
    }

    #[test]
    fn full_is_an_error_and_reserve_is_kept() {
        let mut q = Queue::<16>::new();
        // 16 bytes hold one header and 12 bytes of frame.
        assert_eq!(push(&mut q, &[1; 13], 0), Err(Full));
        assert_eq!(push(&mut q, &[1; 9], 3), Ok(()));
        assert_eq!(q.room(0), None, "13 bytes used, a header does not fit in 3");
        assert_eq!(push(&mut q, b"", 0), Err(Full));
        assert!(q.spare(0).is_none());
        assert_eq!(q.len(), 1, "a failed push changes nothing");
    }

    #[test]
    fn compaction_reuses_space_freed_at_the_front() {
        let mut q = Queue::<24>::new();
        push(&mut q, &[1; 8], 0).unwrap(); // 12 bytes
        push(&mut q, &[2; 4], 0).unwrap(); // 8 bytes, tail = 20
        q.pop_front();
        assert!(q.compaction_helps(0));
        // Needs 4 + 8 = 12 bytes: only possible after sliding [2;4] down.
        push(&mut q, &[3; 8], 0).unwrap();
        let frames: [_; 2] = core::array::from_fn(|_| {
            let f = q.front().unwrap().0[0];
            q.pop_front();
            f
        });
        assert_eq!(frames, [2, 3]);
    }

    #[test]
    fn spare_and_compaction_match_their_definitions() {
        // The definitions, spelled out: the free end of the buffer, limited
        // to the room; compaction helps when it would make that larger.
        fn spare_len<const N: usize>(q: &Queue<N>, reserve: usize) -> Option<usize> {
            let physical = N.checked_sub(q.tail)?.checked_sub(HEADER)?;
            Some(physical.min(q.room(reserve)?))
        }
        let mut q = Queue::<40>::new();
        let mut rng = 0x2545_f491_u32;
        for step in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            if rng.is_multiple_of(3) {
                q.pop_front();
            } else {
                let _ = push(&mut q, &[step as u8; 9][..(rng as usize >> 8) % 10], 0);
            }
            for reserve in 0..48 {
                let spare = spare_len(&q, reserve);
                assert_eq!(q.spare(reserve).map(|s| s.len()), spare, "step {step}");
                let helps = match (spare, q.room(reserve)) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(spare), Some(room)) => spare < room,
                };
                assert_eq!(q.compaction_helps(reserve), helps, "step {step}");
            }
        }
    }

    #[test]
    fn slide_down_is_copy_within() {
        for len in 0..24 {
            for from in 0..=len {
                for to in from..=len {
                    let mut a: [u8; 24] = core::array::from_fn(|i| i as u8);
                    let mut b = a;
                    slide_down(&mut a[..len], from, to);
                    b[..len].copy_within(from..to, 0);
                    assert_eq!(a, b, "len {len} from {from} to {to}");
                }
            }
        }
    }

    #[test]
    fn iter_sees_every_frame_in_order() {
        let mut q = Queue::<64>::new();
        for m in [&b"a"[..], b"bb", b"ccc"] {
            push(&mut q, m, 0).unwrap();
        }
        let mut lens = [0; 3];
        for (i, (f, _)) in q.iter().enumerate() {
            lens[i] = f.len();
        }
        assert_eq!(lens, [1, 2, 3]);
    }
}
